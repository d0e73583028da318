"""Cost-model calibration and the modeled latency (``docs/timing.md``).

The drafter's ``score`` on 1 token (c_q) and the verifier's on K tokens
(c_p(K)) are timed inside one compiled loop of back-to-back calls, as the
decoding loops make them (no host dispatch between calls, which would add
~0.2 ms to every call on a CPU: more than a small drafter's step): after a
``WARMUP_CALLS`` run, ``TIMED_RUNS`` runs share ``num_calls`` calls (more
when a run would last under ``MIN_RUN_S``) and the constant is the median of
the runs' seconds per call, each run timed around ``jax.block_until_ready``.
The paired protocol calibrates just before each cell, on one of the task's
real prompts (the median-length prompt of the latency subset, padded to the
task's bucket) with the cache the decode would allocate, so the constants
are per-step costs at that context in that cell's time window. The unpaired protocol calibrates once per pair at the
start of the run on an ``_PROMPT_LEN``-token prompt. Modeled time of one
example: ``drafter_steps · c_q + verifier_calls · c_p(w̄)`` with
``w̄ = verifier_positions / verifier_calls`` and c_p linearly interpolated
between calibrated widths (clamped at the ends) — an approximation that
ignores prefill, sampling and the loop's bookkeeping, and treats every call
of an example as having the mean width.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from harness import decoding
from harness.results import schema

WARMUP_CALLS = 2
TIMED_RUNS = 3
MIN_RUN_S = 0.005
# Verifier widths always calibrated: 1 (autoregressive) and the powers of two
# used by the cascades' pending windows (max_small_run 10 -> 16).
BASE_WIDTHS = (1, 2, 4, 8, 16)
_PROMPT_LEN = 8  # Calibration prompt (arbitrary ids) and cache room.
_CACHE_ROOM = 32


@jax.jit
def _score_loop(model, tokens, cache, num_calls, never):
  """``num_calls`` back-to-back ``score`` calls in one program.

  Each call's input depends on the previous call's output through a
  comparison with ``never`` (+inf, traced), so XLA can neither hoist the
  call out of the loop nor drop it; the cache is read, never advanced.
  """
  def body(_, carry):
    tokens, total = carry
    logits, _ = model.score(tokens, cache)
    total = total + logits[0, -1, 0]
    return tokens + (total > never).astype(tokens.dtype), total

  return jax.lax.fori_loop(0, num_calls, body,
                           (tokens, jnp.zeros((), jnp.float32)))[1]


@functools.partial(jax.jit, static_argnames="cache_size")
def _prefill_jit(model, prompt, prompt_len, cache_size):
  return model.prefill(prompt, prompt_len, cache_size)


def _cache(model, width: int, prompt: np.ndarray | None,
           max_decode_len: int, bucket: int | None = None):
  """A prefilled cache with room for ``width`` more tokens.

  Without ``prompt``: ``_PROMPT_LEN`` arbitrary ids and ``_CACHE_ROOM``
  spare positions. With one: the prompt padded to ``bucket`` (default its
  power-of-two bucket) and the cache a decode allocates for a window of
  ``width`` tokens (``decoding.window_buffer_size``).
  """
  if prompt is None:
    ids = jnp.arange(2, 2 + _PROMPT_LEN, dtype=jnp.int32) % model.vocab_size
    return _prefill_jit(model, ids, jnp.asarray(_PROMPT_LEN, jnp.int32),
                        cache_size=_PROMPT_LEN + width + _CACHE_ROOM)
  bucket = decoding.prompt_bucket(prompt.size) if bucket is None else bucket
  if prompt.size > bucket:
    raise ValueError(f"prompt of {prompt.size} tokens exceeds the bucket "
                     f"{bucket}")
  ids = np.zeros(bucket, np.int32)
  ids[:prompt.size] = prompt
  size = decoding.window_buffer_size(model, prompt_bucket=bucket,
                                     max_decode_len=max_decode_len,
                                     window=width)
  return _prefill_jit(model, jnp.asarray(ids),
                      jnp.asarray(prompt.size, jnp.int32), cache_size=size)


def time_score(model, width: int, num_calls: int,
               prompt: np.ndarray | None = None,
               max_decode_len: int = 0, bucket: int | None = None) -> float:
  """Seconds of one ``score`` call on ``width`` tokens inside a loop.

  Args:
    model: a drafter or verifier.
    width: tokens per call.
    num_calls: timed calls, shared by ``TIMED_RUNS`` runs (at least one
      call each).
    prompt: [P] int32 real prompt ids to prefill, or None (8 tokens).
    max_decode_len: the decode's length limit (cache room with a prompt).
    bucket: the prompt's padded length (None: its power-of-two bucket).
  """
  cache = _cache(model, width, prompt, max_decode_len, bucket)
  tokens = jnp.full((1, width), 2 % model.vocab_size, jnp.int32)
  never = jnp.asarray(jnp.inf, jnp.float32)

  def run(calls: int) -> float:
    start = time.perf_counter()
    jax.block_until_ready(_score_loop(model, tokens, cache,
                                      jnp.asarray(calls, jnp.int32), never))
    return time.perf_counter() - start

  run(WARMUP_CALLS)  # compiles on first use
  per_run = max(1, math.ceil(num_calls / TIMED_RUNS))
  # A run shorter than MIN_RUN_S is mostly timer and scheduler noise: more
  # calls per run for cheap calls (a small drafter's step).
  probe = run(per_run)
  if probe < MIN_RUN_S:
    per_run = math.ceil(per_run * MIN_RUN_S / max(probe, 1e-6))
  return statistics.median(run(per_run) / per_run for _ in range(TIMED_RUNS))


def widths_for(gammas: Iterable[int]) -> tuple[int, ...]:
  """Calibrated verifier widths: ``BASE_WIDTHS`` and every γ + 1."""
  return tuple(sorted(set(BASE_WIDTHS) | {g + 1 for g in gammas}))


def calibrate(drafter, verifier, widths: Iterable[int], num_calls: int,
              pair: str, prompt: np.ndarray | None = None,
              max_decode_len: int = 0,
              bucket: int | None = None) -> schema.Calibration:
  """Measures c_q and c_p(width) on the current device.

  Args:
    drafter: the drafter model.
    verifier: the verifier model.
    widths: verifier widths to measure.
    num_calls: timed calls per constant.
    pair: the pair name (recorded).
    prompt: [P] a real prompt of the task (None: an 8-token prompt).
    max_decode_len: the task's length limit (with ``prompt``).
    bucket: the prompt's padded length (None: its power-of-two bucket).
  """
  c_p = {str(w): time_score(verifier, w, num_calls, prompt, max_decode_len,
                            bucket)
         for w in widths}
  calibration = schema.Calibration(
      c_q=time_score(drafter, 1, num_calls, prompt, max_decode_len, bucket),
      c_p=c_p, num_calls=num_calls, pair=pair)
  if prompt is not None:
    calibration["prompt_len"] = int(prompt.size)
  return calibration


def verifier_cost(c_p: Mapping[str, float], width: float) -> float:
  """c_p at a (fractional) width, linearly interpolated, clamped."""
  xs = sorted(int(k) for k in c_p)
  ys = [c_p[str(x)] for x in xs]
  return float(np.interp(width, xs, ys))


def modeled_seconds(stats: Mapping[str, Any],
                    calibration: schema.Calibration) -> float:
  """Cost-model time of one example from its decoding counters."""
  calls = int(stats.get("verifier_calls", 0))
  drafter = int(stats.get("drafter_steps", 0)) * calibration["c_q"]
  if calls == 0:
    return float(drafter)
  width = int(stats.get("verifier_positions", calls)) / calls
  return float(drafter + calls * verifier_cost(calibration["c_p"], width))


def leviathan_speedup(acceptance: float, gamma: int, cost_ratio: float) -> float:
  """Expected speed-up (1 − a^{γ+1}) / ((1 − a)(γ c + 1)) (Leviathan 2023)."""
  denominator = gamma * cost_ratio + 1
  if math.isclose(acceptance, 1.0):
    return (gamma + 1) / denominator
  return (1 - acceptance ** (gamma + 1)) / ((1 - acceptance) * denominator)


def cost_ratio(calibration: schema.Calibration, gamma: int) -> float:
  """c = c_q / c_p(γ + 1): drafter step cost relative to one verifier call."""
  return calibration["c_q"] / verifier_cost(calibration["c_p"], gamma + 1)
