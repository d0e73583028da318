"""Relative latency: the one definition the runner, merge and report share.

A cell's relative latency compares its per-example decode times with those of
the verifier-only autoregressive reference of the same (task, pair, T, top-P,
length limit), on the same examples and PRNG keys. Two protocols exist
(``docs/timing.md``):

* ``paired`` (the default): every timed example's record carries the
  reference's times measured beside its own, trial by trial, in alternating
  order (``ExampleRecord.ref_times_s``). Relative latency is the geometric
  mean over timed examples of mean(times_s) / mean(ref_times_s); load drift
  between cells cancels in each ratio.
* ``unpaired`` (the original protocol, and every results file written before
  the paired one): the reference times are those of the reference_large
  cell's own records, measured in its own time window. Relative latency is
  the ratio of the means over the examples timed in both.

Bootstrap samples (``relative_latency_samples``) apply the same statistic to
resample counts over examples, so the report's intervals and the point
estimate agree.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

PAIRED = "paired"
UNPAIRED = "unpaired"
PROTOCOLS = (PAIRED, UNPAIRED)
# Per-example record fields holding wall times per trial.
TIMES = "times_s"
REF_TIMES = "ref_times_s"


def mean_times(records: Sequence[Mapping[str, Any]],
               key: str = TIMES) -> np.ndarray:
  """[N] each record's mean of ``record[key]`` over trials (NaN if absent)."""
  return np.asarray([float(np.mean(r[key])) if r.get(key) else math.nan
                     for r in records], float).reshape(len(records))


def _usable(times: np.ndarray, reference: np.ndarray, paired: bool
            ) -> np.ndarray:
  ok = np.isfinite(times) & np.isfinite(reference)
  if paired:  # Logs need positive times.
    ok &= (times > 0) & (reference > 0)
  return ok


def relative_latency(times: Sequence[float] | np.ndarray,
                     reference: Sequence[float] | np.ndarray, *,
                     paired: bool) -> float:
  """A cell's latency relative to its reference (NaN if nothing to compare).

  Args:
    times: [N] the cell's per-example mean times (NaN = not timed).
    reference: [N] the reference's per-example mean times on the same
      examples: measured beside the cell's (paired) or in the reference
      cell's own window (unpaired).
    paired: geometric mean of the per-example ratios (True) or ratio of the
      means (False), over examples finite in both.

  Returns:
    The relative latency (1 = as fast as the reference).
  """
  times = np.asarray(times, float)
  reference = np.asarray(reference, float)
  ok = _usable(times, reference, paired)
  if not ok.any():
    return math.nan
  if paired:
    return float(np.exp(np.mean(np.log(times[ok] / reference[ok]))))
  return float(np.mean(times[ok])) / float(np.mean(reference[ok]))


def pair_times(times: Sequence[float] | np.ndarray,
               ref_times: Sequence[float] | np.ndarray,
               reference: Sequence[float] | np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, bool] | None:
  """What a cell's times are compared with: the pairing rule, once.

  Args:
    times: [N] the cell's per-example mean times (NaN = not timed).
    ref_times: [N] the reference times measured beside them (NaN = none).
    reference: [N] the reference cell's own times on the same examples, or
      None when that cell is not available.

  Returns:
    ``(times, reference times, paired)`` for :func:`relative_latency`: the
    cell's own reference times when any example has one (paired protocol),
    else the reference cell's (unpaired), else None (nothing to compare).
  """
  times = np.asarray(times, float)
  ref_times = np.asarray(ref_times, float)
  if (~np.isnan(ref_times)).any():
    return times, ref_times, True
  if reference is None:
    return None
  return times, np.asarray(reference, float), False


def relative_latency_samples(counts: np.ndarray,
                             times: Sequence[float] | np.ndarray,
                             reference: Sequence[float] | np.ndarray, *,
                             paired: bool) -> np.ndarray:
  """[B] ``relative_latency`` on each bootstrap resample.

  Args:
    counts: [B, N] how often each example is in each resample.
    times: [N] the cell's per-example mean times.
    reference: [N] the reference's, as in :func:`relative_latency`.
    paired: as in :func:`relative_latency`.
  """
  times = np.asarray(times, float)
  reference = np.asarray(reference, float)
  ok = _usable(times, reference, paired)
  used = counts[:, ok]
  with np.errstate(invalid="ignore", divide="ignore"):
    if paired:
      logs = np.log(times[ok] / reference[ok])
      return np.exp((used @ logs) / used.sum(axis=1))
    return (used @ times[ok]) / (used @ reference[ok])


def _by_index(records: Sequence[Mapping[str, Any]], key: str
              ) -> dict[int, float]:
  return {int(r["index"]): t for r, t in zip(records, mean_times(records, key))}


def _mean_modeled(records: Sequence[Mapping[str, Any]], key: str
                  ) -> float | None:
  values = [r[key] for r in records if r.get(key) is not None]
  return float(np.mean(values)) if values else None


def _finite_or_none(value: float) -> float | None:
  return None if value is None or not math.isfinite(value) else value


def from_records(records: Sequence[Mapping[str, Any]],
                 reference: Sequence[Mapping[str, Any]] | None,
                 num_timed: int) -> tuple[float | None, float | None]:
  """(measured, cost-model) relative latency of a cell from its records.

  Paired records are compared with their own ``ref_times_s`` and
  ``ref_modeled_s``; unpaired ones with the reference cell's records
  (matched by example index), or give (None, None) when ``reference`` is
  None.

  Args:
    records: the cell's per-example records (run order).
    reference: the reference_large cell's records, or None.
    num_timed: the latency subset: the first this-many records.
  """
  timed = list(records[:num_timed])
  ref_timed = None if reference is None else list(reference[:num_timed])
  aligned = None
  if ref_timed is not None:
    by_index = _by_index(ref_timed, TIMES)
    aligned = [by_index.get(int(r["index"]), math.nan) for r in timed]
  pair = pair_times(mean_times(timed), mean_times(timed, REF_TIMES), aligned)
  if pair is None:
    return None, None
  measured = relative_latency(pair[0], pair[1], paired=pair[2])
  ref_modeled = (_mean_modeled(timed, "ref_modeled_s") if pair[2]
                 else _mean_modeled(ref_timed, "modeled_s"))
  modeled = _mean_modeled(timed, "modeled_s")
  cost = modeled / ref_modeled if modeled is not None and ref_modeled else None
  return _finite_or_none(measured), cost
