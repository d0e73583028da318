"""Sweeps over several hosts: ``jax.distributed``, per-host results, gather.

A multi-host sweep runs the same command on every host with
``--distributed`` (or ``HARNESS_DISTRIBUTED=1``): :func:`host_shard` calls
``jax.distributed.initialize()`` (coordinator found from the TPU/SLURM
environment or ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``), takes shard ``process_index / process_count`` (whole
(task, T, top-P) groups, ``cells.Shard``) and :func:`host_results_dir` gives
each host its own directory ``<RESULTS_DIR>/hosts/host-<i>-of-<N>``. Each
host runs its cells independently (no collective between hosts). Afterwards
:func:`gather` copies every host's cells and shard manifests into one
directory and merges them (``merge.merge``: the merged manifest, relative
latencies). Host and merged directories may be local or on a bucket
(``harness.results.storage``).
"""

from __future__ import annotations

import os
from typing import Sequence

from harness.results import merge
from harness.results import storage
from harness.runner import cells as cells_lib

DISTRIBUTED_ENV = "HARNESS_DISTRIBUTED"
HOSTS_DIR = "hosts"


def wants_distributed(flag: bool) -> bool:
  """``--distributed`` or ``HARNESS_DISTRIBUTED=1``."""
  return flag or os.environ.get(DISTRIBUTED_ENV, "") not in ("", "0")


def host_shard() -> cells_lib.Shard:
  """Initialises ``jax.distributed``; this host's shard of the sweep."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize()
  return cells_lib.Shard(jax.process_index(), jax.process_count())


def host_results_dir(results_dir: str, shard: cells_lib.Shard) -> str:
  """This host's own results root (the experiment's directory goes inside)."""
  return storage.join(results_dir, HOSTS_DIR,
                      f"host-{shard.index}-of-{shard.count}")


def gather(host_dirs: Sequence[str], into: str) -> tuple[int, list[str]]:
  """Copies hosts' experiment directories into ``into`` and merges them.

  Args:
    host_dirs: each host's ``<root>/<experiment>`` directory.
    into: the merged ``<root>/<experiment>`` directory (created).

  Returns:
    (files copied, cell ids whose relative latency was filled).

  Raises:
    FileNotFoundError: a host directory does not exist.
    ValueError: two hosts wrote the same cell with different content.
  """
  copied = 0
  for host in host_dirs:
    if not storage.isdir(host):
      raise FileNotFoundError(f"{host}: no such host results directory")
    for rel in storage.walk_files(host):
      if rel == "manifest.json":
        continue
      path, dest = storage.join(host, rel), storage.join(into, rel)
      if storage.exists(dest):
        if storage.read_bytes(dest) != storage.read_bytes(path):
          raise ValueError(f"{path}: differs from {dest} (the same cell "
                           "on two hosts?)")
        continue
      storage.copy_file(path, dest)
      copied += 1
  _, filled = merge.merge(into)
  return copied, filled
