"""Builds Table 2 from the cells DataFrame (a long frame; see ``render``).

One Table 2 block per *setting* (task, model pair, temperature, top-P, max
decode length; see :data:`load.SETTING_COLUMNS`). Within a setting, the
block uses the most common block size γ among its method cells (cells with
no γ, e.g. SeqCascade, always count); other γ values go to the γ-sweep
figure. Each method's α sweep is reduced with :mod:`operating_points`.

Two latency notions are reported side by side:
  * wall-clock: the measured ``relative_latency`` (with bootstrap CIs);
  * cost model: ``cost_model.relative_latency`` from the summaries
    (drafter/verifier calls weighted by calibrated per-call costs), which
    is reproducible on a noisy CPU (no CI: it has no sampling noise model).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness import metrics
from harness.report import load
from harness.report import style
from harness.report import operating_points

PAPER_GROUP = "paper"
OTHER_GROUP = "other"
EMPTY = "–"
SPEEDUP_MAIN = operating_points.speedup_key(1.0)
VARIANT_FRACTIONS = tuple(
    f for f in operating_points.QUALITY_FRACTIONS if f != 1.0)
# Decimal places of speed-ups and qualities in the rendered tables.
SPEEDUP_DIGITS = 2
QUALITY_DIGITS = 2


def higher_is_better(metric: str) -> bool:
  """The registry's direction for ``metric`` (higher when unregistered)."""
  spec = metrics.METRICS.get(metric)
  return True if spec is None else spec.higher_is_better


def primary_gamma(method_cells: pd.DataFrame) -> float:
  """The most common non-null γ (ties: the smallest); NaN if none."""
  gammas = method_cells["gamma"].dropna()
  if gammas.empty:
    return math.nan
  counts = gammas.value_counts()
  return float(min(counts[counts == counts.max()].index))


def setting_cells(cells: pd.DataFrame) -> pd.DataFrame:
  """Method cells of the primary γ of their setting (γ-less cells kept)."""
  methods = cells[cells["role"] == load.Role.METHOD.value]
  keep = []
  for _, group in methods.groupby("setting", sort=False):
    gamma = primary_gamma(group)
    keep.append(group[group["gamma"].isna() | (group["gamma"] == gamma)
                      | math.isnan(gamma)])
  return pd.concat(keep) if keep else methods


def _reference(cells: pd.DataFrame, cell_id: Any) -> pd.Series | None:
  if not isinstance(cell_id, str):
    return None
  return cells.set_index("cell_id").loc[cell_id]


def _get(row: pd.Series | None, column: str) -> float:
  """``row[column]``, NaN when there is no such reference cell."""
  return math.nan if row is None else float(row[column])


def _pick_columns(prefix: str, pick: operating_points.Pick | None, cells_by_id,
                  speedup: bool, with_ci: bool) -> dict[str, float]:
  """Value, CI and chosen α/cell of one Table 2 entry."""
  out = {prefix: math.nan, f"{prefix}_alpha": math.nan,
         f"{prefix}_cell": None}
  if with_ci:
    out.update({f"{prefix}_low": math.nan, f"{prefix}_high": math.nan})
  if pick is None:
    return out
  row = cells_by_id.loc[pick.label]
  out.update({prefix: pick.speedup if speedup else pick.quality,
              f"{prefix}_alpha": pick.alpha, f"{prefix}_cell": pick.label})
  if with_ci and speedup:
    out.update({f"{prefix}_low": 1.0 / row["latency_high"],
                f"{prefix}_high": 1.0 / row["latency_low"]})
  elif with_ci:
    out.update({f"{prefix}_low": row["quality_low"],
                f"{prefix}_high": row["quality_high"]})
  return out


def _curve(method_cells: pd.DataFrame, latency_column: str) -> pd.DataFrame:
  """The (alpha, relative_latency, quality) curve on ``latency_column``."""
  curve = method_cells.set_index("cell_id")
  return pd.DataFrame({"alpha": curve["alpha"],
                       "relative_latency": curve[latency_column],
                       "quality": curve["quality"]})


def method_row(method_cells: pd.DataFrame, large_quality: float,
               better: bool) -> dict[str, Any]:
  """All Table 2 columns of one method in one setting."""
  by_id = method_cells.set_index("cell_id")
  row: dict[str, Any] = {}
  for kind, column, with_ci in (("", "relative_latency", True),
                                ("cost_", "cost_relative_latency", False)):
    entries = operating_points.extract_entries(
        _curve(method_cells, column), large_quality, higher_is_better=better)
    for key, pick in entries.items():
      row.update(_pick_columns(kind + key, pick, by_id,
                               key != operating_points.BEST_QUALITY, with_ci))
  return row


def _setting_header(ref: pd.Series, gamma: float) -> dict[str, Any]:
  return {c: ref[c] for c in load.SETTING_COLUMNS} | {"gamma": gamma}


def _setting_rows(cells, group: pd.DataFrame) -> list[dict[str, Any]]:
  """Table 2 rows of one setting (method cells of the primary γ)."""
  first = group.iloc[0]
  large = _reference(cells, first["large_cell_id"])
  small = _reference(cells, first["small_cell_id"])
  metric = first["headline_metric"]
  better = higher_is_better(metric)
  large_q = _get(large, "quality")
  header = _setting_header(first, primary_gamma(group)) | {
      "metric": metric, "large_quality": large_q,
      "large_quality_low": _get(large, "quality_low"),
      "large_quality_high": _get(large, "quality_high"),
      "small_quality": _get(small, "quality"),
      "small_relative_latency": _get(small, "relative_latency")}
  rows = []
  for method in style.method_order(group["method"]):
    method_cells = group[group["method"] == method]
    rows.append(header | {
        "group": PAPER_GROUP if method in style.TABLE2_METHODS
        else OTHER_GROUP,
        "method": method, "label": style.label_for(method),
        "num_points": len(method_cells)}
        | method_row(method_cells, large_q, better))
  return rows


def build_table2(cells: pd.DataFrame) -> pd.DataFrame:
  """The long Table 2: one row per (setting, method).

  Args:
    cells: Cells with references, filled relative latencies and intervals.

  Returns:
    A DataFrame with the setting columns, ``gamma``, ``metric``,
    ``large_quality``, ``small_quality``, ``group``, ``method``, ``label``
    and, per entry (``speedup@<f>``, ``best_quality``, and ``cost_``-prefixed
    cost-model versions): the value, ``_alpha``, ``_cell`` and, for
    wall-clock entries, ``_low``/``_high`` (95% bootstrap interval).
  """
  rows = []
  for _, group in setting_cells(cells).groupby("setting", sort=True):
    rows.extend(_setting_rows(cells, group))
  return pd.DataFrame(rows)
