"""Wall-clock timing helpers (host ``perf_counter`` around blocking calls)."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any, Callable

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
  """Repeated wall times of one measurement, in seconds.

  Attributes:
    samples: every timed repetition.
  """
  samples: tuple[float, ...]

  @property
  def median(self) -> float:
    return statistics.median(self.samples)

  @property
  def min(self) -> float:
    return min(self.samples)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  """Runs fn once, blocking on its result; returns (seconds, result)."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - start, out


def repeat(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
  """Times ``repeats`` blocking calls of fn after ``warmup`` untimed ones."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  return Timing(tuple(timed(fn)[0] for _ in range(repeats)))


def cpu_name() -> str:
  """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
  import platform  # pylint: disable=g-import-not-at-top
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def load_average() -> tuple[float, float, float]:
  """The 1-, 5- and 15-minute load averages."""
  return os.getloadavg()
