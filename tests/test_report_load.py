"""The results loader: merging shards, one-line errors, relative latency."""

import json
import pathlib

import numpy as np
import pytest

from harness.report import analysis
from harness.report import load
from harness.testing import results as synthetic


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
  return synthetic.write_synthetic_results(
      tmp_path_factory.mktemp("res") / "exp")


def _copy(src: pathlib.Path, dst: pathlib.Path, names) -> None:
  (dst / "cells").mkdir(parents=True)
  for name in names:
    for suffix in (".json", ".jsonl"):
      f = src / "cells" / f"{name}{suffix}"
      (dst / "cells" / f.name).write_text(f.read_text())


def test_loads_cells_examples_and_references(results_dir):
  res = load.load_results(results_dir)
  specs = synthetic.default_cells()
  assert len(res.cells) == len(specs)
  assert len(res.examples) == 4 * len(specs)
  methods = res.cells[res.cells["role"] == "method"]
  assert methods["large_cell_id"].str.contains("reference_large").all()
  assert methods["small_cell_id"].str.contains("reference_small").all()
  assert set(res.cells["headline_metric"]) == {"bleu", "rouge2"}
  assert list(res.manifests) == [str(results_dir / "manifest.json")]


def test_shards_merge_and_identical_duplicates_are_kept_once(results_dir,
                                                             tmp_path):
  ids = sorted(p.stem for p in (results_dir / "cells").glob("*.json"))
  _copy(results_dir, tmp_path / "a", ids[:10])
  _copy(results_dir, tmp_path / "b", ids[8:])  # Two ids in both shards.
  merged = load.load_results([tmp_path / "a", tmp_path / "b"])
  assert sorted(merged.cells["cell_id"]) == ids
  # A parent directory of both shards gives the same cells.
  assert sorted(load.load_results(tmp_path).cells["cell_id"]) == ids


def test_conflicting_duplicate_names_both_files(results_dir, tmp_path):
  cell_id = sorted(p.stem for p in (results_dir / "cells").glob("*.json"))[0]
  _copy(results_dir, tmp_path / "a", [cell_id])
  _copy(results_dir, tmp_path / "b", [cell_id])
  path = tmp_path / "b" / "cells" / f"{cell_id}.json"
  summary = json.loads(path.read_text())
  summary["cell"]["alpha"] = 0.123
  path.write_text(json.dumps(summary))
  with pytest.raises(load.ResultsError) as e:
    load.load_results([tmp_path / "a", tmp_path / "b"])
  message = str(e.value)
  assert "conflicting" in message and "\n" not in message
  assert str(tmp_path / "a") in message and str(tmp_path / "b") in message


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s["cell"].pop("task"), "cell.task"),
    (lambda s: s["cell"].update(alpha="high"), "cell.alpha"),
    (lambda s: s["cell"].update(role="judge"), "cell.role"),
    (lambda s: s.pop("headline_metric"), "headline_metric"),
    (lambda s: s["quality"].pop("bleu"), "quality.bleu"),
    (lambda s: s["stats"].update(rejection_rate=[0.1]),
     "stats.rejection_rate"),
    (lambda s: s.update(relative_latency="fast"), "relative_latency"),
])
def test_malformed_summary_one_line_error(results_dir, tmp_path, mutate,
                                          field):
  cell_id = synthetic.method_cell("wmt_ende", "spec_cascade_token", 0.5).cell_id
  _copy(results_dir, tmp_path, [cell_id])
  path = tmp_path / "cells" / f"{cell_id}.json"
  summary = json.loads(path.read_text())
  mutate(summary)
  path.write_text(json.dumps(summary))
  with pytest.raises(load.ResultsError) as e:
    load.load_results(tmp_path)
  message = str(e.value)
  assert "\n" not in message
  assert str(path) in message and repr(field) in message


def test_malformed_record_names_file_line_and_field(results_dir, tmp_path):
  cell_id = synthetic.method_cell("wmt_ende", "bild_star", 0.0).cell_id
  _copy(results_dir, tmp_path, [cell_id])
  path = tmp_path / "cells" / f"{cell_id}.jsonl"
  lines = path.read_text().splitlines()
  record = json.loads(lines[2])
  record["targets"] = "not a list"
  lines[2] = json.dumps(record)
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(load.ResultsError, match=r"\.jsonl:3: field 'targets'"):
    load.load_results(tmp_path)


def test_empty_or_missing_directory(tmp_path):
  with pytest.raises(load.ResultsError, match="no cells/"):
    load.load_results(tmp_path)
  with pytest.raises(load.ResultsError, match="not a results directory"):
    load.load_results(tmp_path / "absent")


def test_null_relative_latency_is_computed_from_times(results_dir):
  res = load.load_results(results_dir)
  assert res.cells["relative_latency"].isna().all()  # Written as null.
  cells = analysis.fill_relative_latency(res.cells, res.examples)
  row = cells[cells["method"] == "spec_cascade_token"].iloc[0]
  times = res.examples.set_index("example_id").groupby("cell_id")["time_s"]
  method_t = times.get_group(row["cell_id"])
  large_t = times.get_group(row["large_cell_id"])
  expected = method_t.mean() / large_t.reindex(method_t.index).mean()
  assert row["relative_latency"] == pytest.approx(expected)
  large = cells[cells["role"] == "reference_large"]
  np.testing.assert_array_equal(large["relative_latency"], 1.0)


def test_summary_relative_latency_is_kept(tmp_path):
  root = synthetic.write_synthetic_results(tmp_path / "exp",
                                         null_latency=False)
  res = load.load_results(root)
  cells = analysis.fill_relative_latency(res.cells, res.examples)
  spec = synthetic.method_cell("cnn_dm", "spec_decode_lossy", 1.0)
  row = cells.set_index("cell_id").loc[spec.cell_id]
  assert row["relative_latency"] == pytest.approx(spec.cost)


def test_only_the_latency_subset_is_timed(results_dir, tmp_path):
  """Records past ``latency.num_timed_examples`` were timed once, outside the
  protocol: the loader drops their times, so relative latency and its
  bootstrap interval use the same examples as the summary's mean."""
  names = [p.stem for p in (results_dir / "cells").glob("*.json")]
  _copy(results_dir, tmp_path, names)
  for path in (tmp_path / "cells").glob("*.json"):
    summary = json.loads(path.read_text())
    summary["latency"]["num_timed_examples"] = 2
    path.write_text(json.dumps(summary))
    records = [json.loads(l) for l in
               path.with_suffix(".jsonl").read_text().splitlines()]
    for r in records[2:]:  # Untimed examples: one wild first-trial time.
      r["times_s"] = [r["times_s"][0] * (50 if "reference" in path.stem
                                          else 0.01)]
    path.with_suffix(".jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
  res = load.load_results(tmp_path)
  timed = res.examples.groupby("cell_id")["time_s"].apply(
      lambda t: int(t.notna().sum()))
  assert (timed == 2).all()
  cells = analysis.fill_relative_latency(res.cells, res.examples)
  cells, _ = analysis.add_intervals(cells, res.examples, num_resamples=200)
  methods = cells[cells["role"] == "method"]
  assert ((methods["latency_low"] <= methods["relative_latency"] + 1e-12)
          & (methods["relative_latency"] <= methods["latency_high"] + 1e-12)
          ).all()


def test_paired_cells_use_their_own_reference_times(results_dir, tmp_path):
  """A paired cell's relative latency is the geometric mean of its own
  per-example ratios, whatever the reference cell's times say."""
  from harness.report import report  # pylint: disable=g-import-not-at-top
  from harness.results import latency  # pylint: disable=g-import-not-at-top
  names = [p.stem for p in (results_dir / "cells").glob("*.json")]
  _copy(results_dir, tmp_path, names)
  method = next(n for n in sorted(names) if "reference" not in n)
  records_path = tmp_path / "cells" / f"{method}.jsonl"
  records = [json.loads(line) for line in records_path.read_text().splitlines()]
  ratios = [0.5, 0.8, 0.4, 1.0]
  for record, ratio in zip(records, ratios):
    record["ref_times_s"] = [t / ratio for t in record["times_s"]]
  records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
  summary_path = tmp_path / "cells" / f"{method}.json"
  summary = json.loads(summary_path.read_text())
  summary["relative_latency"] = None
  summary["latency"]["protocol"] = "paired"
  summary_path.write_text(json.dumps(summary))
  built = report.build_report(tmp_path, bootstrap=200)
  row = built.cells.set_index("cell_id").loc[method]
  expected = float(np.exp(np.mean(np.log(ratios))))
  assert row["relative_latency"] == pytest.approx(expected)
  assert row["latency_low"] <= expected <= row["latency_high"]
  assert report.PAIRED_NOTE in built.notes()
  # The same times read unpaired would be the ratio of the means.
  unpaired = latency.relative_latency(
      [np.mean(r["times_s"]) for r in records],
      [np.mean(r["ref_times_s"]) for r in records], paired=False)
  assert unpaired != pytest.approx(expected)


def test_unpaired_results_have_no_paired_note(results_dir):
  from harness.report import report  # pylint: disable=g-import-not-at-top
  built = report.build_report(results_dir, bootstrap=0)
  assert report.PAIRED_NOTE not in built.notes()


def test_pair_times_is_the_one_pairing_rule():
  from harness.results import latency  # pylint: disable=g-import-not-at-top
  nan = float("nan")
  times, own_refs, cell_refs = [2.0, 4.0], [1.0, nan], [8.0, 8.0]
  got = latency.pair_times(times, own_refs, cell_refs)
  assert got[2] and list(got[1][:1]) == [1.0]  # Own reference times win.
  got = latency.pair_times(times, [nan, nan], cell_refs)
  assert not got[2] and list(got[1]) == cell_refs  # Else the reference cell.
  assert latency.pair_times(times, [nan, nan], None) is None
  # The runner's records and the report's frames agree through it.
  records = [{"index": i, "times_s": [t], "modeled_s": 1.0}
             for i, t in enumerate(times)]
  reference = [{"index": i, "times_s": [t], "modeled_s": 2.0}
               for i, t in enumerate(cell_refs)]
  assert latency.from_records(records, reference, 2) == (
      pytest.approx(latency.relative_latency(times, cell_refs, paired=False)),
      0.5)
  assert latency.from_records(records, None, 2) == (None, None)
