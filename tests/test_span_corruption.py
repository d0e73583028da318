"""harness.finetune.span_corruption: T5's objective on real text."""

from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np
import pytest
import sentencepiece as spm

from harness.finetune import span_corruption as sc

ROOT = pathlib.Path(__file__).resolve().parents[1]
VOCAB = str(ROOT / "checkpoints/multi30k_t5/large/spiece.model")
SP_SIZE = 6000  # Pieces of VOCAB; sentinels are 6099 (<extra_id_0>) down.
SENTINELS = [SP_SIZE + 99 - i for i in range(100)]
RAW = 568  # T5's raw chunk for 512-token inputs.


@pytest.fixture(scope="module")
def chunks():
  """RAW-token chunks of 150 CNN/DailyMail articles (415 chunks)."""
  sp = spm.SentencePieceProcessor(model_file=VOCAB)
  with open(ROOT / "data/cnn_dailymail/test_pairs_500.jsonl",
            encoding="utf-8") as f:
    articles = [json.loads(line)["article"]
                for line in itertools.islice(f, 150)]
  stream = np.concatenate([np.asarray(t, np.int32)
                           for t in sp.encode(articles)])
  # Whole chunks, plus a few odd lengths to cover rounding.
  out = [stream[i:i + RAW] for i in range(0, len(stream) - RAW, RAW)]
  out += [stream[:n] for n in (2, 3, 7, 31, 100, 333)]
  return out


def _masks(chunks, seed=0):
  rng = np.random.default_rng(seed)
  return [sc.noise_mask(len(c), rng=rng) for c in chunks]


def _spans(mask):
  """Lengths of the noise spans of a mask."""
  edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
  return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_noise_density_and_mean_span_length(chunks):
  masks = _masks(chunks)
  tokens = sum(len(m) for m in masks)
  noise = sum(int(m.sum()) for m in masks)
  spans = np.concatenate([_spans(m) for m in masks])
  # Each chunk has round(0.15 n) noise tokens: only rounding (< 0.5 token per
  # chunk, 415 chunks of 568) moves the density, far below 0.002.
  assert abs(noise / tokens - 0.15) < 0.002
  # round(85 / 3) = 28 spans per whole chunk: mean 85 / 28 = 3.04.
  assert abs(spans.mean() - 3.0) < 0.1
  assert (spans >= 1).all()
  for m in masks:
    n = len(m)
    assert m.sum() == min(max(round(n * 0.15), 1), n - 1)
    assert not m[0] and m[-1]  # Starts clean, ends with noise.


def test_span_lengths_follow_uniform_segmentation(chunks):
  # Splitting n noise tokens into k non-empty spans uniformly makes a span
  # one token long with probability (k - 1) / (n - 1). Over ~11,600 spans
  # the count of such spans has sd ~ 50: allow 5 sd.
  masks = _masks(chunks, seed=1)
  observed = expected = var = 0.0
  for m in masks:
    spans = _spans(m)
    n, k = int(m.sum()), len(spans)
    if n < 2:
      continue
    p = (k - 1) / (n - 1)
    observed += (spans == 1).sum()
    expected += k * p
    var += k * p * (1 - p)
  assert abs(observed - expected) < 5 * np.sqrt(var)
  # Noise is spread evenly: first and second halves of whole chunks agree.
  whole = np.stack([m for m in masks if len(m) == RAW])
  first, second = whole[:, :RAW // 2].mean(), whole[:, RAW // 2:].mean()
  assert abs(first - second) < 0.01  # sd of each half's rate ~ 0.002.


def test_masks_are_deterministic_per_seed():
  a = sc.noise_mask(500, rng=np.random.default_rng(3))
  b = sc.noise_mask(500, rng=np.random.default_rng(3))
  c = sc.noise_mask(500, rng=np.random.default_rng(4))
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()


def test_corrupt_and_reconstruct_real_text(chunks):
  for tokens, mask in zip(chunks, _masks(chunks, seed=2)):
    inputs, targets = sc.corrupt(tokens, mask, SENTINELS)
    np.testing.assert_array_equal(sc.reconstruct(inputs, targets, SENTINELS),
                                  tokens)
    k = len(_spans(mask))
    is_in = np.isin(inputs, SENTINELS)
    is_tg = np.isin(targets, SENTINELS)
    # Sentinels distinct and in order, the same ones on both sides.
    np.testing.assert_array_equal(inputs[is_in], SENTINELS[:k])
    np.testing.assert_array_equal(targets[is_tg], SENTINELS[:k])
    assert is_tg[0]
    # Every span non-empty: no two sentinels adjacent on either side.
    assert not (is_tg[1:] & is_tg[:-1]).any()
    assert not (is_in[1:] & is_in[:-1]).any()
    assert len(inputs) == len(tokens) - mask.sum() + k
    assert len(targets) == mask.sum() + k
  # The worked example of the module docstring.
  tokens = np.arange(10, 18)
  mask = np.array([0, 0, 1, 1, 0, 0, 0, 1], bool)
  inputs, targets = sc.corrupt(tokens, mask, [99, 98])
  assert inputs.tolist() == [10, 11, 99, 14, 15, 16, 98]
  assert targets.tolist() == [99, 12, 13, 98, 17]


def test_errors():
  with pytest.raises(sc.SpanCorruptionError, match="3 noise spans but only 2"):
    sc.corrupt(np.arange(6), np.array([1, 0, 1, 0, 1, 0], bool), [9, 8])
  with pytest.raises(sc.SpanCorruptionError, match="differ"):
    sc.reconstruct([1, 98, 2, 99], [99, 5, 98, 6], [99, 98])


def test_random_spans_lengths():
  assert sc.random_spans_lengths(512) == (568, 114)  # T5's pre-training.
  rng = np.random.default_rng(0)
  for inputs_length in (16, 64, 80, 1024):
    raw, targets_length = sc.random_spans_lengths(inputs_length)
    inputs, targets = sc.corrupt(np.arange(raw) + 10,
                                 sc.noise_mask(raw, rng=rng), SENTINELS)
    assert len(inputs) + 1 == inputs_length  # + EOS: exactly full.
    assert len(targets) + 1 == targets_length
    longer, _ = sc.corrupt(np.arange(raw + 1) + 10,
                           sc.noise_mask(raw + 1, rng=rng), SENTINELS)
    assert len(longer) + 1 > inputs_length


class _Vocab:
  """A vocabulary without extra ids (vocab_size, extra_ids only)."""
  vocab_size = SP_SIZE
  extra_ids = 0


def test_sentinel_ids_need_extra_ids():
  with pytest.raises(sc.SpanCorruptionError, match="has no extra ids"):
    sc.sentinel_ids(_Vocab())
  with pytest.raises(sc.SpanCorruptionError, match="exceeds the model's"):
    sc.sentinel_ids(_Vocab(), num_extra_ids=100, model_vocab_size=SP_SIZE)
  assert sc.sentinel_ids(_Vocab(), num_extra_ids=100,
                         model_vocab_size=6144) == SENTINELS


def test_sentinel_ids_of_a_seqio_vocabulary():
  seqio = pytest.importorskip("seqio")
  vocab = seqio.SentencePieceVocabulary(VOCAB, extra_ids=100)
  ids = sc.sentinel_ids(vocab)
  assert ids == SENTINELS
  assert vocab.encode("<extra_id_0>") == [ids[0]]
  assert vocab.encode("<extra_id_7>") == [ids[7]]


def test_c4_task_reconstructs_the_documents():
  """ft_c4_span under mock TFDS: all chunks together give the token stream."""
  seqio = pytest.importorskip("seqio")
  tfds = pytest.importorskip("tensorflow_datasets")
  from harness.finetune import data  # pylint: disable=g-import-not-at-top
  vocab = seqio.SentencePieceVocabulary(VOCAB, extra_ids=100)
  lengths = {"inputs": 64, "targets": 32}
  with tfds.testing.mock_data(num_examples=10):
    docs = [vocab.encode(ex["text"].decode()) for ex in tfds.as_numpy(
        tfds.load("c4/en:3.1.0", split="train", shuffle_files=False))]
    batches = list(data.make_dataset(
        "ft_c4_span", "train", vocab_path=VOCAB, lengths=lengths,
        batch_size=4, pack=False, seed=0, shuffle=False, repeat=False))
    again = list(data.make_dataset(
        "ft_c4_span", "train", vocab_path=VOCAB, lengths=lengths,
        batch_size=4, pack=False, seed=0, shuffle=False, repeat=False))
    other = list(data.make_dataset(
        "ft_c4_span", "train", vocab_path=VOCAB, lengths=lengths,
        batch_size=4, pack=False, seed=1, shuffle=False, repeat=False))
  pieces = []
  raw, _ = sc.random_spans_lengths(64)
  for b in batches:
    for enc, tgt in zip(b["encoder_input_tokens"], b["decoder_target_tokens"]):
      if not enc.any():
        continue
      enc, tgt = enc[enc > 0], tgt[tgt > 0]
      assert enc[-1] == 1 and tgt[-1] == 1  # EOS on both sides.
      assert tgt[0] == SENTINELS[0]
      pieces.append(sc.reconstruct(enc[:-1], tgt[:-1], SENTINELS))
  assert all(len(p) == raw for p in pieces[:-1])
  np.testing.assert_array_equal(np.concatenate(pieces),
                                np.concatenate(docs))
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a["encoder_input_tokens"],
                                  b["encoder_input_tokens"])
  assert any((a["encoder_input_tokens"] != b["encoder_input_tokens"]).any()
             for a, b in zip(batches, other))
