"""Provenance stamped on every results file: code, packages, device, seeds."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import subprocess

from harness.runner import schema

# Distributions whose versions are recorded (key in the results: dist name).
PACKAGES = ("jax", "jaxlib", "flax", "numpy", "sacrebleu", "rouge_score",
            "seqio", "gin-config", "harness")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_GIT_TIMEOUT_S = 10


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(["git", "-C", _REPO_ROOT, *args], check=True,
                         capture_output=True, text=True,
                         timeout=_GIT_TIMEOUT_S)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout


def git_state() -> tuple[str | None, bool | None]:
  """(HEAD commit, whether the work tree has uncommitted changes)."""
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
  return {"platform": devices[0].platform,
          "device_kind": devices[0].device_kind,
          "num_devices": len(devices)}


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
