"""``run_experiment``: config → cells → models → calibration → cells' results.

Each step is a small function; ``run_experiment`` only strings them
together. Resuming is rerunning: cells whose summary exists are skipped, a
cell interrupted half-way is rerun from scratch, and so is a finished cell
whose records fail the checksum in its summary (``store.check_cell``; the
runner prints which cell it redid and why).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from typing import TextIO

from harness import decoding
from harness.results import latency as latency_lib
from harness.runner import calibration as cal
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import execute
from harness.runner import pairs
from harness.runner import progress as progress_lib
from harness.edge import provenance as provenance_lib
from harness.results import schema
from harness.results import store as store_lib
from harness.runner import summary as summary_lib


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
  """
  shard: cells_lib.Shard = cells_lib.Shard()
  only: tuple[str, ...] = ()
  progress: bool = True
  gin_config: str = ""
  allow_unisolated_mbpp: bool = False


@dataclasses.dataclass
class Session:
  """What every cell of a run shares (``paired``: the experiment's latency
  protocol is the paired one, decided once per run)."""
  experiment: cfg.Experiment
  store: store_lib.ResultsStore
  loaded: pairs.LoadedPair
  calibration: schema.Calibration
  provenance: schema.Provenance
  progress: progress_lib.Progress
  paired: bool
  allow_unisolated_mbpp: bool = False
  examples: dict[cfg.TaskRun, list[execute.Prepared]] = dataclasses.field(
      default_factory=dict)


def plan(exp: cfg.Experiment, options: RunOptions) -> list[cells_lib.Cell]:
  """The cells this invocation is responsible for, in run order."""
  cells = cells_lib.select(cells_lib.build_cells(exp), options.only)
  return options.shard.select(cells)


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
  return schema.Manifest(
      experiment=exp.name, schema_version=schema.SCHEMA_VERSION,
      cell_ids=[c.cell_id for c in cells],
      shard={"index": options.shard.index, "count": options.shard.count},
      calibration=list(calibrations.values())[-1] if calibrations else None,
      calibrations=dict(calibrations), provenance=provenance,
      latency_protocol=exp.latency_protocol,
      drift=group_drift(store, cells))


def _examples(session: Session,
              cell: cells_lib.Cell) -> list[execute.Prepared]:
  run = cell.task_run
  if run not in session.examples:
    session.examples[run] = execute.prepare_examples(
        run, cell.seed, session.loaded)
  return session.examples[run]


def _calibrate_cell(session: Session, cell: cells_lib.Cell,
                    prepared: list[execute.Prepared]) -> schema.Calibration:
  """The cell's cost-model constants: measured now (paired protocol), at
  the task's median prompt length, or the pair's start-of-run ones."""
  exp = session.experiment
  if not session.paired:
    return session.calibration
  item = execute.median_prompt(prepared, cell.task_run.latency_examples)
  session.calibration = cal.calibrate(
      session.loaded.drafter, session.loaded.verifier,
      cal.widths_for(exp.gammas), exp.calibration_calls, cell.pair.name,
      prompt=item.prompt, max_decode_len=cell.max_decode_len,
      bucket=cell.task_run.bucket(item.prompt.size))
  return session.calibration


def _reference_records(session: Session, cell: cells_lib.Cell
                       ) -> list[schema.ExampleRecord] | None:
  """The reference_large cell's records when it is done (else None)."""
  reference_id = cells_lib.reference_for(cell).cell_id
  if not session.store.is_done(reference_id):
    return None
  return session.store.read_records(reference_id)


def run_cell(session: Session, cell: cells_lib.Cell) -> schema.CellSummary:
  """Decodes, times, scores and writes one cell; returns its summary."""
  prepared = _examples(session, cell)
  host_before = provenance_lib.host_state()
  session.progress.start_cell(cell.cell_id, execute.num_decodes(cell))
  timer, warmup = execute.cell_timer(
      cell, session.loaded, prepared, session.experiment.latency_protocol)
  calibration = _calibrate_cell(session, cell, prepared)
  decoded = execute.run_trials(timer, prepared, session.progress.example_done)
  records = [execute.to_record(cell, session.loaded, item, result,
                               calibration)
             for item, result in zip(prepared, decoded)]
  digest = session.store.write_records(cell.cell_id, records)
  extra = {"protocol": session.experiment.latency_protocol,
           "reference_warmup_s": warmup.get("reference_warmup_s")}
  if session.paired:  # Where the reference stood: beside the cell, or its own.
    extra.update(summary_lib.reference_drift(
        records, cell.task_run.latency_examples,
        latency_lib.REF_TIMES if timer.reference else latency_lib.TIMES))
  provenance = dict(session.provenance, host={
      "before": host_before, "after": provenance_lib.host_state()})
  summary = summary_lib.summarize(
      session.experiment.name, cell, records, warmup["compile_s"],
      calibration, None if timer.reference else _reference_records(
          session, cell), provenance, extra,
      allow_unisolated=session.allow_unisolated_mbpp)
  summary["records"] = digest
  session.store.write_summary(summary)
  session.progress.cell_done(summary)
  return summary


def _load(pair: cfg.ModelPair, exp: cfg.Experiment, paired: bool) -> tuple[
    pairs.LoadedPair, schema.Calibration | None]:
  """Loads a pair; calibrates its cost model now (unpaired protocol)."""
  with tempfile.TemporaryDirectory(prefix="harness-pair-") as work_dir:
    loaded = pairs.load_pair(pair, work_dir)
  if paired:
    return loaded, None  # Each cell calibrates in its own window.
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
              progress: progress_lib.Progress,
              allow_unisolated_mbpp: bool = False) -> schema.Calibration:
  """Runs the cells of one model pair; returns its calibration."""
  paired = exp.latency_protocol == latency_lib.PAIRED
  loaded, calibration = _load(pair, exp, paired)
  session = Session(exp, store, loaded, calibration, provenance, progress,
                    paired, allow_unisolated_mbpp)
  for cell in todo:
    run_cell(session, cell)
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
  progress = progress_lib.Progress(len(todo), enabled=options.progress)
  compiled_before = compile_totals()
  calibrations = {}
  store.write_manifest(_manifest(exp, cells, options, calibrations,
                                 provenance, store))
  try:
    for pair, group in _by_pair(todo).items():
      calibrations[pair.name] = _run_pair(exp, pair, group, store, provenance,
                                          progress,
                                          options.allow_unisolated_mbpp)
      store.write_manifest(_manifest(exp, cells, options, calibrations,
                                     provenance, store))
  finally:
    progress.close()
  manifest = _manifest(exp, cells, options, calibrations, provenance, store)
  manifest["compile"] = compile_totals(since=compiled_before)
  store.write_manifest(manifest)
  c = manifest["compile"]
  print(f"compiled programs: {c['programs']}, compile seconds: "
        f"{c['seconds']:.1f}", file=out)
  return store.dir
