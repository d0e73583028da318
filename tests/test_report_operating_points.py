"""Operating-point selection (Table 2 entries) on hand-made curves with known
answers."""

import math

import pandas as pd
import pytest

from harness.report import operating_points


def curve(points):
  """[(alpha, relative_latency, quality)] -> curve DataFrame."""
  return pd.DataFrame(points, columns=list(operating_points.CURVE_COLUMNS),
                      index=[f"c{i}" for i in range(len(points))])


LARGE = 27.0
# The module docstring's worked example: non-monotone in latency.
EXAMPLE = curve([(0.1, 0.50, 26.0), (0.3, 0.70, 27.0), (0.5, 0.60, 26.5),
                 (0.9, 0.90, 27.4)])


def test_worked_example():
  pick = operating_points.fastest_matching(EXAMPLE, LARGE)
  assert (pick.alpha, pick.relative_latency, pick.label) == (0.3, 0.70, "c1")
  assert pick.speedup == pytest.approx(1 / 0.7)
  best = operating_points.best_within_latency(EXAMPLE)
  assert (best.alpha, best.quality) == (0.9, 27.4)


def test_non_monotone_uses_evaluated_points_only():
  # Quality dips below the reference between two points that reach it; no
  # interpolation: the crossing at latency ~0.55 is not a candidate.
  points = curve([(0.0, 0.95, 27.5), (0.2, 0.80, 26.0), (0.4, 0.65, 27.1),
                  (0.6, 0.40, 24.0)])
  pick = operating_points.fastest_matching(points, LARGE)
  assert pick.relative_latency == 0.65 and pick.alpha == 0.4


def test_ties_in_latency_pick_higher_quality_then_smaller_alpha():
  points = curve([(0.5, 0.6, 27.0), (0.4, 0.6, 27.3), (0.3, 0.6, 27.3),
                  (0.9, 0.8, 28.0)])
  pick = operating_points.fastest_matching(points, LARGE)
  assert (pick.alpha, pick.quality) == (0.3, 27.3)
  assert pick.speedup == pytest.approx(1 / 0.6)


def test_ties_in_best_quality_pick_smaller_latency():
  points = curve([(0.1, 0.9, 27.3), (0.2, 0.7, 27.3), (0.3, 1.2, 28.0)])
  best = operating_points.best_within_latency(points)
  assert (best.alpha, best.relative_latency, best.quality) == (0.2, 0.7, 27.3)


def test_exact_equality_with_reference_counts():
  # A lossless method reproduces the large quality up to JSON round-off.
  points = curve([(0.0, 0.8, LARGE - 1e-12)])
  pick = operating_points.fastest_matching(points, LARGE)
  assert pick.relative_latency == 0.8


def test_no_point_reaches_large_quality_gives_none():
  points = curve([(0.1, 0.5, 20.0), (0.9, 0.9, 26.99)])
  assert operating_points.fastest_matching(points, LARGE) is None
  assert operating_points.fastest_matching(points, math.nan) is None


def test_no_point_within_latency_budget_gives_none():
  points = curve([(0.1, 1.2, 28.0), (0.2, 1.01, 27.0)])
  assert operating_points.best_within_latency(points) is None
  # Exactly 1.0 is within budget.
  points = curve([(0.1, 1.0, 28.0)])
  assert operating_points.best_within_latency(points).quality == 28.0


def test_nan_points_are_ignored():
  points = curve([(0.1, math.nan, 30.0), (0.2, 0.5, math.nan),
                  (0.3, 0.9, 27.5)])
  assert operating_points.fastest_matching(points, LARGE).alpha == 0.3
  assert operating_points.best_within_latency(points).alpha == 0.3


def test_fraction_variants():
  # Published shape (docs/algorithms.md#published-figures, WMT P=0.1
  # Lossy): 1.55× to 95%, 2.07× at 50%.
  points = curve([(0.0, 1 / 1.55, 27.4), (0.5, 1 / 1.80, 20.0),
                  (1.0, 1 / 2.07, 14.0)])
  entries = operating_points.extract_entries(points, LARGE)
  speedups = {f: entries[operating_points.speedup_key(f)] for f in
              operating_points.QUALITY_FRACTIONS}
  for f in (1.0, 0.99, 0.97, 0.95):
    assert speedups[f].speedup == pytest.approx(1.55)
  assert speedups[0.5].speedup == pytest.approx(2.07)  # 14.0 ≥ 13.5
  assert entries[operating_points.BEST_QUALITY].quality == 27.4


def test_fraction_threshold_is_inclusive_and_strict_below():
  points = curve([(0.2, 0.5, 0.97 * LARGE), (0.1, 0.4, 0.97 * LARGE - 0.01)])
  at_97 = operating_points.fastest_matching(points, LARGE, 0.97)
  at_95 = operating_points.fastest_matching(points, LARGE, 0.95)
  assert at_97.relative_latency == 0.5
  assert at_95.relative_latency == 0.4


def test_lower_is_better_metric():
  points = curve([(0.1, 0.5, 12.0), (0.2, 0.7, 10.0), (0.3, 0.9, 9.0)])
  pick = operating_points.fastest_matching(points, 10.0, higher_is_better=False)
  assert pick.relative_latency == 0.7
  best = operating_points.best_within_latency(points, higher_is_better=False)
  assert best.quality == 9.0


def test_missing_columns_raise():
  with pytest.raises(ValueError, match="quality"):
    operating_points.fastest_matching(pd.DataFrame({"alpha": [0.1],
                                          "relative_latency": [0.5]}), LARGE)
