"""The ``--dry_run`` time estimate: a cost model without loading models.

One decode costs prefill + L × s:

* L, the output length: the task's measured typical length where the
  project has one (``tasks.typical_output_len``), else the cell's
  ``max_decode_len``. The estimate with every decode at its maximum is
  reported beside it as the upper bound.
* s, the seconds per decoding step of the verifier (method and
  reference_large cells: a method is assumed no faster than the verifier
  alone, so this bounds any method at relative latency ≤ 1) or of the
  drafter (reference_small cells). At batch size 1 a step reads the weights
  a step uses (T5: the decoder's) and the KV cache once:

    s = overhead + max(step bytes per chip / (chip bandwidth × fraction),
                       2 × step params per chip / chip FLOPs)
        + (split > 1) × 2 × layers × ``COLLECTIVE_S``

* prefill, once per decode: every weight read once and the prompt through
  the model (T5: the encoder over the prompt):
  overhead + max(weight bytes / bandwidth, prefill FLOPs / chip FLOPs).

The chip's figures come from ``harness.models.chips.CHIPS`` (CPU: bandwidth
measured here). Where the chip's entry carries figures measured by
``scripts/accelerator_check.sh`` (the H200's), the bandwidth is the share
a decoding step reaches (``bandwidth_fraction``) and the overhead is
``layer_s`` per layer; elsewhere the fraction is 1 and the overhead a flat
``ACCELERATOR_STEP_OVERHEAD_S`` (``CPU_STEP_OVERHEAD_S`` on a CPU). Bytes
per chip come from ``preflight.footprint`` (the verifier split
``model_parallel`` ways), with two all-reduces per layer when split.
Without footprints (a model whose shapes are unknown) a step costs
``DEFAULT_STEP_S`` and prefill nothing. Under the paired latency protocol
(the default) every timed decode of a method or reference_small cell is
accompanied by one verifier decode of its reference
(``reference_decodes``), costed like a reference_large decode. Compile
time, per-cell calibration and the drafter's share of a method's steps are
ignored; real runs record the calibrated constants. ``assumptions`` says
all this in one line.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from harness import tasks
from harness.runner import cells as cells_lib
from harness.runner import topologies
from harness.runner import execute
from harness.results import latency as latency_lib
from harness.results import schema

CPU_STEP_OVERHEAD_S = 2e-4  # Loop overhead per step on a CPU.
ACCELERATOR_STEP_OVERHEAD_S = 5e-5  # Kernel launches per step, roughly.
COLLECTIVE_S = 1e-5  # One small all-reduce over a model-parallel group.
DEFAULT_STEP_S = 1e-2  # A step of an unknown model.


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Dry-run totals.

  Attributes:
    num_cells: cells counted.
    num_decodes: decodes (examples × trials) over those cells, the
      paired protocol's reference decodes included.
    seconds: estimated wall time (typical output lengths where known).
    step_s: {"drafter": s, "verifier": s} of the first cell's pair.
    seconds_max: the same with every decode at its maximum length.
    prefill_s: {"drafter": s, "verifier": s} of the first cell's pair.
    typical: task -> the typical output length used (tasks that have one).
  """
  num_cells: int
  num_decodes: int
  seconds: float
  step_s: dict[str, float]
  seconds_max: float = 0.0
  prefill_s: dict[str, float] = dataclasses.field(default_factory=dict)
  typical: dict[str, int] = dataclasses.field(default_factory=dict)


def _overhead(footprint, kind: topologies.Chip) -> float:
  if kind.name == topologies.CPU:
    return CPU_STEP_OVERHEAD_S
  if kind.layer_s is not None:
    return kind.layer_s * footprint.num_layers
  return ACCELERATOR_STEP_OVERHEAD_S


def _bandwidth(kind: topologies.Chip) -> float:
  return kind.bandwidth_bytes_s * kind.bandwidth_fraction


def step_seconds(footprint, kind: topologies.Chip) -> float:
  """Seconds per decoding step of one model (module docstring)."""
  if footprint is None:
    return DEFAULT_STEP_S
  step_params = footprint.num_params * (
      footprint.step_bytes - footprint.kv_bytes) / footprint.weight_bytes
  flops = 2 * step_params / footprint.split
  collectives = (2 * footprint.num_layers * COLLECTIVE_S
                 if footprint.split > 1 else 0.0)
  return _overhead(footprint, kind) + max(
      footprint.step_bytes / _bandwidth(kind), flops / kind.flops
  ) + collectives


def prefill_seconds(footprint, kind: topologies.Chip) -> float:
  """Seconds of one decode's prefill (module docstring)."""
  if footprint is None:
    return 0.0
  return _overhead(footprint, kind) + max(
      footprint.bytes / _bandwidth(kind), footprint.prefill_flops / kind.flops)


def output_len(cell: cells_lib.Cell) -> int:
  """The output length a decode of ``cell`` is costed at."""
  typical = tasks.typical_output_len(cell.task_run.task)
  return (cell.max_decode_len if typical is None
          else min(typical, cell.max_decode_len))


def assumptions(est: Estimate, kind: topologies.Chip) -> str:
  """The estimate's assumptions, in one line."""
  if kind.name == topologies.CPU:
    overhead = f"{CPU_STEP_OVERHEAD_S * 1e6:.0f} µs per step (CPU)"
  elif kind.layer_s is not None:
    overhead = (f"{kind.layer_s * 1e6:.0f} µs per layer per step and "
                f"{kind.bandwidth_fraction:.0%} of the vendor bandwidth "
                f"(measured on {kind.title})")
  else:
    overhead = (f"{ACCELERATOR_STEP_OVERHEAD_S * 1e6:.0f} µs per step and "
                f"the vendor bandwidth ({kind.title}: not measured)")
  lengths = (", ".join(f"{t} {n}" for t, n in sorted(est.typical.items()))
             or "none known")
  return ("assumed: prefill once per decode (T5: the encoder once); "
          f"typical output lengths where measured ({lengths}), else each "
          "task's maximum; every method as slow as the verifier alone; "
          f"overhead {overhead}; compile and calibration time excluded")


def reference_decodes(cell: cells_lib.Cell, protocol: str) -> int:
  """Verifier decodes the paired protocol times beside ``cell``'s own."""
  if not execute.is_paired(cell, protocol):
    return 0
  return cell.num_trials * cell.task_run.latency_examples


def estimate(cells: Sequence[cells_lib.Cell],
             kind: topologies.Chip | None = None,
             footprints: Mapping | None = None,
             protocol: str = latency_lib.PAIRED) -> Estimate:
  """Decodes and estimated seconds of running ``cells`` (module docstring).

  Args:
    cells: the cells.
    kind: the chip (default: this machine's CPU, measured).
    footprints: pair -> {"drafter": Footprint, "verifier": Footprint}
      (``preflight.check``); a missing pair costs ``DEFAULT_STEP_S`` a step.
    protocol: the experiment's latency protocol ("paired" adds the
      reference decodes).
  """
  kind = kind or topologies.cpu_kind()
  footprints = footprints or {}
  roles = ("drafter", "verifier")
  pairs = {c.pair for c in cells}
  steps = {pair: {role: step_seconds(footprints.get(pair, {}).get(role), kind)
                  for role in roles} for pair in pairs}
  prefill = {pair: {role: prefill_seconds(footprints.get(pair, {}).get(role),
                                          kind)
                    for role in roles} for pair in pairs}
  decodes = [execute.num_decodes(c) for c in cells]
  paired = [reference_decodes(c, protocol) for c in cells]

  def total(length) -> float:
    seconds = 0.0
    for n, r, c in zip(decodes, paired, cells):
      role = ("drafter" if c.role is schema.Role.REFERENCE_SMALL
              else "verifier")
      own = prefill[c.pair][role] + length(c) * steps[c.pair][role]
      ref = (prefill[c.pair]["verifier"]
             + length(c) * steps[c.pair]["verifier"])
      seconds += n * own + r * ref
    return seconds

  typical = {c.task_run.task: output_len(c) for c in cells
             if tasks.typical_output_len(c.task_run.task) is not None}
  zero = {"drafter": 0.0, "verifier": 0.0}
  return Estimate(num_cells=len(cells),
                  num_decodes=int(np.sum(decodes) + np.sum(paired)),
                  seconds=float(total(output_len)),
                  step_s=steps[cells[0].pair] if cells else zero,
                  seconds_max=float(total(lambda c: c.max_decode_len)),
                  prefill_s=prefill[cells[0].pair] if cells else zero,
                  typical=typical)
