"""Stand-in jobs for the Ray executor's tests (``ray_worker.Job``).

They need no model: an item is a string, and running it returns where it
ran, so a test can check the scheduler (retries, failures, placement) on a
real local Ray cluster in seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class FakeUnit:
  """A unit of named items (``cells.Unit``'s shape for the scheduler)."""
  name: str
  items: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class FailingJob:
  """Returns each item's placement; items in ``fail`` always raise."""
  fail: frozenset[str] = frozenset()

  def run(self, item: str, placement: dict[str, Any],
          context: dict[str, Any]) -> dict[str, Any]:
    del context
    if item in self.fail:
      raise RuntimeError(f"{item} always fails")
    return {"item": item, "node_id": placement["node_id"],
            "attempt": placement["attempt"]}
