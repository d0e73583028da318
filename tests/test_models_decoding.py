"""Every decoding method on tiny random T5 and Gemma drafter/verifier pairs."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from harness.models import configs, random_gemma, random_t5

decoding = pytest.importorskip("harness.decoding")

MAX_LEN = 12
PROMPT = np.array([5, 9, 17, 33, 2, 70])


def _pairs():
  t5_small = dataclasses.replace(configs.TINY_T5, num_encoder_layers=1,
                                 num_decoder_layers=1)
  return {
      "t5": (random_t5(jax.random.PRNGKey(1), t5_small),
             random_t5(jax.random.PRNGKey(2), configs.TINY_T5)),
      # Different generations may pair: only the vocabulary must agree.
      "gemma": (random_gemma(jax.random.PRNGKey(1), configs.TINY_GEMMA3),
                random_gemma(jax.random.PRNGKey(2), configs.TINY_GEMMA2)),
  }


PAIRS = _pairs()


def _decode(method, pair, **kw):
  drafter, verifier = PAIRS[pair]
  kw = dict(dict(gamma=3, temperature=0.0, max_decode_len=MAX_LEN,
                 rng=jax.random.key(0)), **kw)
  out = decoding.decode(method, drafter, verifier, PROMPT, **kw)
  return np.asarray(out.tokens), int(out.num_tokens), out.stats


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_greedy_spec_decode_equals_verifier_greedy(pair):
  want, n_want, _ = _decode("autoregressive", pair)
  got, n_got, stats = _decode("spec_decode", pair, gamma=5)
  assert n_want == n_got == MAX_LEN
  np.testing.assert_array_equal(got, want)
  assert int(stats["verifier_calls"]) < MAX_LEN + 1


def _mid_alpha(method: str) -> float:
  spec = decoding.METHODS[method]
  lo, hi = spec.valid_alpha()
  lo, hi = max(lo, -1.0), min(hi, 1.0)
  return 0.5 * (lo + hi) if math.isfinite(lo + hi) else 0.0


@pytest.mark.slow
@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("method", sorted(decoding.METHODS))
def test_every_method_runs(method, pair):
  tokens, n, _ = _decode(method, pair, alpha=_mid_alpha(method),
                         temperature=0.7)
  assert 1 <= n <= MAX_LEN
  assert ((tokens[:n] >= 0) & (tokens[:n] < 128)).all()
