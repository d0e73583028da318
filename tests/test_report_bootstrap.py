"""Bootstrap CIs: BLEU sufficient statistics, shared resamples, intervals."""

import numpy as np
import pytest

from harness import metrics
from harness.report import analysis
from harness.report import bootstrap
from harness.report import load
from harness.testing import results as synthetic

TARGETS = [("Das Haus ist sehr klein.",), ("Ich bin Berliner, „ja“.",),
           ("Er geht heute heim.",), ("Die Katze schläft auf dem Sofa.",),
           ("Wir fahren morgen nach Berlin.",)]
PREDICTIONS = ["Das Haus ist klein.", "Ich bin ein Berliner, „ja“.",
               "Er geht nach Hause", "Die Katze schläft auf dem Sofa.",
               "Morgen fahren wir nach Berlin."]


def _resampled(counts_row):
  idx = np.repeat(np.arange(len(PREDICTIONS)), counts_row.astype(int))
  return [TARGETS[i] for i in idx], [PREDICTIONS[i] for i in idx]


@pytest.mark.parametrize("name", ["bleu", "rouge2", "exact_match", "chrf"])
def test_resampled_quality_equals_metric_on_resampled_corpus(name):
  counts = bootstrap.resample_counts(len(PREDICTIONS), 8,
                                     np.random.default_rng(1))
  samples, full = bootstrap.quality_samples(name, counts, TARGETS,
                                            PREDICTIONS)
  assert full == pytest.approx(
      metrics.compute_metrics([name], TARGETS, PREDICTIONS)[name])
  for row, sample in zip(counts, samples):
    t, p = _resampled(row)
    assert sample == pytest.approx(metrics.compute_metrics([name], t, p)[name])


def test_resample_counts_shape_and_determinism():
  a = bootstrap.resample_counts(7, 250, np.random.default_rng(0))
  b = bootstrap.resample_counts(7, 250, np.random.default_rng(0))
  assert a.shape == (250, 7)
  np.testing.assert_array_equal(a.sum(axis=1), 7)
  np.testing.assert_array_equal(a, b)
  assert (a == 0).any()  # Some examples are left out of some resamples.


def test_ratio_of_means_and_weighted_means():
  counts = np.array([[1, 1, 0], [0, 2, 1]], np.float32)
  num = np.array([1.0, 2.0, np.nan])
  den = np.array([2.0, 2.0, 5.0])
  np.testing.assert_allclose(bootstrap.ratio_of_means(counts, num, den),
                             [3 / 4, 4 / 4])
  np.testing.assert_allclose(bootstrap.weighted_means(counts, den),
                             [2.0, 9 / 3])


def test_percentile_interval():
  low, high = bootstrap.percentile_interval(np.arange(1001.0))
  assert (low, high) == pytest.approx((25.0, 975.0))
  assert np.isnan(bootstrap.percentile_interval([np.nan])).all()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  res = load.load_results(synthetic.write_synthetic_results(
      tmp_path_factory.mktemp("boot") / "exp", num_examples=6))
  return res, analysis.fill_relative_latency(res.cells, res.examples)


def test_intervals_contain_estimates_and_are_seeded(loaded):
  res, cells = loaded
  a, info = analysis.add_intervals(cells, res.examples, num_resamples=300)
  b, _ = analysis.add_intervals(cells, res.examples, num_resamples=300)
  c, _ = analysis.add_intervals(cells, res.examples, num_resamples=300,
                                seed=1)
  assert info.num_cells == len(cells) and not info.notes
  assert (a["quality_low"] <= a["quality"] + 1e-9).all()
  assert (a["quality"] <= a["quality_high"] + 1e-9).all()
  methods = a[a["role"] == "method"]
  assert (methods["latency_low"] < methods["latency_high"]).any()
  assert (methods["latency_low"] <= methods["relative_latency"] + 1e-9).all()
  assert (methods["relative_latency"] <= methods["latency_high"] + 1e-9).all()
  np.testing.assert_array_equal(a["quality_low"], b["quality_low"])
  assert not np.array_equal(a["latency_low"], c["latency_low"])


def test_same_resamples_for_every_cell_of_a_task(loaded):
  # Two cells with identical predictions get identical intervals only if
  # they see the same resamples.
  res, cells = loaded
  lossy = synthetic.method_cell("wmt_ende", "spec_decode_lossy", 0.5).cell_id
  token = synthetic.method_cell("wmt_ende", "spec_cascade_token", 0.5).cell_id
  pred = res.examples.set_index("cell_id")["prediction"]
  assert list(pred[lossy]) == list(pred[token])
  out, _ = analysis.add_intervals(cells, res.examples, num_resamples=200)
  out = out.set_index("cell_id")
  assert out.loc[lossy, "quality_low"] == out.loc[token, "quality_low"]
  assert out.loc[lossy, "quality_high"] == out.loc[token, "quality_high"]


def test_no_resamples_gives_nan_intervals(loaded):
  res, cells = loaded
  out, info = analysis.add_intervals(cells, res.examples, num_resamples=0)
  assert out["quality_low"].isna().all() and info.num_cells == 0
