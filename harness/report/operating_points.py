"""Operating-point selection: picks Table 2 entries from a method's α sweep.

Pure functions on one α-sweep curve.

A curve is a DataFrame with one row per evaluated α and the columns
``alpha``, ``relative_latency`` and ``quality`` (rows with a NaN latency or
quality are ignored). Following docs/algorithms.md#table-2, only evaluated
points count: no interpolation between sweep points, so non-monotone curves
are handled point by point.

Column (1), latency reduction when matching the large model's quality::

  speed-up = 1 / min{ rel_latency(α) : quality(α) ≥ f · quality(large) }

with f = 1 for the main column and f ∈ {0.99, 0.97, 0.95, 0.50} for the
%-of-large-quality variants; "–" when no α qualifies. Ties in latency are
broken by the higher quality, then the smaller α.

Column (2), best quality without exceeding the large model's latency::

  max{ quality(α) : relative_latency(α) ≤ 1 }

ties broken by the smaller latency, then the smaller α.

Worked example (higher is better, large quality 27.0)::

  alpha  relative_latency  quality
   0.1        0.50          26.0
   0.3        0.70          27.0   <- smallest latency with quality ≥ 27.0
   0.5        0.60          26.5      (non-monotone: 0.6 < 0.7 but too low)
   0.9        0.90          27.4   <- best quality with latency ≤ 1

  speed-up = 1 / 0.70 = 1.43×; best quality = 27.4.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

# Fractions of the large model's quality for the Table 2 variants
# (docs/algorithms.md#published-figures).
QUALITY_FRACTIONS = (1.0, 0.99, 0.97, 0.95, 0.50)
# The latency budget of column (2): the large model's own latency.
MAX_RELATIVE_LATENCY = 1.0
# Absorbs float round-off when a quality equals the reference's (JSON
# round trips, lossless methods reproducing the large model exactly).
TOLERANCE = 1e-9
CURVE_COLUMNS = ("alpha", "relative_latency", "quality")
# Entry name of column (2).
BEST_QUALITY = "best_quality"


@dataclasses.dataclass(frozen=True)
class Pick:
  """The sweep point chosen for a Table 2 entry.

  Attributes:
    alpha: The chosen α (NaN if the method has no α).
    relative_latency: Its latency relative to the large model.
    quality: Its quality.
    label: The curve row's index label (e.g. the cell id).
  """
  alpha: float
  relative_latency: float
  quality: float
  label: object

  @property
  def speedup(self) -> float:
    """1 / relative latency."""
    return 1.0 / self.relative_latency


def _valid_points(curve: pd.DataFrame) -> pd.DataFrame:
  """Rows with a finite, positive latency and a finite quality."""
  missing = set(CURVE_COLUMNS) - set(curve.columns)
  if missing:
    raise ValueError(f"curve is missing columns {sorted(missing)}")
  ok = (curve["relative_latency"].notna() & curve["quality"].notna()
        & (curve["relative_latency"] > 0))
  return curve[ok]


def _first(points: pd.DataFrame, by: list[str],
           ascending: list[bool]) -> Pick | None:
  """The first row after a stable sort, as a :class:`Pick`."""
  if points.empty:
    return None
  row = points.sort_values(by, ascending=ascending, kind="stable",
                           na_position="last").iloc[0]
  return Pick(alpha=float(row["alpha"]),
              relative_latency=float(row["relative_latency"]),
              quality=float(row["quality"]), label=row.name)


def quality_threshold(reference_quality: float, fraction: float,
                      higher_is_better: bool = True) -> float:
  """The quality a point must reach to count as matching ``fraction``.

  For lower-is-better metrics "f of the quality" means at most ``q / f``.
  """
  return (reference_quality * fraction if higher_is_better
          else reference_quality / fraction)


def fastest_matching(curve: pd.DataFrame, reference_quality: float,
                     fraction: float = 1.0, *,
                     higher_is_better: bool = True) -> Pick | None:
  """Column (1): the fastest point reaching ``fraction`` of the reference.

  Args:
    curve: Columns ``alpha``, ``relative_latency``, ``quality``.
    reference_quality: The large model's quality.
    fraction: Share of the reference quality to reach (1.0 = match it).
    higher_is_better: The metric's direction.

  Returns:
    The chosen point (its ``speedup`` is the table entry), or None ("–")
    when no evaluated point qualifies or the reference is NaN.
  """
  if math.isnan(reference_quality):
    return None
  points = _valid_points(curve)
  threshold = quality_threshold(reference_quality, fraction,
                                higher_is_better)
  if higher_is_better:
    points = points[points["quality"] >= threshold - TOLERANCE]
  else:
    points = points[points["quality"] <= threshold + TOLERANCE]
  return _first(points, ["relative_latency", "quality", "alpha"],
                [True, not higher_is_better, True])


def best_within_latency(curve: pd.DataFrame,
                        max_relative_latency: float = MAX_RELATIVE_LATENCY,
                        *, higher_is_better: bool = True) -> Pick | None:
  """Column (2): the best-quality point no slower than the budget.

  Args:
    curve: Columns ``alpha``, ``relative_latency``, ``quality``.
    max_relative_latency: Latency budget relative to the large model.
    higher_is_better: The metric's direction.

  Returns:
    The chosen point (its ``quality`` is the table entry), or None when no
    evaluated point is within budget.
  """
  points = _valid_points(curve)
  points = points[points["relative_latency"]
                  <= max_relative_latency + TOLERANCE]
  return _first(points, ["quality", "relative_latency", "alpha"],
                [not higher_is_better, True, True])


def extract_entries(curve: pd.DataFrame, reference_quality: float, *,
                    higher_is_better: bool = True,
                    fractions=QUALITY_FRACTIONS) -> dict[str, Pick | None]:
  """All Table 2 entries of one method.

  Returns:
    ``{"speedup@1.0": Pick|None, "speedup@0.99": ..., "best_quality": ...}``.
  """
  entries: dict[str, Pick | None] = {
      speedup_key(f): fastest_matching(curve, reference_quality, f,
                                       higher_is_better=higher_is_better)
      for f in fractions}
  entries[BEST_QUALITY] = best_within_latency(
      curve, higher_is_better=higher_is_better)
  return entries



def speedup_key(fraction: float) -> str:
  """Entry name of the speed-up at ``fraction`` of the large quality."""
  return f"speedup@{fraction:g}"
