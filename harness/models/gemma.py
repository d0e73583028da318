"""Gemma 2 and Gemma 3 (text) decoder-only transformers with explicit caches.

Architecture: input embeddings scaled by sqrt(d_model) and tied to the output
layer; RMSNorm with a `(1 + scale)` weight before and after both the attention
and the MLP; grouped-query attention with RoPE (split-halves convention);
layers alternate LOCAL sliding-window and GLOBAL attention (Gemma 2: 1:1,
Gemma 3: 5:1); gated-GELU MLP. Gemma 2 soft-caps attention logits and final
logits; Gemma 3 instead normalises queries and keys per head (QK-norm) and
uses a different RoPE base for GLOBAL and LOCAL layers.

Every layer keeps a full-length cache; LOCAL layers mask keys outside their
window (a ring buffer would save memory for long contexts on big models).

Param layout (`Gemma.params`), for D model width, H query heads, N key/value
heads, K head width, F MLP width, V vocabulary:
  embed [V, D]; final_norm [D]; layers: [ {
    pre_attn_norm [D], attn {q [D, H, K], k, v [D, N, K], o [H, K, D],
    (Gemma 3) q_norm, k_norm [K]}, post_attn_norm [D],
    pre_mlp_norm [D], mlp {gate, up [D, F], down [F, D]}, post_mlp_norm [D]
  }, ... ]
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from harness.models import cpu_matmul, layers
from harness.models.base import Params, Transformer, as_batch, dense_init
from harness.models.configs import AttentionType, GemmaConfig


@flax.struct.dataclass
class GemmaCache:
  """Cache of a Gemma model (L layers, batch B).

  Attributes:
    k: L-tuple of [B, S, N, K] keys (after RoPE); S = cache_size.
    v: L-tuple of [B, S, N, K] values.
    length: scalar int32, tokens written (positions < length are valid).
  """
  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  length: jax.Array


def _norm(x: jax.Array, scale: jax.Array, config: GemmaConfig) -> jax.Array:
  return layers.rms_norm(x, scale, config.rms_norm_eps, plus_one=True)


def _mlp(p: Params, x: jax.Array, fast: bool = True) -> jax.Array:
  """Gated GELU: x [B, T, D] -> [B, T, D]."""
  gate = layers.gelu_tanh(cpu_matmul.matmul(x, p["gate"], enabled=fast))
  up = cpu_matmul.matmul(x, p["up"], enabled=fast)
  return cpu_matmul.matmul(gate * up, p["down"], enabled=fast)


class Gemma(Transformer):
  """Gemma 2/3 implementing the decoding protocol (module docstring)."""

  config: GemmaConfig

  # --- protocol -----------------------------------------------------------
  def decoder_prompt(self, prompt, prompt_len):
    return jnp.asarray(prompt, jnp.int32), jnp.asarray(prompt_len, jnp.int32)

  def prefill(self, prompt, prompt_len, cache_size: int) -> GemmaCache:
    """Writes the whole padded prompt in one call; length = prompt_len - 1.

    Positions from prompt_len - 1 on hold prompt or padding data that is
    never attended to (beyond the length) and is overwritten by `score`.
    """
    prompt = as_batch(prompt)
    batch, plen = prompt.shape
    if plen > cache_size:
      raise ValueError(f"prompt length {plen} exceeds cache_size {cache_size}")
    c = self.config
    shape = (batch, cache_size, c.num_kv_heads, c.head_dim)
    empty = tuple(self._constrain_kv(jnp.zeros(shape, self.dtype), 2)
                  for _ in range(c.num_layers))
    cache = GemmaCache(k=empty, v=empty, length=jnp.zeros((), jnp.int32))
    _, cache = self._run(prompt, cache, with_logits=False)
    return cache.replace(length=jnp.asarray(prompt_len, jnp.int32) - 1)

  def score(self, tokens, cache: GemmaCache):
    """Writes tokens [B, K] at the cache length; returns logits [B, K, V]."""
    return self._run(tokens, cache, with_logits=True)

  def forward_logits(self, input_ids, decoder_input_ids) -> jax.Array:
    """Uncached forward pass: decoder_input_ids [B, T] -> [B, T, V] float32.

    `input_ids` must be None (decoder-only; kept for a uniform signature).
    """
    if input_ids is not None:
      raise ValueError("Gemma is decoder-only: pass input_ids=None")
    tokens = as_batch(decoder_input_ids)
    pos = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    x = self._embed(tokens)
    for i, p in enumerate(self.params["layers"]):
      q, k, v = self._qkv(p["attn"], _norm(x, p["pre_attn_norm"],
                                           self.config), pos, i)
      x = self._finish_block(p, x, q, k, v, pos, pos, tokens.shape[1], i)
    return self._logits(x)

  # --- pieces -------------------------------------------------------------
  def _run(self, tokens: jax.Array, cache: GemmaCache, with_logits: bool):
    """Runs tokens [B, T] at positions length..length+T-1 through the cache."""
    start = cache.length
    num = tokens.shape[-1]
    q_pos = start + jnp.arange(num, dtype=jnp.int32)
    k_pos = jnp.arange(cache.k[0].shape[1], dtype=jnp.int32)
    x = self._embed(tokens)
    new_k, new_v = [], []
    for i, p in enumerate(self.params["layers"]):
      q, k, v = self._qkv(p["attn"], _norm(x, p["pre_attn_norm"],
                                           self.config), q_pos, i)
      keys = layers.write_kv(cache.k[i], k, start)
      values = layers.write_kv(cache.v[i], v, start)
      new_k.append(keys)
      new_v.append(values)
      x = self._finish_block(p, x, q, keys, values, q_pos, k_pos, start + num,
                             i)
    cache = cache.replace(k=tuple(new_k), v=tuple(new_v), length=start + num)
    return (self._logits(x) if with_logits else None), cache

  def _embed(self, tokens: jax.Array) -> jax.Array:
    """tokens [B, T] -> [B, T, D], scaled by sqrt(D) in the weight dtype."""
    scale = jnp.asarray(self.config.d_model ** 0.5, self.dtype)
    return self.params["embed"][tokens] * scale

  def _qkv(self, p: Params, x: jax.Array, pos: jax.Array, layer: int):
    """Normalised x [B, T, D] -> q [B, T, H, K] (scaled), k, v [B, T, N, K]."""
    c = self.config
    fast = self._fast_matmul
    q = cpu_matmul.matmul(x, p["q"], enabled=fast)
    k = cpu_matmul.matmul(x, p["k"], enabled=fast)
    v = cpu_matmul.matmul(x, p["v"], enabled=fast)
    if c.use_qk_norm:
      q = _norm(q, p["q_norm"], c)
      k = _norm(k, p["k_norm"], c)
    if c.attention_types[layer] == AttentionType.GLOBAL:
      base, scale = c.rope_base_global, c.rope_scale_global
    else:
      base, scale = c.rope_base_local, 1.0
    q = layers.rope(q, pos[None], base, scale)
    k = layers.rope(k, pos[None], base, scale)
    q = q * jnp.asarray(c.query_pre_attn_scalar ** -0.5, q.dtype)
    return q, k, v

  def _finish_block(self, p: Params, x, q, keys, values, q_pos, k_pos,
                    length_limit, layer: int) -> jax.Array:
    """Attention over keys/values [B, S, N, K], output, then the MLP."""
    c = self.config
    window = (c.sliding_window
              if c.attention_types[layer] == AttentionType.LOCAL else None)
    mask = layers.causal_mask(q_pos, k_pos, length_limit, window)
    attn = layers.attend(q, keys, values, mask,
                         logit_cap=c.attn_logit_softcap)
    # [B, T, H, K] -> [B, T, D]
    attn = cpu_matmul.matmul(attn, p["attn"]["o"], contract=2,
                             enabled=self._fast_matmul)
    x = x + _norm(attn, p["post_attn_norm"], c)
    h = _mlp(p["mlp"], _norm(x, p["pre_mlp_norm"], c), self._fast_matmul)
    return x + _norm(h, p["post_mlp_norm"], c)

  def _logits(self, x: jax.Array) -> jax.Array:
    """[B, T, D] -> float32 logits [B, T, V] via the tied embedding."""
    x = _norm(x, self.params["final_norm"], self.config)
    subset = "head_ids" in self.params  # models/subset_vocab.py
    logits = cpu_matmul.matmul(
        x, self.params["head" if subset else "embed"], transposed=True,
        enabled=self._fast_matmul, out_dtype=jnp.float32)
    logits = layers.softcap(logits, self.config.final_logit_softcap)
    if subset:
      logits = layers.scatter_vocab(logits, self.params["head_ids"],
                                    self.config.vocab_size)
    return logits


jax.tree_util.register_pytree_node_class(Gemma)


# --- random init ------------------------------------------------------------
def _init_layer(key, c: GemmaConfig, dtype) -> Params:
  kq, kk, kv, ko, kg, ku, kd = jax.random.split(key, 7)
  d, h, n, k, f = (c.d_model, c.num_heads, c.num_kv_heads, c.head_dim, c.d_ff)
  zeros = jnp.zeros((d,), dtype)  # (1 + 0) = unit scale
  attn = {"q": dense_init(kq, (d, h, k), d, dtype),
          "k": dense_init(kk, (d, n, k), d, dtype),
          "v": dense_init(kv, (d, n, k), d, dtype),
          "o": dense_init(ko, (h, k, d), h * k, dtype)}
  if c.use_qk_norm:
    attn["q_norm"] = jnp.zeros((k,), dtype)
    attn["k_norm"] = jnp.zeros((k,), dtype)
  return {
      "pre_attn_norm": zeros, "attn": attn, "post_attn_norm": zeros,
      "pre_mlp_norm": zeros, "post_mlp_norm": zeros,
      "mlp": {"gate": dense_init(kg, (d, f), d, dtype),
              "up": dense_init(ku, (d, f), d, dtype),
              "down": dense_init(kd, (f, d), f, dtype)},
  }


def init_gemma_params(key: jax.Array, config: GemmaConfig,
                      dtype=jnp.float32) -> Params:
  """Random Gemma params (normal, std fan_in ** -0.5; norms at unit scale)."""
  keys = jax.random.split(key, config.num_layers + 1)
  return {
      # std d**-0.5 so that the sqrt(d)-scaled embeddings have unit scale.
      "embed": dense_init(keys[0], (config.vocab_size, config.d_model),
                          config.d_model, dtype),
      "final_norm": jnp.zeros((config.d_model,), dtype),
      "layers": [_init_layer(k, config, dtype) for k in keys[1:]],
  }


def random_gemma(key: jax.Array, config: GemmaConfig, dtype=jnp.float32,
                 tokenizer_id: str = "") -> Gemma:
  """A Gemma model with random weights."""
  return Gemma(config, init_gemma_params(key, config, dtype), tokenizer_id)
