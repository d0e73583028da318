"""A synthetic results directory in the runner's schema, for tests and docs.

:func:`write_synthetic_results` writes ``manifest.json``, ``cells/*.json``
and ``cells/*.jsonl`` for a few tasks, methods and α values. Predictions are
the references with their last ``n`` words replaced by a filler word, so
quality falls as ``n`` grows and can be recomputed with the metric
registry; per-example times are word counts times a per-cell cost factor.
No model is involved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Sequence

from harness import metrics

FILLER = "xx"
REFERENCES = (
    "the small house stands at the end of the quiet green street",
    "we travelled by train to the old city and stayed for two days",
    "the committee approved the new budget after a long debate today",
    "heavy rain closed several roads in the north of the country",
    "the museum will open a new exhibition of modern art next week",
    "scientists found water ice in a crater near the lunar south pole",
)
DEFAULT_TASKS = {"wmt_ende": "bleu", "cnn_dm": "rouge2"}
DEFAULT_METHODS = ("spec_decode_lossy", "spec_cascade_token", "bild_star")
DEFAULT_ALPHAS = (0.0, 0.5, 1.0)
LARGE_NOISE, SMALL_NOISE = 1, 5
LARGE_COST, SMALL_COST = 1.0, 0.3
# Per-example timing jitter (a fraction), so latency intervals have width.
TIME_JITTER = 0.2


@dataclasses.dataclass(frozen=True)
class CellSpec:
  """One synthetic cell.

  Attributes:
    task: Task name.
    method: Method name (or autoregressive for references).
    role: Role value.
    alpha: Threshold (None for references).
    noise: Words replaced at the end of each prediction.
    cost: Seconds per reference word.
    temperature: Sampling temperature.
    gamma: Block size (None for references).
  """
  task: str
  method: str
  role: str
  alpha: float | None
  noise: int
  cost: float
  temperature: float = 1.0
  gamma: int | None = 5

  @property
  def cell_id(self) -> str:
    alpha = "ref" if self.alpha is None else f"a{self.alpha:g}"
    return (f"{self.task}-{self.method}-{self.role}-{alpha}-"
            f"t{self.temperature:g}-g{self.gamma}")


def method_cell(task, method, alpha, **kwargs) -> CellSpec:
  """A method cell: more α = more drafter, noisier and faster."""
  offset = {"spec_cascade_token": 0, "bild_star": 1}.get(method, 0)
  noise = LARGE_NOISE + round(alpha * (SMALL_NOISE - LARGE_NOISE)) + offset
  cost = 0.85 - 0.5 * alpha + 0.05 * offset
  return CellSpec(task, method, "method", alpha, noise, cost, **kwargs)


def reference_cells(task: str, temperature: float = 1.0) -> list[CellSpec]:
  """The large-only and small-only reference cells of a task."""
  return [CellSpec(task, "autoregressive", "reference_large", None,
                   LARGE_NOISE, LARGE_COST, temperature, None),
          CellSpec(task, "autoregressive", "reference_small", None,
                   SMALL_NOISE, SMALL_COST, temperature, None)]


def _prediction(reference: str, noise: int) -> str:
  words = reference.split()
  keep = max(len(words) - noise, 0)
  return " ".join(words[:keep] + [FILLER] * (len(words) - keep))


def _sha(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()


def _records(spec: CellSpec, num_examples: int) -> list[dict]:
  records = []
  for i, ref in enumerate(REFERENCES[:num_examples]):
    pred = _prediction(ref, spec.noise)
    jitter = 1 + TIME_JITTER * ((3 * i + spec.noise + len(spec.method)) % 4)
    time_s = spec.cost * len(ref.split()) * 1e-3 * jitter
    records.append({
        "cell_id": spec.cell_id, "example_id": f"ex{i}", "index": i,
        "prompt_sha256": _sha(f"prompt {i}"), "target_sha256": _sha(ref),
        "prediction": pred, "targets": [ref], "tokens": [], "num_tokens":
        len(pred.split()), "times_s": [time_s, time_s],
        "stats": {"drafter_steps": 1, "verifier_calls": 1}})
  return records


def _stats(spec: CellSpec) -> dict:
  rate = None if spec.alpha is None else 1.0 - spec.alpha
  return {"num_tokens": 10, "acceptance_rate": None,
          "mean_accepted_length": None, "acceptance_per_position": None,
          "rejection_rate": rate, "deferral_rate": rate,
          "predicted_speedup": None if spec.alpha is None
          else 1.0 / spec.cost, "measured_speedup": None if spec.alpha
          is None else 0.9 / spec.cost}


def summary(spec: CellSpec, records: list[dict], metric: str,
            relative_latency: float | None) -> dict:
  """The per-cell summary of ``spec`` in the runner's schema."""
  quality = metrics.compute_metrics(
      [metric], [tuple(r["targets"]) for r in records],
      [r["prediction"] for r in records])
  mean_s = sum(r["times_s"][0] for r in records) / len(records)
  return {
      "cell_id": spec.cell_id, "experiment": "synthetic",
      "cell": {"task": spec.task, "method": spec.method, "alpha": spec.alpha,
               "gamma": spec.gamma, "temperature": spec.temperature,
               "top_p": None, "max_decode_len": 80, "method_options": {},
               "drafter": "t5_small", "verifier": "t5_large",
               "pair": "t5_small->t5_large", "seed": 0,
               "num_examples": len(records), "num_trials": 2,
               "role": spec.role},
      "quality": quality, "headline_metric": metric, "quality_note": "",
      "latency": {"mean_s": mean_s, "per_trial_mean_s": [mean_s] * 2,
                  "compile_s": 0.1},
      "relative_latency": relative_latency,
      "cost_model": {"c_q": 0.1, "c_p": 1.0, "latency": spec.cost,
                     "relative_latency": spec.cost},
      "stats": _stats(spec), "provenance": {"git": "synthetic"}}


def write_cell(root: pathlib.Path, spec: CellSpec, metric: str,
               num_examples: int, relative_latency: float | None) -> None:
  """Writes one cell's records and summary under ``root/cells``."""
  cells = root / "cells"
  cells.mkdir(parents=True, exist_ok=True)
  records = _records(spec, num_examples)
  (cells / f"{spec.cell_id}.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in records))
  (cells / f"{spec.cell_id}.json").write_text(
      json.dumps(summary(spec, records, metric, relative_latency), indent=1))


def default_cells(tasks=DEFAULT_TASKS, methods=DEFAULT_METHODS,
                  alphas=DEFAULT_ALPHAS) -> list[CellSpec]:
  """References plus every (task, method, α) method cell."""
  specs = []
  for task in tasks:
    specs.extend(reference_cells(task))
    specs.extend(method_cell(task, m, a) for m in methods for a in alphas)
  return specs


def write_synthetic_results(root, specs: Sequence[CellSpec] | None = None, *,
                            tasks=DEFAULT_TASKS, num_examples: int = 4,
                            null_latency: bool = True) -> pathlib.Path:
  """Writes a results directory (manifest + cells) and returns its path.

  Args:
    root: The experiment directory to create.
    specs: Cells to write (default: :func:`default_cells` of ``tasks``).
    tasks: task -> headline metric.
    num_examples: Examples per cell (≤ len(REFERENCES)).
    null_latency: Leave ``relative_latency`` null so the report computes it
      from per-example times; otherwise write cost / large cost.
  """
  root = pathlib.Path(root)
  specs = list(specs) if specs is not None else default_cells(tasks)
  for spec in specs:
    rel = None if null_latency else spec.cost / LARGE_COST
    write_cell(root, spec, tasks[spec.task], num_examples, rel)
  (root / "manifest.json").write_text(json.dumps({
      "experiment": "synthetic", "config": "# synthetic",
      "cells": [s.cell_id for s in specs],
      "cost_calibration": {"c_q": 0.1, "c_p": 1.0}}, indent=1))
  return root
