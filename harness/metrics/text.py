"""Reference-based text metrics: BLEU and chrF (sacrebleu), ROUGE (rouge-score).

BLEU follows the T5 evaluation convention, read in
google-research/text-to-text-transfer-transformer ``t5/evaluation/metrics.py``
(commit 02ef3f27): ``sacrebleu.corpus_bleu(predictions, references,
smooth_method="exp", smooth_value=0.0, force=False, lowercase=False,
tokenize="intl", use_effective_order=False)``. Note the tokenizer: T5 uses
sacrebleu's **"intl"** tokenizer (Unicode-aware punctuation splitting), not
sacrebleu's default "13a". The two differ on apostrophes and non-ASCII
punctuation such as German „quotes“; on sacrebleu's README example "13a" gives
48.53 and "intl" gives 43.92 (tested in tests/test_metrics.py). BLEU is a
corpus-level score on 0–100, computed on detokenized text.

chrF is sacrebleu's default chrF2 (character 6-grams, beta 2) at corpus level.

ROUGE follows t5's ``rouge`` metric: ``rouge_scorer.RougeScorer`` without a
stemmer, F-measure ×100, averaged over examples. Differences from t5, on
purpose: (1) the plain mean of per-example F-measures rather than the
``BootstrapAggregator`` "mid" value, which is random (unseeded resampling);
(2) for ROUGE-Lsum, sentences are split on sentence-final punctuation followed
by whitespace (``_split_sentences``) rather than t5's ``" . "`` replacement,
which only works on pre-tokenized text; rouge-score's own ``split_summaries``
needs NLTK's punkt model, a download. With several references ROUGE takes the
best-scoring reference per example (``score_multi``).
"""

from __future__ import annotations

import re
from typing import Sequence

import sacrebleu

from harness.metrics import registry

# T5's BLEU settings (see module docstring).
T5_BLEU_TOKENIZER = "intl"
T5_BLEU_SMOOTH_METHOD = "exp"
# A full stop, question or exclamation mark (optionally followed by closing
# quotes or brackets) and whitespace end a sentence for ROUGE-Lsum.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _reference_streams(targets: registry.Targets) -> list[list[str]]:
  """Transposes per-example references into sacrebleu's reference streams.

  Args:
    targets: [N] references per example; every example must have the same
      number R ≥ 1 of references.

  Returns:
    [R][N] reference streams.
  """
  refs = registry.as_alias_tuples(targets)
  counts = {len(r) for r in refs}
  if 0 in counts:
    raise registry.MetricError(
        "BLEU/chrF need references, but some examples have none "
        "(e.g. offline CNN/DailyMail has articles only)")
  if len(counts) > 1:
    raise registry.MetricError(
        f"BLEU/chrF need the same number of references per example, got "
        f"{sorted(counts)}")
  return [list(stream) for stream in zip(*refs)]


@registry.register_metric("bleu", aggregation=registry.Aggregation.CORPUS)
def bleu(targets: registry.Targets,
         predictions: Sequence[str]) -> dict[str, float]:
  """Corpus BLEU (sacrebleu, T5 convention: 'intl' tokenizer, exp smoothing)."""
  registry.check_lengths(targets, predictions)
  score = sacrebleu.corpus_bleu(
      list(predictions), _reference_streams(targets),
      smooth_method=T5_BLEU_SMOOTH_METHOD, smooth_value=0.0, force=False,
      lowercase=False, tokenize=T5_BLEU_TOKENIZER, use_effective_order=False)
  return {"bleu": float(score.score)}


@registry.register_metric("chrf", aggregation=registry.Aggregation.CORPUS)
def chrf(targets: registry.Targets,
         predictions: Sequence[str]) -> dict[str, float]:
  """Corpus chrF2 (sacrebleu defaults: char 6-grams, beta 2)."""
  registry.check_lengths(targets, predictions)
  score = sacrebleu.corpus_chrf(list(predictions), _reference_streams(targets))
  return {"chrf": float(score.score)}


def _split_sentences(text: str) -> str:
  """Puts one sentence per line, as ROUGE-Lsum expects."""
  return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def _rouge(rouge_type: str, targets: registry.Targets,
           predictions: Sequence[str]) -> dict[str, float]:
  """Mean per-example ROUGE F-measure ×100, best over references."""
  registry.check_lengths(targets, predictions)
  refs = registry.as_alias_tuples(targets)
  if any(not r for r in refs):
    raise registry.MetricError(
        "ROUGE needs a reference summary for every example; offline "
        "CNN/DailyMail has articles only (use it for latency, not ROUGE)")
  prepare = _split_sentences if rouge_type == "rougeLsum" else (lambda s: s)
  # Imported here: rouge-score (and its nltk) is needed by ROUGE alone.
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=False)
  total = 0.0
  for ref, pred in zip(refs, predictions):
    scores = scorer.score_multi([prepare(r) for r in ref], prepare(pred))
    total += scores[rouge_type].fmeasure
  return {rouge_type: 100.0 * total / max(len(refs), 1)}


def _register_rouge(rouge_type: str) -> None:
  def fn(targets, predictions):
    return _rouge(rouge_type, targets, predictions)
  fn.__doc__ = f"Mean {rouge_type} F-measure (rouge-score, no stemmer)."
  registry.register_metric(rouge_type)(fn)


for _rouge_type in ROUGE_TYPES:
  _register_rouge(_rouge_type)
