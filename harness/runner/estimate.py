"""The ``--dry_run`` time estimate: a cost model without loading models.

Estimate of one cell = decodes × max_decode_len × s, where s is the seconds
per decoding step of the verifier (method and reference_large cells: a
method is assumed no faster than the verifier alone, so this is an upper
bound for any method at relative latency ≤ 1) or of the drafter
(reference_small cells). At batch size 1 a step reads every weight and the
KV cache a chip holds once, so

  s = overhead + max(bytes per chip / (chip bandwidth × fraction),
                     2 × params per chip / chip FLOPs)
      + (split > 1) × 2 × layers × ``COLLECTIVE_S``

with the chip's figures from ``harness.models.chips.CHIPS`` (CPU: bandwidth
measured here). Where the chip's entry carries figures measured by
``scripts/accelerator_check.sh`` (the H200's), the bandwidth is the share
a decoding step reaches (``bandwidth_fraction``) and the overhead is
``layer_s`` per layer; elsewhere the fraction is 1 and the overhead a flat
``ACCELERATOR_STEP_OVERHEAD_S``, bytes per chip from ``preflight.footprint`` (the verifier split
``model_parallel`` ways) and two all-reduces per layer when split. Without
footprints (a model whose shapes are unknown) a step costs
``DEFAULT_STEP_S``. Under the paired latency protocol (the default) every
timed decode of a method or reference_small cell is accompanied by one
verifier decode of its reference (``reference_decodes``), costed like a
reference_large decode. Compile time, per-cell calibration, early EOS and
the drafter's share of a method's steps are ignored; real runs record the
calibrated constants.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

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
    seconds: estimated wall time.
    step_s: {"drafter": s, "verifier": s} of the first cell's pair.
  """
  num_cells: int
  num_decodes: int
  seconds: float
  step_s: dict[str, float]


def step_seconds(footprint, kind: topologies.Chip) -> float:
  """Seconds per decoding step of one model (module docstring)."""
  if footprint is None:
    return DEFAULT_STEP_S
  cpu = kind.name == topologies.CPU
  if cpu:
    overhead = CPU_STEP_OVERHEAD_S
  elif kind.layer_s is not None:
    overhead = kind.layer_s * footprint.num_layers
  else:
    overhead = ACCELERATOR_STEP_OVERHEAD_S
  bandwidth = kind.bandwidth_bytes_s * kind.bandwidth_fraction
  flops = 2 * footprint.num_params / footprint.split
  collectives = (2 * footprint.num_layers * COLLECTIVE_S
                 if footprint.split > 1 else 0.0)
  return overhead + max(footprint.bytes / bandwidth,
                        flops / kind.flops) + collectives


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
  steps = {pair: {role: step_seconds(footprints.get(pair, {}).get(role), kind)
                  for role in ("drafter", "verifier")}
           for pair in {c.pair for c in cells}}
  decodes = [execute.num_decodes(c) for c in cells]
  paired = [reference_decodes(c, protocol) for c in cells]
  seconds = sum(
      c.max_decode_len * (n * steps[c.pair][
          "drafter" if c.role is schema.Role.REFERENCE_SMALL else "verifier"]
                          + r * steps[c.pair]["verifier"])
      for n, r, c in zip(decodes, paired, cells))
  first = steps[cells[0].pair] if cells else {"drafter": 0.0, "verifier": 0.0}
  return Estimate(num_cells=len(cells),
                  num_decodes=int(np.sum(decodes) + np.sum(paired)),
                  seconds=float(seconds), step_s=first)
