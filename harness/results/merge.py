"""Merging sharded results and filling relative latency after the fact.

Shards (``--shard i/N``) write disjoint ``cells/*`` files and one manifest
each under ``manifests/``. Copy every host's ``results/<experiment>/`` into
one directory (e.g. ``rsync -a host:results/ results/``, or ``gather``,
which also reads and writes buckets), then
:func:`merge` writes the combined ``manifest.json`` and fills the
``relative_latency`` of summaries whose reference_large cell ran on another
shard.
"""

from __future__ import annotations

from harness.results import latency as latency_lib
from harness.results import schema
from harness.results import storage
from harness.results import store as store_lib


def _shard_manifests(store: store_lib.ResultsStore) -> list[schema.Manifest]:
  directory = storage.join(store.dir, schema.SHARD_MANIFEST_DIR)
  return [store_lib.read_json(p)
          for p in storage.glob(directory, "shard-*.json")]


def merge_manifests(store: store_lib.ResultsStore) -> str | None:
  """Writes ``manifest.json`` from the shard manifests (None if none)."""
  shards = _shard_manifests(store)
  if not shards:
    return None
  count = shards[0]["shard"]["count"]
  by_index = {m["shard"]["index"]: m["cell_ids"] for m in shards}
  # Shards hold whole groups of cells (cells.deal): interleave their lists
  # round-robin, keeping every cell once.
  longest = max(len(ids) for ids in by_index.values())
  order = list(dict.fromkeys(
      by_index[i][k] for k in range(longest) for i in sorted(by_index)
      if k < len(by_index[i])))
  if all("sweep_cell_ids" in m for m in shards):  # The sweep's run order.
    ran = set(order)
    order = [c for c in shards[0]["sweep_cell_ids"] if c in ran]
  calibrations = {}
  for m in shards:
    calibrations.update(m.get("calibrations", {}))
  merged = dict(shards[0], cell_ids=order, shard={"index": 0, "count": 1},
                calibrations=calibrations,
                merged_shards=sorted(by_index), shard_count=count)
  path = store.manifest_path()
  store_lib.atomic_write_text(path, store_lib.to_json(merged))
  return path


def with_relative(summary: schema.CellSummary,
                  measured: float | None,
                  modeled: float | None) -> schema.CellSummary:
  """The summary with its relative latencies (and measured speed-up) set."""
  stats = dict(summary["stats"], measured_speedup=(
      1.0 / measured if measured else None))
  return dict(summary, relative_latency=measured, stats=stats,
              cost_model=dict(summary["cost_model"],
                              relative_latency=modeled))


def fill_relative(store: store_lib.ResultsStore) -> list[str]:
  """Fills null relative latencies whose reference now exists.

  Returns:
    The cell ids whose summaries were rewritten.
  """
  summaries = store.summaries()
  references = {schema.reference_key(s["cell"]): s for s in summaries
                if s["cell"]["role"] == schema.Role.REFERENCE_LARGE.value}
  updated = []
  for s in summaries:
    reference = references.get(schema.reference_key(s["cell"]))
    if s["relative_latency"] is not None or reference is None:
      continue
    measured, modeled = latency_lib.from_records(
        store.read_records(s["cell_id"]),
        store.read_records(reference["cell_id"]),
        s["cell"]["num_latency_examples"])
    store.write_summary(with_relative(s, measured, modeled))
    updated.append(s["cell_id"])
  return updated


class DamagedCellError(ValueError):
  """A finished cell's records do not match its summary's checksum."""


def check_cells(store: store_lib.ResultsStore) -> None:
  """Raises ``DamagedCellError`` (one line) for the first damaged cell."""
  for summary in store.summaries():
    problem = store.check_cell(summary["cell_id"])
    if problem is not None:
      raise DamagedCellError(
          f"cell {summary['cell_id']} is damaged ({problem}); rerun its "
          "shard's sweep to redo it, then merge again")


def merge(results_dir: str) -> tuple[str | None, list[str]]:
  """Merges shard manifests and fills relative latencies in ``results_dir``.

  Raises:
    DamagedCellError: a cell's records fail their checksum (nothing is
      written).
  """
  root, name = storage.split(results_dir)
  store = store_lib.ResultsStore(root, name)
  check_cells(store)
  return merge_manifests(store), fill_relative(store)
