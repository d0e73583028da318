"""``sweep --executor ray``: a sweep's units of work over a Ray cluster.

The driver (the ``sweep`` command, on the cluster's head or any machine
that reaches it) connects to the cluster (``--ray_address``, default
``auto``), cuts every live node into *slots* and starts one actor per slot
(``ray_worker.SlotWorker``):

* a GPU or TPU host gives one slot per chip set a unit's layout needs
  (``chips_per_unit``: the largest explicit ``model_parallel`` of the
  experiment's pairs, or for ``"auto"`` the chips per replica of the layout
  the placement chose on an accelerator driver, so every replica of a host
  is a slot; ``"auto"`` from a CPU-only driver takes the whole host), each
  with an equal share of the host's CPUs, pinned (``sched_setaffinity``)
  when a host has several slots. A GPU worker sees only its slot's GPUs
  (Ray sets CUDA_VISIBLE_DEVICES) and loads its pair on all of them
  (``layout.local_chip_set``);
* a CPU-only host is one slot with all its CPUs.

A slot runs one cell at a time, so timed cells never share a chip set or a
host's CPUs. Units (``cells.units``) wait in one queue; an idle slot takes
the next unit and runs its cells one by one. Each finished cell comes back
to the driver, which alone writes the results directory (the same files as
the local executor; ``provenance.placement`` says where the cell ran). When
a worker dies (a preempted VM, a SIGKILL, a crash), its unit goes back in
the queue, preferably for another node, and resumes from the cells the
results directory holds intact (``ResultsStore.check_cell`` decides); a cell
is never written twice. A unit that fails ``unit_attempts`` times is
reported by name with its last error, after the other units finish
(:class:`UnitsFailed`). The driver prints a line per finished, retried or
failed unit: units done and remaining, and the time left (the dry run's
estimate, scaled by the rate measured so far).
"""

from __future__ import annotations

import collections
import dataclasses
import socket
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

from harness import extras
from harness.edge import errors
from harness.runner import cells as cells_lib
from harness.runner import execute
from harness.runner import progress as progress_lib
from harness.runner import ray_worker


class UnitsFailed(RuntimeError):
  """Units that failed every attempt (the others finished), in one line.

  Attributes:
    failures: (unit name, last error) of each failed unit.
    calibrations: pair -> the calibration its last finished cell used.
  """

  def __init__(self, failures: list[tuple[str, str]], attempts: int,
               total: int, calibrations: dict[str, Any] | None = None):
    listed = "; ".join(f"{name}: {error}" for name, error in failures)
    super().__init__(
        f"{len(failures)} of {total} units failed after {attempts} "
        f"attempts each (the other units finished): {listed}")
    self.failures = failures
    self.calibrations = calibrations or {}


class NoSlotsError(RuntimeError):
  """The cluster has no live node to run units on."""


@dataclasses.dataclass(frozen=True)
class Slot:
  """A chip set and CPU share of one node that runs one cell at a time.

  Attributes:
    node_id: the Ray node.
    node_ip: its address.
    index: the slot's index on its node.
    cpus: CPUs reserved (Ray's ``num_cpus``).
    chips: accelerators reserved (0 on a CPU-only node).
    chip_kind: "GPU", "TPU" or None.
    cpu_set: host CPUs the worker pins itself to (several slots on one
      host), or None.
  """
  node_id: str
  node_ip: str
  index: int
  cpus: int
  chips: int = 0
  chip_kind: str | None = None
  cpu_set: tuple[int, ...] | None = None

  @property
  def name(self) -> str:
    return f"{self.node_ip}#{self.index}"

  def describe(self) -> dict[str, Any]:
    """The slot as it goes into each cell's ``provenance.placement``."""
    return {"node_id": self.node_id, "node_ip": self.node_ip,
            "slot": self.index, "cpus": self.cpus,
            "cpu_set": list(self.cpu_set) if self.cpu_set else None,
            "num_chips": self.chips, "chip_kind": self.chip_kind}

  def actor_options(self) -> dict[str, Any]:
    """Ray actor options: this slot's resources, on this node only."""
    from ray.util import scheduling_strategies  # pylint: disable=g-import-not-at-top
    options: dict[str, Any] = {
        "num_cpus": self.cpus, "max_restarts": 0, "max_concurrency": 1,
        "scheduling_strategy":
            scheduling_strategies.NodeAffinitySchedulingStrategy(
                self.node_id, soft=False)}
    if self.chip_kind == "GPU":
      options["num_gpus"] = self.chips
    elif self.chip_kind:
      options["resources"] = {self.chip_kind: self.chips}
    return options


def chips_per_unit(pairs: Sequence[Any], layouts: Mapping[str, Any]
                   | None = None) -> int | None:
  """Chips a unit's layout needs: the largest over ``pairs`` of an explicit
  ``model_parallel``, or of the chips per replica that the placement chose
  for an ``"auto"`` pair (``layouts``: pair name -> ``layout.Layout``, as
  the checks before the run recorded them on an accelerator host); None
  (the whole host) when an ``"auto"`` pair has no such layout."""
  need = []
  for pair in pairs:
    if isinstance(pair.model_parallel, int):
      need.append(pair.model_parallel)
    elif layouts and pair.name in layouts:
      need.append(layouts[pair.name].chips_per_replica)
    else:
      return None
  return max(need) if need else None


def accelerator_layouts() -> dict[str, Any]:
  """The layouts recorded before the run, when this driver's host has
  accelerators (a CPU driver's layouts say nothing of the workers' chips)."""
  import jax  # pylint: disable=g-import-not-at-top
  from harness.models import layout  # pylint: disable=g-import-not-at-top
  if jax.default_backend() == "cpu":
    return {}
  return {name: layout.recorded(name) for name in layout.recorded_all()}


def slots_of(nodes: Sequence[dict[str, Any]], chips: int | None
             ) -> list[Slot]:
  """Slots of the live nodes (``ray.nodes()`` entries; module docstring)."""
  out = []
  for node in sorted(nodes, key=lambda n: n["NodeID"]):
    if not node.get("Alive"):
      continue
    res = node.get("Resources", {})
    cpus = int(res.get("CPU", 0))
    kind = "GPU" if res.get("GPU") else ("TPU" if res.get("TPU") else None)
    have = int(res.get(kind, 0)) if kind else 0
    if kind and have:
      need = min(chips or have, have)
      count = have // need
    elif cpus:
      need, count = 0, 1
    else:
      continue  # Neither chips nor CPUs: nothing can run there.
    share = max(cpus // count, 1 if cpus else 0)
    for k in range(count):
      cpu_set = (tuple(range(k * share, (k + 1) * share))
                 if count > 1 and share else None)
      out.append(Slot(node["NodeID"], node["NodeManagerAddress"], k, share,
                      need, kind if need else None, cpu_set))
  return out


@dataclasses.dataclass
class _Pending:
  unit: Any
  attempts: int = 0
  last_error: str = ""
  avoid: str | None = None  # The node it last failed on.


def _pick(queue: collections.deque, slot: Slot, nodes: set[str]
          ) -> _Pending | None:
  """The first waiting unit for ``slot``: one that did not last fail on its
  node, unless no other node has a slot left."""
  for pending in queue:
    if pending.avoid != slot.node_id or nodes == {slot.node_id}:
      queue.remove(pending)
      return pending
  return None


def _error_line(err: BaseException) -> str:
  import ray  # pylint: disable=g-import-not-at-top
  if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
    err = err.cause
  return f"{type(err).__name__}: {errors.first_line(err)}"


def schedule(units: Sequence[Any], job: ray_worker.Job, slots: list[Slot],
             remaining: Callable[[Any], list[Any]],
             on_result: Callable[[Any, Any, Any], None], *,
             context: Callable[[Any], dict[str, Any]] = lambda item: {},
             attempts: int = 3,
             report: Callable[[str, Any], None] = lambda event, unit: None
             ) -> list[tuple[str, str]]:
  """Runs ``units`` on ``slots`` until each is done or failed ``attempts``
  times; returns the failed ones' (name, last error).

  Args:
    units: objects with a ``name``.
    job: what each slot's actor runs an item with.
    slots: the slots (``slots_of``).
    remaining: unit -> its items still to run (empty: done).
    on_result: (unit, item, result) on the driver, once per finished item;
      an exception there counts as the item's failure.
    context: item -> extra arguments for ``job.run``.
    attempts: attempts per unit.
    report: (event, unit) for "done", "retry" and "failed".
  """
  import ray  # pylint: disable=g-import-not-at-top
  worker = ray.remote(ray_worker.SlotWorker)
  actors: dict[Slot, Any] = {}
  queue = collections.deque(_Pending(u) for u in units)
  idle = list(slots)
  running: dict[Any, tuple[Slot, _Pending, Any]] = {}
  failed: list[tuple[str, str]] = []

  def submit(slot: Slot, pending: _Pending) -> bool:
    items = remaining(pending.unit)
    if not items:
      report("done", pending.unit)
      return False
    if slot not in actors:
      actors[slot] = worker.options(**slot.actor_options()).remote(
          job, slot.describe())
    future = actors[slot].run.remote(items[0], pending.unit.name,
                                     pending.attempts + 1, context(items[0]))
    running[future] = (slot, pending, items[0])
    return True

  while queue or running:
    nodes = {s.node_id for s in slots}
    for slot in list(idle):
      if slot not in slots:  # Its node died.
        idle.remove(slot)
        continue
      pending = _pick(queue, slot, nodes)
      while pending is not None and not submit(slot, pending):
        pending = _pick(queue, slot, nodes)
      if pending is not None:
        idle.remove(slot)
    if not running:
      if queue:
        raise NoSlotsError(f"no live Ray node left to run {len(queue)} "
                           "units on")
      break
    (future,), _ = ray.wait(list(running), num_returns=1)
    slot, pending, item = running.pop(future)
    try:
      on_result(pending.unit, item, ray.get(future))
    except ray.exceptions.RayTaskError as err:  # The job raised.
      error = _error_line(err)
    except ray.exceptions.RayError as err:  # The worker or its node died.
      error = _error_line(err)
      ray.kill(actors.pop(slot), no_restart=True)
      alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
      slots[:] = [s for s in slots if s.node_id in alive]
    except Exception as err:  # pylint: disable=broad-except
      error = _error_line(err)  # on_result refused the result.
    else:
      if not submit(slot, pending):
        idle.append(slot)
      continue
    pending.attempts += 1
    pending.last_error = error
    pending.avoid = slot.node_id
    if pending.attempts >= attempts:
      failed.append((pending.unit.name, error))
      report("failed", pending.unit)
    else:
      queue.appendleft(pending)
      report("retry", pending.unit)
    if slot in slots:
      idle.append(slot)
  for actor in actors.values():
    ray.kill(actor, no_restart=True)
  return failed


# How long the driver waits for a named head's port to answer before it
# gives up (``ray.init`` itself can wait for minutes on an address that
# drops packets).
CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str | None,
                    timeout_s: float = CONNECT_TIMEOUT_S) -> None:
  """Raises :class:`NoSlotsError` (one line) when ``address``, a Ray head's
  ``HOST:PORT`` or ``ray://HOST:PORT``, does not accept a TCP connection
  within ``timeout_s``; ``auto`` and ``None`` (the local cluster) pass."""
  if not address or address == "auto":
    return
  bare = address.split("://", 1)[-1]
  host, sep, port = bare.rpartition(":")
  if not sep or not port.isdigit() or not host:
    raise NoSlotsError(f"--ray_address {address!r}: expected HOST:PORT "
                       "(or ray://HOST:PORT, or auto)")
  try:
    with socket.create_connection((host.strip("[]"), int(port)),
                                  timeout=timeout_s):
      pass
  except OSError as err:
    reason = "timed out" if isinstance(err, TimeoutError) else (
        err.strerror or type(err).__name__)
    raise NoSlotsError(
        f"--executor ray: no Ray head answers at {address} ({reason} after "
        f"at most {timeout_s:g} s); start one first (docs/running.md, Ray)"
    ) from None


def connect(address: str | None):
  """``ray.init`` on the cluster at ``address`` (once per process)."""
  ray = extras.require("ray", "--executor ray")
  if not ray.is_initialized():
    check_reachable(address)
    try:
      ray.init(address=address or "auto", log_to_driver=False,
               logging_level="ERROR")
    except ConnectionError as err:
      raise NoSlotsError(
          f"--executor ray: no Ray cluster at {address or 'auto'} ({err}); "
          "start one first (docs/running.md, Ray)") from None
  return ray


class _Tally:
  """Units done and left, and the time left, for the driver's lines."""

  def __init__(self, units: list[cells_lib.Unit], cost: cells_lib.Cost,
               store, out: TextIO):
    self.units = units
    self.store = store
    self.out = out
    self.cost = lambda cell: cost(cells_lib.Unit((cell,)))
    self.start = time.monotonic()
    self.ran_s = 0.0  # Estimated seconds of the cells finished here.
    self.done = self.failed = 0
    self.slots = 1

  def cell_done(self, cell: cells_lib.Cell) -> None:
    self.ran_s += self.cost(cell)

  def __call__(self, event: str, unit: cells_lib.Unit) -> None:
    if event == "done":
      self.done += 1
    elif event == "failed":
      self.failed += 1
    left = [c for u in self.units for c in u.cells
            if not self.store.is_done(c.cell_id)]
    left_s = sum(self.cost(c) for c in left)
    elapsed = time.monotonic() - self.start
    rate = elapsed / self.ran_s if self.ran_s else 1.0 / self.slots
    print(progress_lib.unit_line(
        event, unit.name, self.done, self.failed, len(self.units),
        elapsed, left_s * rate), file=self.out, flush=True)


def _context(store, paired: bool) -> Callable[[cells_lib.Cell], dict]:
  """Unpaired protocol: a cell's reference cell, when the driver has it."""

  def context(cell: cells_lib.Cell) -> dict[str, Any]:
    reference = cells_lib.reference_for(cell).cell_id
    if paired or reference == cell.cell_id or not store.is_done(reference):
      return {}
    return {"reference": {"summary": store.read_summary(reference),
                          "records": store.read_records(reference)}}

  return context


def run(exp, units: list[cells_lib.Unit], store, provenance, options,
        cost: cells_lib.Cost, out: TextIO,
        progress: progress_lib.Progress | None = None) -> dict[str, Any]:
  """Runs ``units`` over the Ray cluster; returns pair -> calibration.

  Raises:
    extras.MissingExtraError: Ray is not installed (one line naming the
      ``ray`` extra).
    NoSlotsError: no cluster, or no live node left.
    UnitsFailed: some units failed every attempt (the rest finished).
  """
  ray = connect(options.ray_address)
  slots = slots_of(ray.nodes(), chips_per_unit(sorted(
      {c.pair for u in units for c in u.cells}, key=lambda p: p.name),
      accelerator_layouts()))
  if not slots:
    raise NoSlotsError("--executor ray: the cluster has no node with CPUs "
                       "or chips")
  tally = _Tally(units, cost, store, out)
  tally.slots = len(slots)
  print(f"ray: {len(units)} units on {len(slots)} slots "
        f"({', '.join(s.name for s in slots)})", file=out, flush=True)
  calibrations: dict[str, Any] = {}

  def remaining(unit: cells_lib.Unit) -> list[cells_lib.Cell]:
    return [c for c in unit.cells if not store.is_done(c.cell_id)
            or store.check_cell(c.cell_id) is not None]

  def on_result(unit, cell: cells_lib.Cell, result: dict[str, Any]) -> None:
    del unit
    summary = result["summary"]
    if store.is_done(cell.cell_id) and store.check_cell(cell.cell_id) is None:
      return  # Written already: a cell is never written twice.
    digest = store.write_records(cell.cell_id, result["records"])
    if digest != summary["records"]:
      raise ValueError(f"cell {cell.cell_id}: records changed in transit")
    store.write_summary(summary)
    calibrations[cell.pair.name] = result["calibration"]
    tally.cell_done(cell)
    if progress is not None:
      progress.cell_done(summary)

  job = ray_worker.CellJob(exp, provenance, options.allow_unisolated_mbpp,
                           options.cpu_threads,
                           options.compilation_cache_dir)
  failed = schedule(
      units, job, slots, remaining, on_result,
      context=_context(store, execute.is_paired_protocol(
          exp.latency_protocol)),
      attempts=options.unit_attempts, report=tally)
  if failed:
    raise UnitsFailed(failed, options.unit_attempts, len(units),
                      calibrations)
  return calibrations
