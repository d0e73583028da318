"""T5's span-corruption objective (numpy), and a seqio preprocessor using it.

A sequence of ``n`` tokens gets ``round(n * noise_density)`` noise tokens in
``round(noise / mean_noise_span_length)`` spans; non-noise and noise spans
alternate, starting with non-noise, and both kinds are split into non-empty
spans uniformly at random. In the inputs each noise span becomes one
sentinel; the targets are, for each noise span in order, its sentinel
followed by its tokens. Sentinels are the vocabulary's extra ids, the first
span's being ``<extra_id_0>`` = ``vocab_size - 1``, then downwards.

Example (sentinels S0, S1)::

  tokens  = a b c d e f g h        mask = . . X X . . . X
  inputs  = a b S0 e f g S1
  targets = S0 c d S1 h
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Sequence

import numpy as np

DEFAULT_NOISE_DENSITY = 0.15
DEFAULT_MEAN_NOISE_SPAN_LENGTH = 3.0


class SpanCorruptionError(ValueError):
  """Span corruption cannot be applied (e.g. no sentinel ids)."""


def num_noise(length: int, noise_density: float,
              mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) of a sequence of ``length`` >= 2 tokens."""
  tokens = min(max(int(round(length * noise_density)), 1), length - 1)
  spans = max(int(round(tokens / mean_noise_span_length)), 1)
  # Every non-noise span is non-empty too.
  return tokens, min(spans, tokens, length - tokens)


def _segment_lengths(num_items: int, num_segments: int,
                     rng: np.random.Generator) -> np.ndarray:
  """A uniformly random split of ``num_items`` into non-empty segments."""
  cuts = rng.choice(num_items - 1, size=num_segments - 1, replace=False) + 1
  bounds = np.concatenate([[0], np.sort(cuts), [num_items]])
  return np.diff(bounds)


def noise_mask(length: int, noise_density: float = DEFAULT_NOISE_DENSITY,
               mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
               *, rng: np.random.Generator) -> np.ndarray:
  """T5's random-spans noise mask: [length] bool, True on noise tokens.

  Args:
    length: Tokens in the sequence (>= 1; a single token is never noise).
    noise_density: Fraction of noise tokens.
    mean_noise_span_length: Mean length of a noise span.
    rng: Random generator.

  Returns:
    The mask; it starts with a non-noise span and ends with a noise span.
  """
  if length < 2:
    return np.zeros([length], bool)
  noise, spans = num_noise(length, noise_density, mean_noise_span_length)
  noise_lengths = _segment_lengths(noise, spans, rng)
  clean_lengths = _segment_lengths(length - noise, spans, rng)
  interleaved = np.stack([clean_lengths, noise_lengths], axis=1).reshape(-1)
  is_noise = np.stack([np.zeros(spans, bool), np.ones(spans, bool)],
                      axis=1).reshape(-1)
  return np.repeat(is_noise, interleaved)


def sentinel_ids(vocabulary: Any, *, num_extra_ids: int | None = None,
                 model_vocab_size: int | None = None) -> list[int]:
  """The vocabulary's sentinel ids, ``<extra_id_0>`` first.

  Args:
    vocabulary: A seqio vocabulary (``vocab_size``, ``extra_ids``).
    num_extra_ids: For a vocabulary without extra ids: use this many ids
      just above it (seqio's layout), which needs ``model_vocab_size``.
    model_vocab_size: Rows of the model's embedding table.

  Returns:
    ``[vocab_size - 1, vocab_size - 2, ...]`` for a vocabulary with extra ids.

  Raises:
    SpanCorruptionError: no extra ids, or the model has no room for them.
  """
  extra = int(getattr(vocabulary, "extra_ids", 0) or 0)
  size = int(vocabulary.vocab_size)
  if extra == 0:
    if not num_extra_ids:
      raise SpanCorruptionError(
          f"vocabulary of size {size} has no extra ids (sentinels): build it "
          f"with extra_ids (T5: 100) or pass num_extra_ids")
    if model_vocab_size is None or size + num_extra_ids > model_vocab_size:
      raise SpanCorruptionError(
          f"num_extra_ids={num_extra_ids}: vocabulary size {size} + "
          f"{num_extra_ids} exceeds the model's vocab size "
          f"{model_vocab_size}")
    extra, size = num_extra_ids, size + num_extra_ids
  return [size - 1 - i for i in range(extra)]


def corrupt(tokens: Sequence[int] | np.ndarray, mask: np.ndarray,
            sentinels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets): noise spans replaced by sentinels / listed after them.

  Raises:
    SpanCorruptionError: more noise spans than sentinels, or a size mismatch.
  """
  tokens = np.asarray(tokens)
  mask = np.asarray(mask, bool)
  if tokens.shape != mask.shape or tokens.ndim != 1:
    raise SpanCorruptionError(f"tokens {tokens.shape} and mask {mask.shape} "
                              f"must be equal 1-D shapes")
  is_start = mask & ~np.concatenate([[False], mask[:-1]])
  num_spans = int(is_start.sum())
  if num_spans > len(sentinels):
    raise SpanCorruptionError(f"{num_spans} noise spans but only "
                              f"{len(sentinels)} sentinel ids")
  marks = np.asarray(sentinels[:num_spans], tokens.dtype)
  span_of = np.maximum(np.cumsum(is_start) - 1, 0)
  inputs = np.where(is_start, marks[span_of] if num_spans else tokens,
                    tokens)[~mask | is_start]
  targets = np.insert(tokens[mask], np.flatnonzero(is_start[mask]), marks)
  return inputs, targets


def reconstruct(inputs: Sequence[int] | np.ndarray,
                targets: Sequence[int] | np.ndarray,
                sentinels: Sequence[int]) -> np.ndarray:
  """The original tokens from ``corrupt``'s inputs and targets.

  Raises:
    SpanCorruptionError: the sentinels of inputs and targets disagree.
  """
  is_sentinel = set(int(s) for s in sentinels)
  spans: dict[int, list[int]] = {}
  order: list[int] = []
  current = None
  for t in np.asarray(targets).tolist():
    if t in is_sentinel:
      current = t
      spans[t] = []
      order.append(t)
    elif current is None:
      raise SpanCorruptionError("targets do not start with a sentinel")
    else:
      spans[current].append(t)
  out: list[int] = []
  seen: list[int] = []
  for t in np.asarray(inputs).tolist():
    if t in is_sentinel:
      if t not in spans:
        raise SpanCorruptionError(f"sentinel {t} of the inputs is not in "
                                  f"the targets")
      seen.append(t)
      out.extend(spans[t])
    else:
      out.append(t)
  if seen != order:
    raise SpanCorruptionError(f"sentinels of inputs {seen} and targets "
                              f"{order} differ")
  return np.asarray(out, np.asarray(inputs).dtype)


def random_spans_lengths(inputs_length: int,
                         noise_density: float = DEFAULT_NOISE_DENSITY,
                         mean_noise_span_length: float =
                         DEFAULT_MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
  """(raw tokens, targets length) so that corrupted inputs fit exactly.

  The largest raw length whose inputs (non-noise tokens + one sentinel per
  span + EOS) fit ``inputs_length``, and the targets length it gives (noise
  tokens + one sentinel per span + EOS). T5: 512 → (568, 114).
  """
  def sizes(n: int) -> tuple[int, int]:
    noise, spans = num_noise(n, noise_density, mean_noise_span_length)
    return n - noise + spans + 1, noise + spans + 1
  if inputs_length < 3:
    raise SpanCorruptionError(f"inputs_length: must be >= 3, got "
                              f"{inputs_length}")
  n = 2
  while sizes(n + 1)[0] <= inputs_length:
    n += 1
  return n, sizes(n)[1]


# ---------------------------------------------------------------------------
# seqio preprocessors (TensorFlow is imported only here).
# ---------------------------------------------------------------------------


def _example_rng(seed: np.ndarray, tokens: np.ndarray) -> np.random.Generator:
  """Per-example generator: the pipeline's seed and the tokens themselves.

  The content keeps the masks of different hosts' shards apart although
  their seed streams are equal.
  """
  words = [int(s) & 0xFFFFFFFF for s in np.asarray(seed).reshape(-1)]
  return np.random.default_rng(words + [zlib.crc32(tokens.tobytes())])


def _denoise_numpy(tokens: np.ndarray, seed: np.ndarray, sentinels: np.ndarray,
                   noise_density: float, mean_noise_span_length: float
                   ) -> tuple[np.ndarray, np.ndarray]:
  mask = noise_mask(len(tokens), noise_density, mean_noise_span_length,
                    rng=_example_rng(seed, tokens))
  inputs, targets = corrupt(tokens, mask, sentinels.tolist())
  return inputs.astype(np.int32), targets.astype(np.int32)


def seqio_preprocessors(text_field: str = "text", *,
                        noise_density: float = DEFAULT_NOISE_DENSITY,
                        mean_noise_span_length: float =
                        DEFAULT_MEAN_NOISE_SPAN_LENGTH,
                        docs_per_group: int = 128) -> list[Any]:
  """seqio preprocessors: raw ``text_field`` → span-corrupted token features.

  Steps (T5's pre-training pipeline): tokenize the text (no EOS); concatenate
  the documents of groups of ``docs_per_group`` and cut the stream into
  chunks of the raw length that ``random_spans_lengths`` gives for the
  task's ``inputs`` length (the group's last chunk may be shorter; chunks of
  one token are dropped); corrupt each chunk with a generator seeded by
  seqio's per-example seed and the chunk's tokens; append EOS. The Task's
  ``targets`` vocabulary must have extra ids (sentinels).

  Returns:
    Preprocessors for ``seqio.Task(preprocessors=...)``.
  """
  from harness import extras  # pylint: disable=g-import-not-at-top
  seqio = extras.require("seqio", "span corruption")
  tf = extras.require("tensorflow", "span corruption")

  def to_targets(ds):
    return ds.map(lambda ex: {"targets": ex[text_field]},
                  num_parallel_calls=tf.data.AUTOTUNE)

  def concat_and_split(ds, sequence_length, output_features):
    del output_features
    raw, targets_len = random_spans_lengths(
        sequence_length["inputs"], noise_density, mean_noise_span_length)
    if targets_len > sequence_length["targets"]:
      raise SpanCorruptionError(
          f"lengths: targets {sequence_length['targets']} is below the "
          f"{targets_len} tokens span corruption of inputs "
          f"{sequence_length['inputs']} produces")

    def split(tokens):
      flat = tokens.flat_values
      n = tf.size(flat, out_type=tf.int64)
      full = n // raw
      lengths = tf.concat([tf.fill([full], tf.constant(raw, tf.int64)),
                           tf.reshape(n - full * raw, [1])], 0)
      return tf.RaggedTensor.from_row_lengths(flat, lengths)

    ds = ds.map(lambda ex: ex["targets"]).ragged_batch(docs_per_group)
    ds = ds.map(split).unbatch().filter(lambda t: tf.size(t) >= 2)
    return ds.map(lambda t: {"targets": t})

  @seqio.map_over_dataset(num_seeds=1)
  def denoise(features, seed, output_features):
    sentinels = np.asarray(
        sentinel_ids(output_features["targets"].vocabulary), np.int32)
    inputs, targets = tf.numpy_function(
        functools.partial(_denoise_numpy, sentinels=sentinels,
                          noise_density=noise_density,
                          mean_noise_span_length=mean_noise_span_length),
        [features["targets"], seed], [tf.int32, tf.int32], stateful=False)
    return {"inputs": tf.ensure_shape(inputs, [None]),
            "targets": tf.ensure_shape(targets, [None])}

  return [to_targets, seqio.preprocessors.tokenize, concat_and_split, denoise,
          seqio.preprocessors.append_eos_after_trim]
