"""Progress bars over cells and examples, and one line per finished cell."""

from __future__ import annotations

import sys
from typing import TextIO

import tqdm

from harness.results import schema


def _fmt(value: float | None, spec: str = ".3g") -> str:
  return "-" if value is None else format(value, spec)


def cell_line(summary: schema.CellSummary) -> str:
  """One line: cell id, headline quality, latency, rates."""
  metric = summary["headline_metric"]
  stats = summary["stats"]
  quality = summary["quality"].get(metric)
  return (f"{summary['cell_id']}: {metric}={_fmt(quality, '.2f')} "
          f"latency={summary['latency']['mean_s'] * 1e3:.2f}ms "
          f"rel={_fmt(summary['relative_latency'])} "
          f"model_rel={_fmt(summary['cost_model']['relative_latency'])} "
          f"accept={_fmt(stats['acceptance_rate'])} "
          f"defer={_fmt(stats['deferral_rate'])} "
          f"tokens/ex={stats['mean_num_tokens']:.1f}")


def _duration(seconds: float) -> str:
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def unit_line(event: str, name: str, done: int, failed: int, total: int,
              elapsed_s: float, left_s: float) -> str:
  """One line of a distributed sweep's driver: what happened to a unit,
  units done and remaining, elapsed time and the estimated time left."""
  return (f"unit {event}: {name} | units {done} done, {failed} failed, "
          f"{total - done - failed} remaining of {total} | "
          f"{_duration(elapsed_s)} elapsed, about {_duration(left_s)} left")


class Progress:
  """An outer bar over cells and an inner bar over a cell's decodes.

  Args:
    num_cells: cells to run.
    stream: where bars and lines go (default stderr).
    enabled: False disables the bars (cell lines are still printed).
  """

  def __init__(self, num_cells: int, stream: TextIO | None = None,
               enabled: bool = True):
    self._stream = stream or sys.stderr
    self._enabled = enabled
    self._cells = tqdm.tqdm(total=num_cells, desc="cells", unit="cell",
                            file=self._stream, disable=not enabled,
                            position=0, dynamic_ncols=True)
    self._examples = None

  def start_cell(self, cell_id: str, num_decodes: int) -> None:
    self._examples = tqdm.tqdm(total=num_decodes, desc=cell_id[:48],
                               unit="ex", file=self._stream, leave=False,
                               disable=not self._enabled, position=1,
                               dynamic_ncols=True)

  def example_done(self) -> None:
    if self._examples is not None:
      self._examples.update()

  def cell_done(self, summary: schema.CellSummary) -> None:
    if self._examples is not None:
      self._examples.close()
      self._examples = None
    tqdm.tqdm.write(cell_line(summary), file=self._stream)
    self._cells.update()

  def close(self) -> None:
    if self._examples is not None:
      self._examples.close()
    self._cells.close()
