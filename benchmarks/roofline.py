"""This host's roofline and each model's `score` cost t(K) beside it.

  .venv/bin/python -m benchmarks.roofline            # writes results/bench/
  .venv/bin/python -m benchmarks.roofline --models gemma3_270m --max_k 4

Everything runs in one process with the sweeps' thread setting (one XLA:CPU
thread on a CPU-only host, `--cpu_threads`), and every figure is a median:

* **bandwidth**: a streaming read of the model's own working set (its
  weights and caches; 1 GiB for the host line), repeated inside a compiled
  loop: the fastest of XLA's sum, the kernel library's eight-accumulator
  read and numpy's sum. Small models stay in cache and get the cache's rate.
* **matmul rate** for M = 1..8 rows: the weight product as the models run
  it (`cpu_matmul.matmul`) on a matrix of the model's width small enough to
  stay in cache (~1 MiB), repeated inside one compiled loop: FLOP/s with
  memory out of the way.
* **dispatch**: seconds per XLA:CPU operation, from a compiled loop whose
  body is a chain of 16 tiny dependent matrix products minus the same loop
  with none.
* **t(K)**: `score` of K tokens, as the sweeps' calibration times it
  (`calibration.time_score`: back-to-back calls inside one compiled loop,
  median of runs) with the cache a decode of this shape allocates; and the
  output layer alone (its K-row product).
* **roofline(K)** = max(bytes read / bandwidth, FLOPs / rate(K)) + the
  compiled call's operation count x dispatch. Bytes: every weight matrix
  once, the output layer, and the attention caches as allocated; FLOPs:
  2 x K x matrix parameters plus attention over the cache.

Models are built with random weights at their published shapes in float32
(the dtype the sweeps run): costs depend on shapes, not values.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import time

import numpy as np

from benchmarks import report, timing
from harness.edge import cpu_threads
from harness.runner import pairs

DEFAULT_MODELS = ("gemma3_270m", "multi30k_t5_small", "multi30k_t5_large")
# Prompt and decode length per model family: a few-shot Gemma prompt with
# a ~300-position cache; the default experiment's Multi30k shape for T5.
SHAPES = {"gemma": (256, 44), "t5": (40, 64)}


def _median_time(fn, runs: int = 5) -> float:
  """Median of `runs` blocking calls after one untimed (compiling) call."""
  return timing.repeat(fn, runs).median


def bandwidth(nbytes: int = 1 << 30) -> dict:
  """Streaming-read bandwidth (bytes/s) over a working set of `nbytes`.

  Inside a compiled loop, so a small working set is read many times from
  cache, as a decode loop reads a small model's weights: XLA's sum, the
  kernel library's streaming read (eight vector accumulators, so loads set
  the pace), and numpy's single-threaded sum; `used` is the largest.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  n = max(1 << 12, nbytes // 4)
  reps = max(1, (1 << 28) // n)
  a = jnp.ones((n,), jnp.float32)

  @jax.jit
  def loop(a):
    def body(_, s):
      return s + jnp.sum(a * (1.0 + s * 1e-30))
    return jax.lax.fori_loop(0, reps, body, jnp.zeros((), jnp.float32))

  xla = 4 * n * reps / _median_time(lambda: loop(a))
  stream = None
  if jax.default_backend() == "cpu" and cpu_matmul.library_available():
    @jax.jit
    def stream_loop(a):
      def body(_, s):
        return s + cpu_matmul.stream_sum(a) * 1e-30
      return jax.lax.fori_loop(0, reps, body, jnp.zeros((), jnp.float32))
    stream = 4 * n * reps / _median_time(lambda: stream_loop(a))
  b = np.ones((n,), np.float32)
  times = []
  for _ in range(5):
    start = time.perf_counter()
    for _ in range(reps):
      b.sum()
    times.append(time.perf_counter() - start)
  host = 4 * n * reps / statistics.median(times)
  return {"bytes": 4 * n, "xla_sum": xla, "numpy_sum": host,
          "stream_read": stream, "used": max(xla, host, stream or 0.0)}


def matmul_rate(width: int, rows: int, calls: int = 200,
                dtype: str = "float32") -> float:
  """FLOP/s of `cpu_matmul.matmul` on a cache-resident [width, N] matrix.

  On an accelerator the matrix is 64 MiB instead (a batch-1 product there
  is never compute-bound, and one of ~1 MiB would time the launch alone).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  item = jnp.dtype(dtype).itemsize
  size = (1 << 20) if jax.default_backend() == "cpu" else (1 << 26)
  n = max(64, size // (item * width))
  w = jax.random.normal(jax.random.key(0), (width, n), dtype)
  x = jax.random.normal(jax.random.key(1), (rows, width), dtype)

  @jax.jit
  def loop(x, w):
    def body(_, c):
      y = cpu_matmul.matmul(c, w)
      return c + 1e-30 * y[:, :1]
    return jax.lax.fori_loop(0, calls, body, x)

  seconds = _median_time(lambda: loop(x, w)) / calls
  return 2 * rows * width * n / seconds


def dispatch_seconds(chain: int = 16, calls: int = 2000) -> float:
  """Seconds per XLA:CPU operation (a tiny unfusable product)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  m = jnp.eye(4, dtype=jnp.float32) * 0.5

  def make(k):
    @jax.jit
    def loop(x):
      def body(_, c):
        for _ in range(k):
          c = jnp.dot(c, m)
        return c + 1.0
      return jax.lax.fori_loop(0, calls, body, x)
    return loop

  x = jnp.ones((4, 4), jnp.float32)
  with_ops = _median_time(lambda: make(chain)(x))
  without = _median_time(lambda: make(0)(x))
  return max(with_ops - without, 0.0) / (calls * chain)


_SKIP_OPS = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast",
             "after-all", "partition-id", "replica-id")


def operation_count(compiled_text: str) -> int:
  """Operations in a compiled module's entry computation (one per thunk)."""
  entry = compiled_text.split("\nENTRY ", 1)
  if len(entry) < 2:
    return 0
  body = entry[1].split("\n}\n", 1)[0]
  count = 0
  for line in body.splitlines()[1:]:
    m = re.search(r"=\s*\S+\s+([a-z\-]+)\(", line)
    if m and m.group(1) not in _SKIP_OPS:
      count += 1
  return count


@dataclasses.dataclass
class ModelShape:
  """What a model's `score` of K tokens reads and computes."""
  name: str
  width: int  # d_model
  matrix_params: int  # every weight matrix a decoder step multiplies by
  output_params: int  # the output layer's share of matrix_params
  cache_bytes: int  # attention caches a step reads (as allocated)
  attn_flops_per_token: float  # attention over the cache, per query token


def _build(name: str, dtype: str = "float32"):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from harness.models import (  # pylint: disable=g-import-not-at-top
      random_gemma, random_t5)
  config = pairs.size_config(name)
  family = "t5" if "t5" in type(config).__name__.lower() else "gemma"
  build = random_t5 if family == "t5" else random_gemma
  return build(jax.random.key(0), config, jnp.dtype(dtype)), family


def _shape(name: str, model, family: str, cache) -> ModelShape:
  import jax  # pylint: disable=g-import-not-at-top
  c = model.config
  leaves = jax.tree_util.tree_leaves_with_path(model.params)

  def key(path):
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p)))
                    for p in path)

  matrix = 0
  output = 0
  for path, leaf in leaves:
    k = key(path)
    if leaf.ndim < 2 or "rel_bias" in k:
      continue
    if family == "t5" and k.startswith("encoder"):
      continue  # the encoder runs once per prompt, not per step
    if family == "t5" and ("cross_attn/k" in k or "cross_attn/v" in k):
      continue  # cross keys/values are computed once, in prefill
    if k == "embed":
      tied = family == "gemma" or c.tie_embeddings
      if not tied:
        continue  # an embedding lookup reads K rows only
      output += leaf.size
    if k == "lm_head":
      output += leaf.size
    matrix += leaf.size
  cache_leaves = [x for x in jax.tree_util.tree_leaves(cache) if x.ndim >= 3]
  cache_bytes = sum(x.size * x.dtype.itemsize for x in cache_leaves)
  # q.k and p.v over every cached position of every layer: 4 FLOPs per
  # element of the cached keys and values, per query head sharing them.
  heads = c.num_heads
  kv_heads = getattr(c, "num_kv_heads", heads)
  attn = 2 * sum(x.size for x in cache_leaves) * heads / kv_heads
  return ModelShape(name, c.d_model, matrix, output, cache_bytes, attn)


def measure_model(name: str, max_k: int, calls: int, rates: dict,
                  dispatch: float, dtype: str = "float32",
                  deadline: float = float("inf"),
                  output_layer: bool = True) -> dict:
  """t(K) for K = 1..max_k beside the roofline (module docstring).

  K values not started by `deadline` (a `time.monotonic()` instant) are
  left out, and the result says so (`complete`). `output_layer=False`
  skips timing the output layer alone (one compile fewer per K).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  from harness.runner import calibration  # pylint: disable=g-import-not-at-top
  model, family = _build(name, dtype)
  item = jnp.dtype(dtype).itemsize
  prompt_len, max_decode = SHAPES[family]
  prompt = (np.arange(prompt_len, dtype=np.int32) % (model.vocab_size - 3)) + 3
  rows = []
  bw = None
  for k in range(1, max_k + 1):
    if time.monotonic() > deadline:
      break
    cache = calibration._cache(model, k, prompt, max_decode, prompt_len)  # pylint: disable=protected-access
    shape = _shape(name, model, family, cache)
    if bw is None:  # at this model's working set: weights and caches
      bw = bandwidth(item * shape.matrix_params + shape.cache_bytes)
    t = calibration.time_score(model, k, calls, prompt, max_decode,
                               prompt_len)
    tokens = jnp.full((1, k), 2, jnp.int32)
    compiled = jax.jit(lambda m, t, c: m.score(t, c)[0]).lower(
        model, tokens, cache).compile()
    ops = operation_count(compiled.as_text())
    x = jax.random.normal(jax.random.key(2), (1, k, model.config.d_model),
                          dtype)
    out_w = (model.params["embed"] if "lm_head" not in model.params
             else model.params["lm_head"])
    transposed = "lm_head" not in model.params

    @jax.jit
    def out_loop(x, w, transposed=transposed):
      def body(_, c):
        y = cpu_matmul.matmul(c, w, transposed=transposed)
        return c + 1e-30 * y[..., :1]
      return jax.lax.fori_loop(0, 20, body, x)

    t_out = (_median_time(lambda: out_loop(x, out_w)) / 20 if output_layer
             else None)
    nbytes = item * shape.matrix_params + shape.cache_bytes
    flops = 2 * k * shape.matrix_params + k * shape.attn_flops_per_token
    memory_s = nbytes / bw["used"]
    compute_s = flops / rates[(shape.width, k)]
    roof = max(memory_s, compute_s) + ops * dispatch
    out_roof = max(item * shape.output_params / bw["used"],
                   2 * k * shape.output_params / rates[(shape.width, k)])
    rows.append({
        "k": k, "t_ms": 1e3 * t, "roofline_ms": 1e3 * roof,
        "ratio": t / roof, "memory_ms": 1e3 * memory_s,
        "compute_ms": 1e3 * compute_s, "ops": ops,
        "dispatch_ms": 1e3 * ops * dispatch,
        "output_layer_ms": None if t_out is None else 1e3 * t_out,
        "output_roofline_ms": 1e3 * out_roof,
        "layers_ms": None if t_out is None else 1e3 * (t - t_out),
        "weight_mb": item * shape.matrix_params / 1e6,
        "cache_mb": shape.cache_bytes / 1e6})
  if not rows:
    return {"model": name, "family": family, "dtype": dtype, "rows": [],
            "complete": False}
  for r in rows:
    r["t_over_t1"] = r["t_ms"] / rows[0]["t_ms"]
  return {"model": name, "family": family, "dtype": dtype,
          "prompt_len": prompt_len, "max_decode_len": max_decode,
          "bandwidth": bw, "rows": rows, "complete": len(rows) == max_k}


def _ms(value) -> str:
  return "–" if value is None else f"{value:.2f}"


def render(result: dict) -> str:
  h = result["host"]
  lines = [
      "## Roofline of this host, and t(K) per model",
      "",
      f"Host: {h['cpu']}; device: {h.get('device', 'cpu')}; XLA:CPU "
      f"threads: {h['xla_cpu_threads']}; small-M kernel: {h['kernel']}; "
      f"dtype: {h.get('dtype', 'float32')}; load average before "
      f"{h['load_before'][0]:.2f}, after {h['load_after'][0]:.2f}.",
      "",
      f"- memory bandwidth (streaming read of "
      f"{h['bandwidth']['bytes'] / 2**20:.0f} MiB): "
      f"{h['bandwidth_gbs']:.1f} GB/s (XLA sum "
      f"{h['bandwidth']['xla_sum'] / 1e9:.1f}, streaming read "
      f"{(h['bandwidth']['stream_read'] or 0) / 1e9:.1f}, numpy sum "
      f"{h['bandwidth']['numpy_sum'] / 1e9:.1f}); each model's roofline "
      "uses the bandwidth measured at its own working set",
      f"- dispatch: {1e6 * h['dispatch_s']:.2f} µs per compiled operation",
      "- matmul rate, GFLOP/s by rows M (width: rates): " + "; ".join(
          f"{w}: " + ", ".join(f"{r / 1e9:.0f}" for r in rates)
          for w, rates in h["rates_gflops_by_width"].items()),
      ""]
  for m in result["models"]:
    if not m["rows"]:
      lines += [f"### {m['model']}: not measured (time limit)", ""]
      continue
    lines += [
        f"### {m['model']} (prompt {m['prompt_len']}, decode "
        f"{m['max_decode_len']}; weights {m['rows'][0]['weight_mb']:.0f} MB, "
        f"caches {m['rows'][0]['cache_mb']:.1f} MB; bandwidth at that "
        f"working set {m['bandwidth']['used'] / 1e9:.1f} GB/s)", "",
        "| K | t(K) ms | roofline ms | t / roofline | t(K)/t(1) | memory ms "
        "| compute ms | ops x dispatch ms | output layer ms (roofline) "
        "| rest ms |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in m["rows"]:
      lines.append(
          f"| {r['k']} | {r['t_ms']:.2f} | {r['roofline_ms']:.2f} | "
          f"{r['ratio']:.2f} | {r['t_over_t1']:.2f} | {r['memory_ms']:.2f} | "
          f"{r['compute_ms']:.2f} | {r['ops']} x = {r['dispatch_ms']:.2f} | "
          f"{_ms(r['output_layer_ms'])} ({r['output_roofline_ms']:.2f}) | "
          f"{_ms(r['layers_ms'])} |")
    if not m["complete"]:
      lines.append(f"\n(K > {m['rows'][-1]['k']} not measured: time limit)")
    lines.append("")
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default=",".join(DEFAULT_MODELS))
  p.add_argument("--max_k", type=int, default=8)
  p.add_argument("--calls", type=int, default=30,
                 help="score calls per t(K) (split over the timed runs)")
  p.add_argument("--cpu_threads", default=None,
                 help="XLA:CPU threads (default: as the sweeps, 'auto')")
  p.add_argument("--host_mb", type=int, default=1024,
                 help="working set of the host's memory-bandwidth line")
  p.add_argument("--out", default="results/bench",
                 help="folder for roofline.json / roofline.md ('' = none)")
  p.add_argument("--dtype", default="float32",
                 choices=("float32", "bfloat16"),
                 help="parameter dtype (the sweeps run float32 on a CPU)")
  p.add_argument("--no_output_layer", action="store_true",
                 help="skip timing the output layer alone")
  p.add_argument("--deadline_s", type=float, default=None,
                 help="stop starting new measurements after this many "
                 "seconds; what finished is written")
  a = p.parse_args(argv)
  deadline = time.monotonic() + (a.deadline_s or float("inf"))
  threads = cpu_threads.apply(a.cpu_threads)
  load_before = os.getloadavg()
  bw = bandwidth(a.host_mb << 20)
  dispatch = dispatch_seconds()
  names = [n for n in a.models.split(",") if n]
  widths = sorted({pairs.size_config(n).d_model for n in names})
  rates = {(w, k): matmul_rate(w, k, dtype=a.dtype) for w in widths
           for k in range(1, a.max_k + 1)}
  models = []
  result = _result(a, threads, bw, dispatch, widths, rates, load_before,
                   models)
  for n in names:
    models.append(measure_model(n, a.max_k, a.calls, rates, dispatch,
                                a.dtype, deadline, not a.no_output_layer))
    result = _result(a, threads, bw, dispatch, widths, rates, load_before,
                     models)
    if a.out:  # after each model, so a later failure loses nothing
      report.write_json_md(os.path.join(a.out, "roofline"), result,
                           render(result))
  text = render(result)
  print(text)
  return result


def _result(a, threads, bw, dispatch, widths, rates, load_before,
            models) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  return {
      "host": {
          "cpu": timing.cpu_name(), "device": dev.device_kind,
          "platform": dev.platform, "dtype": a.dtype,
          "jax": jax.__version__, "xla_cpu_threads": threads or "XLA's default",
          "kernel": cpu_matmul.status(), "bandwidth": bw,
          "bandwidth_gbs": bw["used"] / 1e9, "dispatch_s": dispatch,
          "rates_gflops_by_width": {
              str(w): [rates[(w, k)] for k in range(1, a.max_k + 1)]
              for w in widths},
          "load_before": load_before, "load_after": os.getloadavg()},
      "models": models}


if __name__ == "__main__":
  main()
