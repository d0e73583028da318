"""bench.json and its markdown table."""

from __future__ import annotations

import json
import os

# Targets of the issue: (report key, comparison, threshold, description).
TARGETS = (
    ("efficiency", ">=", 0.95, "measured / predicted speed-up S(α̂, γ, ĉ)"),
    ("efficiency_exact", ">=", 0.95,
     "measured / exact-cost-model speed-up"),
    ("loop_overhead", "<=", 1.05, "decode wall time / its isolated calls"),
    ("compiles_per_program", "<=", 1,
     "compiles per (method, γ) in an α sweep (0: the program was shared, "
     "e.g. spec_cascade_token runs spec_decode's)"),
    ("hf_speedup_autoregressive", ">=", 3.0, "HF generate() / ours, per token"),
    ("hf_speedup_speculative", ">=", 3.0,
     "HF assisted generate() / our spec_decode, per token"),
    ("hf_outputs_identical", "==", True, "token-for-token identical to HF"),
)
REQUIRED_KEYS = ("efficiency", "loop_overhead", "compiles_per_program",
                 "hf_speedup_autoregressive", "hf_speedup_speculative",
                 "hf_outputs_identical", "peak_rss_mb", "device")


def _leaves(value):
  if isinstance(value, dict):
    for v in value.values():
      yield from _leaves(v)
  else:
    yield value


def _met(value, op: str, threshold) -> bool | None:
  values = list(_leaves(value))
  if not values or any(v is None for v in values):
    return None
  check = {">=": lambda v: v >= threshold, "<=": lambda v: v <= threshold,
           "==": lambda v: v == threshold}[op]
  return all(check(v) for v in values)


def check_targets(bench: dict) -> dict:
  """{key: {"target": "op threshold", "met": bool | None}} (None: not run)."""
  return {key: {"target": f"{op} {threshold}", "met": _met(
      bench.get(key), op, threshold), "what": what}
          for key, op, threshold, what in TARGETS}


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def _nested_rows(title: str, table: dict) -> list[str]:
  gammas = sorted({g for row in table.values() for g in row},
                  key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0))
  lines = [f"| {title} | " + " | ".join(f"γ={g}" for g in gammas) + " |",
           "|---|" + "---:|" * len(gammas)]
  for method, row in table.items():
    lines.append(f"| {method} | " + " | ".join(
        _fmt(row.get(g)) for g in gammas) + " |")
  return lines


def markdown(bench: dict) -> str:
  """The headline figures as markdown tables."""
  dev = bench["device"]
  lines = [f"# make bench ({bench['timestamp']})", "",
           _machine_line(dev, bench["config"]), "",
           "## Targets", "", "| figure | target | met |", "|---|---|---|"]
  for key, t in bench["targets"].items():
    lines.append(f"| {key} | {t['target']} | {t['met']} |")
  for key in ("efficiency", "efficiency_exact", "compiles_per_program"):
    lines += ["", *_nested_rows(key, bench[key])]
  lines += ["", "| loop | overhead ratio |", "|---|---:|"]
  if bench.get("dispatch_us_per_op") is not None:
    lines[-2:-2] = [f"Dispatch: {bench['dispatch_us_per_op']:.2f} µs per "
                    "XLA:CPU operation (measured in this process).", ""]
  for name, ratio in bench["loop_overhead_detail"].items():
    lines.append(f"| {name} | {_fmt(ratio)} |")
  loop_only = bench.get("loop_only_us_per_iteration") or {}
  if loop_only:
    lines += ["", f"Loop-only cost (free bigram models, V = "
              f"{bench['loop_only_vocab_size']}):", "",
              "| loop | µs per iteration |", "|---|---:|"]
    for name, us in loop_only.items():
      lines.append(f"| {name} | {us:.1f} |")
  hf = bench.get("hf_detail") or {}
  if hf:
    lines += ["", *_hf_rows(hf)]
  lines += ["", f"Peak RSS: {_fmt(bench['peak_rss_mb'])} MiB "
            f"({bench['peak_rss_detail']['what']}).",
            "KV-cache bytes per decoder position: " + ", ".join(
                f"{m} {v['bytes_per_token']}" for m, v in
                bench["kv_cache"].items()) + "."]
  return "\n".join(lines) + "\n"


def _machine_line(dev: dict, config: dict) -> str:
  return (f"Machine: {dev['cpu']}, {dev['cores']} cores, JAX {dev['jax']} "
          f"({dev['backend']}, {dev.get('xla_cpu_threads', '?')} XLA:CPU "
          f"thread(s), small-M kernel {dev.get('small_m_kernel', '?')}), "
          f"torch {dev.get('torch')} ({config.get('hf_threads')} thread(s)); "
          f"load average {dev['load_average_start'][0]:.2f} at the start, "
          f"{dev['load_average_end'][0]:.2f} at the end.")


def _hf_rows(hf: dict) -> list[str]:
  lines = ["| per token (ms) | ours | Hugging Face | HF / ours | identical |",
           "|---|---:|---:|---:|---|"]
  for kind in ("autoregressive", "speculative"):
    d = hf[kind]
    lines.append(f"| {kind} | {d['ours_ms_per_token']:.3f} | "
                 f"{d['hf_ms_per_token']:.3f} | {d['speedup']:.2f} | "
                 f"{d['identity']['identical']} |")
  return lines


def write_json_md(stem: str, data: dict, text: str) -> tuple[str, str]:
  """Writes `stem`.json (data) and `stem`.md (text); returns their paths."""
  os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
  with open(stem + ".json", "w", encoding="utf-8") as f:
    json.dump(data, f, indent=2, ensure_ascii=False)
    f.write("\n")
  with open(stem + ".md", "w", encoding="utf-8") as f:
    f.write(text.rstrip("\n") + "\n")
  return stem + ".json", stem + ".md"


def write_hf_only(out: dict, out_dir: str, threads: int) -> tuple[str, str]:
  """Writes hf_threads<N>.json and .md (the `--hf_only` comparison)."""
  detail = out["hf_detail"]
  lines = [f"# Ours vs Hugging Face at {threads} thread(s) "
           f"({out['timestamp']})", "",
           _machine_line(out["device"], out["config"]), "",
           *_hf_rows(detail), "",
           "Max |logit difference| on one input: " + ", ".join(
               f"{k} {v:.2e}" for k, v in
               detail["max_logit_difference"].items()) + "."]
  return write_json_md(os.path.join(out_dir, f"hf_threads{threads}"), out,
                       "\n".join(lines))


def write(bench: dict, out_dir: str) -> tuple[str, str]:
  """Writes bench.json and bench.md; returns their paths."""
  missing = [k for k in REQUIRED_KEYS if k not in bench]
  if missing:
    raise ValueError(f"bench results lack {missing}")
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, "bench.json")
  md_path = os.path.join(out_dir, "bench.md")
  with open(json_path, "w") as f:
    json.dump(bench, f, indent=2, ensure_ascii=False)
    f.write("\n")
  with open(md_path, "w") as f:
    f.write(markdown(bench))
  return json_path, md_path
