"""Metrics: a registry of pure functions ``(targets, predictions) -> dict``.

Registered names (see each module for the convention followed):

* ``bleu``, ``chrf`` — sacrebleu, corpus level, T5 convention (``text``).
* ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` — rouge-score (``text``).
* ``exact_match``, ``f1`` — official SQuAD normalisation, max over aliases,
  SQuAD 2.0 unanswerable handling (``qa``).
* ``gsm8k_accuracy`` — final-number accuracy (``qa``).
* ``pass@1`` — MBPP, executed in ``sandbox`` (``execution``).

Example::

  from harness import metrics
  metrics.compute_metrics(["bleu", "chrf"], [("Das Haus.",)], ["Das Haus."])
"""

from harness.metrics import execution as _execution  # Registers pass@1.
from harness.metrics import qa as _qa  # Registers QA metrics.
from harness.metrics import text as _text  # Registers BLEU, chrF, ROUGE.
from harness.metrics.registry import (METRICS, Aggregation, MetricError,
                                      MetricSpec, compute_metrics, get_metric,
                                      register_metric)

__all__ = ["METRICS", "Aggregation", "MetricError", "MetricSpec",
           "compute_metrics", "get_metric", "register_metric"]
