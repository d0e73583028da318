"""Exactness: each speculative method samples from its target π.

Length-3 continuations of a bigram pair (V = 6) are enumerated exactly and
compared with ≥ 20,000 seeded decodes by a chi-square test (p > 0.001).
"""

import jax
import numpy as np
import pytest

from harness import decoding
from harness.testing import bigram as tu

N_SAMPLES = 20_000
LENGTH = 3
PROMPT = np.array([2, 3])


def _check(method, rule, *, gamma, temperature, top_p, alpha=0.0, seed=0,
           rule_options=None, **method_options):
  drafter, verifier = tu.pair(seed)
  keys = jax.random.split(jax.random.key(1000 + seed), N_SAMPLES)
  out = decoding.decode_many(method, drafter, verifier, PROMPT, keys,
                             gamma=gamma, alpha=alpha,
                             temperature=temperature, top_p=top_p,
                             max_decode_len=LENGTH, **method_options)
  table = tu.target_table(drafter, verifier, rule, alpha, temperature, top_p,
                          **(rule_options or {}))
  expected = tu.exact_distribution(table, int(PROMPT[-1]), LENGTH)
  pval = tu.chi_square_p(tu.empirical(out.tokens, LENGTH), expected)
  assert pval > tu.P_VALUE_FLOOR, (method, gamma, temperature, top_p, alpha,
                                   pval)
  return out


@pytest.mark.parametrize("gamma", [1, 3, 5])
@pytest.mark.parametrize("temperature", [0.5, 1.0])
@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_spec_decode_matches_verifier(gamma, temperature, top_p):
  _check("spec_decode", "verifier", gamma=gamma, temperature=temperature,
         top_p=top_p)


RULE_CASES = [
    # method, rule, alpha, method options, rule options
    ("spec_cascade_chow", "chow", 0.4, {}, {}),
    ("spec_cascade_diff", "diff", 0.1, {}, {}),
    ("spec_cascade_opt", "opt", 0.5, {}, {}),
    ("spec_cascade_token", "token_v3", 0.3, {}, {}),
    ("spec_cascade_token_v1", "token_v1", 0.0, {}, {}),
    ("spec_cascade_token_v2", "token_v2", 0.2, {}, {}),
    ("spec_decode_lossy", "lossy_one", 0.3, {"beta": "one"}, {}),
    ("spec_decode_lossy", "lossy_normalize", 0.3, {"beta": "normalize"}, {}),
    ("bild_star", "bild_star", 0.2, {"discrepancy": "prob_gap"},
     {"discrepancy": "prob_gap"}),
]


@pytest.mark.parametrize("method,rule,alpha,opts,rule_opts", RULE_CASES)
def test_rule_matches_its_target(method, rule, alpha, opts, rule_opts):
  _check(method, rule, gamma=3, temperature=1.0, top_p=1.0, alpha=alpha,
         rule_options=rule_opts, **opts)


@pytest.mark.slow
@pytest.mark.parametrize("method,rule,alpha,opts,rule_opts", RULE_CASES)
def test_rule_matches_its_target_top_p(method, rule, alpha, opts, rule_opts):
  _check(method, rule, gamma=2, temperature=0.7, top_p=0.8, alpha=alpha,
         rule_options=rule_opts, **opts)


@pytest.mark.slow
@pytest.mark.parametrize("method,rule,alpha,opts,rule_opts", RULE_CASES)
@pytest.mark.parametrize("gamma", [1, 3, 5])
@pytest.mark.parametrize("temperature", [0.5, 1.0])
@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_rule_matches_its_target_grid(method, rule, alpha, opts, rule_opts,
                                      gamma, temperature, top_p):
  _check(method, rule, gamma=gamma, temperature=temperature, top_p=top_p,
         alpha=alpha, rule_options=rule_opts, seed=1, **opts)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.05, 0.5, 0.9])
@pytest.mark.parametrize("rule,method", [("token_v3", "spec_cascade_token"),
                                         ("lossy_normalize",
                                          "spec_decode_lossy")])
def test_rule_alpha_grid(rule, method, alpha):
  opts = {"beta": "normalize"} if method == "spec_decode_lossy" else {}
  _check(method, rule, gamma=4, temperature=1.0, top_p=1.0, alpha=alpha,
         seed=2, **opts)


def test_token_cascade_matches_its_target():
  # With a run cap above the length, π_t = q if max q_raw ≥ 1 - α else p.
  _check("token_cascade_chow", "chow", gamma=1, temperature=1.0, top_p=1.0,
         alpha=0.5, max_small_run=5)


def test_oracle_cascade_matches_its_target():
  _check("oracle_cascade_diff", "diff", gamma=1, temperature=1.0, top_p=1.0,
         alpha=0.0)


def test_chi_square_detects_a_wrong_target():
  """The check has power: spec_decode samples are not the drafter's π."""
  drafter, verifier = tu.pair(0)
  keys = jax.random.split(jax.random.key(7), N_SAMPLES)
  out = decoding.decode_many("spec_decode", drafter, verifier, PROMPT, keys,
                             gamma=3, temperature=1.0, max_decode_len=LENGTH)
  table = tu.target_table(drafter, verifier, "drafter", 0.0, 1.0, 1.0)
  expected = tu.exact_distribution(table, int(PROMPT[-1]), LENGTH)
  observed = tu.empirical(out.tokens, LENGTH)
  with pytest.raises(AssertionError):
    assert tu.chi_square_p(observed, expected) > tu.P_VALUE_FLOOR
