"""T5.train_logits: the training forward pass (packing, dropout, bfloat16)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from harness.models import configs, random_t5, t5 as t5_lib

MODEL = random_t5(jax.random.PRNGKey(0), configs.TINY_T5)
P, T = 16, 12  # packed encoder / decoder lengths


@functools.partial(jax.jit, static_argnames=("rate", "dtype"))
def _train_logits(model, features, rng, rate=0.0, dtype=jnp.float32):
  return model.train_logits(features, dropout_rate=rate, rng=rng,
                            activation_dtype=dtype)


def _example(rng, enc_len, dec_len, vocab):
  """(inputs, targets) token arrays; targets end with EOS (1)."""
  inputs = rng.integers(2, vocab, enc_len).astype(np.int32)
  targets = np.append(rng.integers(2, vocab, dec_len - 1), 1).astype(np.int32)
  return inputs, targets


def _pack(rows, enc_width=P, dec_width=T):
  """seqio EncDecFeatureConverter's packed layout of rows of examples."""
  feats = {name: np.zeros((len(rows), width), np.int32)
           for name, width in [("encoder_input_tokens", enc_width),
                               ("encoder_segment_ids", enc_width),
                               ("encoder_positions", enc_width),
                               ("decoder_input_tokens", dec_width),
                               ("decoder_target_tokens", dec_width),
                               ("decoder_segment_ids", dec_width),
                               ("decoder_positions", dec_width),
                               ("decoder_loss_weights", dec_width)]}
  spans = []  # (row, decoder start, decoder length) per example
  for r, row in enumerate(rows):
    e = d = 0
    for seg, (inputs, targets) in enumerate(row, start=1):
      n, m = len(inputs), len(targets)
      feats["encoder_input_tokens"][r, e:e + n] = inputs
      feats["encoder_segment_ids"][r, e:e + n] = seg
      feats["encoder_positions"][r, e:e + n] = np.arange(n)
      feats["decoder_target_tokens"][r, d:d + m] = targets
      # Shifted right within the segment, starting from 0.
      feats["decoder_input_tokens"][r, d + 1:d + m] = targets[:-1]
      feats["decoder_segment_ids"][r, d:d + m] = seg
      feats["decoder_positions"][r, d:d + m] = np.arange(m)
      feats["decoder_loss_weights"][r, d:d + m] = 1
      spans.append((r, d, m))
      e, d = e + n, d + m
  return feats, spans


def _unpacked(examples, enc_width=P, dec_width=T):
  feats, _ = _pack([[ex] for ex in examples], enc_width, dec_width)
  return {k: feats[k] for k in ("encoder_input_tokens", "decoder_input_tokens",
                                "decoder_target_tokens",
                                "decoder_loss_weights")}


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  vocab = MODEL.vocab_size
  exs = [_example(rng, 5, 4, vocab), _example(rng, 6, 5, vocab),
         _example(rng, 9, 7, vocab), _example(rng, 3, 3, vocab)]
  return exs, [[exs[0], exs[1], exs[3]], [exs[2]]]


def test_unpacked_equals_forward_logits():
  exs, _ = _batch()
  feats = _unpacked(exs)
  got = _train_logits(MODEL, feats, None)
  want = jax.jit(MODEL.forward_logits)(
      feats["encoder_input_tokens"], feats["decoder_input_tokens"],
      attention_mask=feats["encoder_input_tokens"] > 0)
  assert got.dtype == jnp.float32 and got.shape == (4, T, MODEL.vocab_size)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5,
                             rtol=1e-5)


def test_packed_rows_equal_each_example_alone():
  exs, rows = _batch()
  packed, spans = _pack(rows)
  assert packed["encoder_segment_ids"].max() == 3  # three in one row
  got = np.asarray(_train_logits(MODEL, packed, None))
  alone = np.asarray(_train_logits(MODEL, _unpacked(exs), None))
  order = [0, 1, 3, 2]  # examples in packing order
  for (row, start, length), i in zip(spans, order):
    np.testing.assert_allclose(got[row, start:start + length],
                               alone[i, :length], atol=1e-5, rtol=1e-5)
  # Without the segment masks the packed examples would see each other.
  leaky = {k: v for k, v in packed.items()
           if k not in t5_lib.PACKING_FEATURES}
  leaked = np.asarray(_train_logits(MODEL, leaky, None))
  row, start, length = spans[1]
  assert np.abs(leaked[row, start:start + length]
                - alone[1, :length]).max() > 1e-3


def test_dropout_is_deterministic_per_rng_and_off_at_rate_zero():
  exs, rows = _batch()
  packed, _ = _pack(rows)
  base = np.asarray(_train_logits(MODEL, packed, None))
  k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  d1 = np.asarray(_train_logits(MODEL, packed, k1, rate=0.1))
  assert np.abs(d1 - base).max() > 1e-2
  np.testing.assert_array_equal(
      d1, np.asarray(_train_logits(MODEL, packed, k1, rate=0.1)))
  assert np.abs(d1 - np.asarray(_train_logits(MODEL, packed, k2,
                                              rate=0.1))).max() > 1e-2
  # Off at rate 0 or without an rng: the very program of no dropout.
  def program(**kw):
    return str(jax.make_jaxpr(lambda f: MODEL.train_logits(f, **kw))(packed))
  plain = program()
  assert "random_bits" not in plain and "random_bits" in program(
      dropout_rate=0.1, rng=k1)
  assert program(dropout_rate=0.0, rng=k1) == plain
  assert program(dropout_rate=0.5, rng=None) == plain


def test_dropout_sites_follow_t5x():
  """Embeddings, attention probs, sub-layer outputs, MLP hidden, final norms."""
  calls = []

  class Recording(t5_lib.Dropout):

    def __call__(self, x, broadcast_axis=-2):
      calls.append((x.ndim, broadcast_axis))
      return super().__call__(x, broadcast_axis)

  exs, _ = _batch()
  orig = t5_lib.Dropout
  t5_lib.Dropout = Recording
  try:
    jax.eval_shape(lambda f: MODEL.train_logits(
        f, dropout_rate=0.1, rng=jax.random.PRNGKey(0)), _unpacked(exs[:1]))
  finally:
    t5_lib.Dropout = orig
  c = MODEL.config
  # (ndim, shared axis): [B, T, D] activations share the mask over T, the
  # [B, N, G, T, S] attention probabilities over the queries T.
  enc_layer = [(5, -2), (3, -2), (3, -2), (3, -2)]  # probs, out, hidden, out
  dec_layer = [(5, -2), (3, -2), (5, -2), (3, -2), (3, -2), (3, -2)]
  want = ([(3, -2)] + enc_layer * c.num_encoder_layers + [(3, None)]
          + [(3, -2)] + dec_layer * c.num_decoder_layers + [(3, -2)])
  assert calls == want


def test_dropout_mask_rate_scale_and_broadcast():
  x = jnp.ones((4, 64, 256), jnp.float32)
  drop = t5_lib.Dropout(0.25, jax.random.PRNGKey(3))
  y = np.asarray(drop(x))
  assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
  # Shared along the sequence axis: every position has the same mask.
  assert (y == y[:, :1, :]).all()
  assert abs((y[:, 0, :] == 0).mean() - 0.25) < 0.06  # 1024 draws, ~4 sd
  z = np.asarray(drop(x, broadcast_axis=None))
  assert not (z == z[:, :1, :]).all()
  assert abs((z == 0).mean() - 0.25) < 0.01  # 65536 draws
  # A second site draws a different mask.
  assert not np.array_equal(np.asarray(drop(x)), y)
  with pytest.raises(ValueError, match="dropout_rate"):
    t5_lib.Dropout(1.0, jax.random.PRNGKey(0))


@functools.partial(jax.jit, static_argnames="dtype")
@functools.partial(jax.value_and_grad, has_aux=True)
def _loss_and_grads(params, feats, rng, dtype):
  logits = MODEL.replace(params=params).train_logits(
      feats, dropout_rate=0.1, rng=rng, activation_dtype=dtype)
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, feats["decoder_target_tokens"])
  w = feats["decoder_loss_weights"]
  return (ce * w).sum() / w.sum(), logits


def test_bfloat16_activations_float32_params_finite_gradients():
  _, rows = _batch()
  packed, _ = _pack(rows)
  key = jax.random.PRNGKey(1)
  (loss, bf16), grads = _loss_and_grads(MODEL.params, packed, key,
                                        jnp.bfloat16)
  assert bf16.dtype == jnp.float32 and np.isfinite(float(loss))
  # The same dropout masks in float32 (they depend on the rng and shapes).
  f32 = np.asarray(_train_logits(MODEL, packed, key, rate=0.1))
  diff = np.abs(np.asarray(bf16) - f32).max()
  # Computed in bfloat16 (not bit-equal), but close to the float32 result.
  assert 0 < diff < 0.05 * np.abs(f32).max()
  leaves = jax.tree.leaves(grads)
  assert all(g.dtype == jnp.float32 for g in leaves)
  assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
  assert np.abs(np.asarray(grads["lm_head"])).max() > 0
  assert np.abs(np.asarray(
      grads["encoder"]["layers"][0]["self_attn"]["q"])).max() > 0


def test_bad_features_are_named():
  exs, rows = _batch()
  packed, _ = _pack(rows)
  with pytest.raises(ValueError, match="decoder_input_tokens"):
    MODEL.train_logits({"encoder_input_tokens": packed["encoder_input_tokens"]})
  partial = dict(packed)
  del partial["decoder_positions"]
  with pytest.raises(ValueError, match="decoder_positions"):
    MODEL.train_logits(partial)
  bad = dict(packed, encoder_segment_ids=packed["encoder_segment_ids"][:, :3])
  with pytest.raises(ValueError, match="encoder_segment_ids"):
    MODEL.train_logits(bad)
