"""Where a decoding loop's time goes, operation by operation (XLA:CPU).

  .venv/bin/python scripts/profile_loop.py [--method spec_decode --gamma 5]

Loads the default pair as a sweep does (float32, one XLA:CPU thread),
decodes the first `--num_prompts` Multi30k test prompts greedily with the
compiled program (after a warm-up pass), under `jax.profiler.trace` with a
Perfetto trace, and sums the trace's XLA:CPU operation events by operation
name: the operations of every model call (dots, the small-M kernel's custom
calls, fusions) and of the loop's own work (sampling, the target rule,
emitting, counters, loop control); `ffi_call` operations are the small-M
kernel. Tracing adds its own cost to every operation, so the shares are
the figure to read, not the absolute times. It prints the top operations by total
time, the number of operations executed and their mean time, and the
wall time of the traced pass, so that the loop overhead `make bench`
reports can be read op by op.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # the repository root: `benchmarks` is not installed

from harness.edge import cpu_threads  # pylint: disable=g-import-not-at-top


def _events(trace_dir: str) -> list[dict]:
  paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"),
                    recursive=True)
  if not paths:
    raise SystemExit(f"profile_loop: no Perfetto trace under {trace_dir}")
  with gzip.open(paths[0], "rt", encoding="utf-8") as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  return [e for e in events if e.get("ph") == "X" and "dur" in e]


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--method", default="spec_decode")
  p.add_argument("--gamma", type=int, default=5)
  p.add_argument("--model", default="verifier",
                 help="autoregressive only: drafter or verifier")
  p.add_argument("--num_prompts", type=int, default=8)
  p.add_argument("--max_decode_len", type=int, default=64)
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--out", default="", help="write the table here (.md)")
  a = p.parse_args(argv)
  cpu_threads.apply("1")
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import runs  # pylint: disable=g-import-not-at-top
  from benchmarks.config import BenchConfig  # pylint: disable=g-import-not-at-top
  from benchmarks.pair import load_pair, task_prompts  # pylint: disable=g-import-not-at-top
  cfg = BenchConfig()
  pair = load_pair(cfg.drafter_dir, cfg.verifier_dir)
  prompts = task_prompts(pair.tokenizer, cfg.task, a.num_prompts, 64)
  if a.method == runs.AR:
    spec = runs.ar_spec(a.model, a.gamma)
  else:
    spec = runs.RunSpec(f"{a.method}/g{a.gamma}", a.method, a.gamma, 0.0)
  call = runs._program(pair, prompts, spec, a.max_decode_len)  # pylint: disable=protected-access
  runs._one_pass(call, len(prompts))  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      _, outs = runs._one_pass(call, len(prompts))  # pylint: disable=protected-access
    wall = time.perf_counter() - start
    events = _events(tmp)
  tokens = sum(int(o.num_tokens) for o in outs)
  totals: dict[str, float] = collections.defaultdict(float)
  counts: dict[str, int] = collections.Counter()
  for e in events:
    name = e.get("name", "?")
    totals[name] += e["dur"]
    counts[name] += 1
  # Thread-level spans (the program, the host's dispatch) contain the
  # operations; keep the leaves: names that look like HLO operations.
  # Loops and conditionals (`while.N`, `cond.N`) contain other operations,
  # and "end: X" marks the end of an asynchronous X.
  def is_op(name: str) -> bool:
    return not name.startswith(("$", "Pjit", "PjRt", "TfrtCpu", "Thunk",
                                "jit_", "XlaModule", "ExecuteHelper",
                                "ThunkExecutor", "CommonPjRt", "while",
                                "cond", "end: "))
  ops = {n: t for n, t in totals.items() if is_op(n)}
  op_time = sum(ops.values())
  op_count = sum(counts[n] for n in ops)
  kinds: dict[str, float] = collections.defaultdict(float)
  kind_counts: dict[str, int] = collections.Counter()
  for name, t in ops.items():
    kind = ("small-M kernel (ffi_call)" if name.startswith("ffi_call") else
            "XLA dots and library fusions (dot, ynn_fusion)"
            if name.startswith(("dot", "ynn_", "xnn_", "onednn")) else
            "other fusions and operations")
    kinds[kind] += t
    kind_counts[kind] += counts[name]
  lines = [f"## {spec.name}: {len(prompts)} prompts, {tokens} tokens, traced "
           f"pass {1e3 * wall:.1f} ms (the trace itself adds time)", "",
           f"Operations: {op_count} executed, {1e-3 * op_time:.1f} ms in all, "
           f"{op_time / max(op_count, 1):.2f} µs mean; per token "
           f"{op_count / max(tokens, 1):.0f} operations.", "",
           "| kind | operations per token | share of operation time |",
           "|---|---|---|",
           *(f"| {k} | {kind_counts[k] / max(tokens, 1):.0f} | "
             f"{t / op_time:.1%} |" for k, t in
             sorted(kinds.items(), key=lambda kv: -kv[1])),
           "", f"Load average {os.getloadavg()[0]:.2f}.", "",
           "| operation | calls | total ms | share | µs per call |",
           "|---|---|---|---|---|"]
  for name, t in sorted(ops.items(), key=lambda kv: -kv[1])[:a.top]:
    lines.append(f"| `{name}` | {counts[name]} | {1e-3 * t:.2f} | "
                 f"{t / op_time:.1%} | {t / counts[name]:.1f} |")
  others = {n: t for n, t in totals.items() if not is_op(n)}
  lines += ["", "Enclosing spans: " + ", ".join(
      f"{n} {1e-3 * t:.1f} ms" for n, t in
      sorted(others.items(), key=lambda kv: -kv[1])[:6])]
  text = "\n".join(lines)
  print(text)
  if a.out:
    with open(a.out, "w", encoding="utf-8") as f:
      f.write(text + "\n")
  return {"ops": ops, "counts": dict(counts), "wall": wall, "tokens": tokens}


if __name__ == "__main__":
  main()
