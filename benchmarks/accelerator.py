"""Parts of `scripts/accelerator_check.sh` that are Python: the environment
record, and the summary of every part's results.

  python -m benchmarks.accelerator device            # prints the folder name
  python -m benchmarks.accelerator env --out DIR     # DIR/env.{json,md}
  python -m benchmarks.accelerator summary --out DIR # DIR/summary.{json,md}

The summary reads what the other parts wrote in DIR (roofline/, bench/,
sweep/, finetune_*.json, plan/, parts.tsv) and puts the headline figures on
one page: each model's batch-1 step against the HBM roofline (weight and
cache bytes / measured bandwidth) and t(K)/t(1), the speculative loops'
overhead and compiles per program, the reduced Table 2, fine-tuning speed,
and the real pairs' block ratios b(γ), drafter costs c and the speed-ups
they allow (`benchmarks.plan_gamma`). A part
that failed or ran out of time is named with its status; nothing is
invented for it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import sys

from benchmarks import report


def device_slug() -> str:
  """The first JAX device's kind as a folder name ("nvidia_h200", "cpu")."""
  import jax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  kind = dev.device_kind if dev.platform != "cpu" else "cpu"
  return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or "unknown"


def environment() -> dict:
  """Device, memory, versions and the code's commit."""
  import jax  # pylint: disable=g-import-not-at-top
  from harness.edge import provenance  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  memory = None
  try:
    stats = devices[0].memory_stats() or {}
    memory = {k: stats[k] for k in ("bytes_limit", "bytes_in_use")
              if k in stats}
  except Exception:  # pylint: disable=broad-except
    pass  # some backends (CPU) keep no statistics
  extra = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda13-pjrt",
           "libtpu", "optax", "orbax-checkpoint", "pandas", "matplotlib",
           "sentencepiece", "safetensors", "tensorflow", "torch")
  versions = provenance.versions()
  versions.update({name: provenance._version(name) for name in extra})  # pylint: disable=protected-access
  commit, dirty = provenance.git_state()
  return {
      "device": provenance.device_info(),
      "devices": [str(d) for d in devices],
      "memory": memory,
      "python": sys.version.split()[0],
      "machine": platform.machine(),
      "host_cpu": _cpu_name(),
      "cpus": os.cpu_count(),
      "versions": versions,
      "git_commit": commit, "git_dirty": dirty,
      "created": provenance.now_iso(),
  }


def _cpu_name() -> str:
  from benchmarks import timing  # pylint: disable=g-import-not-at-top
  return timing.cpu_name()


def _load(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _parts(out: str) -> list[tuple[str, str, str]]:
  """(part, status, seconds) rows of parts.tsv, as the script wrote them."""
  rows = []
  try:
    with open(os.path.join(out, "parts.tsv"), encoding="utf-8") as f:
      for line in f:
        fields = line.rstrip("\n").split("\t")
        if len(fields) == 3:
          rows.append(tuple(fields))
  except OSError:
    pass
  return rows


def summarize(out: str) -> tuple[dict, str]:
  """The headline figures of every part found in `out`, and their page."""
  env = _load(os.path.join(out, "env.json")) or {}
  roof = _load(os.path.join(out, "roofline", "roofline.json"))
  bench = _load(os.path.join(out, "bench", "bench.json"))
  finetune = [_load(p) for p in sorted(
      glob.glob(os.path.join(out, "finetune", "finetune_*.json")))]
  table2 = None
  table2_path = glob.glob(os.path.join(out, "sweep", "*", "table2.md"))
  if table2_path:
    with open(table2_path[0], encoding="utf-8") as f:
      table2 = f.read()
  dev = env.get("device", {})
  lines = [f"# Accelerator check: {dev.get('device_kind', '?')}", "",
           f"{dev.get('num_devices', '?')} device(s), platform "
           f"{dev.get('platform', '?')}; memory {env.get('memory')}; Python "
           f"{env.get('python')}; JAX {env.get('versions', {}).get('jax')}; "
           f"commit {env.get('git_commit')}; {env.get('created')}.", "",
           "| part | status | seconds |", "|---|---|---|"]
  lines += [f"| {p} | {s} | {t} |" for p, s, t in _parts(out)]
  summary = {"env": env, "parts": _parts(out), "models": []}
  if roof:
    lines += _roofline_section(roof, summary)
  if bench:
    lines += ["", "## Speculative loops (bench on the shipped Multi30k pair)",
              ""]
    for key in ("loop_overhead", "compiles_per_program", "efficiency",
                "efficiency_exact"):
      value = bench.get(key)
      if value is not None:
        lines.append(f"- {key}: `{json.dumps(value)}`")
        summary[key] = value
  for ft in finetune:
    if ft:
      keys = ("model_size", "batch_size", "steps", "first_step_seconds",
              "steps_per_s", "tokens_per_s", "peak_flops", "mfu")
      lines += ["", "## Fine-tuning speed", "",
                "- " + ", ".join(f"{k}: {ft.get(k)}" for k in keys
                                 if k in ft)]
      summary["finetune"] = {k: ft.get(k) for k in keys}
  if table2:
    lines += ["", "## Reduced Table 2 (shipped Multi30k pair)", "", table2]
  plans = [_load(p) for p in sorted(
      glob.glob(os.path.join(out, "plan", "plan_gamma_*.json")))]
  plans = [p for p in plans if p]
  if plans:
    from benchmarks import plan_gamma  # pylint: disable=g-import-not-at-top
    lines += ["", "## Block ratios, drafter costs and the speed-ups they "
              "allow (random weights at the published shapes)", "",
              "S(α, γ) is Leviathan et al.'s expected speed-up with the "
              "measured b(γ) and c; prefill and the loop's bookkeeping are "
              "not in it."]
    for plan in plans:
      lines += ["", plan_gamma.render(plan)]
    summary["plans"] = [
        {"verifier": p["verifier"], "t_p_ms": p["t_p_ms"],
         "block_ratio": p["block_ratio"],
         "drafters": {d["drafter"]: {"t_q_ms": d["t_q_ms"], "c": d["c"]}
                      for d in p["drafters"]}} for p in plans]
  return summary, "\n".join(lines) + "\n"


def _roofline_section(roof: dict, summary: dict) -> list[str]:
  """The roofline part's table: t(1) against bytes / bandwidth, measured
  and (where the chip table knows the device) the vendor's figure."""
  from harness.models import chips  # pylint: disable=g-import-not-at-top
  h = roof["host"]
  chip = chips.chip_of(h.get("device", ""))
  spec = chip.bandwidth_bytes_s if chip else None
  lines = ["", "## Batch-1 step against the HBM roofline", "",
           f"Parameters in {h.get('dtype')}; measured streaming-read "
           f"bandwidth {h['bandwidth_gbs']:.0f} GB/s "
           f"({h['bandwidth']['bytes'] / 2**20:.0f} MiB)"
           + (f", the vendor's {spec / 1e9:.0f} GB/s ({chip.title})"
              if spec else "")
           + f"; {1e6 * h['dispatch_s']:.2f} µs per compiled operation. "
           "Bytes: the decoder's weight matrices once and its caches.", "",
           "| model | MB read | t(1) ms | bytes / measured bw ms | t(1) / "
           "that | bytes / vendor bw ms | t(1) / that | ops x dispatch ms "
           "| t(K)/t(1), K = 1.. |", "|---|---|---|---|---|---|---|---|---|"]
  for m in roof["models"]:
    if not m["rows"]:
      lines.append(f"| {m['model']} | not measured (time cap) "
                   "| | | | | | | |")
      continue
    r1 = m["rows"][0]
    nbytes = 1e6 * (r1["weight_mb"] + r1["cache_mb"])
    vendor_ms = 1e3 * nbytes / spec if spec else None
    ratios = ", ".join(f"{r['t_over_t1']:.2f}" for r in m["rows"])
    vendor = (f"{vendor_ms:.3f} | {r1['t_ms'] / vendor_ms:.1f}"
              if vendor_ms else "– | –")
    lines.append(
        f"| {m['model']} | {nbytes / 1e6:.0f} | {r1['t_ms']:.3f} | "
        f"{r1['memory_ms']:.3f} | {r1['t_ms'] / r1['memory_ms']:.1f} | "
        f"{vendor} | {r1['dispatch_ms']:.3f} | {ratios} |")
    summary["models"].append({
        "model": m["model"], "bytes": nbytes, "t1_ms": r1["t_ms"],
        "hbm_roofline_ms": r1["memory_ms"], "vendor_roofline_ms": vendor_ms,
        "t_over_t1": [r["t_over_t1"] for r in m["rows"]]})
  return lines


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("what", choices=("device", "env", "summary"))
  p.add_argument("--out", default=None, help="the check's results folder")
  a = p.parse_args(argv)
  if a.what == "device":
    print(device_slug())
    return 0
  if not a.out:
    p.error("--out is required")
  if a.what == "env":
    env = environment()
    text = "```json\n" + json.dumps(env, indent=1) + "\n```\n"
    report.write_json_md(os.path.join(a.out, "env"), env, text)
    print(json.dumps(env["device"]))
    return 0
  summary, text = summarize(a.out)
  report.write_json_md(os.path.join(a.out, "summary"), summary, text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
