"""``run_experiment``: config → cells → models → calibration → cells' results.

Each step is a small function; ``run_experiment`` only strings them
together. A cell itself runs in ``execute.run_cell`` (its one home); this
module decides which cells run, in what order, and where (here, or over a
Ray cluster with ``--executor ray``: ``ray_executor``).

Resuming is rerunning: cells whose summary exists are skipped, a cell
interrupted half-way is rerun from scratch, and so is a finished cell whose
records fail the checksum in its summary (``store.check_cell``; the runner
prints which cell it redid and why).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TextIO

from harness import decoding
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import execute
from harness.runner import progress as progress_lib
from harness.runner import ray_executor
from harness.edge import provenance as provenance_lib
from harness.results import schema
from harness.results import store as store_lib


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How to run an experiment (the command line's choices).

  Attributes:
    shard: which shard of the cells to run.
    only: glob patterns on cell ids (their reference cells come along).
    progress: show progress bars (cell lines are always printed).
    gin_config: operative gin config text, recorded as provenance.
    allow_unisolated_mbpp: score MBPP even where the audit hook is the only
      sandbox layer (``--allow_unisolated_mbpp``).
    executor: "local" (this process) or "ray" (``ray_executor``).
    ray_address: the Ray cluster ("auto", or HOST:PORT of its head).
    unit_cells: cells per unit of work under the paired protocol.
    unit_attempts: attempts per unit before it is reported as failed.
    cpu_threads: ``--cpu_threads`` for Ray workers (this process has
      applied it already).
    compilation_cache_dir: ``--compilation_cache_dir`` for Ray workers.
  """
  shard: cells_lib.Shard = cells_lib.Shard()
  only: tuple[str, ...] = ()
  progress: bool = True
  gin_config: str = ""
  allow_unisolated_mbpp: bool = False
  executor: str = "local"
  ray_address: str | None = None
  unit_cells: int = 1
  unit_attempts: int = 3
  cpu_threads: str | None = None
  compilation_cache_dir: str | None = None


EXECUTORS = ("local", "ray")


def unit_cost(protocol: str) -> cells_lib.Cost:
  """A unit's estimated seconds (``estimate.estimate``, without per-model
  footprints: every step at the estimate's default, so that every host of a
  multi-host run deals the same units to the same shards)."""
  from harness.runner import estimate  # pylint: disable=g-import-not-at-top
  from harness.runner import topologies  # pylint: disable=g-import-not-at-top
  kind = topologies.parse("v4-8").kind  # Unused without footprints.
  return lambda unit: estimate.estimate(list(unit.cells), kind, None,
                                        protocol).seconds


def units(exp: cfg.Experiment, cells: list[cells_lib.Cell],
          options: RunOptions) -> list[cells_lib.Unit]:
  """The units of work of ``cells`` (``cells.units``)."""
  return cells_lib.units(
      cells, execute.is_paired_protocol(exp.latency_protocol),
      options.unit_cells)


def plan(exp: cfg.Experiment, options: RunOptions) -> list[cells_lib.Cell]:
  """The cells this invocation is responsible for, in run order (its
  shard's units, balanced by estimated hours; ``cells.EmptyShardError``
  when a shard would be empty)."""
  cells = cells_lib.select(cells_lib.build_cells(exp), options.only)
  if not options.shard.sharded:
    return cells
  return options.shard.select(
      cells, execute.is_paired_protocol(exp.latency_protocol),
      options.unit_cells, unit_cost(exp.latency_protocol))


def group_drift(store: store_lib.ResultsStore, cells: list[cells_lib.Cell]
                ) -> dict[str, dict[str, float | None]]:
  """{reference cell id: {"start_s", "end_s", "ratio"}} per done group.

  ``start_s`` is the reference cell's own first-trial time over the first
  half of the latency subset; ``end_s`` the reference times measured beside
  the group's last done cell over the second half of its last trial (paired
  protocol); ``ratio`` = end / start (1 = no drift).
  """
  groups: dict[tuple, list[schema.CellSummary]] = {}
  for cell in cells:
    summary = store.read_summary(cell.cell_id)
    if summary is not None:
      groups.setdefault(cell.reference_key, []).append(summary)
  drift = {}
  for summaries in groups.values():
    start = next((s for s in summaries if s["cell"]["role"]
                  == schema.Role.REFERENCE_LARGE.value), None)
    if start is None:
      continue
    start_s = start["latency"].get("reference_first_s")
    end_s = summaries[-1]["latency"].get("reference_last_s")
    drift[start["cell_id"]] = {
        "start_s": start_s, "end_s": end_s,
        "ratio": end_s / start_s if start_s and end_s else None}
  return drift


def compile_totals(since: dict[str, object] | None = None
                   ) -> dict[str, object]:
  """``{"programs", "seconds"}``: the decoding programs this process compiled
  and their total trace + lower + compile seconds
  (``harness.decoding.compile_stats()``), less the totals ``since`` (an
  earlier return value: what one run compiled in a longer-lived process)."""
  stats = decoding.compile_stats()
  since = since or {"programs": 0, "seconds": 0.0}
  return {"programs": int(stats["programs"]) - int(since["programs"]),
          "seconds": float(stats["compile_s"]) - float(since["seconds"])}


def _manifest(exp: cfg.Experiment, cells: list[cells_lib.Cell],
              options: RunOptions,
              calibrations: dict[str, schema.Calibration],
              provenance: schema.Provenance,
              store: store_lib.ResultsStore) -> schema.Manifest:
  sweep = cells_lib.build_cells(exp)
  if options.shard.sharded:
    listed = cells
  else:
    # An unsharded run lists every cell of the sweep, also when `--only`
    # picked some of them: a results directory filled one suite at a time
    # keeps the whole sweep (and every done group's drift) in its manifest,
    # and the pairs calibrated by earlier sessions keep their constants.
    listed = sweep
    earlier = store.read_manifest()
    if earlier is not None:
      calibrations = {**earlier.get("calibrations", {}), **calibrations}
  manifest = schema.Manifest(
      experiment=exp.name, schema_version=schema.SCHEMA_VERSION,
      cell_ids=[c.cell_id for c in listed],
      shard={"index": options.shard.index, "count": options.shard.count},
      calibration=list(calibrations.values())[-1] if calibrations else None,
      calibrations=dict(calibrations), provenance=provenance,
      latency_protocol=exp.latency_protocol,
      drift=group_drift(store, listed))
  if options.shard.sharded:
    manifest["sweep_cell_ids"] = [c.cell_id for c in cells_lib.select(
        sweep, options.only)]
  return manifest


def _by_pair(cells: list[cells_lib.Cell]
             ) -> dict[cfg.ModelPair, list[cells_lib.Cell]]:
  groups: dict[cfg.ModelPair, list[cells_lib.Cell]] = {}
  for cell in cells:
    groups.setdefault(cell.pair, []).append(cell)
  return groups


# Where a local run's cells ran (each cell's ``provenance.placement``).
_LOCAL = {"executor": "local"}


def _run_pair(exp: cfg.Experiment, pair: cfg.ModelPair,
              todo: list[cells_lib.Cell], store: store_lib.ResultsStore,
              provenance: schema.Provenance,
              progress: progress_lib.Progress,
              allow_unisolated_mbpp: bool) -> schema.Calibration | None:
  """Runs the cells of one model pair here; returns its calibration."""
  session = execute.open_session(exp, pair, store, provenance, progress,
                                 allow_unisolated_mbpp)
  for cell in todo:
    execute.run_cell(session, cell)
  return session.calibration


def run_experiment(exp: cfg.Experiment, options: RunOptions = RunOptions(),
                   out: TextIO | None = None) -> str:
  """Runs the experiment; returns its results directory."""
  out = out or sys.stdout
  store = store_lib.ResultsStore(exp.results_dir, exp.name)
  cells = plan(exp, options)
  store.clean_partial()
  for cell in cells:
    problem = store.is_done(cell.cell_id) and store.check_cell(cell.cell_id)
    if problem:
      print(f"redoing cell {cell.cell_id}: {problem}", file=out)
      store.discard_summary(cell.cell_id)
  todo = [c for c in cells if not store.is_done(c.cell_id)]
  print(f"{exp.name}: {len(cells)} cells, {len(cells) - len(todo)} already "
        f"done, results in {store.dir}", file=out)
  if not todo:
    return store.dir
  provenance = provenance_lib.collect(
      options.gin_config, {"seed": exp.seed, "model_seed": exp.pair.model_seed})
  progress = progress_lib.Progress(
      len(todo), enabled=options.progress and options.executor == "local")
  compiled_before = compile_totals()
  calibrations = {}
  store.write_manifest(_manifest(exp, cells, options, calibrations,
                                 provenance, store))
  failure = None
  try:
    if options.executor == "ray":
      calibrations.update(_run_on_ray(exp, todo, store, provenance, options,
                                      progress, out))
    else:
      for pair, group in _by_pair(todo).items():
        calibrations[pair.name] = _run_pair(
            exp, pair, group, store, dict(provenance, placement=_LOCAL),
            progress, options.allow_unisolated_mbpp)
        store.write_manifest(_manifest(exp, cells, options, calibrations,
                                       provenance, store))
  except ray_executor.UnitsFailed as err:
    failure = err
    calibrations.update(err.calibrations)
  finally:
    progress.close()
  manifest = _manifest(exp, cells, options, calibrations, provenance, store)
  manifest["compile"] = compile_totals(since=compiled_before)
  store.write_manifest(manifest)
  c = manifest["compile"]
  print(f"compiled programs: {c['programs']}, compile seconds: "
        f"{c['seconds']:.1f}", file=out)
  if failure is not None:
    raise failure
  return store.dir


def _run_on_ray(exp, todo, store, provenance, options, progress, out):
  """``--executor ray``: the units of ``todo`` over the Ray cluster."""
  return ray_executor.run(exp, units(exp, todo, options), store, provenance,
                          options, unit_cost(exp.latency_protocol), out,
                          progress)
