"""Logit processing and sampling shared by every decoding loop.

Two views of every next-token distribution are kept
(docs/algorithms.md#conventions):

* *raw* probabilities: ``softmax(logits)`` at T = 1, untruncated. Every
  deferral threshold is evaluated on these.
* *scaled* probabilities: temperature first (one-hot argmax at T = 0), then
  top-P truncation and renormalisation. Models sample from these, and target
  distributions π are built from them.

Temperature and top-P are traced scalars, so changing them never recompiles.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Floor for probabilities in denominators (the reference notebook's MIN_PROBS).
MIN_PROB = 1e-10
# Temperatures below this are treated as the limit T -> 0 only when exactly 0;
# a tiny positive T is clamped here so logits / T stays finite in float32.
MIN_TEMPERATURE = 1e-4


def sanitize_logits(logits: jax.Array) -> jax.Array:
  """Makes logits safe: NaN becomes -inf, +inf becomes a large finite value.

  A row with no finite entry (all -inf or NaN) becomes uniform, so that no NaN
  ever reaches a distribution.

  Args:
    logits: [..., V] float.

  Returns:
    [..., V] float32 logits with at least one finite entry per row.
  """
  return _sanitize_with_max(logits)[0]


def _sanitize_with_max(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(``sanitize_logits(logits)``, its row max [..., 1]) with one reduction."""
  logits = jnp.asarray(logits, jnp.float32)
  big = jnp.finfo(jnp.float32).max / 4
  logits = jnp.minimum(jnp.where(jnp.isnan(logits), -jnp.inf, logits), big)
  top = jnp.max(logits, axis=-1, keepdims=True)
  dead_row = jnp.isneginf(top)  # no finite entry: the row becomes uniform
  return jnp.where(dead_row, 0.0, logits), jnp.where(dead_row, 0.0, top)


def top_p_filter(probs: jax.Array, top_p: jax.Array) -> jax.Array:
  """Keeps the smallest set of most likely tokens with mass ≥ top_p.

  Ties at the threshold probability are all kept. ``top_p >= 1`` returns the
  input untouched (no sort is executed).

  Args:
    probs: [..., V] probabilities.
    top_p: scalar in (0, 1].

  Returns:
    [..., V] renormalised truncated probabilities.
  """

  def truncate(pr):
    sorted_desc = -jnp.sort(-pr, axis=-1)
    mass_before = jnp.cumsum(sorted_desc, axis=-1) - sorted_desc
    kept = mass_before < top_p
    # Smallest kept probability; the first entry is always kept.
    threshold = jnp.min(jnp.where(kept, sorted_desc, jnp.inf), axis=-1,
                        keepdims=True)
    out = jnp.where(pr >= threshold, pr, 0.0)
    return out / jnp.sum(out, axis=-1, keepdims=True)

  return jax.lax.cond(top_p >= 1.0, lambda pr: pr, truncate, probs)


def process_logits(logits: jax.Array, temperature: jax.Array,
                   top_p: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns (scaled, raw) probabilities for logits [..., V].

  Args:
    logits: [..., V] logits.
    temperature: scalar ≥ 0; 0 means greedy (one-hot argmax).
    top_p: scalar in (0, 1]; 1 means no truncation.

  Returns:
    scaled: [..., V] probabilities to sample from (temperature, then top-P).
    raw: [..., V] softmax at T = 1 (for deferral thresholds).
  """
  # One max per row serves the sanitising, both softmaxes and the argmax
  # (XLA:CPU runs each reduction over V as its own kernel).
  logits, top = _sanitize_with_max(logits)
  shifted = logits - top
  unnormalised = jnp.exp(shifted)
  raw = unnormalised / jnp.sum(unnormalised, axis=-1, keepdims=True)
  ids = jax.lax.broadcasted_iota(jnp.int32, shifted.shape, shifted.ndim - 1)
  first_top = jnp.min(jnp.where(shifted == 0.0, ids, shifted.shape[-1]),
                      axis=-1, keepdims=True)
  greedy = (ids == first_top).astype(jnp.float32)
  # Shifted before dividing, so a huge logit over a tiny T cannot overflow.
  t = jnp.maximum(temperature, MIN_TEMPERATURE)
  tempered = jnp.exp(shifted / t)
  tempered = tempered / jnp.sum(tempered, axis=-1, keepdims=True)
  scaled = jnp.where(temperature == 0, greedy, tempered)
  return top_p_filter(scaled, top_p), raw


def argmax(x: jax.Array) -> jax.Array:
  """First index of the maximum over the last axis (like ``jnp.argmax``).

  Written as two plain reductions (max, then the smallest index attaining
  it) because XLA:CPU runs ``argmax``'s variadic (value, index) reduce about
  5x slower at V = 6000 (docs/bench.md). Inputs must not contain NaN
  (``sanitize_logits`` guarantees it for logits and probabilities).
  """
  top = jnp.max(x, axis=-1, keepdims=True)
  ids = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  return jnp.min(jnp.where(x == top, ids, x.shape[-1]), axis=-1)


def _block(vocab: int) -> int:
  """Block width C of the two-level search: a multiple of 8 near sqrt(V)."""
  return 8 * max(1, math.ceil(math.sqrt(vocab) / 8))


def _first_above(cumulative: jax.Array, threshold: jax.Array) -> jax.Array:
  """Number of leading entries ≤ threshold (= first index above it)."""
  return jnp.sum(cumulative <= threshold, axis=-1).astype(jnp.int32)


def _last_positive(weights: jax.Array) -> jax.Array:
  ids = jax.lax.broadcasted_iota(jnp.int32, weights.shape, weights.ndim - 1)
  return jnp.max(jnp.where(weights > 0, ids, 0), axis=-1)


def sample(key: jax.Array, probs: jax.Array) -> jax.Array:
  """Samples ids from (possibly unnormalised) non-negative weights [..., V].

  Inverse-CDF sampling: one uniform u per row; the id is the first index
  whose cumulative weight exceeds u * total. Zero-weight ids are never drawn
  and a one-hot row (T = 0) yields its argmax. One random number per row
  instead of V Gumbel draws (``jax.random.categorical``), which on CPU made
  sampling cost more than a small model's forward pass (docs/bench.md).

  The search is two-level, over blocks of C ≈ sqrt(V) ids: cumulative block
  masses pick the block, then cumulative weights within that block pick the
  id. Two cumulative sums of about sqrt(V) entries replace one of V, which
  XLA:CPU runs as several reduce-window passes (24 µs at V = 6000 against
  7 µs for the two-level form). Float32 partial sums resolve probabilities
  down to about 1e-7 of the total, like the default ("low") Gumbel sampler.
  """
  probs = jnp.asarray(probs, jnp.float32)
  vocab = probs.shape[-1]
  width = _block(vocab)
  rows = -(-vocab // width)
  pad = [(0, 0)] * (probs.ndim - 1) + [(0, rows * width - vocab)]
  blocks = jnp.pad(probs, pad).reshape(*probs.shape[:-1], rows, width)
  block_mass = jnp.sum(blocks, axis=-1)                       # [..., R]
  block_cdf = jnp.cumsum(block_mass, axis=-1)                 # [..., R]
  u = jax.random.uniform(key, probs.shape[:-1], jnp.float32)
  threshold = u * block_cdf[..., -1]
  r = _first_above(block_cdf, threshold[..., None])
  # u * total can round up to the total: take the last block with mass.
  r = jnp.where(r < rows, r, _last_positive(block_mass))
  before = jnp.where(
      r > 0, jnp.take_along_axis(block_cdf, jnp.maximum(r - 1, 0)[..., None],
                                 -1)[..., 0], 0.0)
  row = jnp.take_along_axis(blocks, r[..., None, None], -2)[..., 0, :]
  c = _first_above(before[..., None] + jnp.cumsum(row, axis=-1),
                   threshold[..., None])
  # Rounding can leave the block's partial sums below the threshold.
  c = jnp.where(c < width, c, _last_positive(row))
  return r * width + c
