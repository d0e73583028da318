"""Choosing a pair's layout on a host: the one the estimate says is fastest.

A layout (``harness.models.layout.Layout``) is a model-parallel degree m,
a drafter placement (replicated on the verifier's m chips, sharded m ways
as the verifier is, or on a chip of its own) and as many independent
replicas as one host's chips hold; each replica is a stream of cells timed
alone on its chip set. For every candidate :func:`price` takes the per-chip
memory (weights + KV caches + ``preflight``'s margin, at the pair's worst
task) and the estimated wall time of the pair's cells: each cell's
seconds on one chip set (``estimate.cell_seconds``) dealt, longest first,
to the least loaded of the streams (:func:`wall_seconds`; streams = hosts
× replicas). "auto" (``ModelPair.model_parallel`` and
``ModelPair.drafter_placement``) takes the fitting, runnable candidate with
the least wall time; an explicit setting restricts the candidates to it.
A drafter on its own chip is priced but not chosen: the fused decoding
loop runs both models in one program on one chip set. It would cost a
transfer of the drafted block per verifier step, priced as
``estimate.COLLECTIVE_S``.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Callable, Sequence

from harness.models import layout as layout_lib
from harness.runner import estimate as estimate_lib

AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Option:
  """A priced candidate.

  Attributes:
    layout: the candidate.
    need_bytes: the fullest chip's memory need (weights + KV + margin).
    fits: ``need_bytes`` within the chip's memory.
    seconds: estimated wall time of the pair's cells on the topology with
      every replica busy (None: not priced, or nothing known to price).
    step_ratio: the drafter's step over the verifier's (None: unknown).
  """
  layout: layout_lib.Layout
  need_bytes: float
  fits: bool
  seconds: float | None = None
  step_ratio: float | None = None

  @property
  def eligible(self) -> bool:
    return self.fits and self.layout.runnable


def candidates(devices_per_host: int, model_parallel: int | str = AUTO,
               drafter: str = AUTO, chosen_by: str = AUTO
               ) -> list[layout_lib.Layout]:
  """Every layout of one host's chips that the settings allow: m a divisor
  of the chips (or m + 1 at most the chips, for a drafter chip), sharded
  only where m > 1 (at m = 1 it is the replicated layout)."""
  ms = ([int(model_parallel)] if model_parallel != AUTO else
        [m for m in range(1, devices_per_host + 1)
         if devices_per_host % m == 0])
  places = (layout_lib.DRAFTER_PLACEMENTS if drafter == AUTO else (drafter,))
  out = []
  for m in ms:
    for place in places:
      if place == layout_lib.SHARDED and m == 1 and drafter == AUTO:
        continue
      chips = m + (place == layout_lib.OWN_CHIP)
      if chips > devices_per_host:
        continue
      out.append(layout_lib.fixed(m, devices_per_host, place, chosen_by))
  return out


def wall_seconds(seconds: Sequence[float | None], streams: int) -> float:
  """The busiest of ``streams`` when each cell (longest first) goes to the
  least loaded stream; cells of unknown cost are left out."""
  loads = [0.0] * max(streams, 1)
  for s in sorted((s for s in seconds if s is not None), reverse=True):
    heapq.heapreplace(loads, loads[0] + s)
  return max(loads)


def price(cells, kind, footprints: dict, protocol: str, streams: int,
          own_chip: bool = False) -> tuple[float | None, float | None]:
  """(wall seconds, drafter/verifier step ratio) of ``cells`` over
  ``streams`` chip sets with these footprints (one pair's)."""
  if not cells:
    return 0.0, None
  pair = cells[0].pair
  per_cell = estimate_lib.cell_seconds(cells, kind, {pair: footprints},
                                       protocol)
  if own_chip:  # The drafted block crosses chips once per verifier step.
    per_cell = [None if s is None else s + estimate_lib.COLLECTIVE_S * (
        c.max_decode_len * _decodes(c, protocol))
                for s, c in zip(per_cell, cells)]
  steps = {role: estimate_lib.step_seconds(footprints.get(role), kind)
           for role in estimate_lib.ROLES}
  ratio = (steps["drafter"] / steps["verifier"]
           if None not in steps.values() else None)
  if all(s is None for s in per_cell):
    return None, ratio
  return wall_seconds(per_cell, streams), ratio


def _decodes(cell, protocol: str) -> int:
  from harness.runner import execute  # pylint: disable=g-import-not-at-top
  return execute.num_decodes(cell) + estimate_lib.reference_decodes(
      cell, protocol)


def choose(options: Sequence[Option]) -> Option | None:
  """The eligible option of least wall time (ties: the earlier, i.e. the
  narrower split and the replicated drafter), or None."""
  eligible = [o for o in options if o.eligible]
  if not eligible:
    return None
  return min(eligible, key=lambda o: (
      float("inf") if o.seconds is None else round(o.seconds, 6)))


def evaluate(layouts: Sequence[layout_lib.Layout],
             need: Callable[[layout_lib.Layout], tuple[float, dict]],
             memory_bytes: float, cells, kind, protocol: str,
             num_hosts: int) -> list[Option]:
  """Prices every layout (only their memory when just one fits)."""
  rows = []
  for lay in layouts:
    need_bytes, footprints = need(lay)
    rows.append((lay, need_bytes, footprints))
  fitting = [r for r in rows if r[1] <= memory_bytes and r[0].runnable]
  priced = len(fitting) > 1 or len(rows) > 1
  options = []
  for lay, need_bytes, footprints in rows:
    seconds = ratio = None
    if priced and footprints:
      seconds, ratio = price(cells, kind, footprints, protocol,
                             lay.replicas * num_hosts,
                             lay.drafter == layout_lib.OWN_CHIP)
    options.append(Option(lay, need_bytes, need_bytes <= memory_bytes,
                          seconds, ratio))
  return options


def lines(options: Sequence[Option], chosen: Option | None,
          memory_bytes: float) -> list[str]:
  """The dry run's lines for one pair's options, the chosen one marked."""
  out = []
  for o in options:
    mark = "*" if o is chosen else " "
    hours = "not priced" if o.seconds is None else duration(o.seconds)
    ratio = ("" if o.step_ratio is None
             else f", drafter step {o.step_ratio:.2f} of the verifier's")
    gib = o.need_bytes / 2 ** 30
    why = ""
    if not o.fits:
      why = (f"; does not fit ({gib:.1f} of {memory_bytes / 2 ** 30:.0f} "
             "GiB per chip)")
    elif not o.layout.runnable:
      why = "; priced only (the decoding loop keeps both models together)"
    out.append(f"    {mark} {o.layout.describe()}: {hours}{ratio}"
               f"{why if why else f', {gib:.1f} GiB per chip'}")
  return out


def streams(lay: layout_lib.Layout, num_hosts: int) -> int:
  return lay.replicas * num_hosts


def wall_line(cells, layouts: dict, topo, footprints: dict,
              protocol: str) -> str:
  """The dry run's wall-time line: each pair's cells over its replicas on
  every host (pairs one after another), and one stream for comparison."""
  total, one, parts = 0.0, 0.0, []
  for pair in dict.fromkeys(c.pair for c in cells):
    mine = [c for c in cells if c.pair == pair]
    per_cell = estimate_lib.cell_seconds(mine, topo.kind,
                                         {pair: footprints.get(pair, {})},
                                         protocol)
    lay = layouts.get(pair.name)
    n = streams(lay, topo.num_hosts) if lay else topo.num_hosts
    total += wall_seconds(per_cell, n)
    one += sum(s for s in per_cell if s is not None)
    parts.append(f"{pair.name} {n}")
  host = "host" if topo.num_hosts == 1 else "hosts"
  return (f"wall time: {duration(total)} with every replica busy "
          f"(streams per pair: {', '.join(parts)}; on {topo.num_hosts} "
          f"{host}; cells dealt longest first to the least loaded stream), "
          f"against {duration(one)} one cell after another")


def duration(seconds: float) -> str:
  """Hours to 2 decimals, or seconds under a minute's hundredth of hours."""
  return (f"{seconds / 3600:.2f} h" if seconds >= 36
          else f"{seconds:.1f} s")
