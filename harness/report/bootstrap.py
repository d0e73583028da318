"""Bootstrap confidence intervals over examples.

Resamples are drawn once per task, as a [B, N] matrix of counts over the
task's N examples (``counts[b, i]`` = how often example i is in resample b),
and applied to every cell of the task, so all curves of a task see the same
resamples. Statistics are then weighted sums:

* mean metrics (ROUGE, EM, F1, accuracy, pass@1): per-example scores from the
  metric registry, ``counts @ scores / counts.sum(1)``;
* BLEU: corpus-level, so each example contributes sacrebleu's sufficient
  statistics (n-gram matches and totals, hypothesis and reference lengths,
  from ``BLEU.corpus_score`` on that one example); a resample's BLEU is
  ``BLEU.compute_bleu`` on the summed statistics, which equals
  ``sacrebleu.corpus_bleu`` on the resampled corpus;
* other corpus metrics (chrF): ``compute_metrics`` on each resample (slow);
* relative latency: ``harness.results.latency.relative_latency_samples``,
  the statistic of the point estimate on each resample: the geometric mean
  of per-example ratios (paired protocol) or the ratio of the resampled
  means of the cell's and the large model's times (unpaired), over examples
  timed in both.

Intervals are 95% percentile intervals.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import sacrebleu

from harness import metrics
from harness.metrics import text as text_metrics
from harness.results import latency

DEFAULT_RESAMPLES = 1000
CI_LEVEL = 0.95
# Rows of the count matrix drawn per chunk (bounds the [chunk, N] index array).
_CHUNK = 100
BLEU_NAME = "bleu"
# sacrebleu's default maximum n-gram order, as used by the registry's BLEU.
BLEU_ORDER = 4


def resample_counts(num_examples: int, num_resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
  """[B, N] float32 counts of each example in each bootstrap resample."""
  counts = np.zeros((num_resamples, num_examples), np.float32)
  for start in range(0, num_resamples, _CHUNK):
    rows = min(_CHUNK, num_resamples - start)
    idx = rng.integers(0, num_examples, size=(rows, num_examples))
    flat = idx + num_examples * np.arange(rows)[:, None]
    counts[start:start + rows] = np.bincount(
        flat.ravel(), minlength=rows * num_examples).reshape(rows, -1)
  return counts


def percentile_interval(samples: np.ndarray,
                        level: float = CI_LEVEL) -> tuple[float, float]:
  """The central ``level`` percentile interval, ignoring NaN samples."""
  samples = np.asarray(samples, float)
  samples = samples[np.isfinite(samples)]
  if samples.size == 0:
    return math.nan, math.nan
  tail = 100.0 * (1.0 - level) / 2.0
  low, high = np.percentile(samples, [tail, 100.0 - tail])
  return float(low), float(high)


def weighted_means(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
  """[B] resampled means of ``values`` [N]; NaN values are left out."""
  ok = np.isfinite(values)
  used = counts[:, ok]
  with np.errstate(invalid="ignore", divide="ignore"):
    return (used @ values[ok]) / used.sum(axis=1)


def ratio_of_means(counts: np.ndarray, numerator: np.ndarray,
                   denominator: np.ndarray) -> np.ndarray:
  """[B] resampled mean(numerator) / mean(denominator) on shared examples."""
  return latency.relative_latency_samples(counts, numerator, denominator,
                                          paired=False)


# ----------------------------------------------------------------------------
# Quality
# ----------------------------------------------------------------------------


def _bleu_metric() -> sacrebleu.BLEU:
  """sacrebleu's BLEU with the registry's (T5) settings."""
  return sacrebleu.BLEU(tokenize=text_metrics.T5_BLEU_TOKENIZER,
                        smooth_method=text_metrics.T5_BLEU_SMOOTH_METHOD,
                        smooth_value=0.0, effective_order=False)


def bleu_statistics(targets: Sequence[Sequence[str]],
                    predictions: Sequence[str]) -> np.ndarray:
  """[N, 2·order + 2] per-example BLEU sufficient statistics.

  Columns: matching n-gram counts (order), n-gram totals (order), hypothesis
  length, closest reference length.
  """
  metric = _bleu_metric()
  rows = []
  for refs, pred in zip(targets, predictions):
    score = metric.corpus_score([pred], [[r] for r in refs])
    rows.append([*score.counts, *score.totals, score.sys_len, score.ref_len])
  return np.asarray(rows, float).reshape(len(rows), 2 * BLEU_ORDER + 2)


def bleu_from_statistics(stats: np.ndarray) -> float:
  """Corpus BLEU (0–100) from summed sufficient statistics."""
  correct = [int(round(x)) for x in stats[:BLEU_ORDER]]
  total = [int(round(x)) for x in stats[BLEU_ORDER:2 * BLEU_ORDER]]
  score = sacrebleu.BLEU.compute_bleu(
      correct, total, int(round(stats[-2])), int(round(stats[-1])),
      smooth_method=text_metrics.T5_BLEU_SMOOTH_METHOD, smooth_value=0.0,
      effective_order=False, max_ngram_order=BLEU_ORDER)
  return float(score.score)


def per_example_scores(name: str, targets, predictions, extras=None, *,
                       allow_unisolated: bool = False) -> np.ndarray:
  """[N] per-example scores of a mean-aggregated registry metric
  (``allow_unisolated``: MBPP's sandbox opt-in, ``compute_metrics``)."""
  spec = metrics.get_metric(name)
  scores = []
  for i, (refs, pred) in enumerate(zip(targets, predictions)):
    extra = [extras[i] or {}] if spec.uses_extras else None
    scores.append(metrics.compute_metrics(
        [name], [refs], [pred], extra,
        allow_unisolated=allow_unisolated)[name])
  return np.asarray(scores, float)


def _generic_samples(name, counts, targets, predictions, extras,
                     allow_unisolated):
  """Recomputes a corpus metric on each resample (the slow path)."""
  samples = []
  for row in counts:
    idx = np.repeat(np.arange(len(predictions)), row.astype(int))
    sub_extras = [extras[i] for i in idx] if extras is not None else None
    samples.append(metrics.compute_metrics(
        [name], [targets[i] for i in idx], [predictions[i] for i in idx],
        sub_extras, allow_unisolated=allow_unisolated)[name])
  return np.asarray(samples, float)


def quality_samples(name: str, counts: np.ndarray,
                    targets: Sequence[tuple[str, ...]],
                    predictions: Sequence[str],
                    extras: Sequence[Mapping[str, Any] | None] | None = None,
                    *, allow_unisolated: bool = False
                    ) -> tuple[np.ndarray, float]:
  """Bootstrap samples of metric ``name`` and its full-sample value.

  Args:
    name: A registry metric.
    counts: [B, N] resample counts over these N examples.
    targets: [N] reference tuples.
    predictions: [N] predictions.
    extras: [N] per-example extras (for ``uses_extras`` metrics).
    allow_unisolated: MBPP's opt-in to the audit hook as the only sandbox
      layer (``metrics.compute_metrics``).

  Returns:
    ([B] resampled values, the value on all N examples).
  """
  spec = metrics.get_metric(name)
  if name == BLEU_NAME:
    stats = bleu_statistics(targets, predictions)
    full = bleu_from_statistics(stats.sum(axis=0))
    return np.asarray([bleu_from_statistics(s) for s in counts @ stats]), full
  if spec.aggregation == metrics.Aggregation.MEAN:
    scores = per_example_scores(name, targets, predictions, extras,
                                allow_unisolated=allow_unisolated)
    return weighted_means(counts, scores), float(np.mean(scores))
  full = metrics.compute_metrics([name], targets, predictions, extras,
                                 allow_unisolated=allow_unisolated)[name]
  return _generic_samples(name, counts, targets, predictions, extras,
                          allow_unisolated), full
