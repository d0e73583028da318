"""The results directory: atomic writes, completion markers, resume.

A cell is *done* when its summary ``cells/<cell_id>.json`` exists; it is
written (atomically) only after the cell's ``.jsonl`` is complete, and it
records that file's line count and sha256 (:meth:`ResultsStore.check_cell`
verifies them on resume and merge: a damaged cell is redone), so an
interrupted run leaves at most a stale temporary file, which
:meth:`ResultsStore.clean_partial` removes. A cell without a summary is rerun
from scratch: per-example PRNG keys depend only on (seed, example index), so
the rerun reproduces what an uninterrupted run would have written.

The results directory may be local or on a bucket (``gs://``); every file
goes through ``harness.results.storage``, whose docstring says what
"atomic" means on a bucket.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from harness.results import schema
from harness.results import storage

TMP_PREFIX = storage.TMP_PREFIX


def atomic_write_text(path: str, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path`` whole or not at all: locally a
  temporary file, fsync and replace; on a bucket one object upload
  (``storage.write_atomic``)."""
  storage.write_atomic(path, text.encode("utf-8"))


def to_json(obj: Any) -> str:
  """Pretty, key-sorted JSON with a trailing newline."""
  return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_json(path: str) -> Any:
  return json.loads(storage.read_text(path))


def records_digest(data: bytes) -> dict[str, Any]:
  """``{"count": non-empty lines, "sha256": hex digest}`` of a records file."""
  count = sum(1 for line in data.splitlines() if line.strip())
  return {"count": count, "sha256": hashlib.sha256(data).hexdigest()}


class ResultsStore:
  """Files of one experiment under ``<root>/<experiment>/``.

  Args:
    root: the results directory (``Experiment.results_dir``).
    experiment: the experiment name.
  """

  def __init__(self, root: str, experiment: str):
    self.dir = storage.join(root, experiment)
    self.cells_dir = storage.join(self.dir, schema.CELLS_DIR)

  def records_path(self, cell_id: str) -> str:
    return storage.join(self.cells_dir, cell_id + schema.RECORDS_SUFFIX)

  def summary_path(self, cell_id: str) -> str:
    return storage.join(self.cells_dir, cell_id + schema.SUMMARY_SUFFIX)

  def manifest_path(self, shard_index: int = 0, shard_count: int = 1) -> str:
    if shard_count == 1:
      return storage.join(self.dir, schema.MANIFEST_FILE)
    return storage.join(self.dir, schema.SHARD_MANIFEST_DIR,
                        f"shard-{shard_index:03d}-of-{shard_count:03d}.json")

  def is_done(self, cell_id: str) -> bool:
    return storage.exists(self.summary_path(cell_id))

  def done_cells(self) -> set[str]:
    """Ids of the cells whose summary exists (one listing)."""
    suffix = schema.SUMMARY_SUFFIX
    return {name[:-len(suffix)] for name in storage.listdir(self.cells_dir)
            if name.endswith(suffix) and not name.startswith(".")}

  def check_cell(self, cell_id: str) -> str | None:
    """Why a finished cell's records are damaged, or None if they are intact.

    Compares the ``.jsonl`` with the summary's ``records`` entry (line count
    and sha256). Summaries written before that entry existed are not
    verified.
    """
    summary = self.read_summary(cell_id)
    expected = (summary or {}).get("records")
    if not expected:
      return None
    path = self.records_path(cell_id)
    try:
      found = records_digest(storage.read_bytes(path))
    except OSError:
      return f"{path}: records file missing"
    if found["count"] != expected["count"]:
      return (f"{path}: {found['count']} records, the summary says "
              f"{expected['count']}")
    if found["sha256"] != expected["sha256"]:
      return f"{path}: sha256 differs from the summary's"
    return None

  def clean_partial(self) -> list[str]:
    """Removes temporary files left by an interrupted run; returns them."""
    stale = storage.glob(self.cells_dir, TMP_PREFIX + "*")
    for path in stale:
      storage.remove(path)
    return stale

  def write_records(self, cell_id: str,
                    records: Iterable[schema.ExampleRecord]
                    ) -> dict[str, Any]:
    """Writes the cell's per-example records (one JSON line each).

    Returns:
      Their integrity entry ``{"count", "sha256"}`` for the summary.
    """
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False)
             for r in records]
    text = "".join(line + "\n" for line in lines)
    atomic_write_text(self.records_path(cell_id), text)
    return records_digest(text.encode("utf-8"))

  def write_summary(self, summary: schema.CellSummary) -> str:
    """Writes the summary; call only after :meth:`write_records`."""
    path = self.summary_path(summary["cell_id"])
    atomic_write_text(path, to_json(summary))
    return path

  def discard_summary(self, cell_id: str) -> None:
    """Removes a cell's summary: the cell is no longer done (redone)."""
    storage.remove(self.summary_path(cell_id))

  def read_summary(self, cell_id: str) -> schema.CellSummary | None:
    path = self.summary_path(cell_id)
    return read_json(path) if storage.exists(path) else None

  def read_records(self, cell_id: str) -> list[schema.ExampleRecord]:
    text = storage.read_text(self.records_path(cell_id))
    return [json.loads(line) for line in text.split("\n") if line.strip()]

  def summaries(self) -> list[schema.CellSummary]:
    """Every finished cell's summary, sorted by cell id."""
    paths = storage.glob(self.cells_dir, "*" + schema.SUMMARY_SUFFIX)
    return [read_json(p) for p in paths]

  def read_manifest(self) -> schema.Manifest | None:
    """The unsharded ``manifest.json``, or None where there is none yet (or
    it cannot be read)."""
    try:
      return read_json(self.manifest_path())
    except (OSError, ValueError):
      return None

  def write_manifest(self, manifest: schema.Manifest) -> str:
    shard = manifest["shard"]
    path = self.manifest_path(shard["index"], shard["count"])
    atomic_write_text(path, to_json(manifest))
    return path
