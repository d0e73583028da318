"""Metric values on hand-checked cases and the libraries' documented examples."""

import decimal

import pytest
import sacrebleu

from harness import metrics
from harness.metrics import qa

# sacrebleu README example (three systems sentences, two reference streams).
_SYS = ["The dog bit the man.", "It wasn't surprising.",
        "The man had just bitten him."]
_REF_STREAMS = [["The dog bit the man.", "It was not unexpected.",
                 "The man bit him first."],
                ["The dog had bit the man.", "No one was surprised.",
                 "The man had bitten the dog."]]
_TARGETS = list(zip(*_REF_STREAMS))


def test_bleu_follows_t5_intl_tokenizer_not_13a():
  # README value with the default 13a tokenizer is 48.53; T5 uses "intl",
  # which splits "wasn't" into "wasn ' t" (19 hypothesis tokens): 43.92.
  ref13a = sacrebleu.corpus_bleu(_SYS, _REF_STREAMS).score
  assert ref13a == pytest.approx(48.53, abs=0.005)
  got = metrics.compute_metrics(["bleu"], _TARGETS, _SYS)["bleu"]
  assert got == pytest.approx(43.92, abs=0.005)


def test_bleu_intl_splits_german_quotes():
  got = metrics.compute_metrics(["bleu"], [("Er sagte „ Hallo “ heute.",)],
                                ["Er sagte „Hallo“ heute."])["bleu"]
  assert got == pytest.approx(100.0)  # 13a would give 20.25 here.


def test_bleu_perfect_and_disjoint():
  assert metrics.compute_metrics(["bleu"], ["a b c d e"], ["a b c d e"])[
      "bleu"] == pytest.approx(100.0)
  assert metrics.compute_metrics(["bleu"], ["a b c d e"], ["v w x y z"])[
      "bleu"] == pytest.approx(0.0)


def test_chrf_readme_value():
  got = metrics.compute_metrics(["chrf"], _TARGETS, _SYS)["chrf"]
  assert got == pytest.approx(59.73, abs=0.005)


def test_rouge_hand_computed():
  # rouge-score README pair. Unigram overlap 6 (the×2 quick brown dog jumps):
  # P=6/8, R=6/9 → F=12/17. Bigram overlap 2: P=2/7, R=2/8 → F=4/15.
  # LCS "the quick brown jumps the" = 5: F = 10/17.
  target = "The quick brown fox jumps over the lazy dog"
  pred = "The quick brown dog jumps on the log."
  got = metrics.compute_metrics(["rouge1", "rouge2", "rougeL"], [target],
                                [pred])
  assert got["rouge1"] == pytest.approx(100 * 12 / 17)
  assert got["rouge2"] == pytest.approx(100 * 4 / 15)
  assert got["rougeL"] == pytest.approx(100 * 10 / 17)


def test_rouge_lsum_splits_sentences():
  # Summary-level LCS sees each sentence separately: with the sentences in
  # swapped order, plain ROUGE-L finds only one sentence's LCS (3 of 6) while
  # ROUGE-Lsum matches both sentences (6 of 6).
  target = "Cats sleep a lot. Dogs bark loudly."
  pred = "Dogs bark loudly. Cats sleep a lot."
  got = metrics.compute_metrics(["rougeL", "rougeLsum"], [target], [pred])
  assert got["rougeLsum"] == pytest.approx(100.0)
  assert got["rougeL"] < 70.0


def test_rouge_takes_best_reference_and_averages():
  got = metrics.compute_metrics(["rouge1"], [("x y", "a b"), ("c d",)],
                                ["a b", "z z"])
  assert got["rouge1"] == pytest.approx(50.0)


def test_reference_metrics_reject_missing_references():
  for name in ("rouge2", "bleu"):
    with pytest.raises(metrics.MetricError, match="article"):
      metrics.compute_metrics([name], [()], ["some summary"])


@pytest.mark.parametrize("pred,gold,em,f1", [
    ("The Eiffel Tower!", "eiffel tower", 1.0, 1.0),
    ("an apple pie", "apple", 0.0, 2 / 3),  # P=1/2, R=1 → 2/3.
    ("Paris", "London", 0.0, 0.0),
])
def test_squad_normalisation_em_f1(pred, gold, em, f1):
  assert qa.exact_match_score(pred, gold) == em
  assert qa.f1_score(pred, gold) == pytest.approx(f1)


def test_squad_max_over_aliases_and_unanswerable():
  targets = [("Denver Broncos", "Broncos"), (), ()]
  preds = ["broncos", "", "Normandy"]
  got = metrics.compute_metrics(["exact_match", "f1"], targets, preds)
  # Answerable: EM 1 via the alias. Unanswerable: empty prediction scores 1,
  # a non-empty one 0 (official evaluate-v2.0.py: gold is [""]).
  assert got["exact_match"] == pytest.approx(200 / 3)
  assert got["f1"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("text,number", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
    ("So she has 1,250 dollars. The answer is 1,250.", "1250"),
    ("The answer is $18.", "18"),
    ("First 3, then 4, finally -2.5", "-2.5"),
    ("no number here", None),
])
def test_gsm8k_final_number(text, number):
  expected = None if number is None else decimal.Decimal(number)
  assert qa.extract_final_number(text) == expected


def test_gsm8k_accuracy():
  targets = ["... #### 72", "#### 1,000"]
  preds = ["12 + 60 = 72. The answer is 72.", "The answer is 100."]
  got = metrics.compute_metrics(["gsm8k_accuracy"], targets, preds)
  assert got["gsm8k_accuracy"] == pytest.approx(50.0)


def test_registry_errors_and_directions():
  with pytest.raises(KeyError, match="known metrics"):
    metrics.get_metric("blue")
  with pytest.raises(metrics.MetricError, match="2 targets but 1"):
    metrics.compute_metrics(["bleu"], ["a", "b"], ["a"])
  with pytest.raises(ValueError, match="already registered"):
    metrics.register_metric("bleu")(lambda t, p: {})
  assert all(m.higher_is_better for m in metrics.METRICS.values())
  assert metrics.get_metric("bleu").aggregation is metrics.Aggregation.CORPUS


def test_pass_at_1_counts_reasons():
  # Hosts without a kernel sandbox launcher refuse unless opted in.
  extras = [{"test_list": ["assert f(2) == 4"], "test_setup_code": ""}] * 2
  preds = ["def f(x):\n  return x * 2", "def f(x):\n  return x + 3"]
  with pytest.raises(metrics.MetricError, match="extras"):
    metrics.compute_metrics(["pass@1"], [()] * 2, preds)
  got = metrics.compute_metrics(["pass@1"], [()] * 2, preds, extras,
                                allow_unisolated=True)
  assert got["pass@1"] == pytest.approx(50.0)
  assert got["pass@1/exception: AssertionError"] == 1.0
