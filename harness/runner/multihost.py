"""Sweeps over several hosts: ``jax.distributed``, per-host results, gather.

A multi-host sweep runs the same command on every host with
``--distributed`` (or ``HARNESS_DISTRIBUTED=1``): :func:`host_shard` calls
``jax.distributed.initialize()`` (coordinator found from the TPU/SLURM
environment or ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``), takes shard ``process_index / process_count`` (units
of work balanced by estimated time, ``cells.Shard``) and
:func:`host_results_dir` gives each host its own directory ``<RESULTS_DIR>/hosts/host-<i>-of-<N>``. Each
host runs its cells independently (no collective between hosts). Afterwards
:func:`gather` copies every host's cells and shard manifests into one
directory and merges them (``merge.merge``: the merged manifest, relative
latencies). A cell that two hosts finished (a lost shard re-dealt) is kept
once, from the first intact copy. Host and merged directories may be local
or on a bucket (``harness.results.storage``).
"""

from __future__ import annotations

import os
from typing import Sequence

from harness.results import merge
from harness.results import schema
from harness.results import storage
from harness.results import store as store_lib
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


def _store(exp_dir: str) -> store_lib.ResultsStore:
  root, name = storage.split(exp_dir)
  return store_lib.ResultsStore(root, name)


def _gather_cells(hosts: Sequence[str], into: str) -> tuple[int, int]:
  """Copies each finished cell once: the first intact copy (records and
  summary from the same host), or the one ``into`` holds already.

  Returns:
    (files copied, duplicate copies left behind).

  Raises:
    ValueError: a cell whose every copy fails its checksum.
  """
  target = _store(into)
  copied = duplicates = 0
  damaged: dict[str, str] = {}
  for host in hosts:
    store = _store(host)
    for path in storage.glob(store.cells_dir, "*" + schema.SUMMARY_SUFFIX):
      cell_id = storage.split(path)[1][:-len(schema.SUMMARY_SUFFIX)]
      if target.is_done(cell_id) and target.check_cell(cell_id) is None:
        duplicates += 1  # A re-dealt cell: the first intact copy stays.
        continue
      problem = store.check_cell(cell_id)
      if problem is not None:
        damaged[cell_id] = problem
        continue
      storage.copy_file(store.records_path(cell_id),
                        target.records_path(cell_id))
      storage.copy_file(path, target.summary_path(cell_id))
      damaged.pop(cell_id, None)
      copied += 2
  for cell_id, problem in damaged.items():
    if not target.is_done(cell_id):
      raise ValueError(f"cell {cell_id}: no intact copy on any host "
                       f"({problem}); rerun a sweep to redo it")
  return copied, duplicates


def gather(host_dirs: Sequence[str], into: str) -> tuple[int, list[str]]:
  """Copies hosts' experiment directories into ``into`` and merges them.

  A cell finished on several hosts (a shard re-dealt after a preemption,
  with a new N or ``--only``) is copied once: the first intact copy in
  ``host_dirs`` order (``ResultsStore.check_cell``), records and summary
  together. Shard manifests of the same name keep the first copy too.

  Args:
    host_dirs: each host's ``<root>/<experiment>`` directory.
    into: the merged ``<root>/<experiment>`` directory (created).

  Returns:
    (files copied, cell ids whose relative latency was filled).

  Raises:
    FileNotFoundError: a host directory does not exist.
    ValueError: another file differs between two hosts, or a cell has no
      intact copy.
  """
  for host in host_dirs:
    if not storage.isdir(host):
      raise FileNotFoundError(f"{host}: no such host results directory")
  copied, _ = _gather_cells(host_dirs, into)
  for host in host_dirs:
    # "/"-separated paths below the host's directory; hidden (temporary)
    # files are not listed.
    for rel in storage.walk_files(host):
      top = rel.split("/")[0]
      if rel == "manifest.json" or top == schema.CELLS_DIR:
        continue
      path, dest = storage.join(host, rel), storage.join(into, rel)
      if storage.exists(dest):
        if top == schema.SHARD_MANIFEST_DIR:
          continue  # A re-dealt shard's manifest: the first stays.
        if storage.read_bytes(dest) != storage.read_bytes(path):
          raise ValueError(f"{path}: differs from {dest}")
        continue
      storage.copy_file(path, dest)
      copied += 1
  _, filled = merge.merge(into)
  return copied, filled
