"""CS Drafting report: SWI from call counts, table and figure."""

import json
import os
import subprocess
import sys

import pytest

from harness.report import csd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _summary(cell_id, method, level_calls, num_tokens, rel, options=None,
             gamma=None, alpha=0.0):
  return {
      "cell_id": cell_id, "experiment": "x", "headline_metric": "bleu",
      "quality": {"bleu": 30.0},
      "cell": {"task": "multi30k_ende", "method": method, "alpha": alpha,
               "gamma": gamma, "temperature": 0.0, "top_p": 1.0,
               "method_options": options or {}},
      "relative_latency": rel,
      "cost_model": {"c_q": 0.001, "c_p": {"1": 0.004, "6": 0.005}},
      "stats": {"acceptance_rate": 0.5, "mean_accepted_length": 3.0,
                "totals": {"num_tokens": num_tokens,
                           "level_calls": level_calls,
                           "verifier_calls": level_calls[0],
                           "drafter_steps": sum(level_calls[1:])}}}


def test_swi_counts_calls_times_unit_costs():
  s = _summary("a", "cs_drafting", [10, 30], 100, 0.5)
  # 100 tokens × 4 ms / (10 × 4 ms + 30 × 1 ms) = 400 / 70.
  assert csd.swi(s) == pytest.approx(400 / 70)
  s["stats"]["totals"]["level_calls"] = None
  s["stats"]["totals"].update(verifier_calls=20, drafter_steps=100)
  assert csd.swi(s) == pytest.approx(400 / 180)


def test_csd_report_files_and_bars(tmp_path):
  cells = tmp_path / "exp" / "cells"
  cells.mkdir(parents=True)
  rows = [
      _summary("c1", "cs_drafting", [10, 30], 100, 0.5,
               {"k_matrix": [[5, 10], [0, 10]]}),
      _summary("c2", "cs_drafting", [12, 20], 100, 0.6,
               {"k_matrix": [[1, 10], [0, 10]]}),
      _summary("s1", "spec_decode", [25, 100], 100, 0.8, gamma=5),
      _summary("r1", "autoregressive", [100, 0], 100, 1.0),
  ]
  for row in rows:
    (cells / f"{row['cell_id']}.json").write_text(json.dumps(row))
  table = csd.csd_table([tmp_path])
  assert len(table) == 3  # the autoregressive cell is not a CSD row
  assert set(table["config"]) == {"CS Drafting K=5,10/0,10",
                                  "CS Drafting K=1,10/0,10",
                                  "SpecDecode γ=5"}
  fig = csd.csd_figure(table)
  bars = fig.axes[0].patches
  assert len(bars) == 2 * len(table)
  paths = csd.write_csd_report(tmp_path, tmp_path)
  assert {p.rsplit(".", 1)[1] for p in paths} == {"csv", "md", "png", "pdf"}


def test_no_csd_cells_writes_nothing(tmp_path):
  (tmp_path / "cells").mkdir()
  row = _summary("s1", "spec_decode", [25, 100], 100, 0.8, gamma=5)
  (tmp_path / "cells" / "s1.json").write_text(json.dumps(row))
  assert csd.write_csd_report(tmp_path, tmp_path) == []


def test_multi_drafter_table_matches_the_registry():
  from harness import decoding  # pylint: disable=g-import-not-at-top
  from harness.report import style  # pylint: disable=g-import-not-at-top
  assert set(style.MULTI_DRAFTER_METHODS) == {
      name for name, spec in decoding.METHODS.items() if spec.multi_drafter}


def test_report_imports_neither_jax_nor_a_matplotlib_backend():
  code = ("import sys, harness.report, harness.report.csd; "
          "print('jax' in sys.modules, 'matplotlib.pyplot' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120, check=True,
                       env=dict(os.environ, PYTHONPATH=REPO))
  assert out.stdout.split() == ["False", "False"]
