"""Provenance stamped on every results file: code, packages, device, seeds."""

from __future__ import annotations

import datetime
import glob
import importlib.metadata
import os
import re
import subprocess
from typing import Any

from harness import REPO_ROOT
from harness.results import schema

# Distributions whose versions are recorded (key in the results: dist name).
PACKAGES = ("jax", "jaxlib", "flax", "numpy", "sacrebleu", "rouge_score",
            "seqio", "gin-config", "harness")
_GIT_TIMEOUT_S = 10
# The commit of a work-tree copy that has no .git (see git_state).
COMMIT_ENV = "HARNESS_GIT_COMMIT"


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(["git", "-C", REPO_ROOT, *args], check=True,
                         capture_output=True, text=True,
                         timeout=_GIT_TIMEOUT_S)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout


def git_state() -> tuple[str | None, bool | None]:
  """(HEAD commit, whether the work tree has uncommitted changes)."""
  if os.environ.get(COMMIT_ENV):
    # A copy of the tree (rsynced to a VM, with or without a .git of its
    # own): the commit it was copied from, as whoever copied it said.
    return os.environ[COMMIT_ENV], None
  head = _git("rev-parse", "HEAD")
  if head is None:
    return None, None
  status = _git("status", "--porcelain", "--untracked-files=no")
  return head.strip(), (None if status is None else bool(status.strip()))


def _version(dist: str) -> str | None:
  names = (dist, dist.replace("_", "-"))
  for name in names:
    try:
      return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  return None


def versions() -> dict[str, str | None]:
  """Installed versions of ``PACKAGES`` (None when not installed)."""
  return {name: _version(name) for name in PACKAGES}


def device_info() -> dict:
  """Platform, device kind and device count of the default JAX backend."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  from harness.edge import cpu_threads  # pylint: disable=g-import-not-at-top
  from harness.models import layout  # pylint: disable=g-import-not-at-top
  return {"platform": devices[0].platform,
          "device_kind": devices[0].device_kind,
          "num_devices": len(devices),
          # XLA:CPU's pool size when --cpu_threads set it (None: one per CPU).
          "xla_cpu_threads": cpu_threads.applied(),
          "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(
              os, "sched_getaffinity") else os.cpu_count(),
          # Whether small weight products use the CPU kernel (on, off,
          # unavailable); None off the CPU.
          "small_m_kernel": _kernel_state(devices[0].platform),
          # Each pair's layout chosen before the first cell (pair name ->
          # model parallelism, drafter placement, replicas), this replica.
          "placement": layout.recorded_all(),
          "replica": layout.replica_index()}


def _kernel_state(platform: str) -> str | None:
  if platform != "cpu":
    return None
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  return cpu_matmul.status()


_SYS_FREQ = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"
_CPUINFO = "/proc/cpuinfo"
_CPUINFO_MHZ = re.compile(r"^cpu MHz\s*:\s*([0-9.]+)", re.MULTILINE)


def cpu_mhz() -> list[float] | None:
  """Current frequency of each CPU in MHz, where the OS exposes it.

  Reads cpufreq's ``scaling_cur_freq`` (kHz), else ``cpu MHz`` lines of
  /proc/cpuinfo; None when neither exists (many VMs hide both).
  """
  values = []
  for path in sorted(glob.glob(_SYS_FREQ)):
    try:
      with open(path, encoding="ascii") as f:
        values.append(int(f.read().strip()) / 1000.0)
    except (OSError, ValueError):
      continue
  if values:
    return values
  try:
    with open(_CPUINFO, encoding="utf-8") as f:
      found = [float(x) for x in _CPUINFO_MHZ.findall(f.read())]
  except OSError:
    return None
  return found or None


def host_state() -> dict[str, Any]:
  """The host's load and clock now: ``{"time", "loadavg", "cpu_mhz"}``.

  ``loadavg`` is the 1, 5 and 15 minute load average (None where the OS has
  none); ``cpu_mhz`` as in :func:`cpu_mhz`.
  """
  try:
    load = [round(x, 3) for x in os.getloadavg()]
  except OSError:
    load = None
  return {"time": now_iso(), "loadavg": load, "cpu_mhz": cpu_mhz()}


def now_iso() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def collect(gin_config: str, seeds: dict[str, int]) -> schema.Provenance:
  """The ``schema.Provenance`` of the current process."""
  from harness import tasks  # pylint: disable=g-import-not-at-top
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  commit, dirty = git_state()
  return schema.Provenance(
      git_commit=commit, git_dirty=dirty, versions=versions(),
      device=device_info(), seeds=dict(seeds), gin_config=gin_config,
      created=now_iso(), task_version=tasks.TASK_VERSION,
      schema_version=schema.SCHEMA_VERSION, sandbox=sandbox.provenance())
