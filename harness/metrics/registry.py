"""The metric registry: names → pure functions over (targets, predictions).

A metric is a pure function ``fn(targets, predictions) -> dict[str, float]``
(or ``fn(targets, predictions, extras)`` when registered with
``uses_extras=True``; a metric registered with ``runs_code=True`` also takes
the keyword ``allow_unisolated``, the caller's opt-in to running generated
code with the audit hook as the only sandbox layer). The returned dict always holds the metric's own name as
a key; it may hold a few more diagnostic keys (e.g. ``pass@1`` also returns the
per-reason failure counts under ``pass@1/<reason>``).

Conventions shared by every registered metric:

* ``targets`` is a sequence with one entry per example; each entry is a string
  or a tuple of strings (all references / answer aliases of that example).
* ``predictions`` is a sequence of strings, one per example, already
  post-processed by the task.
* Scores are on a 0–100 scale (as t5.evaluation.metrics reports them).
* A missing optional dependency raises; a metric never returns 0 to hide an
  error (CONVENTIONS anti-pattern 5).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Mapping, Sequence

Targets = Sequence["str | Sequence[str]"]
MetricFn = Callable[..., dict[str, float]]


class Aggregation(enum.StrEnum):
  """How a metric combines examples."""
  CORPUS = "corpus"  # Computed on the whole corpus at once (BLEU, chrF).
  MEAN = "mean"  # Mean of a per-example score (ROUGE, EM, F1, pass@1).


class MetricError(ValueError):
  """Bad arguments to a metric (lengths differ, missing references, ...)."""


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A registered metric.

  Attributes:
    name: Registry key, also the headline key of the returned dict.
    fn: The pure metric function.
    higher_is_better: Direction for reports and trade-off curves.
    aggregation: How examples are combined.
    uses_extras: Whether ``fn`` takes a third argument, the per-example
      ``extras`` mappings (e.g. MBPP test cases).
    runs_code: Whether ``fn`` runs generated code in the sandbox (and takes
      the keyword ``allow_unisolated``).
    description: One line for ``python -m harness list``.
  """
  name: str
  fn: MetricFn
  higher_is_better: bool
  aggregation: Aggregation
  uses_extras: bool = False
  runs_code: bool = False
  description: str = ""


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *, higher_is_better: bool = True,
                    aggregation: Aggregation = Aggregation.MEAN,
                    uses_extras: bool = False, runs_code: bool = False
                    ) -> Callable[[MetricFn], MetricFn]:
  """Decorator that registers a metric function under ``name``."""

  def decorator(fn: MetricFn) -> MetricFn:
    if name in METRICS:
      raise ValueError(f"metric {name!r} is already registered")
    doc = (fn.__doc__ or "").strip().splitlines()
    METRICS[name] = MetricSpec(
        name=name, fn=fn, higher_is_better=higher_is_better,
        aggregation=aggregation, uses_extras=uses_extras,
        runs_code=runs_code, description=doc[0] if doc else "")
    return fn

  return decorator


def get_metric(name: str) -> MetricSpec:
  """Returns the registered metric ``name`` or raises listing known names."""
  try:
    return METRICS[name]
  except KeyError:
    raise KeyError(f"unknown metric {name!r}; known metrics: "
                   f"{', '.join(sorted(METRICS))}") from None


def compute_metrics(
    names: Sequence[str], targets: Targets, predictions: Sequence[str],
    extras: Sequence[Mapping[str, Any]] | None = None, *,
    allow_unisolated: bool = False) -> dict[str, float]:
  """Computes several registered metrics on one set of predictions.

  Args:
    names: Metric names, e.g. ``("bleu", "chrf")``.
    targets: [N] references per example (a string or a tuple of aliases).
    predictions: [N] predicted strings.
    extras: [N] per-example mappings, needed by metrics registered with
      ``uses_extras`` (e.g. ``pass@1`` reads ``test_list``).
    allow_unisolated: For ``runs_code`` metrics: run generated code even
      where only the audit hook is left (``--allow_unisolated_mbpp``).

  Returns:
    The union of the metrics' result dicts.
  """
  check_lengths(targets, predictions)
  results: dict[str, float] = {}
  for name in names:
    spec = get_metric(name)
    kwargs = {"allow_unisolated": allow_unisolated} if spec.runs_code else {}
    if spec.uses_extras:
      if extras is None:
        raise MetricError(f"metric {name!r} needs per-example extras")
      check_lengths(targets, extras, what="extras")
      results.update(spec.fn(targets, predictions, extras, **kwargs))
    else:
      results.update(spec.fn(targets, predictions, **kwargs))
  return results


def check_lengths(targets: Sequence[Any], other: Sequence[Any], *,
                  what: str = "predictions") -> None:
  """Raises MetricError unless ``targets`` and ``other`` have equal length."""
  if len(targets) != len(other):
    raise MetricError(f"{len(targets)} targets but {len(other)} {what}")


def as_alias_tuples(targets: Targets) -> list[tuple[str, ...]]:
  """Normalises targets to one tuple of reference strings per example."""
  return [(t,) if isinstance(t, str) else tuple(t) for t in targets]
