"""Figures: lines per axis, styles, which figures the results support."""

import matplotlib.figure
import pytest

from harness.report import analysis
from harness.report import plots
from harness.report import figures
from harness.report import load
from harness.report import style
from harness.testing import results as synthetic

TASKS = synthetic.DEFAULT_TASKS
MAIN = ("spec_decode_lossy", "spec_cascade_token", "bild_star")
DEFERRAL = ("token_cascade_chow", "oracle_cascade_diff")
ALPHAS = (0.0, 0.5, 1.0)
# Lines every trade-off panel adds: large-quality line, small and large points.
REFERENCE_LINES = 3


def _specs():
  specs = []
  for task in TASKS:
    specs += synthetic.reference_cells(task)
    specs += [synthetic.method_cell(task, m, a) for m in MAIN + DEFERRAL
              for a in ALPHAS]
    specs.append(synthetic.method_cell(task, "spec_decode", 0.0))
    # A temperature sweep (own references) and a γ sweep, on wmt_ende only.
    if task == "wmt_ende":
      specs += synthetic.reference_cells(task, temperature=0.5)
      specs += [synthetic.method_cell(task, m, a, temperature=0.5)
                for m in MAIN[:2] for a in ALPHAS]
      specs += [synthetic.method_cell(task, "spec_cascade_token", a, gamma=3)
                for a in ALPHAS]
  return specs


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
  root = synthetic.write_synthetic_results(
      tmp_path_factory.mktemp("fig") / "exp", _specs())
  res = load.load_results(root)
  return analysis.fill_relative_latency(res.cells, res.examples)


def _lines(ax):
  return {line.get_label(): line for line in ax.get_lines()}


def test_curves_one_panel_per_task_and_line_per_method(cells):
  fig = plots.plot_curves(cells)
  assert isinstance(fig, matplotlib.figure.Figure)
  assert [ax.get_title() for ax in fig.axes] == sorted(TASKS)
  methods = MAIN + DEFERRAL + ("spec_decode",)
  for ax in fig.axes:
    assert len(ax.get_lines()) == len(methods) + REFERENCE_LINES
    lines = _lines(ax)
    token = lines[style.label_for("spec_cascade_token")]
    assert len(token.get_xdata()) == len(ALPHAS)  # γ=3, T=0.5 excluded.
    assert token.get_color() == style.STYLES["spec_cascade_token"].color
    assert token.get_marker() == style.STYLES["spec_cascade_token"].marker
    assert list(token.get_xdata()) == sorted(token.get_xdata())
    large = lines["Large model quality"]
    assert large.get_linestyle() == ":"
    assert large.get_ydata()[0] == lines["Large only"].get_ydata()[0]
    assert lines["Large only"].get_xdata()[0] == 1.0
    assert "Latency" in ax.get_xlabel() and "(0–100)" in ax.get_ylabel()


def test_curves_are_sized_for_a_paper_column(cells):
  fig = plots.plot_curves(cells)
  width, _ = fig.get_size_inches()
  assert width == pytest.approx(figures.PANEL_WIDTH_IN * len(TASKS))
  assert fig.axes[0].xaxis.label.get_fontsize() >= 7
  labels = [t.get_text() for t in fig.legends[0].get_texts()]
  assert len(labels) == len(set(labels))  # One legend entry per method.


def test_deferral_figure_has_the_motivating_methods(cells):
  fig = plots.plot_deferral(cells)
  for ax in fig.axes:
    labels = set(_lines(ax))
    assert {style.label_for(m) for m in DEFERRAL + ("spec_decode",)} <= labels
    assert style.label_for("spec_cascade_token") not in labels
    assert len(ax.get_lines()) == 3 + REFERENCE_LINES
    assert _lines(ax)["Small only"].get_xdata()[0] == 0.0


def test_rejection_figure(cells):
  fig = plots.plot_rejection(cells)
  assert "Rejection rate" in fig.axes[0].get_xlabel()
  assert len(fig.axes[0].get_lines()) == 6 + REFERENCE_LINES


def test_temperature_sweep_panels(cells):
  fig = plots.plot_sweep(cells, plots.SweepParam.TEMPERATURE)
  titles = [ax.get_title() for ax in fig.axes]
  assert titles == ["wmt_ende, T=0.5", "wmt_ende, T=1"]
  assert len(fig.axes[0].get_lines()) == 2 + REFERENCE_LINES
  assert len(fig.axes[1].get_lines()) == 6 + REFERENCE_LINES
  # Each panel's dotted line is its own temperature's large model.
  q = cells[cells["role"] == "reference_large"].set_index("temperature")
  for ax, temp in zip(fig.axes, (0.5, 1.0)):
    wmt = q[q["task"] == "wmt_ende"].loc[temp, "quality"]
    assert _lines(ax)["Large model quality"].get_ydata()[0] == wmt


def test_gamma_sweep_panels(cells):
  fig = plots.plot_sweep(cells, plots.SweepParam.GAMMA)
  assert [ax.get_title() for ax in fig.axes] == ["wmt_ende, γ=3",
                                                 "wmt_ende, γ=5"]
  assert len(fig.axes[0].get_lines()) == 1 + REFERENCE_LINES


def test_figures_absent_without_the_sweep(cells):
  assert plots.plot_sweep(cells, plots.SweepParam.TOP_P) is None
  assert plots.plot_rule_ablation(cells) is None  # No TokenV1/V2.
  assert plots.plot_bild(cells) is None  # BiLD* only.


def test_speedup_figure(cells):
  fig = plots.plot_speedup(cells)
  for ax in fig.axes:
    lines = _lines(ax)
    assert "measured = predicted" in lines
    methods = [l for l in lines if l != "measured = predicted"]
    assert len(methods) == len(set(methods)) == len(ax.get_lines()) - 1


def test_style_map_is_one_to_one():
  styles = list(style.STYLES.values())
  assert len({s.label for s in styles}) == len(styles)
  assert len({s.marker for s in styles}) == len(styles)
  assert len({s.color for s in styles}) == len(styles)
  assert set(style.TABLE2_METHODS) <= set(style.STYLES)
  assert style.style_for("new_method").label == "new_method"
