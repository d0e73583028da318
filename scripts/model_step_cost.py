"""Per-call cost of `score` for K = 1 and K = 6 on tiny random T5 and Gemma.

Builds the embedded-default sizes (`pairs.SHIPPED_SIZES`), jits `score`
with the cache at a mid-decode length, and prints the median wall time per
call over many calls after warm-up, and the K=6 / K=1 ratio.

  .venv/bin/python scripts/model_step_cost.py [--calls 200]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from harness.models import random_gemma, random_t5
from harness.runner import pairs

PROMPT_LEN = 32
CACHE_SIZE = 128
FILL = 64  # cache length at which `score` is timed


def _median_ms(fn, calls: int) -> float:
  for _ in range(5):
    jax.block_until_ready(fn())
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def step_cost(model, k: int, calls: int) -> float:
  prompt = jnp.arange(PROMPT_LEN, dtype=jnp.int32) % 100 + 3
  cache = jax.jit(model.prefill, static_argnums=2)(
      prompt, jnp.int32(PROMPT_LEN), CACHE_SIZE)
  cache = model.rollback(cache, jnp.int32(FILL))
  score = jax.jit(lambda m, t, c: m.score(t, c)[0])
  tokens = jnp.full((1, k), 7, jnp.int32)
  return _median_ms(lambda: score(model, tokens, cache), calls)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=200)
  args = parser.parse_args()
  key = jax.random.PRNGKey(0)
  models = {
      name: (random_t5 if "t5" in name else random_gemma)(
          key, pairs.size_config(name)) for name in pairs.SHIPPED_SIZES
  }
  print(f"devices: {jax.devices()}; cache {CACHE_SIZE}, filled to {FILL}")
  print(f"{'model':26s} {'K=1 ms':>8s} {'K=6 ms':>8s} {'K6/K1':>6s}")
  for name, model in models.items():
    one = step_cost(model, 1, args.calls)
    six = step_cost(model, 6, args.calls)
    print(f"{name:26s} {one:8.3f} {six:8.3f} {six / one:6.2f}")


if __name__ == "__main__":
  main()
