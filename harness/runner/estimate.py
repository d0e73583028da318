"""The ``--dry_run`` time estimate: a cost model without loading models.

One decode costs prefill + L × s:

* L, the output length: the task's measured typical length where the
  project has one (``tasks.typical_output_len``), else the cell's
  ``max_decode_len``; the prompt prefill reads is likewise the task's
  measured typical prompt length (``tasks.typical_input_len``), else its
  ``max_input_len``. The estimate with every decode at its maximum is
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
measured here). The overhead is the decoding loop's own cost per iteration
(``Chip.step_overhead_s``, measured by ``scripts/accelerator_check.sh``;
on a CPU measured now by ``loop_overhead.cpu_step_overhead``; elsewhere the
stated default ``ACCELERATOR_STEP_OVERHEAD_S``, "not measured"), plus
``layer_s`` per layer where measured. Where the chip's entry carries a
measured ``bandwidth_fraction`` (the H200's), the bandwidth is the share a
decoding step reaches. Bytes per chip come from ``preflight.footprint``
(the verifier split ``model_parallel`` ways), with two all-reduces per
layer when split. A model whose shapes are unknown (no checkpoint and no
declared size) has no step time: the cells that need it are left out of
the total and named (``Estimate.unknown``). Under the paired latency
protocol (the default) every timed decode of a method or reference_small
cell is accompanied by one verifier decode of its reference
(``reference_decodes``), costed like a reference_large decode. Compile
time, per-cell calibration and the drafter's share of a method's steps are
ignored; real runs record the calibrated constants. ``assumptions`` says
all this in one line. :func:`cell_seconds` is the per-cell figure, for
placement and for dealing work by estimated time.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from harness import tasks
from harness.runner import cells as cells_lib
from harness.runner import topologies
from harness.runner import execute
from harness.runner import loop_overhead
from harness.results import latency as latency_lib
from harness.results import schema

# Loop cost per step of a chip whose table entry has no measured figure.
ACCELERATOR_STEP_OVERHEAD_S = 5e-5
COLLECTIVE_S = 1e-5  # One small all-reduce over a model-parallel group.
ROLES = ("drafter", "verifier")


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Dry-run totals.

  Attributes:
    num_cells: cells counted.
    num_decodes: decodes (examples × trials) over those cells, the
      paired protocol's reference decodes included.
    seconds: estimated wall time (typical output lengths where known).
    step_s: {"drafter": s, "verifier": s} of the first cell's pair (None:
      the model's size is unknown).
    seconds_max: the same with every decode at its maximum length.
    prefill_s: {"drafter": s, "verifier": s} of the first cell's pair, at
      its task's typical prompt length where known.
    typical: task -> the typical output length used (tasks that have one).
    typical_input: task -> the typical prompt length used (tasks that have
      one).
    unknown: "pair role" of each model whose size is unknown.
    unknown_cells: cells left out of ``seconds`` for that reason.
  """
  num_cells: int
  num_decodes: int
  seconds: float
  step_s: dict[str, float | None]
  seconds_max: float = 0.0
  prefill_s: dict[str, float | None] = dataclasses.field(
      default_factory=dict)
  typical: dict[str, int] = dataclasses.field(default_factory=dict)
  typical_input: dict[str, int] = dataclasses.field(default_factory=dict)
  unknown: tuple[str, ...] = ()
  unknown_cells: int = 0


def loop_seconds(kind: topologies.Chip) -> float:
  """The decoding loop's own cost per step on ``kind`` (module docstring)."""
  if kind.step_overhead_s is not None:
    return kind.step_overhead_s
  if kind.name == topologies.CPU:
    return loop_overhead.cpu_step_overhead()
  return ACCELERATOR_STEP_OVERHEAD_S


def _overhead(footprint, kind: topologies.Chip) -> float:
  layers = (kind.layer_s * footprint.num_layers
            if kind.layer_s is not None else 0.0)
  return loop_seconds(kind) + layers


def _bandwidth(kind: topologies.Chip) -> float:
  return kind.bandwidth_bytes_s * kind.bandwidth_fraction


def step_seconds(footprint, kind: topologies.Chip) -> float | None:
  """Seconds per decoding step of one model (module docstring); None when
  its footprint (its size) is unknown."""
  if footprint is None:
    return None
  step_params = footprint.num_params * (
      footprint.step_bytes - footprint.kv_bytes) / footprint.weight_bytes
  flops = 2 * step_params / footprint.split
  collectives = (2 * footprint.num_layers * COLLECTIVE_S
                 if footprint.split > 1 else 0.0)
  return _overhead(footprint, kind) + max(
      footprint.step_bytes / _bandwidth(kind), flops / kind.flops
  ) + collectives


def prefill_seconds(footprint, kind: topologies.Chip,
                    input_len: int | None = None) -> float | None:
  """Seconds of one decode's prefill (module docstring) at a prompt of
  ``input_len`` tokens (None: the task's maximum); None when unknown."""
  if footprint is None:
    return None
  return _overhead(footprint, kind) + max(
      footprint.bytes / _bandwidth(kind),
      footprint.prefill_flops_at(input_len) / kind.flops)


def input_len(cell: cells_lib.Cell) -> int | None:
  """The prompt length a decode of ``cell`` is costed at: the task's
  measured typical length (``tasks.typical_input_len``), or None (its
  maximum)."""
  return tasks.typical_input_len(cell.task_run.task)


def output_len(cell: cells_lib.Cell) -> int:
  """The output length a decode of ``cell`` is costed at."""
  typical = tasks.typical_output_len(cell.task_run.task)
  return (cell.max_decode_len if typical is None
          else min(typical, cell.max_decode_len))


def overhead_text(kind: topologies.Chip) -> str:
  """Where the per-step overhead comes from, for the assumptions line."""
  if kind.step_overhead_s is None and kind.name == topologies.CPU:
    text = loop_overhead.describe(loop_overhead.cpu_step_overhead())
  elif kind.step_overhead_s is not None:
    text = (f"{kind.step_overhead_s * 1e6:.0f} µs per step (the loop, "
            f"measured on {kind.title})")
  else:
    text = (f"{ACCELERATOR_STEP_OVERHEAD_S * 1e6:.0f} µs per step (the "
            f"loop, {kind.title}: not measured)")
  if kind.layer_s is not None:
    text += (f" + {kind.layer_s * 1e6:.0f} µs per layer per step and "
             f"{kind.bandwidth_fraction:.0%} of the vendor bandwidth "
             f"(measured on {kind.title})")
  elif kind.name == topologies.CPU:
    text += " and the bandwidth of a 256 MiB array copy here"
  else:
    text += f" and the vendor bandwidth ({kind.title}: not measured)"
  return text


def assumptions(est: Estimate, kind: topologies.Chip) -> str:
  """The estimate's assumptions, in one line."""
  lengths = (", ".join(f"{t} {n}" for t, n in sorted(est.typical.items()))
             or "none known")
  prompts = (", ".join(f"{t} {n}" for t, n in sorted(
      est.typical_input.items())) or "none known")
  unknown = ""
  if est.unknown:
    unknown = (f"; not estimated (size unknown: no checkpoint and no "
               f"declared size; or no layout fits): {', '.join(est.unknown)}"
               f", so {est.unknown_cells} cells are left out of the total")
  return ("assumed: prefill once per decode (T5: the encoder once); "
          f"typical prompt lengths where measured ({prompts}) and typical "
          f"output lengths where measured ({lengths}), else each task's "
          "maximum; every method as slow as the verifier alone; "
          f"overhead {overhead_text(kind)}; compile and calibration time "
          f"excluded{unknown}")


def reference_decodes(cell: cells_lib.Cell, protocol: str) -> int:
  """Verifier decodes the paired protocol times beside ``cell``'s own."""
  if not execute.is_paired(cell, protocol):
    return 0
  return cell.num_trials * cell.task_run.latency_examples


def _costs(pairs, kind: topologies.Chip, footprints: Mapping):
  """(steps, prefill): pair -> role -> seconds or None."""
  steps = {pair: {role: step_seconds(footprints.get(pair, {}).get(role), kind)
                  for role in ROLES} for pair in pairs}
  prefill = {pair: {role: prefill_seconds(footprints.get(pair, {}).get(role),
                                          kind)
                    for role in ROLES} for pair in pairs}
  return steps, prefill


def _role(cell: cells_lib.Cell) -> str:
  return ("drafter" if cell.role is schema.Role.REFERENCE_SMALL
          else "verifier")


def cell_seconds(cells: Sequence[cells_lib.Cell],
                 kind: topologies.Chip | None = None,
                 footprints: Mapping | None = None,
                 protocol: str = latency_lib.PAIRED,
                 at_maximum: bool = False) -> list[float | None]:
  """Estimated seconds of each cell run alone on one chip set (module
  docstring), its paired reference decodes included; None for a cell whose
  model's size is unknown.

  Args:
    cells: the cells.
    kind: the chip (default: this machine's CPU, measured).
    footprints: pair -> {"drafter": Footprint, "verifier": Footprint}
      (``preflight.check``) on the chip set the cell runs on.
    protocol: the experiment's latency protocol.
    at_maximum: every decode at its maximum length (the upper bound).
  """
  kind = kind or topologies.cpu_kind()
  footprints = footprints or {}
  steps, _ = _costs({c.pair for c in cells}, kind, footprints)
  out = []
  for c in cells:
    length = c.max_decode_len if at_maximum else output_len(c)
    prompt = None if at_maximum else input_len(c)
    prints = footprints.get(c.pair, {})
    own = (steps[c.pair][_role(c)],
           prefill_seconds(prints.get(_role(c)), kind, prompt))
    ref = (steps[c.pair]["verifier"],
           prefill_seconds(prints.get("verifier"), kind, prompt))
    r = reference_decodes(c, protocol)
    if None in own or (r and None in ref):
      out.append(None)
      continue
    out.append(execute.num_decodes(c) * (own[1] + length * own[0])
               + r * (ref[1] + length * ref[0]))
  return out


def estimate(cells: Sequence[cells_lib.Cell],
             kind: topologies.Chip | None = None,
             footprints: Mapping | None = None,
             protocol: str = latency_lib.PAIRED) -> Estimate:
  """Decodes and estimated seconds of running ``cells`` one after another
  on one chip set (module docstring).

  Args:
    cells: the cells.
    kind: the chip (default: this machine's CPU, measured).
    footprints: pair -> {"drafter": Footprint, "verifier": Footprint}
      (``preflight.check``); a role without one has an unknown size.
    protocol: the experiment's latency protocol ("paired" adds the
      reference decodes).
  """
  kind = kind or topologies.cpu_kind()
  footprints = footprints or {}
  steps, prefill = _costs({c.pair for c in cells}, kind, footprints)
  typical_s = cell_seconds(cells, kind, footprints, protocol)
  maximum_s = cell_seconds(cells, kind, footprints, protocol,
                           at_maximum=True)
  decodes = sum(execute.num_decodes(c) + reference_decodes(c, protocol)
                for c in cells)
  unknown = tuple(dict.fromkeys(
      f"{pair.name} {role}" for pair in dict.fromkeys(c.pair for c in cells)
      for role in ROLES if steps[pair][role] is None))
  typical = {c.task_run.task: output_len(c) for c in cells
             if tasks.typical_output_len(c.task_run.task) is not None}
  typical_input = {c.task_run.task: input_len(c) for c in cells
                   if input_len(c) is not None}
  none = {"drafter": None, "verifier": None}
  return Estimate(num_cells=len(cells), num_decodes=int(decodes),
                  seconds=float(sum(s for s in typical_s if s is not None)),
                  step_s=steps[cells[0].pair] if cells else none,
                  seconds_max=float(sum(s for s in maximum_s
                                        if s is not None)),
                  prefill_s={role: prefill_seconds(
                      footprints.get(cells[0].pair, {}).get(role), kind,
                      input_len(cells[0])) for role in ROLES}
                  if cells else none,
                  typical=typical, typical_input=typical_input,
                  unknown=unknown,
                  unknown_cells=sum(s is None for s in typical_s))


def milliseconds(value: float | None) -> str:
  """A step or prefill time for the dry run's line ("unknown" if None)."""
  return "unknown" if value is None else f"{value * 1e3:.3g}"
