"""What runs inside a Ray worker: a slot's actor and the sweep's cell job.

An actor (:class:`SlotWorker`) holds one slot of a node (its chips and its
share of the host's CPUs, ``ray_executor.Slot``) and runs one item at a
time through its *job*. The sweep's job, :class:`CellJob`, runs a cell with
``execute.run_cell`` (the cell's one home) into a scratch results store on
the worker and returns the cell's records and summary; the driver alone
writes the results directory. Nothing here imports Ray: the executor wraps
:class:`SlotWorker` with ``ray.remote``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any, Protocol

from harness.results import schema


class Job(Protocol):
  """Work an actor does, item by item (a cell, or a test's stand-in)."""

  def run(self, item: Any, placement: dict[str, Any],
          context: dict[str, Any]) -> Any:
    """Runs one item; returns what the driver's ``on_result`` takes."""


class SlotWorker:
  """One slot's actor: pins its CPU share, then runs items of its job.

  Args:
    job: the job (pickled to the worker).
    slot: {"node_id", "node_ip", "index", "cpus", "cpu_set", "chips"} from
      the driver (``ray_executor.Slot.describe``).
  """

  def __init__(self, job: Job, slot: dict[str, Any]):
    self._job = job
    self._slot = dict(slot)
    cpu_set = slot.get("cpu_set")
    if cpu_set and hasattr(os, "sched_setaffinity"):
      os.sched_setaffinity(0, cpu_set)  # Timed slots share no host CPU.

  def pid(self) -> int:
    """This worker's process id."""
    return os.getpid()

  def run(self, item: Any, unit: str, attempt: int,
          context: dict[str, Any]) -> Any:
    """Runs ``item`` of unit ``unit`` (attempt ``attempt``, from 1)."""
    placement = dict(self._slot, executor="ray", unit=unit, attempt=attempt,
                     host=socket.gethostname(), pid=os.getpid(),
                     chips=_accelerator_ids())
    return self._job.run(item, placement, context)


def _accelerator_ids() -> dict[str, list[str]]:
  """The accelerators Ray gave this worker ({"GPU": ["0"], ...})."""
  import ray  # pylint: disable=g-import-not-at-top
  ids = ray.get_runtime_context().get_accelerator_ids()
  return {kind: [str(i) for i in found] for kind, found in ids.items()
          if found}


class CellJob:
  """The sweep's job: one cell per item, written to a scratch store.

  Args:
    exp: the experiment.
    provenance: the run's provenance (each cell adds its placement).
    allow_unisolated_mbpp: MBPP's sandbox opt-in.
    cpu_threads: ``--cpu_threads`` (applied before the first JAX call).
    compilation_cache_dir: persistent XLA compilation cache, or None.
  """

  def __init__(self, exp, provenance: schema.Provenance,
               allow_unisolated_mbpp: bool, cpu_threads: str | None,
               compilation_cache_dir: str | None):
    self.exp = exp
    self.provenance = provenance
    self.allow_unisolated_mbpp = allow_unisolated_mbpp
    self.cpu_threads = cpu_threads
    self.compilation_cache_dir = compilation_cache_dir
    self._state = None

  def __getstate__(self):
    return dict(self.__dict__, _state=None)

  def _setup(self):
    """The worker's scratch store and its sessions (once per actor)."""
    if self._state is None:
      from harness.edge import cpu_threads  # pylint: disable=g-import-not-at-top
      from harness.results import store as store_lib  # pylint: disable=g-import-not-at-top
      cpu_threads.apply(self.cpu_threads)
      if self.compilation_cache_dir:
        from harness import decoding  # pylint: disable=g-import-not-at-top
        decoding.enable_compilation_cache(self.compilation_cache_dir)
      scratch = tempfile.mkdtemp(prefix="harness-ray-")
      self._state = {"store": store_lib.ResultsStore(scratch, self.exp.name),
                     "sessions": {}}
    return self._state

  def run(self, item, placement: dict[str, Any],
          context: dict[str, Any]) -> dict[str, Any]:
    """Runs cell ``item``; returns {"summary", "records", "calibration"}.

    ``context["reference"]``: the unpaired protocol's reference cell
    (``{"summary", "records"}``) when the driver has it, seeded into the
    scratch store so that the cell's relative latency can be computed.
    """
    from harness.runner import execute  # pylint: disable=g-import-not-at-top
    state = self._setup()
    store = state["store"]
    reference = context.get("reference")
    if reference and not store.is_done(reference["summary"]["cell_id"]):
      store.write_records(reference["summary"]["cell_id"],
                          reference["records"])
      store.write_summary(reference["summary"])
    cell = item
    session = state["sessions"].get(cell.pair)
    if session is None:
      session = execute.open_session(
          self.exp, cell.pair, store, self.provenance, _Silent(),
          self.allow_unisolated_mbpp)
      state["sessions"][cell.pair] = session
    session.provenance = dict(self.provenance, placement=placement)
    summary = execute.run_cell(session, cell)
    return {"summary": summary, "records": store.read_records(cell.cell_id),
            "calibration": session.calibration}


class _Silent:
  """Progress that shows nothing (the driver reports each cell)."""

  def start_cell(self, cell_id: str, num_decodes: int) -> None:
    del cell_id, num_decodes

  def example_done(self) -> None:
    pass

  def cell_done(self, summary) -> None:
    del summary
