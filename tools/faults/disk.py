"""Full disks, read-only results directories and permission denied.

Each scenario runs the tiny sweep against a hostile results directory and
checks that the command fails with one ``error:`` line naming the cause,
prints no traceback, and leaves no partial file that looks complete: no
``.tmp-`` file, and every summary present has exactly the records of the
reference run. The disk-full scenarios then make room and resume; the result
must equal the reference run.

Needs root (mounting tmpfs, ``setpriv`` to drop CAP_DAC_OVERRIDE); without
it the scenarios are reported as skipped.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import time

from tools.faults import common
from tools.faults import crash

DROPPED_CAPS = "-dac_override,-dac_read_search,-fowner"
ROOMY = "64m"
# tmpfs sizes for the disk-full runs: before the manifest fits, and after
# some cells were written.
FULL_SIZES = ("4k", "24k", "40k")


@dataclasses.dataclass(frozen=True)
class DiskOutcome:
  """One scenario.

  Attributes:
    name: scenario id.
    exit_code: exit status of the failing run.
    error_line: its single error line.
    one_line: exactly one error line, nothing else on stderr.
    traceback: a traceback was printed.
    names_cause: the error line names the OS error (e.g. "No space left").
    names_path: the error line names a path under the results directory.
    temporaries: ``.tmp-`` files left behind.
    false_complete: summaries whose records or contents differ from the
      reference run.
    corrupted_files: files that do not parse.
    cells_done: summaries written before the failure.
    resumed_identical: after making room, a rerun equals the reference run
      (None: not applicable).
    skipped: why the scenario was not run ("" if it ran).
  """
  name: str
  exit_code: int | None = None
  error_line: str = ""
  one_line: bool = False
  traceback: bool = False
  names_cause: bool = False
  names_path: bool = False
  temporaries: int = 0
  false_complete: int = 0
  corrupted_files: int = 0
  cells_done: int = 0
  resumed_identical: bool | None = None
  skipped: str = ""

  @property
  def passed(self) -> bool:
    if self.skipped:
      return False
    return (self.exit_code not in (0, None) and self.one_line
            and not self.traceback and self.names_cause
            and not self.temporaries and not self.false_complete
            and not self.corrupted_files and self.resumed_identical
            is not False)


def _sh(*argv: str) -> None:
  subprocess.run(argv, check=True, capture_output=True)


def _mount_tmpfs(path: pathlib.Path, size: str) -> None:
  path.mkdir(parents=True, exist_ok=True)
  _sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
      str(path))


def _remount(path: pathlib.Path, options: str) -> None:
  _sh("mount", "-o", f"remount,{options}", str(path))


def _umount(path: pathlib.Path) -> None:
  subprocess.run(["umount", str(path)], check=False, capture_output=True)


def _inspect(name: str, result: common.ChildResult, root: pathlib.Path,
             ref: crash.Reference, cause: str) -> DiskOutcome:
  check = common.check_error(result)
  exp_dir = root / common.EXPERIMENT
  state = crash.kill_state(exp_dir, ref, exited=True)
  line = check.error_line
  return DiskOutcome(
      name, check.exit_code, line, check.one_line, check.traceback,
      cause.lower() in line.lower(), str(root) in line, state.temporaries,
      state.false_complete, state.corrupted_files, state.cells_done)


def disk_full(work: pathlib.Path, ctx: common.Context, ref: crash.Reference,
              size: str) -> DiskOutcome:
  """The sweep on a tmpfs of ``size``; then room is made and it resumes."""
  root = work / f"full-{size}"
  _mount_tmpfs(root, size)
  try:
    args = common.sweep_args(str(root))
    outcome = _inspect(f"disk full (tmpfs {size})", common.run(ctx, args),
                       root, ref, "No space left on device")
    _remount(root, f"size={ROOMY}")
    resumed = common.run(ctx, args)
    same = resumed.returncode == 0 and crash.compare(
        root / common.EXPERIMENT, ref).identical
    return dataclasses.replace(outcome, resumed_identical=same)
  finally:
    _umount(root)


def read_only(work: pathlib.Path, ctx: common.Context, ref: crash.Reference,
              partial_from: pathlib.Path | None) -> DiskOutcome:
  """The sweep on a read-only tmpfs, empty or holding a partial run."""
  with_partial = partial_from is not None
  root = work / ("ro-partial" if with_partial else "ro-empty")
  _mount_tmpfs(root, ROOMY)
  try:
    if with_partial:
      shutil.copytree(partial_from, root / common.EXPERIMENT)
      victim = sorted((root / common.EXPERIMENT / "cells").glob("*.json"))[-1]
      victim.unlink()
    _remount(root, "ro")
    name = "read-only results dir" + (" (partial run)" if with_partial
                                      else " (empty)")
    return _inspect(name, common.run(ctx, common.sweep_args(str(root))),
                    root, ref, "Read-only file system")
  finally:
    _umount(root)


def _without_dac_override() -> list[str]:
  """A command prefix running a child as root without the capabilities
  that bypass file permissions (so mode bits apply to it as to any user;
  a ``nobody`` child cannot be used: the interpreter may live under /root).
  """
  return ["setpriv", f"--bounding-set={DROPPED_CAPS}", "--"]


def permission_denied(work: pathlib.Path, ctx: common.Context,
                      ref: crash.Reference) -> DiskOutcome:
  """The sweep into a 0555 directory, without CAP_DAC_OVERRIDE."""
  root = work / "denied"
  root.mkdir(parents=True, exist_ok=True)
  root.chmod(0o555)
  begin = time.monotonic()
  proc = subprocess.run(
      _without_dac_override() + common.harness_argv(
          *common.sweep_args(str(root))), cwd=ctx.root, env=ctx.env(),
      capture_output=True, text=True, check=False,
      timeout=common.CHILD_TIMEOUT_S)
  result = common.ChildResult(proc.returncode, proc.stdout, proc.stderr,
                              time.monotonic() - begin)
  return _inspect("permission denied (mode 0555, no CAP_DAC_OVERRIDE)",
                  result, root, ref, "Permission denied")


def run_disk(work: pathlib.Path, ctx: common.Context, ref: crash.Reference,
             ref_dir: pathlib.Path, log=print) -> list[DiskOutcome]:
  """Every scenario (skipped without root).

  Args:
    work: scratch directory.
    ctx: where children run.
    ref: the reference run's files.
    ref_dir: its experiment directory (copied for the partial-run case).
    log: progress printer.
  """
  names = [f"disk full (tmpfs {s})" for s in FULL_SIZES] + [
      "read-only results dir (empty)", "read-only results dir (partial run)",
      "permission denied (mode 0555, no CAP_DAC_OVERRIDE)"]
  if os.geteuid() != 0:
    return [DiskOutcome(n, skipped="needs root") for n in names]
  work.mkdir(parents=True, exist_ok=True)
  runs = [lambda s=s: disk_full(work, ctx, ref, s) for s in FULL_SIZES]
  runs += [lambda p=p: read_only(work, ctx, ref, p) for p in (None, ref_dir)]
  runs.append(lambda: permission_denied(work, ctx, ref))
  outcomes = []
  for name, run in zip(names, runs):
    try:
      outcomes.append(run())
    except (OSError, subprocess.SubprocessError) as err:
      outcomes.append(DiskOutcome(name, skipped=f"could not run: {err}"))
  for o in outcomes:
    log(f"disk: {'ok  ' if o.passed else 'FAIL'} {o.name}: exit "
        f"{o.exit_code}, {o.cells_done} cells done: {o.error_line[:140]}")
  return outcomes
