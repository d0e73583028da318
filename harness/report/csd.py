"""CS Drafting: wall-clock speed-up beside the standardized walltime
improvement (SWI), per k-matrix configuration.

SWI (CS Drafting paper, Table 2): the speed-up obtained when each run of a
model costs a fixed unit and Max-Gram costs nothing:

    SWI = N_gen · c_target / (Σ_levels runs_level · c_level)

with N_gen the generated tokens (autoregressive decoding of the target needs
one run per token). The unit costs here are the per-call times calibrated on
the device at the start of the run (``cost_model.c_p`` at one position for
the target, ``cost_model.c_q`` for a drafter), so SWI isolates what call
counts buy from what the loop's own time does. With several neural drafters
the extra levels are charged c_q as well (an upper bound on their cost).
Reads only ``results/**``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

import matplotlib.figure
import pandas as pd

from harness.report import load
from harness.report import style

BASELINE = "spec_decode"
PANEL_WIDTH_IN = 3.3
FIGURE_HEIGHT_IN = 2.6


def _summaries(results: Sequence[pathlib.Path]) -> list[dict[str, Any]]:
  out = []
  for path in load.find_summaries(list(results)):
    summary = json.loads(path.read_text())
    if not isinstance(summary, dict):
      raise load.ResultsError(f"{path}: the summary must be a JSON object")
    summary["_path"] = str(path)
    out.append(summary)
  return out


def is_multi_drafter(method: str) -> bool:
  """Whether ``method`` is a CS Drafting method (it takes several drafters;
  ``style.MULTI_DRAFTER_METHODS``)."""
  return method in style.MULTI_DRAFTER_METHODS


def _label(cell: dict[str, Any]) -> str:
  options = dict(cell.get("method_options") or {})
  name = style.label_for(cell["method"])
  k_matrix = options.get("k_matrix")
  if is_multi_drafter(cell["method"]) and k_matrix:
    rows = "/".join(",".join(str(k) for k in row) for row in k_matrix)
    name += f" K={rows}"
  if cell["method"] == BASELINE:
    name += f" γ={cell['gamma']}"
  return name


def swi(summary: dict[str, Any]) -> float | None:
  """Standardized walltime improvement of one cell (module docstring)."""
  cost = summary.get("cost_model") or {}
  totals = (summary.get("stats") or {}).get("totals") or {}
  c_q, c_p = cost.get("c_q"), (cost.get("c_p") or {})
  c_target = c_p.get("1", c_p.get(1)) if isinstance(c_p, dict) else None
  if not (c_q and c_target and totals.get("num_tokens")):
    return None
  levels = totals.get("level_calls")
  if levels:
    target_runs, drafter_runs = levels[0], sum(levels[1:])
  else:
    target_runs = totals.get("verifier_calls", 0)
    drafter_runs = totals.get("drafter_steps", 0)
  spent = target_runs * c_target + drafter_runs * c_q
  return totals["num_tokens"] * c_target / spent if spent else None


def csd_table(results: Sequence[pathlib.Path]) -> pd.DataFrame:
  """One row per CS Drafting / speculative-decoding cell."""
  rows = []
  for summary in _summaries(results):
    cell = summary["cell"]
    if not (is_multi_drafter(cell["method"])
            or cell["method"] == BASELINE):
      continue
    rel = summary.get("relative_latency")
    stats = summary.get("stats") or {}
    rows.append({
        "task": cell["task"], "config": _label(cell), "method": cell["method"],
        "alpha": cell["alpha"], "temperature": cell["temperature"],
        "quality": (summary.get("quality") or {}).get(
            summary.get("headline_metric")),
        "wall_speedup": 1.0 / rel if rel else None,
        "swi": swi(summary),
        "acceptance_rate": stats.get("acceptance_rate"),
        "tokens_per_target_call": stats.get("mean_accepted_length"),
        "cell_id": summary["cell_id"]})
  columns = ["task", "config", "method", "alpha", "temperature", "quality",
             "wall_speedup", "swi", "acceptance_rate",
             "tokens_per_target_call", "cell_id"]
  frame = pd.DataFrame(rows, columns=columns)
  return frame.sort_values(["task", "method", "config", "alpha"],
                           ignore_index=True)


def csd_figure(table: pd.DataFrame) -> matplotlib.figure.Figure:
  """Grouped bars per configuration: wall-clock speed-up and SWI."""
  tasks = sorted(table["task"].unique())
  fig = matplotlib.figure.Figure(
      figsize=(PANEL_WIDTH_IN * 1.6 * max(len(tasks), 1), FIGURE_HEIGHT_IN))
  axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    sub = table[table["task"] == task].reset_index(drop=True)
    labels = [f"{c} α={a:g}" for c, a in zip(sub["config"], sub["alpha"])]
    x = range(len(sub))
    ax.bar([i - 0.2 for i in x], sub["wall_speedup"].fillna(0), 0.4,
           label="wall-clock speed-up", color="#4c72b0")
    ax.bar([i + 0.2 for i in x], sub["swi"].fillna(0), 0.4,
           label="SWI (calibrated call costs)", color="#dd8452")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("speed-up vs target alone (×)")
    ax.set_title(task, fontsize=8)
    ax.legend(fontsize=6)
  fig.tight_layout()
  return fig


def write_csd_report(results: Sequence[pathlib.Path] | pathlib.Path,
                     out_dir: pathlib.Path) -> list[str]:
  """Writes csd.md / csd.csv / csd.png / csd.pdf when CS Drafting cells exist."""
  roots = [results] if isinstance(results, (str, pathlib.Path)) else results
  table = csd_table([pathlib.Path(r) for r in roots])
  if not table["method"].map(is_multi_drafter).any():
    return []
  out_dir = pathlib.Path(out_dir)
  paths = [out_dir / "csd.csv", out_dir / "csd.md"]
  table.to_csv(paths[0], index=False)
  paths[1].write_text(
      "# CS Drafting: wall-clock speed-up and SWI\n\n"
      "SWI = generated tokens × c_target / Σ runs × unit cost (calibrated "
      "per-call costs; Max-Gram free).\n\n"
      + table.drop(columns=["cell_id"]).to_markdown(index=False,
                                                    floatfmt=".3f") + "\n")
  fig = csd_figure(table)
  for ext in ("png", "pdf"):
    path = out_dir / f"csd.{ext}"
    fig.savefig(path, dpi=200,
                metadata={"CreationDate": None} if ext == "pdf" else None)
    paths.append(path)
  return [str(p) for p in paths]
