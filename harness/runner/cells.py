"""The cells of a sweep: one (task, method, α, γ, T, top-P) each, with ids.

Order: for each task and each (T, top-P), the two reference cells
(autoregressive verifier-only, then drafter-only) come first, then the
method cells (methods in config order, then γ, then α). Relative latency is
therefore computable when a method cell finishes.

Units of work (:func:`units`) are what sharding (``--shard i/N``) and the
Ray executor deal out. A *group* is the cells sharing a ``group_key`` (task,
pair, T, top-P and sample sizes: a pair of reference cells and every method
cell measured against them).

* Paired latency protocol (the default): a method cell carries its own
  reference times, measured beside it (``docs/timing.md``), so it does not
  depend on where its group's reference cells ran. A unit is then a small
  batch of consecutive cells of one group (``batch``, default 1 cell); each
  reference cell is computed once, in one unit, and shared through the
  results.
* Unpaired protocol: a method cell's relative latency divides its times by
  its reference cell's, so both must be measured on the same host: a unit
  is a whole group, references first.

:func:`deal_units` balances the units' estimated cost over the shards:
largest first, each to the shard with the least cost so far (ties: fewer
units, then the lower index); each shard keeps run order. A shard left
without a unit is an error (:class:`EmptyShardError`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
from typing import Any, Callable, Iterator

from harness.runner import config as cfg
from harness.results import schema

AUTOREGRESSIVE = "autoregressive"
# Length of the config hash that ends every cell id.
HASH_CHARS = 8
_REFERENCE_MODEL = {schema.Role.REFERENCE_LARGE: "verifier",
                    schema.Role.REFERENCE_SMALL: "drafter"}


@dataclasses.dataclass(frozen=True)
class Cell:
  """One decoding configuration run on a task's examples.

  Attributes:
    task_run: the task and its sample sizes.
    method: decoding method name.
    alpha: lenience α (None for reference cells).
    gamma: block size γ (None for reference cells).
    temperature: T.
    top_p: P.
    options: method options, defaults filled in (sorted pairs).
    role: a ``schema.Role``.
    pair: the model pair.
    seed: experiment seed.
    num_trials: timing trials.
  """
  task_run: cfg.TaskRun
  method: str
  alpha: float | None
  gamma: int | None
  temperature: float
  top_p: float
  options: cfg.Options
  role: schema.Role
  pair: cfg.ModelPair
  seed: int
  num_trials: int

  @property
  def task(self) -> str:
    return self.task_run.task

  @property
  def max_decode_len(self) -> int:
    return self.task_run.decode_len()

  @property
  def reference_key(self) -> tuple:
    """Cells with equal keys share their reference cells."""
    return reference_key(self.to_json())

  def to_json(self) -> schema.CellConfig:
    """The ``schema.CellConfig`` of this cell."""
    config = schema.CellConfig(
        task=self.task, method=self.method, alpha=self.alpha,
        gamma=self.gamma, temperature=self.temperature, top_p=self.top_p,
        max_decode_len=self.max_decode_len,
        method_options=dict(self.options), drafter=self.pair.drafter,
        verifier=self.pair.verifier, pair=self.pair.name, seed=self.seed,
        num_examples=self.task_run.num_examples,
        num_latency_examples=self.task_run.latency_examples,
        num_trials=self.num_trials, role=self.role.value)
    if self.task_run.prompt_bucket is not None:  # absent: old ids unchanged
      config["prompt_bucket"] = self.task_run.prompt_bucket
    return config

  @property
  def cell_id(self) -> str:
    """Readable, filesystem-safe and deterministic; ends in a config hash.

    E.g. ``multi30k_ende__spec_cascade_token__g5_T1_P1__a0.3__1a2b3c4d`` or
    ``multi30k_ende__autoregressive-verifier__T1_P1__5e6f7a8b``.
    """
    parts = [self.task, self.method]
    knobs = f"T{_num(self.temperature)}_P{_num(self.top_p)}"
    if self.role is schema.Role.METHOD:
      parts.append(f"g{self.gamma}_{knobs}")
      parts.append(f"a{_num(self.alpha)}")
    else:
      parts[1] += "-" + _REFERENCE_MODEL[self.role]
      parts.append(knobs)
    return "__".join(parts + [config_hash(self.to_json())])


# A unit's estimated cost (seconds, or any consistent measure).
Cost = Callable[["Unit"], float]
# The key a cell shares with its reference cells (defined with the schema).
reference_key = schema.reference_key


def _num(x: float) -> str:
  if math.isinf(x):
    return "inf" if x > 0 else "-inf"
  return format(x, "g")


def config_hash(config: Any) -> str:
  """Short sha256 of a JSON-serialisable config (sorted keys)."""
  text = json.dumps(config, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def _references(exp: cfg.Experiment, task_run: cfg.TaskRun, temperature,
                top_p) -> Iterator[Cell]:
  for role, model in _REFERENCE_MODEL.items():
    yield Cell(task_run=task_run, method=AUTOREGRESSIVE, alpha=None,
               gamma=None, temperature=temperature, top_p=top_p,
               options=(("model", model),), role=role,
               pair=task_run.pair or exp.pair,
               seed=exp.seed, num_trials=exp.num_trials)


def _methods(exp: cfg.Experiment, task_run: cfg.TaskRun, temperature,
             top_p) -> Iterator[Cell]:
  for grid in exp.methods:
    options = tuple(sorted(grid.full_options().items()))
    for gamma in exp.gammas:
      for alpha in grid.alphas:
        yield Cell(task_run=task_run, method=grid.method, alpha=alpha,
                   gamma=gamma, temperature=temperature, top_p=top_p,
                   options=options, role=schema.Role.METHOD,
                   pair=task_run.pair or exp.pair,
                   seed=exp.seed, num_trials=exp.num_trials)


def build_cells(exp: cfg.Experiment) -> list[Cell]:
  """Every cell of the experiment, in run order, without duplicates."""
  cells: dict[str, Cell] = {}
  for task_run in exp.tasks:
    for temperature in exp.temperatures:
      for top_p in exp.top_ps:
        group = list(_methods(exp, task_run, temperature, top_p))
        if exp.with_references:
          group = list(_references(exp, task_run, temperature, top_p)) + group
        for cell in group:
          cells.setdefault(cell.cell_id, cell)
  return list(cells.values())


@dataclasses.dataclass(frozen=True)
class Shard:
  """Shard ``index`` of ``count`` (``--shard index/count``)."""
  index: int = 0
  count: int = 1

  @classmethod
  def parse(cls, text: str) -> "Shard":
    """Parses "i/N" with 0 ≤ i < N; ValueError otherwise."""
    try:
      index, count = (int(x) for x in text.split("/"))
    except ValueError:
      raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if not 0 <= index < count:
      raise ValueError(f"--shard {text!r}: need 0 ≤ i < N")
    return cls(index, count)

  @property
  def sharded(self) -> bool:
    return self.count > 1

  def select(self, cells: list[Cell], paired: bool = False,
             batch: int = 1, cost: "Cost | None" = None) -> list[Cell]:
    """This shard's cells (module docstring; ``paired``: the experiment's
    latency protocol is the paired one; ``cost``: a unit's estimated
    seconds, default :func:`work`)."""
    dealt = deal_units(units(cells, paired, batch), self.count, cost)
    return [c for unit in dealt[self.index] for c in unit.cells]


class EmptyShardError(ValueError):
  """Dealing left a shard without any unit of work."""


@dataclasses.dataclass(frozen=True)
class Unit:
  """Cells that run together, in order, on one chip set.

  Attributes:
    cells: the cells, in run order.
  """
  cells: tuple[Cell, ...]

  @property
  def name(self) -> str:
    """The first cell's id, and how many cells follow it."""
    more = len(self.cells) - 1
    first = self.cells[0].cell_id
    return first if not more else f"{first} (+{more} cells)"


def group_key(cell: Cell) -> tuple:
  """Cells with equal keys share their reference cells."""
  return cell.reference_key


def work(unit: Unit) -> float:
  """A unit's work without a cost model: decodes × max_decode_len."""
  total = 0
  for cell in unit.cells:
    run = cell.task_run
    decodes = run.num_examples + (cell.num_trials - 1) * run.latency_examples
    total += decodes * cell.max_decode_len
  return float(total)


def units(cells: list[Cell], paired: bool, batch: int = 1) -> list[Unit]:
  """The units of work of ``cells`` (module docstring), in run order."""
  if batch < 1:
    raise ValueError(f"unit batch {batch}: need at least 1 cell")
  groups: dict[tuple, list[Cell]] = {}
  for cell in cells:
    groups.setdefault(group_key(cell), []).append(cell)
  out = []
  for members in groups.values():
    size = batch if paired else len(members)
    out.extend(Unit(tuple(members[i:i + size]))
               for i in range(0, len(members), size))
  return out


def deal_units(todo: list[Unit], count: int, cost: "Cost | None" = None,
               allow_empty: bool = False) -> list[list[Unit]]:
  """Splits units into ``count`` shards of balanced cost (module docstring).

  Raises:
    EmptyShardError: a shard would get no unit (more shards than units),
      unless ``allow_empty`` (an estimate of the busiest shard).
  """
  cost = cost or work
  costs = [cost(u) for u in todo]
  load = [0.0] * count
  owner = [[] for _ in range(count)]
  for i in sorted(range(len(todo)), key=lambda i: (-costs[i], i)):
    shard = min(range(count), key=lambda k: (load[k], len(owner[k]), k))
    owner[shard].append(i)
    load[shard] += costs[i]
  empty = [k for k in range(count) if not owner[k]]
  if empty and not allow_empty:
    raise EmptyShardError(
        f"{count} shards for {len(todo)} units of work: shard(s) "
        f"{', '.join(map(str, empty))} would run nothing; use at most "
        f"{len(todo)} shards")
  return [[todo[i] for i in sorted(members)] for members in owner]


def deal(cells: list[Cell], count: int, paired: bool = False,
         cost: "Cost | None" = None) -> list[list[Cell]]:
  """Splits ``cells`` into ``count`` balanced lists of whole units, run
  order kept; a list may be empty (for estimates: a run deals through
  ``Shard.select``, which refuses an empty shard)."""
  return [[c for u in shard for c in u.cells]
          for shard in deal_units(units(cells, paired), count, cost,
                                  allow_empty=True)]


def reference_for(cell: Cell) -> Cell:
  """The reference_large (verifier-only) cell a cell's latency is relative to."""
  return dataclasses.replace(
      cell, method=AUTOREGRESSIVE, alpha=None, gamma=None,
      options=(("model", "verifier"),), role=schema.Role.REFERENCE_LARGE)


def select(cells: list[Cell], patterns: tuple[str, ...]) -> list[Cell]:
  """Cells whose id matches a glob pattern, plus their reference cells.

  Run order is kept; an empty ``patterns`` keeps every cell.
  """
  if not patterns:
    return cells
  chosen = {c.cell_id for c in cells
            if any(fnmatch.fnmatchcase(c.cell_id, p) for p in patterns)}
  keys = {c.reference_key for c in cells if c.cell_id in chosen}
  return [c for c in cells if c.cell_id in chosen or (
      c.role is not schema.Role.METHOD and c.reference_key in keys)]
