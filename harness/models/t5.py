"""T5 v1.1 encoder-decoder with an explicit, roll-back-able decoder cache.

Architecture (T5 v1.1): RMSNorm without mean subtraction or bias, relative
position buckets (one learned table per stack, shared by its layers), gated
GELU feed-forward, no biases anywhere, no attention-logit scaling (folded into
the query init), untied input and output embeddings and therefore no
`d_model ** -0.5` scaling of the decoder output (that scaling applies only to
v1.0-style models: `T5Config.tie_embeddings` and `T5Config.scale_logits`).

Training: :meth:`T5.train_logits` runs the whole network on a batch in
seqio's encoder-decoder feature layout (packed or not), with dropout where
t5x's T5 v1.1 puts it and optional bfloat16 activations over float32
parameters. The decoding paths below never apply dropout.

Cached decoding: :meth:`T5.prefill` runs the encoder once on the padded prompt
and precomputes every decoder layer's cross-attention keys and values;
:meth:`T5.score` then runs the decoder on K new tokens, computing the relative
position bias for those K query rows only.

Param layout (`T5.params`), shapes for D model width, H heads, K head width,
F feed-forward width, V vocabulary, R relative-position buckets:
  embed [V, D]; lm_head [D, V] (absent when tied);
  encoder / decoder: {rel_bias [R, H], final_norm [D], layers: [ {
    self_attn_norm [D], self_attn {q, k, v [D, H, K], o [H, K, D]},
    (decoder only) cross_attn_norm [D], cross_attn {q, k, v, o},
    mlp_norm [D], mlp {wi_0, wi_1 [D, F], wo [F, D]} }, ... ]}
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import flax.struct
import jax
import jax.numpy as jnp

from harness.models import cpu_matmul, layers
from harness.models.base import Params, Transformer, as_batch, dense_init
from harness.models.configs import T5Config


@flax.struct.dataclass
class T5Cache:
  """Decoder cache of a T5 model (L decoder layers, batch B).

  Attributes:
    self_k: L-tuple of [B, S, H, K] self-attention keys; S = cache_size.
    self_v: L-tuple of [B, S, H, K] self-attention values.
    cross_k: L-tuple of [B, P, H, K] cross-attention keys of the encoded
      prompt (computed once by `prefill`).
    cross_v: L-tuple of [B, P, H, K] cross-attention values.
    enc_mask: [B, P] bool, True on real (non-padding) prompt tokens.
    length: scalar int32, decoder tokens written (positions < length valid).
  """
  self_k: tuple[jax.Array, ...]
  self_v: tuple[jax.Array, ...]
  cross_k: tuple[jax.Array, ...]
  cross_v: tuple[jax.Array, ...]
  enc_mask: jax.Array
  length: jax.Array


def relative_position_bucket(relative_position: jax.Array, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> jax.Array:
  """Maps key-minus-query offsets to T5 relative-position buckets.

  Half the buckets (per direction) hold exact small offsets, the rest grow
  logarithmically up to `max_distance`.

  Args:
    relative_position: [...] int32, key position minus query position.
    bidirectional: encoder (both directions) or decoder (past only).
    num_buckets: total buckets.
    max_distance: offsets beyond this share the last bucket.

  Returns:
    [...] int32 bucket ids in [0, num_buckets).
  """
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative_position > 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # Same float32 operation order as the reference, so ties round alike.
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32)
                       / max_exact)
               / math.log(max_distance / max_exact))
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return buckets + jnp.where(is_small, distance, large)


def position_bias(table: jax.Array, q_pos: jax.Array, k_pos: jax.Array,
                  bidirectional: bool, config: T5Config) -> jax.Array:
  """[H, T, S] relative-position logit bias for queries q_pos [T], keys [S]."""
  # [T, S] offsets
  buckets = relative_position_bucket(
      k_pos[None, :] - q_pos[:, None], bidirectional, config.num_buckets,
      config.max_distance)
  # [T, S, H] -> [H, T, S]
  return jnp.transpose(table[buckets], (2, 0, 1))


class Dropout:
  """Dropout sites of one training forward pass, as t5x places them.

  Every call is one site; site i draws its mask from `fold_in(rng, i)`, so
  the masks depend only on the rng and the (static) order of the sites. Off
  (the identity, adding no operation) when the rate is 0 or rng is None.

  Args:
    rate: drop probability, a Python float in [0, 1).
    rng: a `jax.random` key, or None for no dropout.
  """

  def __init__(self, rate: float = 0.0, rng: jax.Array | None = None):
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"dropout_rate: must be in [0, 1), got {rate}")
    self.rate = rate if rng is not None else 0.0
    self._rng = rng
    self._sites = 0

  @property
  def active(self) -> bool:
    return self.rate > 0.0

  def __call__(self, x: jax.Array,
               broadcast_axis: int | None = -2) -> jax.Array:
    """Drops entries of x, scaling the kept ones by 1 / (1 - rate).

    Args:
      x: activations.
      broadcast_axis: the mask is shared along this axis (t5x shares it along
        the sequence axis, -2 of [B, T, D]), or None for an independent mask
        per entry.
    """
    if not self.active:
      return x
    key = jax.random.fold_in(self._rng, self._sites)
    self._sites += 1
    shape = list(x.shape)
    if broadcast_axis is not None:
      shape[broadcast_axis] = 1
    keep = jax.random.bernoulli(key, 1.0 - self.rate, shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype),
                     jnp.zeros((), x.dtype))

  def attention(self):
    """The attention-probabilities dropout for `layers.attend`, or None.

    The probabilities are [B, N, G, T, S]; the mask is shared along the query
    axis T, as in t5x.
    """
    if not self.active:
      return None
    return functools.partial(self, broadcast_axis=-2)


NO_DROPOUT = Dropout()

PACKING_FEATURES = ("encoder_segment_ids", "encoder_positions",
                    "decoder_segment_ids", "decoder_positions")


def _project_qkv(p: Params, x: jax.Array, fast: bool = True):
  """x [B, T, D] -> q, k, v [B, T, H, K]."""
  return tuple(cpu_matmul.matmul(x, p[name], enabled=fast)
               for name in ("q", "k", "v"))


def _out(p: Params, attn: jax.Array, fast: bool = True) -> jax.Array:
  """attn [B, T, H, K] -> [B, T, D]."""
  return cpu_matmul.matmul(attn, p["o"], contract=2, enabled=fast)


def _mlp(p: Params, x: jax.Array, config: T5Config,
         drop: Dropout = NO_DROPOUT, fast: bool = True) -> jax.Array:
  """Gated-GELU (v1.1) or ReLU (v1.0) feed-forward, x [B, T, D]."""
  def dense(a, w):
    return cpu_matmul.matmul(a, w, enabled=fast)
  if config.gated_act == "gelu_tanh":
    gate = layers.gelu_tanh(dense(x, p["wi_0"]))
    hidden = gate * dense(x, p["wi_1"])
  else:
    hidden = jax.nn.relu(dense(x, p["wi"]))
  return dense(drop(hidden), p["wo"])


def _norm(x: jax.Array, scale: jax.Array, config: T5Config) -> jax.Array:
  return layers.rms_norm(x, scale, config.layer_norm_eps)


class T5(Transformer):
  """T5 v1.1 implementing the decoding protocol (see the module docstring)."""

  config: T5Config

  # --- protocol -----------------------------------------------------------
  def decoder_prompt(self, prompt, prompt_len):
    del prompt, prompt_len
    return (jnp.full((1,), self.config.decoder_start_id, jnp.int32),
            jnp.ones((), jnp.int32))

  def prefill(self, prompt, prompt_len, cache_size: int) -> T5Cache:
    """Encodes the padded prompt [P] (or [B, P]); empty decoder cache."""
    prompt = as_batch(prompt)
    batch, plen = prompt.shape
    enc_mask = jnp.arange(plen)[None, :] < prompt_len
    enc_mask = jnp.broadcast_to(enc_mask, (batch, plen))
    encoded = self.encode(prompt, enc_mask)
    c = self.config
    shape = (batch, cache_size, c.num_heads, c.d_kv)
    cross_k, cross_v, self_k, self_v = [], [], [], []
    for p in self.params["decoder"]["layers"]:
      # [B, P, D] -> [B, P, H, K]
      cross_k.append(self._constrain_kv(
          jnp.einsum("bpd,dhk->bphk", encoded, p["cross_attn"]["k"]), 2))
      cross_v.append(self._constrain_kv(
          jnp.einsum("bpd,dhk->bphk", encoded, p["cross_attn"]["v"]), 2))
      self_k.append(self._constrain_kv(jnp.zeros(shape, self.dtype), 2))
      self_v.append(self._constrain_kv(jnp.zeros(shape, self.dtype), 2))
    return T5Cache(self_k=tuple(self_k), self_v=tuple(self_v),
                   cross_k=tuple(cross_k), cross_v=tuple(cross_v),
                   enc_mask=enc_mask, length=jnp.zeros((), jnp.int32))

  def score(self, tokens, cache: T5Cache):
    """Writes tokens [B, K] at the cache length; returns logits [B, K, V]."""
    start = cache.length
    num = tokens.shape[-1]
    q_pos = start + jnp.arange(num, dtype=jnp.int32)
    k_pos = jnp.arange(cache.self_k[0].shape[1], dtype=jnp.int32)
    self_mask = layers.causal_mask(q_pos, k_pos, start + num)
    bias = position_bias(self.params["decoder"]["rel_bias"], q_pos, k_pos,
                         False, self.config)
    x = self.params["embed"][tokens]
    new_k, new_v = [], []
    for i, p in enumerate(self.params["decoder"]["layers"]):
      q, k, v = _project_qkv(p["self_attn"], _norm(x, p["self_attn_norm"],
                                                   self.config),
                             self._fast_matmul)
      keys = layers.write_kv(cache.self_k[i], k, start)
      values = layers.write_kv(cache.self_v[i], v, start)
      new_k.append(keys)
      new_v.append(values)
      x = x + _out(p["self_attn"],
                   layers.attend(q, keys, values, self_mask, bias),
                   self._fast_matmul)
      x = self._cross_and_mlp(p, x, cache.cross_k[i], cache.cross_v[i],
                              cache.enc_mask[:, None, :])
    cache = cache.replace(self_k=tuple(new_k), self_v=tuple(new_v),
                          length=start + num)
    return self._logits(x), cache

  # --- uncached reference path --------------------------------------------
  def forward_logits(self, input_ids, decoder_input_ids,
                     attention_mask=None) -> jax.Array:
    """Uncached forward pass (for parity checks).

    Args:
      input_ids: [B, P] int encoder tokens.
      decoder_input_ids: [B, T] int decoder tokens (starting with pad).
      attention_mask: optional [B, P] encoder padding mask (1 = real).

    Returns:
      [B, T, V] float32 logits.
    """
    input_ids = as_batch(input_ids)
    tokens = as_batch(decoder_input_ids)
    enc_mask = (jnp.ones(input_ids.shape, bool) if attention_mask is None
                else jnp.asarray(attention_mask).astype(bool))
    encoded = self.encode(input_ids, enc_mask)
    pos = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    mask = layers.causal_mask(pos, pos, tokens.shape[1])
    x = self._decode_all(tokens, encoded, mask, enc_mask[:, None, :])
    return self._logits(x)

  # --- training -----------------------------------------------------------
  def train_logits(self, features: Mapping[str, jax.Array], *,
                   dropout_rate: float = 0.0, rng: jax.Array | None = None,
                   activation_dtype=jnp.float32) -> jax.Array:
    """Teacher-forced logits of a training batch, with optional dropout.

    `features` follows seqio's `EncDecFeatureConverter`: encoder_input_tokens
    [B, P], decoder_input_tokens [B, T] (decoder_target_tokens and
    decoder_loss_weights are the loss's business and unused here), and for
    packed batches encoder_segment_ids / encoder_positions [B, P] and
    decoder_segment_ids / decoder_positions [B, T] (segment 0 = padding).

    Unpacked, padding tokens (id 0) are masked as encoder keys (as
    `forward_logits` with `attention_mask = input_ids > 0`). Packed, each
    token attends only within its segment: encoder self-attention, causal
    decoder self-attention, and cross-attention from a decoder segment to
    the encoder segment with the same id. The relative-position bias only
    enters between tokens of one segment, whose positions are consecutive,
    so the key-minus-query offsets from the row indices equal those from the
    per-token positions and a packed example gets the logits it gets alone
    (t5x computes the bias the same way).

    Dropout (rate `dropout_rate`, off when it is 0 or `rng` is None) sits
    where t5x's T5 v1.1 puts it: on the token embeddings, the attention
    probabilities, each sub-layer's output before its residual add, the
    feed-forward hidden layer, and after each stack's final norm. Masks are
    shared along the sequence axis (the attention mask along the query axis),
    except after the encoder's final norm.

    With `activation_dtype=jnp.bfloat16`, parameters stay float32 in
    storage and are cast to bfloat16 for the matmuls and the residual
    stream; norms, attention logits and softmax, and the output layer run in
    float32 (t5x's mixed precision). Gradients flow back to the stored
    float32 parameters.

    Args:
      features: int arrays, see above.
      dropout_rate: a Python float in [0, 1).
      rng: dropout key, or None for no dropout.
      activation_dtype: dtype of the activations and the cast weights.

    Returns:
      [B, T, V] float32 logits.

    Raises:
      ValueError: a missing feature, a partial set of packing features, or
        inconsistent shapes.
    """
    c = self.config
    enc_tokens, dec_tokens, segments = _train_features(features)
    drop = Dropout(dropout_rate, rng)
    # [B, P] real encoder tokens
    enc_real = enc_tokens > 0
    dec_pos = jnp.arange(dec_tokens.shape[1], dtype=jnp.int32)
    # [1, T, T] causal
    causal = layers.causal_mask(dec_pos, dec_pos, dec_tokens.shape[1])
    if segments is None:
      enc_mask = enc_real[:, None, :]  # [B, 1, P]
      self_mask = causal
      cross_mask = enc_real[:, None, :]
    else:
      enc_seg, dec_seg = segments
      # [B, P, P], [B, T, T], [B, T, P]
      enc_mask = enc_real[:, None, :] & (enc_seg[:, :, None]
                                         == enc_seg[:, None, :])
      self_mask = causal & (dec_seg[:, :, None] == dec_seg[:, None, :])
      cross_mask = enc_real[:, None, :] & (dec_seg[:, :, None]
                                           == enc_seg[:, None, :])

    def cast(a):
      return (a.astype(activation_dtype)
              if jnp.issubdtype(a.dtype, jnp.floating) else a)
    model = self.replace(params=jax.tree.map(cast, self.params))
    encoded = model.encode(enc_tokens, enc_mask, drop)
    x = model._decode_all(dec_tokens, encoded, self_mask, cross_mask, drop)
    x = _norm(x, model.params["decoder"]["final_norm"], c)
    x = drop(x)
    if c.scale_logits:
      x = x * (c.d_model ** -0.5)
    # The output layer in float32 from the stored weights.
    x = x.astype(jnp.float32)
    if c.tie_embeddings:
      return jnp.einsum("btd,vd->btv", x,
                        self.params["embed"].astype(jnp.float32))
    return jnp.einsum("btd,dv->btv", x,
                      self.params["lm_head"].astype(jnp.float32))

  # --- pieces -------------------------------------------------------------
  def encode(self, tokens: jax.Array, mask: jax.Array,
             drop: Dropout = NO_DROPOUT) -> jax.Array:
    """Encoder: tokens [B, P] -> [B, P, D] outputs.

    Args:
      tokens: [B, P] int32.
      mask: [B, P] bool real tokens (the keys every query may see), or a full
        [B, 1 or P, P] attention mask (packed training batches).
      drop: dropout sites (training only).
    """
    c = self.config
    enc = self.params["encoder"]
    pos = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    bias = position_bias(enc["rel_bias"], pos, pos, True, c)
    # [B, 1 or P (T), P]
    attn_mask = mask[:, None, :] if mask.ndim == 2 else mask
    x = drop(self.params["embed"][tokens])
    fast = self._fast_matmul
    for p in enc["layers"]:
      q, k, v = _project_qkv(p["self_attn"], _norm(x, p["self_attn_norm"], c),
                             fast)
      attn = layers.attend(q, k, v, attn_mask, bias,
                           probs_dropout=drop.attention())
      x = x + drop(_out(p["self_attn"], attn, fast))
      x = x + drop(_mlp(p["mlp"], _norm(x, p["mlp_norm"], c), c, drop, fast))
    return drop(_norm(x, enc["final_norm"], c), broadcast_axis=None)

  def _decode_all(self, tokens: jax.Array, encoded: jax.Array,
                  self_mask: jax.Array, cross_mask: jax.Array,
                  drop: Dropout = NO_DROPOUT) -> jax.Array:
    """Uncached decoder stack up to (not including) the final norm.

    Args:
      tokens: [B, T] decoder input tokens.
      encoded: [B, P, D] encoder outputs.
      self_mask: [B or 1, T, T] bool self-attention mask.
      cross_mask: [B, T or 1, P] bool cross-attention mask.
      drop: dropout sites (training only).

    Returns:
      [B, T, D] residual stream after the last block.
    """
    c = self.config
    pos = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    bias = position_bias(self.params["decoder"]["rel_bias"], pos, pos, False,
                         c)
    x = drop(self.params["embed"][tokens])
    fast = self._fast_matmul
    for p in self.params["decoder"]["layers"]:
      q, k, v = _project_qkv(p["self_attn"], _norm(x, p["self_attn_norm"], c),
                             fast)
      attn = layers.attend(q, k, v, self_mask, bias,
                           probs_dropout=drop.attention())
      x = x + drop(_out(p["self_attn"], attn, fast))
      ca = p["cross_attn"]
      cross_k = jnp.einsum("bpd,dhk->bphk", encoded, ca["k"])
      cross_v = jnp.einsum("bpd,dhk->bphk", encoded, ca["v"])
      x = self._cross_and_mlp(p, x, cross_k, cross_v, cross_mask, drop)
    return x

  def _cross_and_mlp(self, p: Params, x: jax.Array, cross_k: jax.Array,
                     cross_v: jax.Array, cross_mask: jax.Array,
                     drop: Dropout = NO_DROPOUT) -> jax.Array:
    """Cross-attention then feed-forward sub-layers of one decoder block.

    Args:
      p: the block's params.
      x: [B, T, D] residual stream.
      cross_k: [B, P, H, K] encoder keys.
      cross_v: [B, P, H, K] encoder values.
      cross_mask: [B, T or 1, P] bool, the encoder keys each query may see.
      drop: dropout sites (training only).
    """
    c = self.config
    fast = self._fast_matmul
    h = _norm(x, p["cross_attn_norm"], c)
    q = cpu_matmul.matmul(h, p["cross_attn"]["q"], enabled=fast)
    attn = layers.attend(q, cross_k, cross_v, cross_mask,
                         probs_dropout=drop.attention())
    x = x + drop(_out(p["cross_attn"], attn, fast))
    return x + drop(_mlp(p["mlp"], _norm(x, p["mlp_norm"], c), c, drop, fast))

  def _logits(self, x: jax.Array) -> jax.Array:
    """Decoder output [B, T, D] -> float32 logits [B, T, V]."""
    c = self.config
    x = _norm(x, self.params["decoder"]["final_norm"], c)
    if c.scale_logits:
      x = x * (c.d_model ** -0.5)
    if "head_ids" in self.params:  # models/subset_vocab.py
      logits = cpu_matmul.matmul(x, self.params["head"],
                                 transposed=c.tie_embeddings,
                                 enabled=self._fast_matmul)
      return layers.scatter_vocab(logits.astype(jnp.float32),
                                  self.params["head_ids"], c.vocab_size)
    if c.tie_embeddings:
      logits = cpu_matmul.matmul(x, self.params["embed"], transposed=True,
                                 enabled=self._fast_matmul)
    else:
      logits = cpu_matmul.matmul(x, self.params["lm_head"],
                                 enabled=self._fast_matmul)
    return logits.astype(jnp.float32)


jax.tree_util.register_pytree_node_class(T5)


def _train_features(features: Mapping[str, jax.Array]):
  """Checks a training batch; (encoder tokens, decoder tokens, segments).

  segments is None (unpacked) or (encoder [B, P], decoder [B, T]) ids.
  """
  for name in ("encoder_input_tokens", "decoder_input_tokens"):
    if name not in features:
      raise ValueError(f"features: missing {name!r}")
  enc = jnp.asarray(features["encoder_input_tokens"], jnp.int32)
  dec = jnp.asarray(features["decoder_input_tokens"], jnp.int32)
  if enc.ndim != 2 or dec.ndim != 2 or enc.shape[0] != dec.shape[0]:
    raise ValueError(
        "features: encoder_input_tokens and decoder_input_tokens must be "
        f"[B, P] and [B, T], got {enc.shape} and {dec.shape}")
  present = [n for n in PACKING_FEATURES if n in features]
  if not present:
    return enc, dec, None
  missing = [n for n in PACKING_FEATURES if n not in features]
  if missing:
    raise ValueError(f"features: packed batch without {', '.join(missing)}")
  for name in PACKING_FEATURES:
    want = enc.shape if name.startswith("encoder") else dec.shape
    if tuple(features[name].shape) != tuple(want):
      raise ValueError(f"features: {name} has shape "
                       f"{tuple(features[name].shape)}, expected {want}")
  return enc, dec, (jnp.asarray(features["encoder_segment_ids"], jnp.int32),
                    jnp.asarray(features["decoder_segment_ids"], jnp.int32))


# --- random init ------------------------------------------------------------
def _init_attention(key, c: T5Config, dtype) -> Params:
  kq, kk, kv, ko = jax.random.split(key, 4)
  qkv = (c.d_model, c.num_heads, c.d_kv)
  return {
      # The 1/sqrt(d_kv) attention scaling is folded into the query init.
      "q": dense_init(kq, qkv, c.d_model * c.d_kv, dtype),
      "k": dense_init(kk, qkv, c.d_model, dtype),
      "v": dense_init(kv, qkv, c.d_model, dtype),
      "o": dense_init(ko, (c.num_heads, c.d_kv, c.d_model),
                      c.num_heads * c.d_kv, dtype),
  }


def _init_mlp(key, c: T5Config, dtype) -> Params:
  k0, k1, k2 = jax.random.split(key, 3)
  if c.gated_act == "gelu_tanh":
    return {"wi_0": dense_init(k0, (c.d_model, c.d_ff), c.d_model, dtype),
            "wi_1": dense_init(k1, (c.d_model, c.d_ff), c.d_model, dtype),
            "wo": dense_init(k2, (c.d_ff, c.d_model), c.d_ff, dtype)}
  return {"wi": dense_init(k0, (c.d_model, c.d_ff), c.d_model, dtype),
          "wo": dense_init(k2, (c.d_ff, c.d_model), c.d_ff, dtype)}


def _init_layer(key, c: T5Config, dtype, cross: bool) -> Params:
  ka, kc, km = jax.random.split(key, 3)
  ones = jnp.ones((c.d_model,), dtype)
  layer = {"self_attn_norm": ones, "self_attn": _init_attention(ka, c, dtype),
           "mlp_norm": ones, "mlp": _init_mlp(km, c, dtype)}
  if cross:
    layer["cross_attn_norm"] = ones
    layer["cross_attn"] = _init_attention(kc, c, dtype)
  return layer


def _init_stack(key, c: T5Config, dtype, num_layers: int,
                cross: bool) -> Params:
  keys = jax.random.split(key, num_layers + 1)
  return {
      "rel_bias": dense_init(keys[0], (c.num_buckets, c.num_heads), 1, dtype),
      "final_norm": jnp.ones((c.d_model,), dtype),
      "layers": [_init_layer(k, c, dtype, cross) for k in keys[1:]],
  }


def init_t5_params(key: jax.Array, config: T5Config,
                   dtype=jnp.float32) -> Params:
  """Random T5 params (normal, std fan_in ** -0.5; embeddings std 1)."""
  ke, kenc, kdec, kh = jax.random.split(key, 4)
  params = {
      "embed": dense_init(ke, (config.vocab_size, config.d_model), 1, dtype),
      "encoder": _init_stack(kenc, config, dtype, config.num_encoder_layers,
                             cross=False),
      "decoder": _init_stack(kdec, config, dtype, config.num_decoder_layers,
                             cross=True),
  }
  if not config.tie_embeddings:
    params["lm_head"] = dense_init(kh, (config.d_model, config.vocab_size),
                                   config.d_model, dtype)
  return params


def random_t5(key: jax.Array, config: T5Config, dtype=jnp.float32,
              tokenizer_id: str = "") -> T5:
  """A T5 model with random weights."""
  return T5(config, init_t5_params(key, config, dtype), tokenizer_id)
