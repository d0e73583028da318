"""``run_experiment``: config → cells → models → calibration → cells' results.

Each step is a small function; ``run_experiment`` only strings them
together. Resuming is rerunning: cells whose summary exists are skipped, a
cell interrupted half-way is rerun from scratch (``store``).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from typing import TextIO

from harness.runner import calibration as cal
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import estimate as estimate_lib
from harness.runner import execute
from harness.runner import pairs
from harness.runner import progress as progress_lib
from harness.runner import provenance as provenance_lib
from harness.results import schema
from harness.results import store as store_lib
from harness.runner import summary as summary_lib


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How to run an experiment (the command line's choices).

  Attributes:
    shard: which shard of the cells to run.
    only: glob patterns on cell ids (their reference cells come along).
    dry_run: print the plan and an estimate; decode nothing.
    progress: show progress bars (cell lines are always printed).
    gin_config: operative gin config text, recorded as provenance.
  """
  shard: cells_lib.Shard = cells_lib.Shard()
  only: tuple[str, ...] = ()
  dry_run: bool = False
  progress: bool = True
  gin_config: str = ""


@dataclasses.dataclass
class Session:
  """What every cell of a run shares."""
  experiment: cfg.Experiment
  store: store_lib.ResultsStore
  loaded: pairs.LoadedPair
  calibration: schema.Calibration
  provenance: schema.Provenance
  progress: progress_lib.Progress
  examples: dict[cfg.TaskRun, list[execute.Prepared]] = dataclasses.field(
      default_factory=dict)


def plan(exp: cfg.Experiment, options: RunOptions) -> list[cells_lib.Cell]:
  """The cells this invocation is responsible for, in run order."""
  cells = cells_lib.select(cells_lib.build_cells(exp), options.only)
  return options.shard.select(cells)


def print_plan(exp: cfg.Experiment, cells: list[cells_lib.Cell],
               store: store_lib.ResultsStore, out: TextIO) -> None:
  """Prints every cell, the decode count and the estimated time."""
  todo = [c for c in cells if not store.is_done(c.cell_id)]
  for cell in cells:
    mark = "done" if store.is_done(cell.cell_id) else "todo"
    print(f"{mark}  {execute.num_decodes(cell):6d} decodes  {cell.cell_id}",
          file=out)
  est = estimate_lib.estimate(todo)
  print(f"{len(cells)} cells ({len(cells) - len(todo)} done), "
        f"{est.num_decodes} decodes to run, estimated {est.seconds:.0f} s "
        f"({est.seconds / 3600:.2f} h) = decodes × max_decode_len × step "
        f"time (verifier {est.step_s['verifier'] * 1e3:.3g} ms, drafter "
        f"{est.step_s['drafter'] * 1e3:.3g} ms; see "
        "harness/runner/estimate.py)", file=out)
  print(f"results: {store.dir}", file=out)


def _manifest(exp: cfg.Experiment, cells: list[cells_lib.Cell],
              options: RunOptions,
              calibrations: dict[str, schema.Calibration],
              provenance: schema.Provenance) -> schema.Manifest:
  return schema.Manifest(
      experiment=exp.name, schema_version=schema.SCHEMA_VERSION,
      cell_ids=[c.cell_id for c in cells],
      shard={"index": options.shard.index, "count": options.shard.count},
      calibration=list(calibrations.values())[-1] if calibrations else None,
      calibrations=dict(calibrations), provenance=provenance)


def _examples(session: Session,
              cell: cells_lib.Cell) -> list[execute.Prepared]:
  run = cell.task_run
  if run not in session.examples:
    session.examples[run] = execute.prepare_examples(
        run, cell.seed, session.loaded)
  return session.examples[run]


def run_cell(session: Session, cell: cells_lib.Cell) -> schema.CellSummary:
  """Decodes, times, scores and writes one cell; returns its summary."""
  prepared = _examples(session, cell)
  session.progress.start_cell(cell.cell_id, execute.num_decodes(cell))
  compile_s = execute.warm_up(cell, session.loaded, prepared)
  decoded = execute.run_trials(cell, session.loaded, prepared,
                               session.progress.example_done)
  records = [execute.to_record(cell, session.loaded, item, result,
                               session.calibration)
             for item, result in zip(prepared, decoded)]
  digest = session.store.write_records(cell.cell_id, records)
  reference_id = cells_lib.reference_for(cell).cell_id
  reference = (session.store.read_records(reference_id)
               if session.store.is_done(reference_id) else None)
  summary = summary_lib.summarize(
      session.experiment.name, cell, records, compile_s, session.calibration,
      reference, session.provenance)
  summary["records"] = digest
  session.store.write_summary(summary)
  session.progress.cell_done(summary)
  return summary


def _load(pair: cfg.ModelPair, exp: cfg.Experiment) -> tuple[
    pairs.LoadedPair, schema.Calibration]:
  """Loads a pair and calibrates its cost model on this device."""
  with tempfile.TemporaryDirectory(prefix="harness-pair-") as work_dir:
    loaded = pairs.load_pair(pair, work_dir)
  calibration = cal.calibrate(
      loaded.drafter, loaded.verifier, cal.widths_for(exp.gammas),
      exp.calibration_calls, pair.name)
  return loaded, calibration


def _by_pair(cells: list[cells_lib.Cell]
             ) -> dict[cfg.ModelPair, list[cells_lib.Cell]]:
  groups: dict[cfg.ModelPair, list[cells_lib.Cell]] = {}
  for cell in cells:
    groups.setdefault(cell.pair, []).append(cell)
  return groups


def _run_pair(exp: cfg.Experiment, pair: cfg.ModelPair,
              todo: list[cells_lib.Cell], store: store_lib.ResultsStore,
              provenance: schema.Provenance,
              progress: progress_lib.Progress) -> schema.Calibration:
  """Runs the cells of one model pair; returns its calibration."""
  loaded, calibration = _load(pair, exp)
  session = Session(exp, store, loaded, calibration, provenance, progress)
  for cell in todo:
    run_cell(session, cell)
  return calibration


def run_experiment(exp: cfg.Experiment, options: RunOptions = RunOptions(),
                   out: TextIO | None = None) -> str:
  """Runs (or, with ``dry_run``, plans) the experiment; returns its dir."""
  out = out or sys.stdout
  store = store_lib.ResultsStore(exp.results_dir, exp.name)
  cells = plan(exp, options)
  if options.dry_run:
    print_plan(exp, cells, store, out)
    return store.dir
  store.clean_partial()
  todo = [c for c in cells if not store.is_done(c.cell_id)]
  print(f"{exp.name}: {len(cells)} cells, {len(cells) - len(todo)} already "
        f"done, results in {store.dir}", file=out)
  if not todo:
    return store.dir
  provenance = provenance_lib.collect(
      options.gin_config, {"seed": exp.seed, "model_seed": exp.pair.model_seed})
  progress = progress_lib.Progress(len(todo), enabled=options.progress)
  calibrations = {}
  store.write_manifest(_manifest(exp, cells, options, calibrations,
                                 provenance))
  try:
    for pair, group in _by_pair(todo).items():
      calibrations[pair.name] = _run_pair(exp, pair, group, store, provenance,
                                          progress)
      store.write_manifest(_manifest(exp, cells, options, calibrations,
                                     provenance))
  finally:
    progress.close()
  return store.dir
