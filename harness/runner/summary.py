"""Per-cell summaries: quality, latency, cost model and rates.

Every quantity is defined in ``schema``'s module docstring; this module only
computes them from the per-example records. Relative latency comes from
``harness.results.latency`` (also used by the merge and the report).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness import metrics
from harness import tasks
from harness.decoding.speculative import SUPPORT_MASS_UNIT
from harness.results import latency as latency_lib
from harness.results import merge
from harness.results import schema
from harness.runner import calibration as cal
from harness.runner import cells as cells_lib

NO_REFERENCES_NOTE = "no references in this data source: latency only"


def quality(task: str, records: Sequence[schema.ExampleRecord], *,
            allow_unisolated: bool = False
            ) -> tuple[dict[str, float | None], str | None]:
  """(metric values, note); values are None with a note when uncomputable.
  ``allow_unisolated``: MBPP's opt-in (``metrics.compute_metrics``)."""
  spec = tasks.get_task(task)
  targets = [tuple(r["targets"]) for r in records]
  predictions = [r["prediction"] for r in records]
  extras = [r.get("extra", {}) for r in records]
  try:
    values = metrics.compute_metrics(spec.metrics, targets, predictions,
                                     extras, allow_unisolated=allow_unisolated)
  except metrics.MetricError as err:
    note = NO_REFERENCES_NOTE if not any(targets) else str(err)
    return {m: None for m in spec.metrics}, note
  return {k: float(v) for k, v in values.items()}, None


def latency(records: Sequence[schema.ExampleRecord], num_timed: int,
            compile_s: float) -> schema.Latency:
  """Mean over the timed subset of each example's mean over trials."""
  timed = [r["times_s"] for r in records[:num_timed]]
  num_trials = min(len(t) for t in timed)
  per_trial = [float(np.mean([t[k] for t in timed]))
               for k in range(num_trials)]
  return schema.Latency(mean_s=float(np.mean([np.mean(t) for t in timed])),
                        per_trial_mean_s=per_trial, compile_s=compile_s,
                        num_timed_examples=len(timed))


def _half_mean(values: list[float]) -> float | None:
  return float(np.mean(values)) if values else None


def reference_drift(records: Sequence[schema.ExampleRecord], num_timed: int,
                    key: str) -> dict[str, float | None]:
  """Where the reference's time stood at the start and end of a cell.

  Args:
    records: the cell's records.
    num_timed: the latency subset size.
    key: ``"ref_times_s"`` (paired records) or ``"times_s"`` (the reference
      cell itself).

  Returns:
    ``reference_mean_s`` (mean over the subset of the mean over trials),
    ``reference_first_s`` (mean of the first trial's times over the first
    half of the subset) and ``reference_last_s`` (the last trial's over the
    second half); None where the records have no such times.
  """
  timed = [r[key] for r in records[:num_timed] if r.get(key)]
  if not timed:
    return {"reference_mean_s": None, "reference_first_s": None,
            "reference_last_s": None}
  half = (len(timed) + 1) // 2
  return {"reference_mean_s": float(np.mean([np.mean(t) for t in timed])),
          "reference_first_s": _half_mean([t[0] for t in timed[:half]]),
          "reference_last_s": _half_mean([t[-1] for t in timed[-half:]])}


def totals(records: Sequence[schema.ExampleRecord]) -> dict[str, Any]:
  """Counters summed over examples (per-position lists element-wise)."""
  out: dict[str, Any] = {}
  for record in records:
    for name, value in record["stats"].items():
      value = np.asarray(value, np.int64)
      out[name] = out[name] + value if name in out else value
  return {k: v.tolist() for k, v in out.items()}


def _ratio(num: float, den: float) -> float | None:
  return float(num) / float(den) if den else None


def _per_position(t: dict[str, Any]) -> list[float | None] | None:
  if "evaluated_per_position" not in t:
    return None
  return [_ratio(a, e) for a, e in zip(t["accepted_per_position"],
                                       t["evaluated_per_position"])]


def cell_stats(cell: schema.CellConfig,
               records: Sequence[schema.ExampleRecord],
               costs: schema.CostModel | schema.Calibration,
               relative: float | None) -> schema.CellStats:
  """Acceptance, rejection and deferral rates and the two speed-ups.

  Args:
    cell: the cell's config (``Cell.to_json()``).
    records: its per-example records.
    costs: anything holding the calibrated ``c_q`` and ``c_p``.
    relative: measured relative latency, or None.
  """
  t = totals(records)
  speculative = t.get("drafts_evaluated", 0) > 0
  acceptance = _ratio(t["drafts_accepted"], t["drafts_evaluated"]) if (
      speculative) else None
  predicted = None
  gamma = cell["gamma"]
  if acceptance is not None and gamma is not None:
    predicted = cal.leviathan_speedup(acceptance, gamma,
                                      cal.cost_ratio(costs, gamma))
  ar = cell["method"] == cells_lib.AUTOREGRESSIVE
  return schema.CellStats(
      num_tokens=int(t["num_tokens"]),
      mean_num_tokens=t["num_tokens"] / len(records),
      acceptance_rate=acceptance,
      mean_accepted_length=_ratio(t["num_tokens"], t["verifier_calls"])
      if speculative else None,
      acceptance_per_position=_per_position(t) if speculative else None,
      rejection_rate=_ratio(t["rejections"], t["verifier_calls"])
      if speculative else None,
      deferral_rate=None if ar else _ratio(t["deferrals"], t["num_tokens"]),
      predicted_speedup=predicted,
      measured_speedup=None if not relative else 1.0 / relative,
      drafter_support_mass=(
          t["support_mass_e5"] * SUPPORT_MASS_UNIT / t["drafts_evaluated"]
          if speculative and "support_mass_e5" in t else None),
      totals=t)


def modeled_latency(records: Sequence[schema.ExampleRecord],
                    num_timed: int) -> float:
  return float(np.mean([r["modeled_s"] for r in records[:num_timed]]))


def summarize(experiment: str, cell: cells_lib.Cell,
              records: Sequence[schema.ExampleRecord], compile_s: float,
              calibration: schema.Calibration,
              reference: Sequence[schema.ExampleRecord] | None,
              provenance: schema.Provenance,
              extra_latency: dict[str, Any] | None = None, *,
              allow_unisolated: bool = False) -> schema.CellSummary:
  """The ``schema.CellSummary`` of a finished cell.

  Args:
    experiment: the experiment name.
    cell: the cell.
    records: its per-example records.
    compile_s: wall time of its warm-up calls.
    calibration: the cost-model constants its records were priced with.
    reference: the reference_large cell's records (unpaired protocol), or
      None (paired records carry their own reference times).
    provenance: the run's provenance (with the cell's host state).
    extra_latency: more ``schema.Latency`` fields (protocol, drift).
    allow_unisolated: MBPP's opt-in to the audit hook as the only sandbox
      layer (``--allow_unisolated_mbpp``).
  """
  num_timed = cell.task_run.latency_examples
  values, note = quality(cell.task, records,
                         allow_unisolated=allow_unisolated)
  cost_model = schema.CostModel(
      c_q=calibration["c_q"], c_p=dict(calibration["c_p"]),
      latency=modeled_latency(records, num_timed), relative_latency=None)
  if "prompt_len" in calibration:
    cost_model["prompt_len"] = calibration["prompt_len"]
  summary = schema.CellSummary(
      cell_id=cell.cell_id, experiment=experiment, cell=cell.to_json(),
      quality=values, headline_metric=tasks.get_task(cell.task).headline_metric,
      quality_note=note,
      latency=dict(latency(records, num_timed, compile_s),
                   **(extra_latency or {})),
      relative_latency=None, cost_model=cost_model,
      stats=cell_stats(cell.to_json(), records, calibration, None),
      provenance=provenance)
  if cell.role is schema.Role.REFERENCE_LARGE:
    reference = records
  measured, modeled = latency_lib.from_records(records, reference, num_timed)
  return merge.with_relative(summary, measured, modeled)
