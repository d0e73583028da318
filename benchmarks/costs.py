"""Isolated per-call costs of the model calls a decoding loop makes.

Every cost is measured on a jitted ``lax.fori_loop`` that repeats one call
(with the same cache size, prompt bucket and logit processing as inside the
decoding programs) and rolls the cache back after each call, so the cache
fill stays constant. Timing ``n`` and ``2n`` iterations and differencing
removes dispatch and the one-off prefill: cost = (T(2n) - T(n)) / n.

Step kinds (what one call of the loop does):

* ``sample``: ``score`` of ``width`` tokens, ``process_logits`` of the last
  row and one ``sample`` -- an autoregressive step (width 1) or the drafter's
  2-token first call of a speculative iteration (width 2).
* ``verify``: ``score`` of ``width`` = γ + 1 tokens and ``process_logits`` of
  every row -- the verifier call of a speculative iteration.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from harness.decoding import sampling
from harness.decoding import state as st

SAMPLE = "sample"
VERIFY = "verify"
# Cache fill at which calls are timed (attention always spans the whole
# static buffer, so the fill does not change the cost).
FILL = 8


@functools.partial(jax.jit, static_argnames=("kind", "width", "size"))
def _step_loop(model, prompt, prompt_len, knobs, calls, *, kind, width, size):
  """Runs ``calls`` isolated calls; returns a checksum to block on."""
  cache = model.rollback(model.prefill(prompt, prompt_len, size), FILL)

  def body(_, carry):
    cache, token, key, acc = carry
    key, sub = jax.random.split(key)
    tokens = jnp.full((1, width), token, jnp.int32)
    logits, cache = model.score(tokens, cache)
    cache = model.rollback(cache, FILL)
    if kind == SAMPLE:
      probs, _ = sampling.process_logits(logits[0, -1], knobs.temperature,
                                         knobs.top_p)
      return cache, sampling.sample(sub, probs), key, acc
    probs, raw = sampling.process_logits(logits[0], knobs.temperature,
                                         knobs.top_p)
    return cache, token, key, acc + probs[-1, 0] + raw[0, 0]

  init = (cache, jnp.zeros((), jnp.int32), jax.random.key(0), jnp.zeros(()))
  _, token, _, acc = jax.lax.fori_loop(0, calls, body, init)
  return token, acc


def greedy_knobs(alpha: float = 0.0) -> st.Knobs:
  """Knobs of every timed run: greedy (T = 0), no top-P truncation."""
  return st.Knobs(alpha=jnp.float32(alpha), temperature=jnp.float32(0.0),
                  top_p=jnp.float32(1.0))


def step_cost(model, prompt: np.ndarray, prompt_len: int, *, kind: str,
              width: int, size: int, calls: int, repeats: int) -> float:
  """Seconds per isolated call: difference of the best-of-repeats times.

  The minimum is used because contention on a shared machine only ever
  adds time.
  """
  args = (model, jnp.asarray(prompt), jnp.int32(prompt_len), greedy_knobs())
  run = functools.partial(_step_loop, kind=kind, width=width, size=size)
  once = timing.repeat(lambda: run(*args, jnp.int32(calls)), repeats)
  twice = timing.repeat(lambda: run(*args, jnp.int32(2 * calls)), repeats)
  diff = twice.min - once.min
  # Too few calls to resolve the difference: the all-in upper bound.
  return diff / calls if diff > 0 else twice.min / (2 * calls)


def prefill_cost(model, prompt: np.ndarray, prompt_len: int, size: int,
                 repeats: int) -> float:
  """Seconds per jitted ``prefill`` (host loop, best of repeats)."""
  fn = jax.jit(model.prefill, static_argnums=2)
  args = (jnp.asarray(prompt), jnp.int32(prompt_len))
  return timing.repeat(lambda: fn(*args, size), repeats * 4).min


def _nbytes(tree) -> int:
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(tree))


def kv_cache_bytes(model, prompt_bucket: int, size: int = 128) -> dict:
  """Cache bytes per decoder position and the prompt-dependent rest.

  From the cache pytree's shapes (``jax.eval_shape`` of ``prefill``) at two
  buffer sizes: per position = the difference / the size difference; the
  rest (T5: cross-attention keys/values of the encoded prompt) is reported
  per prompt token of the padded bucket.
  """
  prompt = jax.ShapeDtypeStruct((prompt_bucket,), jnp.int32)
  length = jax.ShapeDtypeStruct((), jnp.int32)
  small, large = (
      _nbytes(jax.eval_shape(lambda p, n, s=s: model.prefill(p, n, s),
                             prompt, length)) for s in (size, 2 * size))
  per_position = (large - small) // size
  fixed = small - per_position * size
  return {"bytes_per_token": per_position,
          "prompt_bytes_per_token": fixed / prompt_bucket,
          "bytes_at_size": small, "size": size}
