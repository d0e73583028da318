"""Multi30k EN→DE as padded, length-bucketed token batches.

The text is exactly what the harness feeds at evaluation time:

* T5 (task `multi30k_ende`, raw source text): encoder input
  `encode(src) + [eos]`, decoder target `encode(tgt) + [eos]`.
* Gemma (decoder-only): `[bos] + encode("English: {src}\\nGerman:")` is the
  prompt, followed by `encode(tgt) + [eos]`; only the target part is scored.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import jax
import numpy as np

from harness import tasks
from harness.models import Tokenizer, encode_prompt
from harness.tasks import prompts

GEMMA_PROMPT = prompts.PromptFormat.FEWSHOT_TRANSLATE
# Sequence lengths are padded up to one of these, so that a jitted step
# compiles once per bucket (and not once per batch).
BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192)


@dataclasses.dataclass(frozen=True)
class Batch:
  """One padded training batch (numpy, int32 / float32).

  Attributes:
    inputs: [B, P] encoder tokens (T5), or None (Gemma).
    input_mask: [B, P] 1 on real encoder tokens, or None.
    decoder_inputs: [B, T] decoder tokens (T5: pad-started targets shifted
      right; Gemma: the whole sequence but its last token).
    labels: [B, T] next-token labels.
    loss_mask: [B, T] 1 where the label is scored.
  """
  inputs: np.ndarray | None
  input_mask: np.ndarray | None
  decoder_inputs: np.ndarray
  labels: np.ndarray
  loss_mask: np.ndarray

  @property
  def num_targets(self) -> int:
    return int(self.loss_mask.sum())


# A pytree, so that a jitted step takes a whole batch (`inputs` and
# `input_mask` are None, i.e. empty subtrees, for decoder-only models).
jax.tree_util.register_dataclass(
    Batch, data_fields=["inputs", "input_mask", "decoder_inputs", "labels",
                        "loss_mask"], meta_fields=[])


def read_pairs(split: str, num: int | None = None) -> list[tuple[str, str]]:
  """(English, German) pairs of a bundled Multi30k split in file order.

  Args:
    split: "train", "validation" or "test".
    num: keep the first `num` pairs (None: all).
  """
  records = tasks.datasets.offline_records("multi30k", split)
  return [(r["src"], r["tgt"]) for r in records[:num]]


def gemma_prompt(src: str) -> str:
  """The decoder-only prompt, the harness's few-shot translation format."""
  return prompts.build_inputs(GEMMA_PROMPT, {"src": src}, [])


def prompt_ids(tokenizer: Tokenizer, text: str, arch: str,
               max_input_len: int | None = None) -> list[int]:
  """Token ids of one prompt as the harness feeds it to `decode`
  (`harness.models.encode_prompt`).

  Args:
    tokenizer: the shared SentencePiece tokenizer.
    text: T5: the raw English sentence (the `multi30k_ende` task input);
      Gemma: the English sentence, wrapped in the "English: … German:" prompt
      here.
    arch: "t5" or "gemma".
    max_input_len: the most ids (None: no limit).
  """
  if arch == "t5":
    return encode_prompt(tokenizer, text, True, max_input_len)
  if arch == "gemma":
    return encode_prompt(tokenizer, gemma_prompt(text), False, max_input_len)
  raise ValueError(f"unknown architecture {arch!r}; expected t5 or gemma")


def _bucket(n: int) -> int:
  for b in BUCKETS:
    if n <= b:
      return b
  raise ValueError(f"sequence of {n} tokens exceeds the largest bucket "
                   f"{BUCKETS[-1]}")


def _pad(rows: Sequence[Sequence[int]], length: int) -> np.ndarray:
  out = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out


@dataclasses.dataclass(frozen=True)
class Encoded:
  """Tokenized examples: T5 (source, target) or Gemma (prompt, target)."""
  arch: str
  sources: tuple[tuple[int, ...], ...]
  targets: tuple[tuple[int, ...], ...]

  def __len__(self) -> int:
    return len(self.targets)

  def lengths(self) -> tuple[np.ndarray, np.ndarray]:
    """[N] bucketed (encoder, decoder) lengths; encoder 0 for Gemma.

    T5 pads source and target to the bucket of the longer one.
    """
    src = np.array([len(s) for s in self.sources])
    tgt = np.array([len(t) for t in self.targets])
    if self.arch == "gemma":
      return np.zeros_like(src), np.array(
          [_bucket(n) for n in src + tgt - 1])
    # One bucket for both sides: few shapes, so few compilations.
    both = np.array([_bucket(n) for n in np.maximum(src, tgt)])
    return both, both


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer,
                 arch: str, max_len: int = 64) -> Encoded:
  """Tokenizes (English, German) pairs, truncating targets and T5 sources to
  max_len (Gemma prompts are kept whole)."""
  sources, targets = [], []
  for src, tgt in pairs:
    s = prompt_ids(tokenizer, src, arch, max_len if arch == "t5" else None)
    t = tokenizer.encode(tgt, add_eos=True)
    if len(t) > max_len:
      t = t[:max_len - 1] + [tokenizer.eos_id]
    sources.append(tuple(s))
    targets.append(tuple(t))
  return Encoded(arch, tuple(sources), tuple(targets))


def _collate(data: Encoded, idx: Sequence[int], enc_len: int,
             dec_len: int) -> Batch:
  """Pads the examples `idx` to [B, enc_len] / [B, dec_len]."""
  tgts = [data.targets[i] for i in idx]
  if data.arch == "t5":
    srcs = [data.sources[i] for i in idx]
    inputs = _pad(srcs, enc_len)
    labels = _pad(tgts, dec_len)
    # Decoder start = pad = 0: shift right by one.
    decoder_inputs = np.zeros_like(labels)
    decoder_inputs[:, 1:] = labels[:, :-1]
    loss_mask = _pad([[1] * len(t) for t in tgts], dec_len)
    return Batch(inputs, (_pad([[1] * len(s) for s in srcs], enc_len)),
                 decoder_inputs, labels, loss_mask.astype(np.float32))
  seqs = [data.sources[i] + data.targets[i] for i in idx]
  decoder_inputs = _pad([s[:-1] for s in seqs], dec_len)
  labels = _pad([s[1:] for s in seqs], dec_len)
  mask = [[0] * (len(data.sources[i]) - 1) + [1] * len(data.targets[i])
          for i in idx]
  return Batch(None, None, decoder_inputs, labels,
               _pad(mask, dec_len).astype(np.float32))


def make_batches(data: Encoded, tokens_per_batch: int, *, shuffle: bool,
                 seed: int = 0) -> list[Batch]:
  """Groups examples of equal bucketed lengths into batches.

  The batch size of a bucket is `tokens_per_batch // decoder_length`
  (at least 1), so every batch has about the same number of target slots and
  each (encoder, decoder) bucket pair gives one batch shape.

  Args:
    data: tokenized examples.
    tokens_per_batch: decoder token slots per batch.
    shuffle: shuffle examples within buckets and the batch order.
    seed: shuffling seed.

  Returns:
    A list of batches covering every example once.
  """
  rng = np.random.default_rng(seed)
  enc, dec = data.lengths()
  groups: dict[tuple[int, int], list[int]] = {}
  order = rng.permutation(len(data)) if shuffle else np.arange(len(data))
  for i in order:
    groups.setdefault((int(enc[i]), int(dec[i])), []).append(int(i))
  batches = []
  for (e, d), idx in sorted(groups.items()):
    size = max(1, tokens_per_batch // d)
    for start in range(0, len(idx), size):
      chunk = idx[start:start + size]
      # Pad the last, partial batch of a bucket with repeats of its first
      # example but mask them out, so the shape stays fixed.
      batch = _collate(data, chunk + [chunk[0]] * (size - len(chunk)), e, d)
      if len(chunk) < size:
        mask = batch.loss_mask.copy()
        mask[len(chunk):] = 0
        batch = dataclasses.replace(batch, loss_mask=mask)
      batches.append(batch)
  if shuffle:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


def epochs(data: Encoded, tokens_per_batch: int,
           seed: int = 0) -> Iterator[Batch]:
  """Endless shuffled batches, reshuffled every epoch."""
  epoch = 0
  while True:
    yield from make_batches(data, tokens_per_batch, shuffle=True,
                            seed=seed + epoch)
    epoch += 1
