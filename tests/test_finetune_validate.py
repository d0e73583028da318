"""finetune.validate.greedy_eval on the shipped Multi30k T5 small."""

from __future__ import annotations

import os

import jax.numpy as jnp
import pytest

from harness import metrics, tasks
from harness.finetune import validate
from harness.models import load_pretrained
from harness.training import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "checkpoints", "multi30k_t5", "small")


@pytest.fixture(scope="module")
def small():
  return load_pretrained(SMALL, jnp.float32)


@pytest.fixture(scope="module")
def sentences():
  return tasks.load_examples("multi30k_ende", split="test")[:6]


def test_bleu_equals_the_evaluate_path(small, sentences):
  # Multi30k targets are already tuples of reference strings.
  examples = [(ex.inputs, ex.targets) for ex in sentences]
  got = validate.greedy_eval(small.model, small.tokenizer, examples,
                             metrics=["bleu", "rouge2"], max_input_len=192,
                             max_decode_len=evaluate.MAX_DECODE_LEN)
  want, num_tokens = evaluate.translate(small.model, small.tokenizer,
                                        [ex.inputs for ex in sentences])
  assert got["predictions"] == want
  assert got["num_tokens"] == num_tokens
  bleu = metrics.compute_metrics(["bleu"], [ex.targets for ex in sentences],
                                 want)["bleu"]
  assert got["bleu"] == pytest.approx(bleu, abs=1e-9)
  assert got["bleu"] > 10  # a trained model, not noise
  assert 0 < got["rouge2"] <= 100
  assert got["num_examples"] == len(sentences)
  assert got["decode_seconds"] > 0


@pytest.mark.slow  # default-suite budget (make test-slow); ~11 s
def test_prefix_and_truncation_reach_the_prompt(small, sentences):
  ex = sentences[0]
  full = validate.greedy_eval(small.model, small.tokenizer,
                              [(ex.inputs, ex.targets)], metrics=["bleu"],
                              max_input_len=192, max_decode_len=16)
  # Truncated to 3 ids (2 pieces + EOS), the prompt is another sentence.
  short = validate.greedy_eval(small.model, small.tokenizer,
                               [(ex.inputs, ex.targets)], metrics=["bleu"],
                               max_input_len=3, max_decode_len=16)
  words = ex.inputs.split()
  head = validate.greedy_eval(
      small.model, small.tokenizer, [(" ".join(words[1:]), ex.targets)],
      metrics=["bleu"], max_input_len=192, max_decode_len=16,
      prefix=words[0] + " ")
  assert short["predictions"] != full["predictions"]
  assert head["predictions"] == full["predictions"]
  assert full["num_tokens"] <= 16


def test_bad_examples_are_refused(small):
  with pytest.raises(ValueError, match="examples"):
    validate.greedy_eval(small.model, small.tokenizer, [], metrics=["bleu"],
                         max_input_len=8, max_decode_len=8)
  with pytest.raises(ValueError, match=r"examples\[1\]"):
    validate.greedy_eval(small.model, small.tokenizer,
                         [("a", ["b"]), ("c", [])], metrics=["bleu"],
                         max_input_len=8, max_decode_len=8)
  with pytest.raises(ValueError, match=r"examples\[0\]: references"):
    validate.greedy_eval(small.model, small.tokenizer, [("a", [("b",)])],
                         metrics=["bleu"], max_input_len=8, max_decode_len=8)
  with pytest.raises(ValueError, match="max_decode_len"):
    validate.greedy_eval(small.model, small.tokenizer, [("a", ["b"])],
                         metrics=["bleu"], max_input_len=8, max_decode_len=0)
