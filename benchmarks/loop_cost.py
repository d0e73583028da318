"""The decoding loops' own cost, measured with models that cost nothing.

Each loop runs with two random bigram models (``harness.models.toy``) of the
benchmarked pair's vocabulary size whose ``score`` is a table lookup, and
whose EOS can never be drawn, so every call decodes ``max_decode_len``
tokens. What remains is the loop's own work at the real vocabulary: logit
processing and sampling, the target rule, GenSpecSample, emitting, counters
and loop control. Unlike ``loop_overhead`` (wall time / isolated model
calls), it needs no differencing of two noisy timings.
"""

from __future__ import annotations

import jax
import numpy as np

from benchmarks import timing
from benchmarks.runs import RunSpec
from harness import decoding
from harness.models import toy

# Prompt of the null models (its ids only index the bigram table).
_PROMPT = np.arange(1, 9, dtype=np.int32)


def null_pair(vocab_size: int, eos_id: int, seed: int = 0):
  """(drafter, verifier): null models (``toy.null_bigram``)."""
  return tuple(toy.null_bigram(key, vocab_size, eos_id)
               for key in jax.random.split(jax.random.key(seed)))


def seconds_per_iteration(spec: RunSpec, vocab_size: int, eos_id: int,
                          max_decode_len: int, calls: int,
                          repeats: int) -> float:
  """Best-of-``repeats`` wall time per loop iteration of ``spec``.

  Each repeat times ``calls`` decodes back to back (one decode is too short
  to time alone).
  """
  drafter, verifier = null_pair(vocab_size, eos_id)
  program = decoding.compile(
      spec.method, drafter, verifier,
      prompt_bucket=decoding.prompt_bucket(_PROMPT.size), gamma=spec.gamma,
      max_decode_len=max_decode_len, **dict(spec.options))
  rng = jax.random.key(0)
  run = lambda: program(_PROMPT, alpha=spec.alpha, temperature=0.0,
                        top_p=1.0, rng=rng)
  iterations = max(int(jax.block_until_ready(run()).stats["iterations"]), 1)

  def batch():
    for _ in range(calls):
      out = jax.block_until_ready(run())
    return out

  return timing.repeat(batch, repeats, warmup=0).min / (calls * iterations)
