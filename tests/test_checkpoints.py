"""The committed default pairs load, match their vocabularies and cards."""

import os
import re

import jax
import jax.numpy as jnp
import pytest

from harness.models import check_same_tokenizer, load_pretrained
from harness.training import evaluate_bleu
from harness.training.pair import CARD, FAST_N, FIRST_N

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, "checkpoints")
PAIRS = ("multi30k_t5", "multi30k_gemma")
MODELS = [(p, s) for p in PAIRS for s in ("small", "large")]
MAX_PAIR_MB = 40.0


def path(pair, size):
  return os.path.join(ROOT, pair, size)


def card_number(pair, size, label):
  """The value of the card's results-table row starting with `label`."""
  with open(os.path.join(path(pair, size), CARD)) as f:
    text = f.read()
  match = re.search(r"^\| " + re.escape(label) + r"[^|]*\| ([0-9.]+)x? \|$",
                    text, re.M)
  assert match, f"{pair}/{size}/{CARD} has no row {label!r}"
  return float(match.group(1))


@pytest.mark.parametrize("pair", PAIRS)
def test_pair_files_size_and_vocabulary(pair):
  total = 0
  for size in ("small", "large"):
    files = set(os.listdir(path(pair, size)))
    assert {"config.json", "model.safetensors", CARD} <= files
    assert files & {"spiece.model", "tokenizer.model"}
    total += sum(os.path.getsize(os.path.join(path(pair, size), f))
                 for f in files)
  assert total / 1e6 <= MAX_PAIR_MB
  small = load_pretrained(path(pair, "small"), jnp.bfloat16)
  large = load_pretrained(path(pair, "large"), jnp.bfloat16)
  check_same_tokenizer(small.model, large.model)
  assert small.model.vocab_size == large.model.vocab_size == (
      small.tokenizer.vocab_size)
  n_small = sum(p.size for p in jax.tree.leaves(small.params))
  n_large = sum(p.size for p in jax.tree.leaves(large.params))
  assert n_large > 2 * n_small


def test_all_pairs_share_one_vocabulary():
  ids = {load_pretrained(path(p, s)).tokenizer.id for p, s in MODELS}
  assert len(ids) == 1


@pytest.mark.parametrize("pair", PAIRS)
def test_cards_meet_the_quality_targets(pair):
  small = card_number(pair, "small", "test BLEU (test_2016_flickr")
  large = card_number(pair, "large", "test BLEU (test_2016_flickr")
  assert large > small
  if pair == "multi30k_t5":
    assert large >= 25.0
    assert small >= 12.0
    assert large - small >= 5.0


@pytest.mark.slow  # ~20 s each
@pytest.mark.parametrize("size", ["small", "large"])
def test_t5_bleu_on_a_few_test_sentences_matches_card(size):
  """Fast default-run check: the first FAST_N sentences, T5 pair."""
  stated = card_number("multi30k_t5", size, f"test BLEU (first {FAST_N} ")
  result = evaluate_bleu(path("multi30k_t5", size), FAST_N)
  assert abs(result.bleu - stated) <= 1.0, (result.bleu, stated)


@pytest.mark.slow
@pytest.mark.parametrize("pair,size", MODELS)
def test_bleu_on_first_test_sentences_matches_card(pair, size):
  stated = card_number(pair, size, f"test BLEU (first {FIRST_N} ")
  result = evaluate_bleu(path(pair, size), FIRST_N)
  assert result.num_examples == FIRST_N
  assert abs(result.bleu - stated) <= 1.0, (result.bleu, stated)
