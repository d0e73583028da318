"""Question-answering metrics: SQuAD-style exact match and token F1, GSM8K.

Exact match and F1 follow the official SQuAD 2.0 evaluation script
(``evaluate-v2.0.py``): answers are normalised by lower-casing, removing
punctuation, removing the articles "a", "an", "the" and collapsing
whitespace; F1 is the bag-of-tokens F1 of the normalised strings; each
question takes the maximum over its gold answers. Unanswerable questions
(an empty alias tuple, or aliases that all normalise to "") have the single
gold answer "" as in the official script: the prediction scores 1 exactly when
it normalises to the empty string. Tasks map a model's "unanswerable" reply to
"" before scoring (``harness.tasks.postprocess``).

GSM8K accuracy compares the final number of the prediction with the final
number of the reference (the value after ``####`` in GSM8K solutions).
"""

from __future__ import annotations

import collections
import re
import string
from decimal import Decimal, InvalidOperation
from typing import Sequence

from harness.metrics import registry

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)
# A number as GSM8K writes them: optional sign, thousands separators, decimals.
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
# GSM8K solutions end with "#### <answer>"; few-shot exemplars teach the model
# to end with "The answer is <answer>." (the chain-of-thought convention).
_GSM8K_ANSWER_MARKERS = (re.compile(r"####\s*(.+)"),
                         re.compile(r"[Tt]he answer is\s*:?\s*(.+)"))


def normalize_answer(text: str) -> str:
  """SQuAD normalisation: lower, drop punctuation and articles, fix spaces."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def _gold_answers(aliases: tuple[str, ...]) -> list[str]:
  """Gold answers as the official script builds them ("" if unanswerable)."""
  golds = [a for a in aliases if normalize_answer(a)]
  return golds or [""]


def exact_match_score(prediction: str, gold: str) -> float:
  """1.0 iff the normalised strings are equal."""
  return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
  """Token-level F1 of the normalised strings (official SQuAD definition)."""
  pred_tokens = normalize_answer(prediction).split()
  gold_tokens = normalize_answer(gold).split()
  if not pred_tokens or not gold_tokens:
    return float(pred_tokens == gold_tokens)
  common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision = num_same / len(pred_tokens)
  recall = num_same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def _mean_max(score_fn, targets, predictions) -> float:
  """Mean over examples of the max over gold answers, ×100."""
  registry.check_lengths(targets, predictions)
  refs = registry.as_alias_tuples(targets)
  if not refs:
    return 0.0
  total = sum(max(score_fn(pred, g) for g in _gold_answers(ref))
              for ref, pred in zip(refs, predictions))
  return 100.0 * total / len(refs)


@registry.register_metric("exact_match")
def exact_match(targets: registry.Targets,
                predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD exact match, max over aliases; empty aliases = unanswerable."""
  return {"exact_match": _mean_max(exact_match_score, targets, predictions)}


@registry.register_metric("f1")
def f1(targets: registry.Targets,
       predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD token F1, max over aliases; empty aliases = unanswerable."""
  return {"f1": _mean_max(f1_score, targets, predictions)}


def extract_final_number(text: str) -> Decimal | None:
  """The final number of a GSM8K solution or model answer, or None.

  Looks after "####" or "The answer is" first, else takes the last number in
  the text. Thousands separators and a trailing full stop are ignored.

  Args:
    text: A reference solution ("... #### 1,234") or a model's answer.

  Returns:
    The number as a Decimal, or None if the text has no number.
  """
  for marker in _GSM8K_ANSWER_MARKERS:
    found = marker.findall(text)
    if found:
      numbers = _NUMBER.findall(found[-1])
      if numbers:
        return _to_decimal(numbers[0])
  numbers = _NUMBER.findall(text)
  return _to_decimal(numbers[-1]) if numbers else None


def _to_decimal(token: str) -> Decimal | None:
  try:
    return Decimal(token.replace(",", ""))
  except InvalidOperation:
    return None


@registry.register_metric("gsm8k_accuracy")
def gsm8k_accuracy(targets: registry.Targets,
                   predictions: Sequence[str]) -> dict[str, float]:
  """GSM8K accuracy: the prediction's final number equals the reference's."""
  registry.check_lengths(targets, predictions)
  refs = registry.as_alias_tuples(targets)
  correct = 0
  for ref, pred in zip(refs, predictions):
    gold = {extract_final_number(r) for r in ref} - {None}
    if not gold:
      raise registry.MetricError(f"GSM8K reference without a number: {ref!r}")
    correct += extract_final_number(pred) in gold
  return {"gsm8k_accuracy": 100.0 * correct / max(len(refs), 1)}
