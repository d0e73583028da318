"""T5 and Gemma: real-size configs, the decoding protocol and the KV caches."""

import collections
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.models import Gemma, configs, random_gemma, random_t5
from harness.models.configs import GEMMA_SIZES, T5_SIZES
from harness.models.gemma import init_gemma_params
from harness.decoding.protocol import DecodingModel
from harness.models.t5 import init_t5_params, relative_position_bucket

CACHE_SIZE = 32
PROMPT_BUCKET = 8
TRACES = collections.Counter()


def _param_count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", sorted({**T5_SIZES, **GEMMA_SIZES}))
def test_real_size_param_count(name):
  config, published = {**T5_SIZES, **GEMMA_SIZES}[name]
  init = init_t5_params if name.startswith("t5") else init_gemma_params
  shapes = jax.eval_shape(lambda: init(jax.random.PRNGKey(0), config))
  assert abs(_param_count(shapes) / published - 1) < 0.01


def _models():
  key = jax.random.PRNGKey(0)
  return {"t5": random_t5(key, configs.TINY_T5),
          "gemma2": random_gemma(key, configs.TINY_GEMMA2),
          "gemma3": random_gemma(key, configs.TINY_GEMMA3)}


MODELS = _models()


@pytest.fixture(params=sorted(MODELS))
def model(request):
  return MODELS[request.param]


@functools.partial(jax.jit, static_argnums=3)
def _prefill(model, prompt, prompt_len, cache_size):
  TRACES["prefill", type(model).__name__] += 1
  return model.prefill(prompt, prompt_len, cache_size)


@jax.jit
def _score(model, tokens, cache):
  TRACES["score", type(model).__name__, tokens.shape] += 1
  return model.score(tokens, cache)


def _start(model, rng, prompt_len=5):
  """Random prompt padded to the bucket and the decoder prompt's last token."""
  prompt = np.zeros(PROMPT_BUCKET, np.int32)
  prompt[:prompt_len] = rng.integers(2, model.vocab_size, size=prompt_len)
  prompt = jnp.asarray(prompt)
  dec, dec_len = model.decoder_prompt(prompt, jnp.int32(prompt_len))
  cache = _prefill(model, prompt, jnp.int32(prompt_len), CACHE_SIZE)
  assert int(model.cache_length(cache)) == int(dec_len) - 1
  return cache, int(dec[int(dec_len) - 1])


def _score_chunks(model, cache, tokens, chunks):
  out = []
  for i in range(len(chunks)):
    lo = sum(chunks[:i])
    logits, cache = _score(model, jnp.asarray(tokens[None, lo:lo + chunks[i]]),
                           cache)
    out.append(np.asarray(logits[0]))
  return np.concatenate(out), cache


def test_implements_protocol(model):
  assert isinstance(model, DecodingModel)
  assert model.vocab_size == 128
  leaves, treedef = jax.tree.flatten(model)
  assert len(leaves) == len(jax.tree.leaves(model.params)) and leaves
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert type(rebuilt) is type(model) and rebuilt.config == model.config


def test_t5_decoder_prompt_is_start_token():
  t5 = MODELS["t5"]
  tokens, length = t5.decoder_prompt(jnp.arange(8), jnp.int32(5))
  np.testing.assert_array_equal(tokens, [0])
  assert int(length) == 1


@pytest.mark.parametrize("k", [2, 6])
def test_k_tokens_in_one_call_equal_one_at_a_time(model, k):
  rng = np.random.default_rng(k)
  cache, first = _start(model, rng)
  tokens = np.concatenate([[first], rng.integers(2, 128, size=k + 2)])
  # A prefix of 3 tokens, then K tokens in one call vs one at a time.
  _, cache = _score_chunks(model, cache, tokens, [3])
  block, cache_block = _score_chunks(model, cache, tokens[3:], [k])
  single, cache_single = _score_chunks(model, cache, tokens[3:], [1] * k)
  np.testing.assert_allclose(block, single, atol=1e-5, rtol=0)
  assert int(model.cache_length(cache_block)) == int(
      model.cache_length(cache)) + k
  assert int(model.cache_length(cache_single)) == int(
      model.cache_length(cache)) + k


def test_rollback_then_rescore_equals_fresh_run(model):
  rng = np.random.default_rng(7)
  cache, first = _start(model, rng)
  n0 = int(model.cache_length(cache))
  accepted = np.concatenate([[first], rng.integers(2, 128, size=2)])
  rejected = rng.integers(2, 128, size=4)
  redo = rng.integers(2, 128, size=3)
  # Verify a block of 7, keep 3 tokens, roll back, score 3 others.
  _, stale = _score_chunks(model, cache, np.concatenate([accepted, rejected]),
                           [7])
  stale = model.rollback(stale, jnp.int32(n0 + 3))
  assert int(model.cache_length(stale)) == n0 + 3
  got, _ = _score_chunks(model, stale, redo, [3])
  want, _ = _score_chunks(model, cache, np.concatenate([accepted, redo]), [6])
  np.testing.assert_allclose(got, want[3:], atol=1e-5, rtol=0)


def test_rollback_is_an_index_update(model):
  cache, _ = _start(model, np.random.default_rng(0))
  rolled = model.rollback(cache, jnp.int32(0))
  for a, b in zip(jax.tree.leaves(cache), jax.tree.leaves(rolled)):
    if a.ndim:
      assert a is b  # the same buffers, not copies


def test_prompt_length_and_cache_fill_never_recompile(model):
  name = type(model).__name__
  rng = np.random.default_rng(3)
  cache, first = _start(model, rng, prompt_len=2)
  before = dict(TRACES)
  for prompt_len in (3, 6, 8):
    cache, first = _start(model, rng, prompt_len=prompt_len)
    tokens = np.concatenate([[first], rng.integers(2, 128, size=5)])
    _, cache = _score_chunks(model, cache, tokens, [1, 1, 1])
    cache = model.rollback(cache, model.cache_length(cache) - 1)
    _, cache = _score_chunks(model, cache, tokens, [1])
  assert dict(TRACES) == before, f"{name} recompiled"


def test_new_weights_do_not_recompile(model):
  rng = np.random.default_rng(4)
  cache, first = _start(model, rng)
  _score_chunks(model, cache, np.array([first]), [1])
  before = dict(TRACES)
  other = jax.tree.map(lambda x: x * 1.5, model)
  cache, _ = _start(other, rng)
  a, _ = _score_chunks(other, cache, np.array([first]), [1])
  assert dict(TRACES) == before
  cache, _ = _start(model, np.random.default_rng(4))
  b, _ = _score_chunks(model, cache, np.array([first]), [1])
  assert not np.allclose(a, b)  # the new weights were really used


def test_bfloat16_close_to_float32(model):
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), model)
  cache, first = _start(model, np.random.default_rng(5))
  tokens = np.array([first, 7, 9, 11])
  want, _ = _score_chunks(model, cache, tokens, [4])
  cache, _ = _start(bf16, np.random.default_rng(5))
  assert cache.length.dtype == jnp.int32
  got, _ = _score_chunks(bf16, cache, tokens, [4])
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=0.15 * np.abs(want).max())


def test_stale_cache_entries_are_never_attended(model):
  rng = np.random.default_rng(6)
  cache, first = _start(model, rng)
  want, _ = _score_chunks(model, cache, np.array([first, 5]), [2])
  # Fill everything at and beyond the length with garbage.
  n = cache.length
  def poison(x):
    if x.ndim == 4 and x.shape[1] == CACHE_SIZE:
      pos = jnp.arange(CACHE_SIZE)[None, :, None, None]
      return jnp.where(pos >= n, 1e3, x)
    return x
  cache = jax.tree.map(poison, cache)
  got, _ = _score_chunks(model, cache, np.array([first, 5]), [2])
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_gemma_sliding_window_limits_attention():
  gemma = MODELS["gemma2"]  # window 4 on layer 0
  ids = np.random.default_rng(8).integers(2, 128, size=(1, 10))
  base = np.asarray(gemma.forward_logits(None, ids))
  changed = ids.copy()
  changed[0, 0] += 1
  out = np.asarray(gemma.forward_logits(None, changed))
  assert not np.allclose(out[0, 1], base[0, 1])  # in every window
  # Layer 1 is global, so token 0 still reaches position 9 through it.
  assert not np.allclose(out[0, 9], base[0, 9])
  wide = Gemma(dataclasses.replace(gemma.config, sliding_window=64),
               gemma.params)
  assert not np.allclose(np.asarray(wide.forward_logits(None, ids)), base)


def test_relative_position_buckets():
  rel = jnp.array([-200, -128, -20, -8, -1, 0, 1, 7, 8, 20, 200])
  uni = relative_position_bucket(rel, False, 32, 128)
  # -20: 16 + floor(log(20/16) / log(128/16) * 16) = 17.
  np.testing.assert_array_equal(uni, [31, 31, 17, 8, 1, 0, 0, 0, 0, 0, 0])
  bi = relative_position_bucket(rel, True, 32, 128)
  # Exact buckets up to 7 in each direction; positive offsets use 16..31.
  np.testing.assert_array_equal(bi[4:9], [1, 0, 17, 23, 24])
  assert bi[0] == 15 and bi[-1] == 31
