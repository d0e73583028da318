"""Token-for-token equivalences at T = 0 and at the ends of α's range."""

import jax
import numpy as np
import pytest

from harness import decoding
from harness.testing import bigram as tu

MAX_LEN = 24
PROMPTS = [np.array([1]), np.array([2, 3, 0]), np.array([4, 4, 1, 2, 3])]


def _greedy(method, drafter, verifier, prompt, **kw):
  kw.setdefault("gamma", 3)
  out = decoding.decode(method, drafter, verifier, prompt, temperature=0.0,
                        max_decode_len=MAX_LEN, rng=jax.random.key(0), **kw)
  return np.asarray(out.tokens), int(out.num_tokens)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [1, 2, 3, 5, 7])
def test_greedy_spec_decode_equals_verifier(seed, gamma):
  drafter, verifier = tu.pair(seed)
  for prompt in PROMPTS:
    ref = _greedy("autoregressive", drafter, verifier, prompt)
    got = _greedy("spec_decode", drafter, verifier, prompt, gamma=gamma)
    np.testing.assert_array_equal(got[0], ref[0])
    assert got[1] == ref[1]


@pytest.mark.parametrize("beta", ["one", "normalize"])
def test_token_cascade_equals_greedy_lossy_for_every_alpha(beta):
  """Lemma 9: at T = 0 the Token rule is the greedy lossy rule."""
  drafter, verifier = tu.pair(3)
  differs_from_verifier = 0
  for alpha in np.linspace(0.0, 1.0, 11):
    for prompt in PROMPTS:
      tok = _greedy("spec_cascade_token", drafter, verifier, prompt,
                    alpha=alpha)
      lossy = _greedy("spec_decode_lossy", drafter, verifier, prompt,
                      alpha=alpha, beta=beta)
      np.testing.assert_array_equal(tok[0], lossy[0])
      ref = _greedy("autoregressive", drafter, verifier, prompt)
      differs_from_verifier += int(not np.array_equal(tok[0], ref[0]))
  assert differs_from_verifier > 0  # α actually changes the output


@pytest.mark.parametrize("method", ["spec_cascade_diff",
                                    "spec_cascade_token_v1",
                                    "spec_cascade_token_v2"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_verifier_end_equals_spec_decode(method, temperature):
  drafter, verifier = tu.pair(4)
  for prompt in PROMPTS:
    kw = dict(gamma=3, temperature=temperature, max_decode_len=MAX_LEN,
              rng=jax.random.key(5))
    a = decoding.decode(method, drafter, verifier, prompt, alpha=-1.0, **kw)
    b = decoding.decode("spec_decode", drafter, verifier, prompt, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)


DRAFTER_ENDS = [
    ("spec_cascade_chow", 1.0, {}),
    ("spec_cascade_diff", 1.0, {}),
    ("spec_cascade_opt", float("inf"), {}),
    ("spec_cascade_token", 1.0, {}),
    ("spec_cascade_token_v1", 1.0, {}),
    ("spec_cascade_token_v2", 1.0, {}),
    ("spec_decode_lossy", 1.0, {"beta": "one"}),
    ("spec_decode_lossy", 1.0, {"beta": "normalize"}),
    ("bild_star", float("inf"), {"discrepancy": "nll"}),
    ("seq_cascade_chow", 1.0, {}),
    ("oracle_cascade_diff", 1.0, {}),
    ("token_cascade_chow", 1.0, {"max_small_run": MAX_LEN}),
]


@pytest.mark.parametrize("method,alpha,opts", DRAFTER_ENDS)
def test_drafter_end_equals_drafter(method, alpha, opts):
  drafter, verifier = tu.pair(5)
  for prompt in PROMPTS:
    ref = _greedy("autoregressive", drafter, verifier, prompt,
                  model="drafter")
    got = _greedy(method, drafter, verifier, prompt, alpha=alpha, **opts)
    np.testing.assert_array_equal(got[0], ref[0])


VERIFIER_ENDS = [
    ("spec_cascade_chow", 0.0, {}),
    ("spec_cascade_opt", -float("inf"), {}),
    ("spec_decode_lossy", 0.0, {"beta": "normalize"}),
    ("seq_cascade_chow", 0.0, {}),
    ("token_cascade_chow", 0.0, {}),
    ("oracle_cascade_diff", -1.0, {}),
    ("bild", 1.0, {}),
]


@pytest.mark.parametrize("method,alpha,opts", VERIFIER_ENDS)
def test_verifier_end_equals_verifier(method, alpha, opts):
  drafter, verifier = tu.pair(6)
  for prompt in PROMPTS:
    ref = _greedy("autoregressive", drafter, verifier, prompt)
    got = _greedy(method, drafter, verifier, prompt, alpha=alpha, **opts)
    np.testing.assert_array_equal(got[0], ref[0])


def test_greedy_sampling_is_seed_independent():
  drafter, verifier = tu.pair(7)
  outs = [decoding.decode("spec_cascade_token", drafter, verifier, PROMPTS[1],
                          gamma=4, alpha=0.4, temperature=0.0,
                          max_decode_len=MAX_LEN, rng=jax.random.key(s)).tokens
          for s in range(3)]
  np.testing.assert_array_equal(outs[0], outs[1])
  np.testing.assert_array_equal(outs[0], outs[2])
