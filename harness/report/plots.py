"""The named figures: main trade-off curves and the appendix figures.

Each ``plot_*`` function takes the cells DataFrame and returns a Figure, or
None when the results do not contain what it needs (e.g. a temperature sweep
needs at least two temperatures for some task).
"""

from __future__ import annotations

import enum
import math

import matplotlib
import numpy as np
import pandas as pd

from harness.report import figures
from harness.report import load
from harness.report import style
from harness.report import table_builder

XAxis = figures.XAxis
# Sweeps need at least this many values of the swept parameter in one task.
MIN_SWEEP_VALUES = 2


class SweepParam(enum.StrEnum):
  """Swept settings with an appendix figure (values are cell columns)."""
  TEMPERATURE = "temperature"
  TOP_P = "top_p"
  GAMMA = "gamma"


SWEEP_SYMBOLS = {SweepParam.TEMPERATURE: "T", SweepParam.TOP_P: "top-P",
                 SweepParam.GAMMA: "γ"}


def plot_curves(cells: pd.DataFrame, x: XAxis = XAxis.RELATIVE_LATENCY):
  """Quality vs relative latency (T5 figures), one panel per task."""
  panels = figures.task_panels(cells)
  return figures.plot_panels(panels, x) if panels else None


def plot_rejection(cells: pd.DataFrame):
  """Quality vs rejection rate (Gemma figures), methods that report it."""
  with_rate = cells[np.isfinite(cells["rejection_rate"])]
  panels = figures.task_panels(cells, methods=set(with_rate["method"]))
  return figures.plot_panels(panels, XAxis.REJECTION_RATE) if panels else None


def plot_deferral(cells: pd.DataFrame):
  """The motivating figure: quality vs deferral rate (TokenCascade [Chow],
  Oracle [Diff], SpecDecode)."""
  with_rate = cells[np.isfinite(cells["deferral_rate"])
                    & cells["method"].isin(style.DEFERRAL_METHODS)]
  panels = figures.task_panels(cells, methods=set(with_rate["method"]))
  return figures.plot_panels(panels, XAxis.DEFERRAL_RATE) if panels else None


def _methods_figure(cells: pd.DataFrame, methods, minimum: int):
  """Curves restricted to ``methods`` if at least ``minimum`` are present."""
  if len(set(cells["method"]) & set(methods)) < minimum:
    return None
  panels = figures.task_panels(cells, methods=methods)
  return figures.plot_panels(panels, XAxis.RELATIVE_LATENCY) if panels else None


def plot_rule_ablation(cells: pd.DataFrame):
  """Chow, Diff, OPT, TokenV1/V2/V3 — when a TokenV1 or V2 run exists."""
  if not set(cells["method"]) & {"spec_cascade_token_v1",
                                 "spec_cascade_token_v2"}:
    return None
  return _methods_figure(cells, style.RULE_ABLATION_METHODS, 2)


def plot_bild(cells: pd.DataFrame):
  """BiLD (dynamic window) vs BiLD* (fixed γ), when both exist."""
  return _methods_figure(cells, style.BILD_METHODS, len(style.BILD_METHODS))


def _value_text(value: float) -> str:
  return "none" if not np.isfinite(value) else f"{value:g}"


def _sweep_panels_for_task(cells, task_methods, param: SweepParam):
  """Panels of one task, one per value of ``param`` (its largest setting)."""
  panels = []
  for value in sorted(task_methods[param.value].unique()):
    same = task_methods[task_methods[param.value] == value]
    if param is not SweepParam.GAMMA:
      same = table_builder.setting_cells(same)
    largest = same["setting"].value_counts().index[0]
    part = same[same["setting"] == largest]
    title = (f"{part['task'].iloc[0]}, "
             f"{SWEEP_SYMBOLS[param]}={_value_text(value)}")
    panels.append(figures.panel_for(cells, part, title))
  return panels


def sweep_panels(cells: pd.DataFrame, param: SweepParam):
  """Rows of panels (one row per task with ≥ 2 values of ``param``)."""
  methods = cells[cells["role"] == load.Role.METHOD.value]
  rows = []
  for task, setting in figures.primary_settings(cells).items():
    task_methods = methods[methods["task"] == task]
    if param is SweepParam.GAMMA:
      task_methods = task_methods[(task_methods["setting"] == setting)
                                  & task_methods["gamma"].notna()]
    values = task_methods[param.value].fillna(math.inf)
    if values.nunique() >= MIN_SWEEP_VALUES:
      rows.append(_sweep_panels_for_task(cells, task_methods, param))
  return rows


def plot_sweep(cells: pd.DataFrame, param: SweepParam):
  """Quality vs relative latency per value of ``param`` (rows = tasks)."""
  rows = sweep_panels(cells, param)
  if not rows:
    return None
  ncols = max(len(r) for r in rows)
  panels = []
  for row in rows:  # Pad rows so each task starts a new figure row.
    panels.extend(row + [None] * (ncols - len(row)))
  return _plot_grid(panels, ncols)


def _plot_grid(panels, ncols: int):
  """Like :func:`figures.plot_panels`, leaving None slots empty."""
  with matplotlib.rc_context(figures.RC):
    fig, axes = figures.new_figure(len(panels), ncols)
    for ax, panel in zip(axes, panels):
      if panel is None:
        ax.remove()
      else:
        figures.draw_panel(ax, panel, XAxis.RELATIVE_LATENCY, None)
    figures.add_legend(fig)
  return fig


# ----------------------------------------------------------------------------
# Measured vs predicted speed-up
# ----------------------------------------------------------------------------


def _speedup_panel(ax, task_cells: pd.DataFrame, task: str) -> None:
  """Scatter per method, plus the y = x diagonal."""
  for method in style.method_order(task_cells["method"]):
    points = task_cells[task_cells["method"] == method]
    s = style.style_for(method)
    ax.plot(points["predicted_speedup"], points["measured_speedup"],
            color=s.color, marker=s.marker, linestyle="none", label=s.label,
            markersize=figures.MARKER_SIZE)
  both = task_cells[["predicted_speedup", "measured_speedup"]].to_numpy()
  low, high = float(np.min(both)), float(np.max(both))
  ax.plot([low, high], [low, high], color="k", linestyle=":",
          linewidth=figures.LINE_WIDTH, label="measured = predicted")
  ax.set(title=task, xlabel="Predicted speed-up (×, cost model)",
         ylabel="Measured speed-up (×, wall clock)")
  ax.grid(True, linewidth=0.3, alpha=0.5)


def plot_speedup(cells: pd.DataFrame):
  """Measured vs predicted speed-up, one panel per task, when reported."""
  known = cells[np.isfinite(cells["predicted_speedup"])
                & np.isfinite(cells["measured_speedup"])
                & (cells["role"] == load.Role.METHOD.value)]
  if known.empty:
    return None
  tasks = sorted(known["task"].unique())
  with matplotlib.rc_context(figures.RC):
    fig, axes = figures.new_figure(len(tasks))
    for ax, task in zip(axes, tasks):
      _speedup_panel(ax, known[known["task"] == task], task)
    figures.add_legend(fig)
  return fig
