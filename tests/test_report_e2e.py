"""End to end: write_report on a small hand-made results directory."""

import io
import json
import math
import pathlib

import pandas as pd
import pytest

from harness.report import load
from harness.report import render
from harness.report import report
from harness.testing import results as synthetic
from harness import report as report_api


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  root = tmp_path_factory.mktemp("e2e") / "exp"
  specs = synthetic.default_cells() + [
      synthetic.method_cell(t, "spec_decode", 0.0)
      for t in synthetic.DEFAULT_TASKS]
  synthetic.write_synthetic_results(root, specs)
  paths = report_api.write_report(root, bootstrap=200, seed=0)
  return root, paths


def test_writes_tables_points_and_figures(written):
  root, paths = written
  names = {pathlib.Path(p).name for p in paths}
  expected = {"table2.md", "table2.csv", "table2.tex", "points.csv"}
  for stem in ("curves", "curves_cost_model", "rejection", "speedup"):
    expected |= {f"{stem}.png", f"{stem}.pdf"}
  assert expected <= names
  assert "temperature.png" not in names  # One temperature only.
  for p in paths:
    assert pathlib.Path(p).parent == root and pathlib.Path(p).stat().st_size
  assert pathlib.Path(root / "curves.pdf").read_bytes().startswith(b"%PDF")


def test_table2_csv_known_answers(written):
  root, _ = written
  table = pd.read_csv(root / "table2.csv")
  points = pd.read_csv(root / "points.csv").set_index("cell_id")
  assert sorted(table["task"].unique()) == sorted(synthetic.DEFAULT_TASKS)
  for task in synthetic.DEFAULT_TASKS:
    rows = table[table["task"] == task].set_index("method")
    # Paper rows in Table 2 order, then other methods below the rule.
    assert list(rows.index) == ["spec_decode_lossy", "bild_star",
                                "spec_cascade_token", "spec_decode"]
    assert list(rows["group"]) == ["paper"] * 3 + ["other"]
    # SpecCascade [Token] at α=0 reproduces the large model's predictions.
    token = rows.loc["spec_cascade_token"]
    cell = synthetic.method_cell(task, "spec_cascade_token", 0.0).cell_id
    assert token["speedup@1_cell"] == cell and token["speedup@1_alpha"] == 0
    assert token["speedup@1"] == pytest.approx(
        1 / points.loc[cell, "relative_latency"])
    assert token["speedup@1_low"] <= token["speedup@1"] <= token[
        "speedup@1_high"]
    assert token["cost_speedup@1"] == pytest.approx(
        1 / synthetic.method_cell(task, "spec_cascade_token", 0.0).cost)
    # BiLD* is always one word worse than the large model: "–".
    assert math.isnan(rows.loc["bild_star", "speedup@1"])
    assert rows.loc["bild_star", "best_quality"] < token["large_quality"]
    assert token["best_quality"] == pytest.approx(token["large_quality"])


def test_markdown_and_latex(written):
  root, _ = written
  md = (root / "table2.md").read_text()
  assert md.count("### ") == 2 and "| BiLD*" in md and "*other methods*" in md
  assert "–" in md and "(cost model)" in md and "Bootstrap: 200" in md
  tex = (root / "table2.tex").read_text()
  assert tex.count(r"\begin{tabular}") == 3
  assert tex.count(r"\toprule") == 3 and tex.count(r"\bottomrule") == 3
  # A rule between the paper's rows and SpecDecode, in all three tables.
  assert tex.count("\\midrule\nSpecDecode &") == 3
  assert r"wmt\_ende" in tex and r"$\times$" in tex


def test_format_table2_text_matches_markdown(written):
  root, _ = written
  built = report.build_report(root, bootstrap=0)
  text = report_api.format_table2_text(built.table)
  assert "SpecCascade [Token]" in text and "[" not in text.split("|")[-3]
  assert text == render.format_table2_markdown(built.table)


def test_shards_and_out_dir(written, tmp_path):
  root, _ = written
  shard_a, shard_b = tmp_path / "a", tmp_path / "b"
  for shard in (shard_a, shard_b):
    (shard / "cells").mkdir(parents=True)
  ids = sorted(p.stem for p in (root / "cells").glob("*.json"))
  for i, cell_id in enumerate(ids):
    target = shard_a if i % 2 == 0 else shard_b
    for f in (root / "cells").glob(f"{cell_id}.json*"):
      (target / "cells" / f.name).write_text(f.read_text())
  out = tmp_path / "report"
  paths = report_api.write_report([shard_a, shard_b], out, bootstrap=0)
  assert all(pathlib.Path(p).parent == out for p in paths)
  merged = pd.read_csv(out / "table2.csv")
  whole = pd.read_csv(root / "table2.csv")
  pd.testing.assert_series_equal(merged["speedup@1"], whole["speedup@1"])


def test_malformed_summary_fails_with_one_line(tmp_path):
  root = synthetic.write_synthetic_results(tmp_path / "exp")
  path = next((root / "cells").glob("*reference_large*.json"))
  summary = json.loads(path.read_text())
  summary["latency"]["mean_s"] = "slow"
  path.write_text(json.dumps(summary))
  with pytest.raises(load.ResultsError) as e:
    report_api.write_report(root, bootstrap=0)
  assert str(e.value) == (f"{path}: field 'latency.mean_s' must be a number, "
                          f"got str")


def test_write_and_print(tmp_path):
  root = synthetic.write_synthetic_results(tmp_path / "exp")
  stream = io.StringIO()
  paths = report_api.write_and_print(root, tmp_path / "out", bootstrap=0,
                                     stream=stream)
  text = stream.getvalue()
  assert "# Table 2" in text and "SpecCascade [Token]" in text
  assert all(p in text for p in paths)


def test_a_second_render_is_byte_identical(written, tmp_path):
  # PDFs carry no creation date, so re-rendering committed results leaves
  # every file as it was.
  import shutil
  root, paths = written
  copy = tmp_path / "again"
  shutil.copytree(root, copy)
  report_api.write_report(copy, bootstrap=200, seed=0)
  for p in paths:
    name = pathlib.Path(p).name
    assert (copy / name).read_bytes() == pathlib.Path(p).read_bytes(), name


def test_points_carry_the_drafters_support_mass():
  # The Gemma Table 2 cells (a subset-vocabulary drafter) record p(S) beside
  # the acceptance rate; reference cells have none.
  points = pd.read_csv(pathlib.Path(__file__).resolve().parents[1]
                       / "results" / "gemma_table2_offline" / "points.csv")
  spec = points[points.method == "spec_decode"]
  assert len(spec) and spec.drafter_support_mass.between(0.3, 1.0).all()
  assert points[points.method == "autoregressive"
                ].drafter_support_mass.isna().all()


def test_gamma_picks_one_block_size(tmp_path):
  root = tmp_path / "exp"
  specs = synthetic.default_cells() + [  # γ = 5, and a few cells at γ = 3
      synthetic.method_cell(t, "spec_cascade_token", a, gamma=3)
      for t in synthetic.DEFAULT_TASKS for a in (0.0, 1.0)]
  synthetic.write_synthetic_results(root, specs)
  default = report_api.build_report(root, bootstrap=0)
  assert set(default.table["gamma"]) == {5}  # the most common
  three = report_api.build_report(root, bootstrap=0, gamma=3)
  assert set(three.table["gamma"]) == {3}
  assert set(three.table["method"]) == {"spec_cascade_token"}
  assert three.table["num_points"].tolist() == [2] * len(three.table)
  with pytest.raises(ValueError, match=r"--gamma 7: no cell has this block "
                     r"size \(the results have \[3, 5\]\)"):
    report_api.build_report(root, bootstrap=0, gamma=7)


def test_a_large_model_at_the_metric_floor_is_noted(tmp_path):
  task = next(iter(synthetic.DEFAULT_TASKS))
  floor = synthetic.CellSpec(task, "autoregressive", "reference_large", None,
                             100, synthetic.LARGE_COST, 1.0, None)
  specs = [floor, synthetic.reference_cells(task)[1],
           synthetic.method_cell(task, "spec_cascade_token", 0.5)]
  synthetic.write_synthetic_results(
      root := tmp_path / "exp", specs,
      tasks={task: synthetic.DEFAULT_TASKS[task]})
  notes = report_api.build_report(root, bootstrap=50).notes()
  assert any(n.startswith(f"{task} (T=1, γ=5): the large model "
                          "scores 0") for n in notes), notes
  # A large model above the floor gets no such note.
  synthetic.write_synthetic_results(tmp_path / "ok", synthetic.default_cells())
  assert not [n for n in report_api.build_report(
      tmp_path / "ok", bootstrap=50).notes() if "scores 0" in n]
