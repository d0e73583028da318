"""Shared pieces of the fault suite: the tiny sweep, child processes, and
comparing results files with the timing fields set aside.

Every child is ``python -m harness ...`` run from a *snapshot* of the code
(``make_snapshot``: a private copy of ``harness/``, ``gin/`` and
``experiments/`` taken when the suite starts, with ``data/`` linked), so edits
made to the checkout while the suite runs cannot change its figures. All
children of one suite run share a persistent JAX compilation cache, so only
the first child compiles.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Sequence

REPO = pathlib.Path(__file__).resolve().parents[2]
SNAPSHOT_DIRS = ("harness", "gin", "experiments")
SMOKE_GIN = "experiments/smoke.gin"
EXPERIMENT = "smoke"
CHILD_TIMEOUT_S = 600.0
# The tiny sweep: 2 reference cells + 1 method cell, 3 examples, 2 trials.
TINY_SWEEP = (
    "--gin.METHODS=[@spec_decode_lossy/MethodGrid()]",
    "--gin.spec_decode_lossy/MethodGrid.alphas=[0.5]",
    "--gin.multi30k_ende/TaskRun.num_examples=3",
    "--gin.MAX_DECODE_LEN=6", "--gin.CALIBRATION_CALLS=2")
NUM_TINY_CELLS = 3
NUM_TINY_EXAMPLES = 3

# Fields that hold wall-clock measurements or checkout state; everything else
# in a results file must be identical between runs with the same seed.
# Paths are dotted keys; a missing key is ignored.
RECORD_TIMING_FIELDS = ("times_s", "modeled_s")
SUMMARY_TIMING_FIELDS = (
    "latency", "relative_latency", "cost_model", "stats.measured_speedup",
    "stats.predicted_speedup", "provenance.created", "provenance.git_commit",
    "provenance.git_dirty")
MANIFEST_TIMING_FIELDS = (
    "calibration", "calibrations", "provenance.created",
    "provenance.git_commit", "provenance.git_dirty")
TIMING_PLACEHOLDER = "<timing>"
# The results location is recorded in the operative gin config; it is where
# the results are, not what they are, so comparisons mask it.
_RESULTS_DIR_LINE = re.compile(r"RESULTS_DIR = '[^'\n]*'")
RESULTS_DIR_PLACEHOLDER = "RESULTS_DIR = <results dir>"


@dataclasses.dataclass(frozen=True)
class ChildResult:
  """A finished child process.

  Attributes:
    returncode: exit status (negative: killed by that signal).
    stdout: its standard output.
    stderr: its standard error.
    seconds: wall time.
  """
  returncode: int
  stdout: str
  stderr: str
  seconds: float


@dataclasses.dataclass(frozen=True)
class Context:
  """Where children run.

  Attributes:
    root: the code snapshot (working directory of every child).
    jax_cache: the shared persistent compilation cache.
  """
  root: pathlib.Path
  jax_cache: str

  def env(self, **extra: str) -> dict[str, str]:
    return child_env(self.jax_cache, **extra)


def make_snapshot(dest: pathlib.Path) -> pathlib.Path:
  """Copies the code to ``dest`` (data linked); returns ``dest``."""
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in SNAPSHOT_DIRS:
    shutil.copytree(REPO / name, dest / name, ignore=ignore,
                    dirs_exist_ok=True)
  data = dest / "data"
  if not data.exists():
    data.symlink_to(REPO / "data")
  return dest


def child_env(jax_cache: str, **extra: str) -> dict[str, str]:
  """The environment of a child: shared compilation cache, quiet logs."""
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax_cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONUNBUFFERED="1")
  env.update(extra)
  return env


def harness_argv(*args: str) -> list[str]:
  return [sys.executable, "-m", "harness", *args]


def sweep_args(results_dir: str, *extra: str) -> list[str]:
  """Arguments of the tiny sweep writing under ``results_dir``."""
  return ["sweep", "--gin_file", SMOKE_GIN, "--no_progress",
          f"--gin.RESULTS_DIR='{results_dir}'", *TINY_SWEEP, *extra]


def start(ctx: Context, args: Sequence[str], env: dict[str, str] | None = None,
          preexec_fn=None) -> subprocess.Popen:
  """Starts ``python -m harness <args>`` in the snapshot."""
  return subprocess.Popen(harness_argv(*args), cwd=ctx.root,
                          env=ctx.env() if env is None else env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, preexec_fn=preexec_fn)


def run(ctx: Context, args: Sequence[str], env: dict[str, str] | None = None,
        preexec_fn=None, timeout: float = CHILD_TIMEOUT_S) -> ChildResult:
  """Runs ``python -m harness <args>`` in the snapshot to completion."""
  begin = time.monotonic()
  proc = start(ctx, args, env, preexec_fn)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
  return ChildResult(proc.returncode, out, err, time.monotonic() - begin)


# --- Error output -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ErrorCheck:
  """How a failing command reported its error.

  Attributes:
    exit_code: the exit status.
    error_line: the single error line ("" when there is not exactly one).
    traceback: a Python traceback was printed.
    one_line: exactly one error line; other stderr lines are only argparse's
      usage block and the runner's per-cell progress lines.
  """
  exit_code: int
  error_line: str
  traceback: bool
  one_line: bool


# The runner's one informational line per finished cell (progress.cell_line):
# "<cell_id>: <metric>=<value> latency=...". Not an error, allowed on stderr.
_CELL_LINE = re.compile(r"^\S+__\S+: \S+=\S+ latency=")


def _is_error_line(line: str, prefix: str = "error") -> bool:
  return line.startswith(f"{prefix}:") or f": {prefix}:" in line


def check_error(result: ChildResult, warning: bool = False) -> ErrorCheck:
  """Classifies a child's stderr (see ``ErrorCheck``).

  With ``warning``, the single line looked for is a ``warning:`` line.
  """
  prefix = "warning" if warning else "error"
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  errors = [l for l in lines if _is_error_line(l, prefix)]
  usage = _usage_block(lines)
  others = [l for l in lines if l not in errors and l not in usage
            and not _CELL_LINE.match(l)]
  traceback = any(l.startswith("Traceback (most recent call last)")
                  for l in lines)
  one = len(errors) == 1 and not others and not traceback
  return ErrorCheck(result.returncode, errors[0] if len(errors) == 1 else "",
                    traceback, one)


def _usage_block(lines: list[str]) -> list[str]:
  """argparse's ``usage:`` line and its indented continuation lines."""
  block, inside = [], False
  for line in lines:
    if line.startswith("usage:"):
      inside = True
    elif not line.startswith(" "):
      inside = False
    if inside:
      block.append(line)
  return block


# --- Results files ------------------------------------------------------------


def _drop(obj: dict[str, Any], dotted: str) -> None:
  *parents, leaf = dotted.split(".")
  for key in parents:
    obj = obj.get(key) if isinstance(obj, dict) else None
    if obj is None:
      return
  if isinstance(obj, dict) and leaf in obj:
    obj[leaf] = TIMING_PLACEHOLDER


def without_timings(obj: dict[str, Any], fields: Sequence[str]
                    ) -> dict[str, Any]:
  """A deep copy of ``obj`` with each dotted field replaced by a marker."""
  out = json.loads(json.dumps(obj))
  for dotted in fields:
    _drop(out, dotted)
  provenance = out.get("provenance")
  if isinstance(provenance, dict) and isinstance(
      provenance.get("gin_config"), str):
    provenance["gin_config"] = _RESULTS_DIR_LINE.sub(
        RESULTS_DIR_PLACEHOLDER, provenance["gin_config"])
  return out


def _fields_for(name: str) -> tuple[str, ...]:
  if name.endswith(".jsonl"):
    return RECORD_TIMING_FIELDS
  if name.endswith("manifest.json") or "/manifests/" in name:
    return MANIFEST_TIMING_FIELDS
  return SUMMARY_TIMING_FIELDS


class CorruptFile(ValueError):
  """A results file that does not parse."""


def canonical_file(path: pathlib.Path, rel: str) -> str:
  """A results file's text with timing fields masked (CorruptFile if bad).

  JSON files must be exactly the store's formatting (key-sorted, 2-space
  indent, trailing newline); JSONL files one key-sorted object per line.
  """
  try:
    text = path.read_text(encoding="utf-8")
  except UnicodeDecodeError as err:
    raise CorruptFile(f"{rel}: not UTF-8 ({err.reason})") from None
  fields = _fields_for(rel)
  if rel.endswith(".jsonl"):
    if text and not text.endswith("\n"):
      raise CorruptFile(f"{rel}: last line is not terminated")
    return "".join(_canonical_line(line, fields, rel) + "\n"
                   for line in text.splitlines())
  try:
    obj = json.loads(text)
  except json.JSONDecodeError as err:
    raise CorruptFile(f"{rel}: invalid JSON ({err.msg})") from None
  formatted = json.dumps(obj, indent=2, sort_keys=True,
                         ensure_ascii=False) + "\n"
  if formatted != text:
    raise CorruptFile(f"{rel}: not in the store's formatting")
  return json.dumps(without_timings(obj, fields), indent=2, sort_keys=True,
                    ensure_ascii=False) + "\n"


def _canonical_line(line: str, fields, rel: str) -> str:
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as err:
    raise CorruptFile(f"{rel}: invalid JSON line ({err.msg})") from None
  if json.dumps(obj, sort_keys=True, ensure_ascii=False) != line:
    raise CorruptFile(f"{rel}: line not in the store's formatting")
  return json.dumps(without_timings(obj, fields), sort_keys=True,
                    ensure_ascii=False)


def results_files(exp_dir: pathlib.Path) -> list[str]:
  """Every file under an experiment directory, relative, sorted."""
  if not exp_dir.exists():
    return []
  return sorted(str(p.relative_to(exp_dir)) for p in exp_dir.rglob("*")
                if p.is_file())


def is_temporary(rel: str) -> bool:
  return pathlib.PurePath(rel).name.startswith(".tmp-")
