"""Logit processing and sampling shared by every decoding loop.

Two views of every next-token distribution are kept (ALGORITHMS.md §3.11):

* *raw* probabilities: ``softmax(logits)`` at T = 1, untruncated. Every
  deferral threshold is evaluated on these.
* *scaled* probabilities: temperature first (one-hot argmax at T = 0), then
  top-P truncation and renormalisation. Models sample from these, and target
  distributions π are built from them.

Temperature and top-P are traced scalars, so changing them never recompiles.
"""

from __future__ import annotations

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
  logits = jnp.asarray(logits, jnp.float32)
  big = jnp.finfo(jnp.float32).max / 4
  logits = jnp.where(jnp.isnan(logits), -jnp.inf, logits)
  logits = jnp.clip(logits, -jnp.inf, big)
  dead_row = jnp.all(jnp.isneginf(logits), axis=-1, keepdims=True)
  return jnp.where(dead_row, 0.0, logits)


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
  logits = sanitize_logits(logits)
  raw = jax.nn.softmax(logits, axis=-1)
  greedy = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1],
                          dtype=jnp.float32)
  t = jnp.maximum(temperature, MIN_TEMPERATURE)
  # Shift before dividing so a huge logit over a tiny T cannot overflow.
  shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
  tempered = jax.nn.softmax(shifted / t, axis=-1)
  scaled = jnp.where(temperature == 0, greedy, tempered)
  return top_p_filter(scaled, top_p), raw


def sample(key: jax.Array, probs: jax.Array) -> jax.Array:
  """Samples ids from (possibly unnormalised) non-negative weights [..., V].

  Inverse-CDF sampling: one uniform u per row, the id is the first index
  whose cumulative weight exceeds u * total. Zero-weight ids are never drawn
  and a one-hot row (T = 0) yields its argmax. One random number per row
  instead of V Gumbel draws (``jax.random.categorical``), which on CPU made
  sampling cost more than a small model's forward pass (docs/bench.md).
  Float32 cumulative sums resolve probabilities down to about 1e-7 of the
  total, like the default ("low") Gumbel sampler.
  """
  probs = jnp.asarray(probs, jnp.float32)
  cdf = jnp.cumsum(probs, axis=-1)
  u = jax.random.uniform(key, probs.shape[:-1], jnp.float32)
  threshold = (u * cdf[..., -1])[..., None]
  idx = jnp.sum(cdf <= threshold, axis=-1)
  # u * total can round up to the total: fall back to the last positive id.
  vocab = probs.shape[-1]
  last_positive = vocab - 1 - jnp.argmax(probs[..., ::-1] > 0, axis=-1)
  return jnp.where(idx < vocab, idx, last_positive).astype(jnp.int32)
