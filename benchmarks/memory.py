"""Peak resident memory of a (reduced) experiment run, in a subprocess."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

# Runs `cmd` as a child and prints its peak RSS (ru_maxrss is in KiB on Linux).
_WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": proc.returncode, "maxrss_kib": usage.ru_maxrss,
                  "stderr": proc.stderr[-2000:]}))
"""
KIB_PER_MB = 1024.0
# Wall-clock limit of the memory run (it compiles every method once).
RSS_TIMEOUT_S = 3600


@dataclasses.dataclass(frozen=True)
class RssResult:
  """Peak RSS of one command.

  Attributes:
    peak_rss_mb: the child's maximum resident set size (MiB).
    command: what ran.
    seconds: its wall time.
    returncode: its exit status (0 = the run completed).
  """
  peak_rss_mb: float
  command: tuple[str, ...]
  seconds: float
  returncode: int


def peak_rss(command: list[str],
             timeout_s: float = RSS_TIMEOUT_S) -> RssResult | None:
  """Runs ``command`` in a fresh wrapper process; returns its peak RSS.

  Returns None (and says why on stderr) if the wrapper fails or times out,
  so that a slow memory run never loses the rest of the benchmark.
  """
  start = time.perf_counter()
  try:
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *command],
                         capture_output=True, text=True, timeout=timeout_s,
                         check=True)
  except (subprocess.SubprocessError, OSError) as err:
    print(f"bench: RSS run failed: {err}", file=sys.stderr)
    return None
  info = json.loads(out.stdout.strip().splitlines()[-1])
  if info["returncode"]:
    print(f"bench: RSS run exited {info['returncode']}: {info['stderr']}",
          file=sys.stderr)
  return RssResult(info["maxrss_kib"] / KIB_PER_MB, tuple(command),
                   time.perf_counter() - start, info["returncode"])


def experiment_command(gin_file: str, overrides: tuple[str, ...],
                       drafter_dir: str, verifier_dir: str,
                       results_dir: str) -> list[str]:
  """``python -m harness sweep`` of ``gin_file`` with reduced sizes."""
  bindings = [*overrides, f'DRAFTER_CHECKPOINT="{drafter_dir}"',
              f'VERIFIER_CHECKPOINT="{verifier_dir}"',
              f'RESULTS_DIR="{results_dir}"']
  return [sys.executable, "-m", "harness", "sweep", "--gin_file", gin_file,
          "--no_progress", *(f"--gin.{b}" for b in bindings)]


def experiment_rss(gin_file: str | None, overrides: tuple[str, ...],
                   drafter_dir: str, verifier_dir: str) -> RssResult | None:
  """Peak RSS of the reduced experiment; None without a gin file or on failure."""
  if not gin_file or not os.path.exists(gin_file):
    return None
  with tempfile.TemporaryDirectory(prefix="bench-rss-") as results:
    return peak_rss(experiment_command(gin_file, overrides, drafter_dir,
                                       verifier_dir, results))


def self_peak_rss_mb() -> float:
  """Peak RSS of this process so far (MiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MB
