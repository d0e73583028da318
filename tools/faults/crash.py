"""Crash safety: SIGKILL a small sweep at random moments, resume, compare.

Protocol (``run_crash_trials``):

1. Two uninterrupted runs of the tiny sweep (the first fills the shared
   compilation cache). Their files, timing fields masked, must be identical
   (determinism across runs); the second gives the duration ``T`` and the
   moment ``W`` the first results file appeared.
2. Each trial starts the sweep in a fresh directory, sends SIGKILL after a
   seeded random delay (even trials: uniform on [0, T]; odd trials: uniform
   on [W, T], the window in which files are written), inspects what the kill
   left behind, reruns the same command to completion and compares every
   file with the reference run.

Every run writes to the same ``RESULTS_DIR`` path (``<work>/active``; the
operative gin config, recorded in every file, includes it) and is moved
aside afterwards.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import random
import shutil
import signal
import time

from tools.faults import common

POLL_S = 0.01
ACTIVE = "active"


def _fresh_active(work: pathlib.Path) -> pathlib.Path:
  """The shared results path, emptied."""
  results = work / ACTIVE
  shutil.rmtree(results, ignore_errors=True)
  return results


@dataclasses.dataclass(frozen=True)
class Comparison:
  """A results directory against the reference run.

  Attributes:
    lost_rows: reference (cell, example) rows missing.
    duplicated_rows: rows present more than once.
    corrupted_files: files that do not parse (or are not in the store's
      formatting).
    differing_files: files missing, extra or different (timings masked).
    temporaries: leftover ``.tmp-*`` files.
    files_compared: files in the reference run.
  """
  lost_rows: int
  duplicated_rows: int
  corrupted_files: int
  differing_files: int
  temporaries: int
  files_compared: int

  @property
  def identical(self) -> bool:
    return not (self.lost_rows or self.duplicated_rows or self.corrupted_files
                or self.differing_files or self.temporaries)


@dataclasses.dataclass(frozen=True)
class KillState:
  """What a SIGKILL left behind, before resuming.

  Attributes:
    exited_before_kill: the sweep had already finished.
    cells_done: summaries present.
    records_without_summary: ``.jsonl`` files whose summary is missing.
    temporaries: ``.tmp-*`` files.
    false_complete: summaries whose records differ from the reference run
      (a partial cell that looks complete).
    corrupted_files: non-temporary files that do not parse.
  """
  exited_before_kill: bool
  cells_done: int
  records_without_summary: int
  temporaries: int
  false_complete: int
  corrupted_files: int


@dataclasses.dataclass(frozen=True)
class CrashTrial:
  """One kill-and-resume trial."""
  index: int
  delay_s: float
  window: str
  at_kill: KillState
  resume_exit: int
  after_resume: Comparison


@dataclasses.dataclass(frozen=True)
class Reference:
  """The uninterrupted run files compare against.

  Attributes:
    files: relative path -> canonical text (timings masked).
    rows: cell id -> example indices of its records.
    duration_s: wall time of the warm uninterrupted run.
    first_write_s: when its first results file appeared.
  """
  files: dict[str, str]
  rows: dict[str, list[int]]
  duration_s: float
  first_write_s: float


def snapshot(exp_dir: pathlib.Path) -> tuple[dict[str, str], list[str]]:
  """(relative path -> canonical text, corrupt files) of a results dir."""
  files, corrupt = {}, []
  for rel in common.results_files(exp_dir):
    if common.is_temporary(rel):
      continue
    try:
      files[rel] = common.canonical_file(exp_dir / rel, rel)
    except common.CorruptFile:
      corrupt.append(rel)
  return files, corrupt


def _rows(exp_dir: pathlib.Path, rel: str) -> list[int]:
  path = exp_dir / rel
  indices = []
  for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
    try:
      indices.append(int(json.loads(line)["index"]))
    except (ValueError, KeyError, TypeError):
      continue
  return indices


def compare(exp_dir: pathlib.Path, ref: Reference) -> Comparison:
  """Row and file accounting of ``exp_dir`` against the reference."""
  files, corrupt = snapshot(exp_dir)
  lost = duplicated = 0
  for cell_id, expected in ref.rows.items():
    rel = f"cells/{cell_id}.jsonl"
    present = _rows(exp_dir, rel) if (exp_dir / rel).exists() else []
    counts = collections.Counter(present)
    lost += sum(1 for i in expected if i not in counts)
    duplicated += sum(c - 1 for c in counts.values() if c > 1)
  names = set(files) | set(ref.files) | set(corrupt)
  differing = sum(1 for n in names
                  if n in corrupt or files.get(n) != ref.files.get(n))
  temporaries = sum(1 for rel in common.results_files(exp_dir)
                    if common.is_temporary(rel))
  return Comparison(lost, duplicated, len(corrupt), differing, temporaries,
                    len(ref.files))


def kill_state(exp_dir: pathlib.Path, ref: Reference,
               exited: bool) -> KillState:
  """Inspects a results directory right after a kill."""
  files, corrupt = snapshot(exp_dir)
  rels = common.results_files(exp_dir)
  summaries = [r for r in files if r.startswith("cells/")
               and r.endswith(".json")]
  records = [r for r in rels if r.endswith(".jsonl")
             and not common.is_temporary(r)]
  orphans = [r for r in records if r[:-1] not in files]
  false_complete = sum(
      1 for s in summaries
      if files.get(s + "l") != ref.files.get(s + "l")
      or files[s] != ref.files.get(s))
  return KillState(exited, len(summaries), len(orphans),
                   sum(1 for r in rels if common.is_temporary(r)),
                   false_complete, len(corrupt))


def reference_run(work: pathlib.Path, name: str, ctx: common.Context
                  ) -> tuple[Reference, common.ChildResult]:
  """Runs the sweep uninterrupted, watching when files first appear."""
  results = _fresh_active(work)
  exp_dir = results / common.EXPERIMENT
  begin = time.monotonic()
  proc = common.start(ctx, common.sweep_args(str(results)))
  first_write = None
  while proc.poll() is None:
    if first_write is None and exp_dir.exists() and any(exp_dir.iterdir()):
      first_write = time.monotonic() - begin
    time.sleep(POLL_S)
  out, err = proc.communicate()
  duration = time.monotonic() - begin
  result = common.ChildResult(proc.returncode, out, err, duration)
  if result.returncode != 0:
    raise RuntimeError(f"reference sweep failed: {err.strip()[-500:]}")
  files, corrupt = snapshot(exp_dir)
  if corrupt:
    raise RuntimeError(f"reference sweep wrote corrupt files: {corrupt}")
  rows = {rel[len("cells/"):-len(".jsonl")]: _rows(exp_dir, rel)
          for rel in files if rel.endswith(".jsonl")}
  shutil.rmtree(work / name, ignore_errors=True)
  results.rename(work / name)
  return Reference(files, rows, duration, first_write or 0.0), result


def crash_trial(work: pathlib.Path, index: int, delay_s: float, window: str,
                ref: Reference, ctx: common.Context) -> CrashTrial:
  """One trial: start, SIGKILL after ``delay_s``, inspect, resume, compare."""
  results = _fresh_active(work)
  exp_dir = results / common.EXPERIMENT
  args = common.sweep_args(str(results))
  proc = common.start(ctx, args)
  deadline = time.monotonic() + delay_s
  while proc.poll() is None and time.monotonic() < deadline:
    time.sleep(POLL_S)
  exited = proc.poll() is not None
  if not exited:
    proc.send_signal(signal.SIGKILL)
  proc.communicate()
  at_kill = kill_state(exp_dir, ref, exited)
  resumed = common.run(ctx, args)
  after = compare(exp_dir, ref)
  shutil.rmtree(results, ignore_errors=True)
  return CrashTrial(index, delay_s, window, at_kill, resumed.returncode,
                    after)


def draw_delay(rng: random.Random, index: int, ref: Reference
               ) -> tuple[float, str]:
  """Even trials: uniform on [0, T]; odd: uniform on the write window."""
  if index % 2 == 0:
    return rng.uniform(0.0, ref.duration_s), "whole run"
  return rng.uniform(ref.first_write_s, ref.duration_s), "write window"


@dataclasses.dataclass(frozen=True)
class CrashReport:
  """Crash trials and the two-run determinism check.

  Attributes:
    trials: every trial.
    rerun: the second uninterrupted run against the first.
    duration_s: wall time of the warm uninterrupted run.
    first_write_s: when its first file appeared.
    tokens_compared: per-example token lists compared between the runs.
  """
  trials: list[CrashTrial]
  rerun: Comparison
  duration_s: float
  first_write_s: float
  tokens_compared: int


def run_crash_trials(work: pathlib.Path, ctx: common.Context,
                     num_trials: int, seed: int, log=print,
                     on_progress=lambda report: None) -> CrashReport:
  """Runs the protocol of the module docstring.

  ``on_progress(report)`` is called with the trials so far after each one,
  so a long run under load leaves its figures behind even if stopped.
  """
  first, _ = reference_run(work, "reference-cold", ctx)
  log(f"crash: cold reference run done ({len(first.files)} files)")
  second, _ = reference_run(work, "reference-warm", ctx)
  rerun = compare(work / "reference-warm" / common.EXPERIMENT, first)
  tokens = sum(len(v) for v in second.rows.values())
  log(f"crash: warm run {second.duration_s:.1f} s, first write at "
      f"{second.first_write_s:.1f} s; identical to cold: {rerun.identical}")
  rng = random.Random(seed)
  trials = []
  for i in range(num_trials):
    delay, window = draw_delay(rng, i, second)
    trial = crash_trial(work, i, delay, window, first, ctx)
    trials.append(trial)
    on_progress(CrashReport(list(trials), rerun, second.duration_s,
                            second.first_write_s, tokens))
    log(f"crash: trial {i + 1}/{num_trials} kill at {delay:.2f} s "
        f"({trial.at_kill.cells_done} cells done, "
        f"{trial.at_kill.records_without_summary} orphan records, "
        f"{trial.at_kill.temporaries} tmp): resume exit "
        f"{trial.resume_exit}, identical={trial.after_resume.identical}")
  return CrashReport(trials, rerun, second.duration_s, second.first_write_s,
                     tokens)
