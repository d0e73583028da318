"""Per-cell estimates: relative latency where the runner left it null, and
bootstrap confidence intervals for quality and relative latency.

Adds these columns to the cells DataFrame:
  ``relative_latency`` (filled), ``quality_low``/``quality_high``,
  ``latency_low``/``latency_high`` (95% intervals; NaN when a cell has no
  per-example records, no references or no timed examples).
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib

import numpy as np
import pandas as pd

from harness import metrics
from harness.report import bootstrap
from harness.report import load
from harness.results import latency as latency_lib

# Recomputed full-sample quality and the summary's may differ by round-off.
QUALITY_MATCH_TOLERANCE = 1e-6
INTERVAL_COLUMNS = ("quality_low", "quality_high", "latency_low",
                    "latency_high")


@dataclasses.dataclass(frozen=True)
class BootstrapReport:
  """What the bootstrap did, for the report's footnotes.

  Attributes:
    num_resamples: Resamples per task.
    num_cells: Cells with a quality interval.
    seconds: Wall-clock time of the whole bootstrap.
    notes: Warnings (quality mismatches, cells without records, ...).
  """
  num_resamples: int
  num_cells: int
  seconds: float
  notes: tuple[str, ...]


def _times_by_cell(examples: pd.DataFrame) -> dict[str, pd.DataFrame]:
  """cell_id -> per-example ``time_s`` and ``ref_time_s`` by example id."""
  return {cid: group.set_index("example_id")[["time_s", "ref_time_s"]]
          for cid, group in examples.groupby("cell_id")}


def _aligned(frame: pd.DataFrame | None, column: str,
             universe: pd.Index) -> np.ndarray:
  """[N] a column on the example universe (NaN where absent)."""
  if frame is None:
    return np.full(len(universe), np.nan)
  return frame[column].reindex(universe).to_numpy(float)


def latency_pair(row, times: dict[str, pd.DataFrame], universe=None
                 ) -> tuple[np.ndarray, np.ndarray, bool] | None:
  """([N] cell times, [N] reference times, paired) of a non-reference cell.

  Paired cells (records with ``ref_time_s``) are compared with their own
  reference times, others with the large model's cell; None when there is
  nothing to compare with (``harness.results.latency.pair_times``, the rule
  the runner and the merge use too). ``universe`` (default: the cell's
  examples) orders the examples.
  """
  own = times.get(row["cell_id"])
  if own is None:
    return None
  if universe is None:
    universe = own.index
  large = row["large_cell_id"]
  reference = (_aligned(times[large], "time_s", universe)
               if isinstance(large, str) and large in times else None)
  return latency_lib.pair_times(_aligned(own, "time_s", universe),
                                _aligned(own, "ref_time_s", universe),
                                reference)


def fill_relative_latency(cells: pd.DataFrame,
                          examples: pd.DataFrame) -> pd.DataFrame:
  """Fills null ``relative_latency`` from per-example times (large = 1)."""
  cells = cells.copy()
  times = _times_by_cell(examples)
  for i, row in cells.iterrows():
    if not math.isnan(row["relative_latency"]):
      continue
    if row["role"] == load.Role.REFERENCE_LARGE.value:
      cells.at[i, "relative_latency"] = 1.0
      continue
    pair = latency_pair(row, times)
    if pair is not None:
      cells.at[i, "relative_latency"] = latency_lib.relative_latency(
          pair[0], pair[1], paired=pair[2])
  return cells


def _quality_interval(row, records: pd.DataFrame, counts: np.ndarray,
                      universe: pd.Index, notes: list[str],
                      allow_unisolated: bool = False):
  """(low, high) of the headline metric on this cell's resamples."""
  if records.empty:
    notes.append(f"{row['cell_id']}: no per-example records, no quality CI")
    return math.nan, math.nan
  pos = universe.get_indexer(records["example_id"])
  extras = list(records["extra"])
  try:
    samples, full = bootstrap.quality_samples(
        row["headline_metric"], counts[:, pos], list(records["targets"]),
        list(records["prediction"]), extras,
        allow_unisolated=allow_unisolated)
  except metrics.MetricError as e:
    notes.append(f"{row['cell_id']}: quality not recomputable ({e})")
    return math.nan, math.nan
  if abs(full - row["quality"]) > QUALITY_MATCH_TOLERANCE * max(1, abs(full)):
    notes.append(f"{row['cell_id']}: recomputed {row['headline_metric']} "
                 f"{full:.4f} differs from the summary's {row['quality']:.4f}")
  return bootstrap.percentile_interval(samples)


def _latency_interval(row, times: dict[str, pd.DataFrame],
                      counts: np.ndarray, universe: pd.Index):
  """(low, high) of the cell's relative latency on the resamples."""
  if row["role"] == load.Role.REFERENCE_LARGE.value:
    return 1.0, 1.0
  pair = latency_pair(row, times, universe)
  if pair is None:
    return math.nan, math.nan
  samples = latency_lib.relative_latency_samples(counts, pair[0], pair[1],
                                                 paired=pair[2])
  return bootstrap.percentile_interval(samples)


def task_seed(seed: int, task: str) -> list[int]:
  """A per-task seed, stable when other tasks are added or removed."""
  return [seed, zlib.crc32(task.encode())]


def _task_intervals(task_cells, examples, num_resamples, seed, notes,
                    allow_unisolated=False):
  """{cell_id: (q_low, q_high, l_low, l_high)} for one task's cells."""
  records = examples[examples["cell_id"].isin(task_cells["cell_id"])]
  universe = pd.Index(sorted(records["example_id"].unique()))
  rng = np.random.default_rng(task_seed(seed, task_cells["task"].iloc[0]))
  counts = bootstrap.resample_counts(len(universe), num_resamples, rng)
  times = _times_by_cell(records)
  by_cell = dict(tuple(records.groupby("cell_id")))
  out = {}
  for _, row in task_cells.iterrows():
    cell_records = by_cell.get(row["cell_id"], records.iloc[:0])
    out[row["cell_id"]] = (
        *_quality_interval(row, cell_records, counts, universe, notes,
                           allow_unisolated),
        *_latency_interval(row, times, counts, universe))
  return out


def add_intervals(cells: pd.DataFrame, examples: pd.DataFrame, *,
                  num_resamples: int = bootstrap.DEFAULT_RESAMPLES,
                  seed: int = 0, allow_unisolated: bool = False
                  ) -> tuple[pd.DataFrame, BootstrapReport]:
  """Adds the :data:`INTERVAL_COLUMNS` (NaN when ``num_resamples`` is 0).

  Args:
    cells: Loaded cells (with references attached).
    examples: Loaded per-example records.
    num_resamples: Bootstrap resamples per task.
    seed: Base seed; each task derives its own with :func:`task_seed`.
    allow_unisolated: Recompute MBPP's pass@1 even where the audit hook is
      the only sandbox layer (the command line's opt-in).

  Returns:
    (cells with the interval columns, what the bootstrap did).
  """
  start = time.perf_counter()
  notes: list[str] = []
  intervals: dict[str, tuple[float, ...]] = {}
  if num_resamples > 0:
    for _, task_cells in cells.groupby("task", sort=True):
      intervals.update(_task_intervals(task_cells, examples, num_resamples,
                                       seed, notes, allow_unisolated))
  cells = cells.copy()
  nan_row = (math.nan,) * len(INTERVAL_COLUMNS)
  values = np.array([intervals.get(c, nan_row) for c in cells["cell_id"]],
                    float).reshape(len(cells), len(INTERVAL_COLUMNS))
  for j, column in enumerate(INTERVAL_COLUMNS):
    cells[column] = values[:, j]
  done = int(np.isfinite(cells["quality_low"]).sum())
  return cells, BootstrapReport(num_resamples, done,
                                time.perf_counter() - start, tuple(notes))
