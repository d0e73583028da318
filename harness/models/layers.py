"""Building blocks shared by the T5 and Gemma networks (pure functions).

Parameters are plain arrays. Shape letters used in einsum strings:
  B batch, T query positions, S key positions, D model width, H query heads,
  G query heads per key/value head, N key/value heads, K head width, F
  feed-forward width, V vocabulary.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# Added to masked-out attention logits: large enough to vanish after softmax
# in float32, small enough that `NEG_INF - NEG_INF` does not overflow.
NEG_INF = -1e30


def rms_norm(x: jax.Array, scale: jax.Array, eps: float,
             plus_one: bool = False) -> jax.Array:
  """Root-mean-square norm (no mean subtraction), computed in float32.

  Args:
    x: [..., D] activations.
    scale: [D] learned scale.
    eps: added to the mean square.
    plus_one: Gemma style, multiply by `1 + scale` instead of `scale`.

  Returns:
    [..., D] normalised activations in the dtype of `x`.
  """
  x32 = x.astype(jnp.float32)
  var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
  y = x32 * jax.lax.rsqrt(var + eps)
  s = scale.astype(jnp.float32)
  if plus_one:
    return (y * (1.0 + s)).astype(x.dtype)
  # T5 casts to the weight dtype before scaling.
  return scale * y.astype(scale.dtype)


def gelu_tanh(x: jax.Array) -> jax.Array:
  """GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`)."""
  return jax.nn.gelu(x, approximate=True)


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
  """`cap * tanh(x / cap)`, or `x` unchanged when `cap` is None."""
  if cap is None:
    return x
  return cap * jnp.tanh(x / cap)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
           bias: jax.Array | None = None,
           logit_cap: float | None = None,
           probs_dropout: Callable[[jax.Array], jax.Array] | None = None
           ) -> jax.Array:
  """Grouped-query dot-product attention with an explicit mask.

  The caller has already scaled `q` (T5 uses no scaling at all).

  Args:
    q: [B, T, H, K] queries.
    k: [B, S, N, K] keys; H must be a multiple of N.
    v: [B, S, N, K] values.
    mask: [B or 1, T, S] bool, True where a query may see a key.
    bias: [H, T, S] additive logit bias (T5 relative positions), or None.
    logit_cap: tanh soft-cap of the logits (Gemma 2), or None.
    probs_dropout: training only: applied to the [B, N, G, T, S] attention
      probabilities (after the softmax), or None.

  Returns:
    [B, T, H, K] attention outputs in the dtype of `v`.
  """
  b, t, h, d = q.shape
  n = k.shape[2]
  # [B, T, H, K] -> [B, T, N, G, K]
  q = q.reshape(b, t, n, h // n, d)
  logits = jnp.einsum("btngk,bsnk->bngts", q, k,
                      preferred_element_type=jnp.float32)
  logits = softcap(logits, logit_cap)
  if bias is not None:
    # [H, T, S] -> [1, N, G, T, S]
    logits = logits + bias.reshape(1, n, h // n, t, -1).astype(jnp.float32)
  logits = jnp.where(mask[:, None, None, :, :], logits, NEG_INF)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  if probs_dropout is not None:
    probs = probs_dropout(probs)
  out = jnp.einsum("bngts,bsnk->btngk", probs, v)
  # [B, T, N, G, K] -> [B, T, H, K]
  return out.reshape(b, t, h, d)


def write_kv(cache_kv: jax.Array, new: jax.Array,
             start: jax.Array) -> jax.Array:
  """Writes `new` [B, T, N, K] into `cache_kv` [B, S, N, K] at position start.

  An in-place `dynamic_update_slice`; the caller guarantees start + T <= S
  (XLA would otherwise clamp the start index).
  """
  zero = jnp.zeros((), jnp.int32)
  return jax.lax.dynamic_update_slice(
      cache_kv, new.astype(cache_kv.dtype),
      (zero, jnp.asarray(start, jnp.int32), zero, zero))


def rope(x: jax.Array, positions: jax.Array, base: float,
         scale: float = 1.0) -> jax.Array:
  """Rotary position embedding, rotating the two halves of each head.

  Args:
    x: [B, T, H, K] queries or keys.
    positions: [B or 1, T] int32 absolute positions.
    base: RoPE base frequency.
    scale: linear position scaling (positions are divided by it).

  Returns:
    [B, T, H, K] rotated, in the dtype of `x`.
  """
  half = x.shape[-1] // 2
  inv_freq = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) * 2
                             / x.shape[-1]))
  # [B, T, 1] * [K/2] -> [B, T, K/2]
  angles = (positions.astype(jnp.float32)[..., None] / scale) * inv_freq
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def causal_mask(q_pos: jax.Array, k_pos: jax.Array, length_limit: jax.Array,
                window: int | None = None) -> jax.Array:
  """[1, T, S] bool: key k visible to query q.

  Visible iff k <= q, k < length_limit (the cache fill after the write) and,
  for a sliding window, q - k < window.

  Args:
    q_pos: [T] int32 query positions.
    k_pos: [S] int32 key positions.
    length_limit: scalar int32; keys at or beyond it are stale.
    window: sliding-window size or None.
  """
  mask = (k_pos[None, :] <= q_pos[:, None]) & (k_pos[None, :] < length_limit)
  if window is not None:
    mask &= (q_pos[:, None] - k_pos[None, :]) < window
  return mask[None]


def scatter_vocab(logits: jax.Array, ids: jax.Array,
                  vocab_size: int) -> jax.Array:
  """Logits over a subset vocabulary [..., S] -> [..., V], NEG_INF elsewhere.

  `ids` [S] are the subset's full-vocabulary ids. After a softmax the tokens
  outside the subset have probability exactly 0 (NEG_INF is finite, so
  q * log q stays 0 rather than NaN).
  """
  full = jnp.full(logits.shape[:-1] + (vocab_size,), NEG_INF, logits.dtype)
  return full.at[..., ids].set(logits)
