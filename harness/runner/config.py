"""Experiment configs: frozen dataclasses, checked field by field.

These are plain dataclasses; ``gin_config`` (the gin edge) builds them from
gin files through :func:`build`, which coerces gin's lists and strings into
the declared types and raises :class:`FieldError` naming the field. Semantic
checks (known task and method, α inside the method's range, ...) live in each
class's ``__post_init__`` and raise the same error.

Example (no gin)::

  pair = ModelPair(name="tiny", drafter="tiny_t5", verifier="tiny_t5_large",
                   kind=PairKind.RANDOM)
  exp = Experiment(name="smoke", pair=pair,
                   tasks=(TaskRun(task="multi30k_ende", num_examples=4),),
                   methods=(MethodGrid(method="spec_decode", alphas=(0.0,)),))
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any, Optional

from harness.results import latency
from harness.tasks.spec import Source

# Method options as a hashable, sorted tuple of (name, value) pairs.
Options = tuple[tuple[str, Any], ...]

# Strings accepted for infinite α in gin files (gin cannot print inf floats
# back, so the OPT grid spells its ends as strings).
_INFINITIES = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


class FieldError(ValueError):
  """A config field has a bad value.

  Attributes:
    field: the field (parameter) name.
    value: the offending value.
    reason: what is wrong, one line.
  """

  def __init__(self, field: str, value: Any, reason: str):
    super().__init__(f"{field}={value!r}: {reason}")
    self.field, self.value, self.reason = field, value, reason


class PairKind(enum.StrEnum):
  """Where a model pair's weights come from."""
  RANDOM = "random"  # Random weights of a named size, built in memory.
  CHECKPOINT = "checkpoint"  # Hugging-Face-format directories.


class DType(enum.StrEnum):
  """Parameter dtype of loaded models."""
  FLOAT32 = "float32"
  BFLOAT16 = "bfloat16"


class SamplePolicy(str, enum.Enum):
  """What a sample size above what the data source holds does."""
  REFUSE = "refuse"  # The dry run and the run refuse before any cell.
  CAP = "cap"  # Lowered to what the source holds, with a warning.


@dataclasses.dataclass(frozen=True)
class ModelPair:
  """A drafter (small) and verifier (large) sharing one vocabulary.

  Attributes:
    name: pair name, recorded in every cell (e.g. "t5_v1_1_small_large").
    drafter: checkpoint directory (CHECKPOINT) or size name (RANDOM, see
      ``pairs.RANDOM_SIZES``).
    verifier: same, for the verifier.
    kind: a ``PairKind``.
    dtype: parameter dtype.
    drafter_size: size name for the dry-run estimate when ``drafter`` is a
      path (``harness.models.get_config`` names or ``pairs.RANDOM_SIZES``).
    verifier_size: same, for the verifier.
    model_parallel: chips the verifier is split over (tensor parallel, see
      ``harness.models.sharding``); 1 = one chip; "auto": the layout of
      least estimated wall time (``harness.runner.placement``).
    drafter_placement: "replicated" (on every chip of the verifier's),
      "sharded" (split as the verifier is), or "auto" (the estimate
      decides, ``harness.runner.placement``).
    model_seed: PRNG seed of random weights (RANDOM only).
    extra_drafters: CS Drafting only: further, smaller drafters (checkpoint
      directories or size names, largest first) below ``drafter``.
    bigram_table: CS Drafting only: Max-Gram's bigram table (a ``.npy`` of
      next-token ids); built from the bundled Multi30k training text with
      the pair's tokenizer and saved there when missing; None = build it in
      memory.
  """
  name: str
  drafter: str
  verifier: str
  kind: PairKind = PairKind.CHECKPOINT
  dtype: DType = DType.FLOAT32
  drafter_size: Optional[str] = None
  verifier_size: Optional[str] = None
  model_parallel: int | str = "auto"
  drafter_placement: str = "auto"
  model_seed: int = 0
  extra_drafters: tuple[str, ...] = ()
  bigram_table: Optional[str] = None

  def __post_init__(self):
    object.__setattr__(self, "extra_drafters", tuple(self.extra_drafters))
    _check(self.model_parallel == "auto" or (
        isinstance(self.model_parallel, int) and self.model_parallel >= 1),
           "model_parallel", self.model_parallel, 'must be ≥ 1 or "auto"')
    _check(self.drafter_placement in ("auto", "replicated", "sharded"),
           "drafter_placement", self.drafter_placement,
           'must be "auto", "replicated" or "sharded"')
    for name in ("drafter", "verifier"):
      _check(bool(getattr(self, name)), name, getattr(self, name),
             "must be a non-empty path or size name")


@dataclasses.dataclass(frozen=True)
class TaskRun:
  """One task of a sweep and its sample sizes.

  Attributes:
    task: task name (``harness.tasks.TASKS``).
    num_examples: examples decoded for quality (sampled with the seed).
    num_latency_examples: the first this-many examples form the timed subset
      of every trial; None = all ``num_examples``.
    max_decode_len: generation limit; None = the task's max_output_len.
    source: where the examples come from (``harness.tasks.Source``).
    data_dir: TFDS data directory (TFDS source only).
    pair: a model pair for this task only (the paper's T5 pairs are
      fine-tuned per task); None = the experiment's pair.
    prompt_bucket: the task's fixed prompt length: every prompt of at most
      this many tokens is padded to it, so each loop family compiles one
      program for the task (as t5x pads inputs to a task's feature length);
      a longer prompt falls back to its power-of-two bucket. None = every
      prompt's power-of-two bucket (``decoding.prompt_bucket``).
  """
  task: str
  num_examples: int
  num_latency_examples: Optional[int] = None
  max_decode_len: Optional[int] = None
  source: Source = Source.OFFLINE
  data_dir: Optional[str] = None
  pair: Optional[ModelPair] = None
  prompt_bucket: Optional[int] = None

  def __post_init__(self):
    from harness import tasks  # pylint: disable=g-import-not-at-top
    _check(self.task in tasks.TASKS, "task", self.task,
           f"unknown task; known: {', '.join(sorted(tasks.TASKS))}")
    _check(self.num_examples >= 1, "num_examples", self.num_examples,
           "must be ≥ 1")
    n = self.num_latency_examples
    _check(n is None or 1 <= n <= self.num_examples, "num_latency_examples",
           n, f"must be in [1, num_examples={self.num_examples}]")
    m = self.max_decode_len
    _check(m is None or m >= 1, "max_decode_len", m, "must be ≥ 1")
    b = self.prompt_bucket
    _check(b is None or (isinstance(b, int) and not isinstance(b, bool)
                         and b >= 1), "prompt_bucket", b,
           "must be an integer ≥ 1 or None")

  @property
  def latency_examples(self) -> int:
    return self.num_examples if self.num_latency_examples is None else (
        self.num_latency_examples)

  def bucket(self, num_tokens: int) -> int:
    """The padded length of a prompt of ``num_tokens`` tokens."""
    from harness import decoding  # pylint: disable=g-import-not-at-top
    if self.prompt_bucket is not None and num_tokens <= self.prompt_bucket:
      return self.prompt_bucket
    return decoding.prompt_bucket(num_tokens)

  def decode_len(self) -> int:
    from harness import tasks  # pylint: disable=g-import-not-at-top
    if self.max_decode_len is not None:
      return self.max_decode_len
    return tasks.get_task(self.task).max_output_len


@dataclasses.dataclass(frozen=True)
class MethodGrid:
  """A decoding method and the α values it is swept over.

  Attributes:
    method: method name (``harness.decoding.METHODS``).
    alphas: α grid; every value must lie in the method's range (use "inf" /
      "-inf" strings in gin for infinite ends).
    options: static method options (e.g. {"beta": "normalize"}).
  """
  method: str
  alphas: tuple[float, ...] = (0.0,)
  options: Options = ()

  def __post_init__(self):
    from harness import decoding  # pylint: disable=g-import-not-at-top
    _check(self.method in decoding.METHODS, "method", self.method,
           f"unknown method; known: {', '.join(sorted(decoding.METHODS))}")
    _check(len(self.alphas) >= 1, "alphas", self.alphas, "must not be empty")
    spec = decoding.METHODS[self.method]
    known = {k for k, _ in spec.defaults}
    unknown = sorted(set(dict(self.options)) - known)
    _check(not unknown, "options", dict(self.options),
           f"unknown option(s) {unknown} for {self.method}; known: "
           f"{sorted(known)}")
    lo, hi = spec.valid_alpha()
    bad = [a for a in self.alphas if not lo <= a <= hi]
    _check(not bad, "alphas", bad,
           f"outside {self.method}'s α range [{lo}, {hi}]")

  def full_options(self) -> dict[str, Any]:
    """The options with the method's defaults filled in."""
    from harness import decoding  # pylint: disable=g-import-not-at-top
    return dict(decoding.METHODS[self.method].defaults, **dict(self.options))


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A sweep: tasks × methods × α × γ × T × top-P on one model pair.

  Attributes:
    name: experiment name; results go to ``<results_dir>/<name>/``.
    pair: the ``ModelPair`` (a ``TaskRun.pair`` overrides it for its task).
    tasks: ``TaskRun`` per task.
    methods: ``MethodGrid`` per method.
    gammas: block sizes γ.
    temperatures: sampling temperatures T (0 = greedy).
    top_ps: nucleus masses P (1 = none).
    seed: example sampling and per-example PRNG seed.
    num_trials: timing trials over each task's latency subset.
    results_dir: parent directory of the results.
    with_references: add the autoregressive verifier-only and drafter-only
      reference cells (needed for relative latency).
    calibration_calls: timed ``score`` calls per cost-model constant.
    latency_protocol: "paired" (each timed decode beside a reference decode,
      ``docs/timing.md``) or "unpaired" (the original protocol).
    sample_policy: a ``SamplePolicy`` for ``TaskRun.num_examples`` above
      what the task's source holds (checked before the first cell,
      ``harness.runner.preflight``).
  """
  name: str
  pair: ModelPair
  tasks: tuple[TaskRun, ...]
  methods: tuple[MethodGrid, ...]
  gammas: tuple[int, ...] = (5,)
  temperatures: tuple[float, ...] = (1.0,)
  top_ps: tuple[float, ...] = (1.0,)
  seed: int = 0
  num_trials: int = 3
  results_dir: str = "results"
  with_references: bool = True
  calibration_calls: int = 20
  latency_protocol: str = latency.PAIRED
  sample_policy: SamplePolicy = SamplePolicy.REFUSE

  def __post_init__(self):
    _check(_safe_name(self.name), "name", self.name,
           "must be a non-empty file name ([A-Za-z0-9_.-])")
    _check(len(self.tasks) >= 1, "tasks", self.tasks, "must not be empty")
    _check(all(g >= 1 for g in self.gammas) and self.gammas, "gammas",
           self.gammas, "must be a non-empty list of integers ≥ 1")
    _check(all(t >= 0 and math.isfinite(t) for t in self.temperatures)
           and self.temperatures, "temperatures", self.temperatures,
           "must be a non-empty list of finite values ≥ 0")
    _check(all(0 < p <= 1 for p in self.top_ps) and self.top_ps, "top_ps",
           self.top_ps, "must be a non-empty list of values in (0, 1]")
    _check(self.num_trials >= 1, "num_trials", self.num_trials, "must be ≥ 1")
    _check(self.calibration_calls >= 1, "calibration_calls",
           self.calibration_calls, "must be ≥ 1")
    _check(self.latency_protocol in latency.PROTOCOLS,
           "latency_protocol", self.latency_protocol,
           f"must be one of {list(latency.PROTOCOLS)}")


def _safe_name(name: str) -> bool:
  return bool(name) and all(c.isalnum() or c in "_.-" for c in name)


def _check(ok: bool, field: str, value: Any, reason: str) -> None:
  if not ok:
    raise FieldError(field, value, reason)


# --- Coercion from loosely typed values (gin lists, strings) -----------------


def build(cls: type, kwargs: dict[str, Any]) -> Any:
  """Constructs dataclass ``cls`` from loosely typed keyword arguments.

  Lists become tuples, dicts of options sorted tuples, enum value strings
  enum members and "inf"/"-inf" strings floats; anything else of the wrong
  type raises.

  Raises:
    FieldError: naming the first bad field.
  """
  hints = typing.get_type_hints(cls)
  coerced = {name: _coerce(hints[name], value, name)
             for name, value in kwargs.items()}
  return cls(**coerced)


def _coerce(hint: Any, value: Any, field: str) -> Any:
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin in (typing.Union, types.UnionType):
    return _coerce_union(args, value, field)
  if origin is tuple:
    return _coerce_tuple(args, value, field)
  if hint is Any:
    return value
  if isinstance(hint, type) and issubclass(hint, enum.Enum):
    return _coerce_enum(hint, value, field)
  return _coerce_scalar(hint, value, field)


def _coerce_union(args: tuple, value: Any, field: str) -> Any:
  if value is None and type(None) in args:
    return None
  inner = [a for a in args if a is not type(None)]
  if len(inner) > 1:  # e.g. int | str: __post_init__ checks the value
    _check(isinstance(value, tuple(inner)), field, value,
           f"expected one of {[a.__name__ for a in inner]}")
    return value
  return _coerce(inner[0], value, field)


def _coerce_tuple(args: tuple, value: Any, field: str) -> Any:
  if args == (tuple[str, Any], ...) and isinstance(value, dict):
    _check(all(isinstance(k, str) for k in value), field, value,
           "option names must be strings")
    return tuple(sorted(value.items()))
  _check(isinstance(value, (list, tuple)), field, value,
         "expected a list")
  return tuple(_coerce(args[0], v, field) for v in value)


def _coerce_enum(hint: type, value: Any, field: str) -> Any:
  try:
    return hint(value)
  except ValueError:
    raise FieldError(field, value, "expected one of "
                     f"{[m.value for m in hint]}") from None


def _coerce_scalar(hint: Any, value: Any, field: str) -> Any:
  if hint is float:
    if isinstance(value, str) and value.lower() in _INFINITIES:
      return _INFINITIES[value.lower()]
    _check(isinstance(value, (int, float)) and not isinstance(value, bool),
           field, value, "expected a number")
    return float(value)
  if hint is int:
    _check(isinstance(value, int) and not isinstance(value, bool), field,
           value, "expected an integer")
    return value
  if hint in (str, bool):
    _check(isinstance(value, hint), field, value,
           f"expected a {hint.__name__}")
    return value
  _check(isinstance(value, hint), field, value,
         f"expected @{hint.__name__}()")
  return value
