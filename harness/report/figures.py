"""Trade-off figures: quality against a cost axis, one panel per task.

Every plotting function returns a :class:`matplotlib.figure.Figure` whose
axes hold, per panel: one line per method present (sorted by the x value,
evaluated points only), a dotted horizontal line at the large model's
quality, and the small-only and large-only points (marker-only lines). So a
panel with M methods has ``M + 3`` entries in ``ax.get_lines()`` (fewer when a
reference is missing). Styles come from :mod:`style`.

Reference points on the rate axes: the small model alone never rejects or
defers (x = 0) and the large model alone defers/rejects every token (x = 1),
unless the reference cell's summary gives the rate.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import matplotlib
import matplotlib.figure
import numpy as np
import pandas as pd

from harness.report import load
from harness.report import style
from harness.report import table_builder

# Sized for a paper: one panel per column width (3.3 in), fonts ≥ 7 pt.
PANEL_WIDTH_IN = 3.3
PANEL_HEIGHT_IN = 2.4
LEGEND_HEIGHT_IN = 0.5
MAX_COLUMNS = 3
FONT_SIZE = 8
LINE_WIDTH = 1.0
MARKER_SIZE = 4
PNG_DPI = 300
FIGURE_FORMATS = ("png", "pdf")
RC = {"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE,
      "axes.labelsize": FONT_SIZE, "xtick.labelsize": FONT_SIZE - 1,
      "ytick.labelsize": FONT_SIZE - 1, "legend.fontsize": FONT_SIZE - 1,
      "pdf.fonttype": 42}
METRIC_LABELS = {"bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1",
                 "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
                 "rougeLsum": "ROUGE-Lsum", "exact_match": "Exact match",
                 "f1": "F1", "gsm8k_accuracy": "Accuracy",
                 "pass@1": "pass@1"}


class XAxis(enum.StrEnum):
  """Cost axes of the trade-off figures (values are cell columns)."""
  RELATIVE_LATENCY = "relative_latency"
  COST_RELATIVE_LATENCY = "cost_relative_latency"
  REJECTION_RATE = "rejection_rate"
  DEFERRAL_RATE = "deferral_rate"


X_LABELS = {
    XAxis.RELATIVE_LATENCY: "Latency relative to large model (×)",
    XAxis.COST_RELATIVE_LATENCY: "Cost-model latency rel. to large (×)",
    XAxis.REJECTION_RATE: "Rejection rate (fraction of tokens)",
    XAxis.DEFERRAL_RATE: "Deferral rate (deferrals per token)",
}
# Where the small-only / large-only points sit on each axis by definition.
SMALL_X = {XAxis.REJECTION_RATE: 0.0, XAxis.DEFERRAL_RATE: 0.0}
LARGE_X = {XAxis.RELATIVE_LATENCY: 1.0, XAxis.COST_RELATIVE_LATENCY: 1.0,
           XAxis.REJECTION_RATE: 1.0, XAxis.DEFERRAL_RATE: 1.0}


@dataclasses.dataclass(frozen=True, eq=False)
class Panel:
  """One axes' worth of data.

  Attributes:
    title: Axes title.
    cells: Method cells to draw.
    large: The large-only reference cell, or None.
    small: The small-only reference cell, or None.
    metric: Headline metric (y label).
  """
  title: str
  cells: pd.DataFrame
  large: pd.Series | None
  small: pd.Series | None
  metric: str


def quality_label(metric: str) -> str:
  """Y-axis label with units, e.g. 'BLEU (0–100)'."""
  return f"{METRIC_LABELS.get(metric, metric)} (0–100)"


def _reference_x(ref: pd.Series | None, x: XAxis, defaults) -> float:
  """A reference point's x: its own value if known, else the definition."""
  if ref is None:
    return math.nan
  value = ref.get(x.value, math.nan)
  return float(value) if np.isfinite(value) else defaults.get(x, math.nan)


def _draw_method(ax, points: pd.DataFrame, method: str, x: XAxis) -> None:
  points = points[np.isfinite(points[x.value]) & np.isfinite(points["quality"])]
  if points.empty:
    return
  points = points.sort_values([x.value, "alpha"])
  s = style.style_for(method)
  ax.plot(points[x.value], points["quality"], color=s.color, marker=s.marker,
          linestyle=s.linestyle, label=s.label, linewidth=LINE_WIDTH,
          markersize=MARKER_SIZE)


def _draw_reference(ax, ref: pd.Series | None, ref_style: style.Style,
                    x_value: float) -> None:
  if ref is None or not (np.isfinite(x_value) and np.isfinite(ref["quality"])):
    return
  ax.plot([x_value], [ref["quality"]], color=ref_style.color,
          marker=ref_style.marker, linestyle="none", label=ref_style.label,
          markersize=MARKER_SIZE + 2, zorder=5,
          markerfacecolor=ref_style.color if ref_style.filled else "none")


def draw_panel(ax, panel: Panel, x: XAxis, methods) -> None:
  """Draws one panel: method lines, large-quality line, reference points."""
  for method in style.method_order(panel.cells["method"]):
    if methods is None or method in methods:
      _draw_method(ax, panel.cells[panel.cells["method"] == method], method, x)
  if panel.large is not None and np.isfinite(panel.large["quality"]):
    ax.axhline(panel.large["quality"], color=style.LARGE_ONLY.color,
               linestyle=":", linewidth=LINE_WIDTH,
               label="Large model quality")
  _draw_reference(ax, panel.small, style.SMALL_ONLY,
                  _reference_x(panel.small, x, SMALL_X))
  _draw_reference(ax, panel.large, style.LARGE_ONLY,
                  _reference_x(panel.large, x, LARGE_X))
  ax.set_title(panel.title)
  ax.set_xlabel(X_LABELS[x])
  ax.set_ylabel(quality_label(panel.metric))
  ax.grid(True, linewidth=0.3, alpha=0.5)


def new_figure(num_panels: int, ncols: int | None = None):
  """A figure with one axes per panel, sized for a paper column."""
  ncols = ncols or min(num_panels, MAX_COLUMNS)
  nrows = math.ceil(num_panels / ncols)
  fig = matplotlib.figure.Figure(
      figsize=(PANEL_WIDTH_IN * ncols,
               PANEL_HEIGHT_IN * nrows + LEGEND_HEIGHT_IN),
      layout="constrained")
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
  for ax in axes[num_panels:]:
    ax.remove()
  return fig, list(axes[:num_panels])


def add_legend(fig) -> None:
  """One legend for the figure, below the panels, labels deduplicated.

  Two legend columns per panel column (at most 4), so the legend is never
  wider than the panels above it.
  """
  handles: dict[str, object] = {}
  for ax in fig.axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(label, handle)
  if handles:
    panel_columns = max(1, round(fig.get_figwidth() / PANEL_WIDTH_IN))
    fig.legend(list(handles.values()), list(handles),
               loc="outside lower center",
               ncol=min(len(handles), 2 * panel_columns, 4), frameon=False)


def plot_panels(panels: list[Panel], x: XAxis, *, methods=None,
                ncols: int | None = None,
                title: str | None = None) -> matplotlib.figure.Figure:
  """Draws the panels; ``methods`` (None = all) filters the method lines."""
  with matplotlib.rc_context(RC):
    fig, axes = new_figure(max(len(panels), 1), ncols)
    for ax, panel in zip(axes, panels):
      draw_panel(ax, panel, x, methods)
    add_legend(fig)
    if title:
      fig.suptitle(title)
  return fig


# ----------------------------------------------------------------------------
# Choosing panels from the cells DataFrame
# ----------------------------------------------------------------------------


def _ref(cells: pd.DataFrame, cell_id) -> pd.Series | None:
  if not isinstance(cell_id, str):
    return None
  return cells.set_index("cell_id").loc[cell_id]


def panel_for(cells: pd.DataFrame, method_cells: pd.DataFrame,
              title: str) -> Panel:
  """A panel of ``method_cells`` (one setting) with its references."""
  first = method_cells.iloc[0]
  return Panel(title=title, cells=method_cells,
               large=_ref(cells, first["large_cell_id"]),
               small=_ref(cells, first["small_cell_id"]),
               metric=first["headline_metric"])


def primary_settings(cells: pd.DataFrame) -> dict[str, str]:
  """task -> its setting with the most method cells (ties: first sorted)."""
  methods = cells[cells["role"] == load.Role.METHOD.value]
  counts = methods.groupby(["task", "setting"]).size().reset_index(name="n")
  counts = counts.sort_values(["task", "n", "setting"],
                              ascending=[True, False, True])
  return dict(counts.drop_duplicates("task")[["task", "setting"]].values)


def task_panels(cells: pd.DataFrame, methods=None) -> list[Panel]:
  """One panel per task: its primary setting at the primary γ."""
  chosen = table_builder.setting_cells(cells)
  panels = []
  for task, setting in primary_settings(cells).items():
    part = chosen[chosen["setting"] == setting]
    if methods is not None:
      part = part[part["method"].isin(methods)]
    if not part.empty:
      panels.append(panel_for(cells, part, task))
  return panels
