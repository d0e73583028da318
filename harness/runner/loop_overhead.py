"""The decoding loop's own cost per step on this machine's CPU.

The dry run's estimate (``harness.runner.estimate``) adds a fixed cost to
every decoding step for what a step does besides reading weights: logit
processing and sampling, bookkeeping and loop control. Accelerators take it
from the chip table (``harness.models.chips.Chip.step_overhead_s``); on a
CPU :func:`cpu_step_overhead` measures it once per process, in a second or
two: the autoregressive loop with a null model (``toy.null_bigram``: a
random table of ``NULL_ROWS`` rows at ``VOCAB_SIZE`` tokens, whose ``score``
is a lookup and whose EOS is never drawn) decodes ``DECODE_LEN`` tokens, best of
``REPEATS`` timed calls, divided by its iterations.
"""

from __future__ import annotations

import functools
import time

VOCAB_SIZE = 32_768  # About T5's 32,128; Gemma's 256k samples slower.
NULL_ROWS = 64
DECODE_LEN = 256
REPEATS = 5
_PROMPT_LEN = 8


@functools.lru_cache(maxsize=1)
def cpu_step_overhead() -> float:
  """Seconds per autoregressive loop iteration with a free model (module
  docstring), measured on the first call and remembered."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from harness import decoding  # pylint: disable=g-import-not-at-top
  from harness.models import toy  # pylint: disable=g-import-not-at-top
  eos = 1
  model = toy.null_bigram(jax.random.key(0), VOCAB_SIZE, eos, NULL_ROWS)
  cpu = jax.devices("cpu")[0]
  model = jax.device_put(model, cpu)
  prompt = np.arange(2, 2 + _PROMPT_LEN, dtype=np.int32)
  program = decoding.compile(
      "autoregressive", model, model,
      prompt_bucket=decoding.prompt_bucket(_PROMPT_LEN), gamma=1,
      max_decode_len=DECODE_LEN)
  rng = jax.random.key(0)

  def call():
    return jax.block_until_ready(program(prompt, temperature=0.0,
                                         top_p=1.0, rng=rng))

  iterations = max(int(call().stats["iterations"]), 1)
  best = float("inf")
  for _ in range(REPEATS):
    start = time.perf_counter()
    call()
    best = min(best, time.perf_counter() - start)
  return best / iterations


def describe(seconds: float) -> str:
  """The calibration's figure as the assumptions line prints it."""
  return (f"{seconds * 1e6:.0f} µs per step (CPU, measured now: a null "
          f"model's autoregressive loop at {VOCAB_SIZE:,} tokens)")
