"""Latency robustness: the same sweep on a quiet machine and under load.

``run`` sweeps an experiment into its own results directory; with ``--busy``
a CPU-burning process (one core) starts at a random moment of the run
(uniform in [--burn_from, --burn_to] seconds after the start, seeded) and is
stopped when the sweep ends. The load average before and after, the burn
start and the command are written to ``<out>/robustness_run.json``.

``compare`` reads two runs' ``table2.csv`` and checks that every Table 2
wall-clock speed-up agrees within --tolerance (relative) or that the two
bootstrap intervals overlap; it prints a Markdown table and exits non-zero
when any speed-up disagrees.

  python scripts/timing_robustness.py run --out results/timing/paired_quiet
  python scripts/timing_robustness.py run --out results/timing/paired_busy \\
      --busy --seed 1
  python scripts/timing_robustness.py compare results/timing/paired_quiet \\
      results/timing/paired_busy
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import threading
import time

import pandas as pd

SPEEDUP_LEVELS = ("1", "0.99", "0.97", "0.95", "0.5")
_BURN = "while True:\n  pass\n"


def _loadavg() -> list[float]:
  return list(os.getloadavg())


def run(args: argparse.Namespace) -> int:
  parent, name = os.path.split(os.path.normpath(args.out))
  cmd = [sys.executable, "-m", "harness", "sweep", "--gin_file",
         args.gin_file, f"--gin.RESULTS_DIR='{parent}'",
         f"--gin.EXPERIMENT_NAME='{name}'"]
  cmd += [f"--gin.{g}" for g in args.gin]
  if args.cpu_threads is not None:
    cmd += ["--cpu_threads", args.cpu_threads]
  info = {"command": cmd, "busy": args.busy, "seed": args.seed,
          "loadavg_before": _loadavg(), "start_unix": time.time()}
  burner: list[subprocess.Popen] = []
  stop = threading.Event()
  if args.busy:
    delay = random.Random(args.seed).uniform(args.burn_from, args.burn_to)
    info["burn_start_after_s"] = delay

    def start_burn():
      if not stop.wait(delay):
        burner.append(subprocess.Popen([sys.executable, "-c", _BURN]))
        info["burn_started_unix"] = time.time()

    threading.Thread(target=start_burn, daemon=True).start()
  start = time.perf_counter()
  try:
    code = subprocess.call(cmd)
  finally:
    stop.set()
    for proc in burner:
      proc.kill()
      proc.wait()
  info.update(wall_s=time.perf_counter() - start, exit_code=code,
              loadavg_after=_loadavg())
  if code == 0:
    code = subprocess.call([sys.executable, "-m", "harness", "report",
                            "--results", args.out])
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "robustness_run.json"), "w") as f:
    json.dump(info, f, indent=2)
  print(json.dumps({k: info[k] for k in info if k != "command"}))
  return code


def _agree(a: pd.Series, b: pd.Series, col: str, tol: float):
  x, y = a.get(col), b.get(col)
  if x is None or y is None or pd.isna(x) or pd.isna(y):
    return None, math.nan
  dev = abs(x / y - 1.0)
  lo_a, hi_a = a.get(col + "_low"), a.get(col + "_high")
  lo_b, hi_b = b.get(col + "_low"), b.get(col + "_high")
  overlap = not any(pd.isna(v) for v in (lo_a, hi_a, lo_b, hi_b)) and (
      lo_a <= hi_b and lo_b <= hi_a)
  return bool(dev <= tol or overlap), dev


def compare(args: argparse.Namespace) -> int:
  key = ["task", "temperature", "top_p", "gamma", "method"]
  a = pd.read_csv(os.path.join(args.first, "table2.csv")).set_index(key)
  b = pd.read_csv(os.path.join(args.second, "table2.csv")).set_index(key)
  rows, bad, n = [], 0, 0
  for idx in a.index.intersection(b.index):
    ra, rb = a.loc[idx], b.loc[idx]
    for level in SPEEDUP_LEVELS:
      col = f"speedup@{level}"
      ok, dev = _agree(ra, rb, col, args.tolerance)
      if ok is None:
        continue
      n += 1
      bad += not ok
      rows.append((idx[0], f"{idx[1]:g}", ra["label"], level,
                   f"{ra[col]:.2f}× [{ra[col + '_low']:.2f}, "
                   f"{ra[col + '_high']:.2f}]",
                   f"{rb[col]:.2f}× [{rb[col + '_low']:.2f}, "
                   f"{rb[col + '_high']:.2f}]",
                   f"{100 * dev:.1f}%", "yes" if ok else "NO"))
  table = pd.DataFrame(rows, columns=[
      "task", "T", "method", "quality level", args.first, args.second,
      "|Δ|", "agree"])
  print(table.to_markdown(index=False))
  devs = [float(r[6][:-1]) for r in rows]
  print(f"\n{n - bad}/{n} speed-ups agree (within {100 * args.tolerance:g}% "
        f"or overlapping intervals); max |Δ| {max(devs, default=0):.1f}%, "
        f"median {sorted(devs)[len(devs) // 2] if devs else 0:.1f}%")
  return 1 if bad else 0


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run")
  r.add_argument("--gin_file", default="experiments/default.gin")
  r.add_argument("--out", required=True)
  r.add_argument("--gin", action="append", default=[],
                 help="extra gin binding, e.g. \"Latency.protocol='paired'\"")
  r.add_argument("--cpu_threads", default=None,
                 help="passed to the sweep (default: the sweep's 'auto', one "
                 "XLA:CPU thread on a CPU-only host; 0 = one per CPU, the "
                 "setting of the runs before --cpu_threads existed)")
  r.add_argument("--busy", action="store_true")
  r.add_argument("--seed", type=int, default=0)
  r.add_argument("--burn_from", type=float, default=60.0)
  r.add_argument("--burn_to", type=float, default=240.0)
  c = sub.add_parser("compare")
  c.add_argument("first")
  c.add_argument("second")
  c.add_argument("--tolerance", type=float, default=0.10)
  args = p.parse_args()
  return run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
  sys.exit(main())
