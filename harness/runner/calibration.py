"""Cost-model calibration and the modeled latency.

See docs/algorithms.md#cost-model.

At the start of a run the drafter's jitted ``score`` on 1 token (c_q) and the
verifier's on K tokens (c_p(K)) are timed: ``WARMUP_CALLS`` untimed calls,
then the median of ``num_calls`` timed ones, each around
``jax.block_until_ready``. The cache holds a short prompt, so the constants
are per-step costs at short context. Modeled time of one example:
``drafter_steps · c_q + verifier_calls · c_p(w̄)`` with
``w̄ = verifier_positions / verifier_calls`` and c_p linearly interpolated
between calibrated widths (clamped at the ends) — an approximation that
ignores prefill and treats every call of an example as having the mean width.
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

from harness.runner import schema

WARMUP_CALLS = 2
# Verifier widths always calibrated: 1 (autoregressive) and the powers of two
# used by the cascades' pending windows (max_small_run 10 -> 16).
BASE_WIDTHS = (1, 2, 4, 8, 16)
_PROMPT_LEN = 8  # Calibration prompt (arbitrary ids) and cache room.
_CACHE_ROOM = 32


@jax.jit
def _score(model, tokens, cache):
  return model.score(tokens, cache)


@functools.partial(jax.jit, static_argnames="cache_size")
def _prefill_jit(model, prompt, prompt_len, cache_size):
  return model.prefill(prompt, prompt_len, cache_size)


def _prefill(model, cache_size: int):
  prompt = jnp.arange(2, 2 + _PROMPT_LEN, dtype=jnp.int32) % model.vocab_size
  return _prefill_jit(model, prompt, jnp.asarray(_PROMPT_LEN, jnp.int32),
                      cache_size=cache_size)


def time_score(model, width: int, num_calls: int) -> float:
  """Median seconds of one jitted ``score`` call on ``width`` tokens."""
  cache = _prefill(model, _PROMPT_LEN + width + _CACHE_ROOM)
  tokens = jnp.full((1, width), 2 % model.vocab_size, jnp.int32)
  for _ in range(WARMUP_CALLS):
    jax.block_until_ready(_score(model, tokens, cache))
  times = []
  for _ in range(num_calls):
    start = time.perf_counter()
    jax.block_until_ready(_score(model, tokens, cache))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def widths_for(gammas: Iterable[int]) -> tuple[int, ...]:
  """Calibrated verifier widths: ``BASE_WIDTHS`` and every γ + 1."""
  return tuple(sorted(set(BASE_WIDTHS) | {g + 1 for g in gammas}))


def calibrate(drafter, verifier, widths: Iterable[int], num_calls: int,
              pair: str) -> schema.Calibration:
  """Measures c_q and c_p(width) on the current device."""
  c_p = {str(w): time_score(verifier, w, num_calls) for w in widths}
  return schema.Calibration(c_q=time_score(drafter, 1, num_calls), c_p=c_p,
                            num_calls=num_calls, pair=pair)


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
