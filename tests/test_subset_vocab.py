"""Drafters with a subset output vocabulary (models/subset_vocab.py).

The models' logits outside S, greedy equality with the verifier, and the
chi-square exactness of every speculative method when the drafter's q is
zero outside S while the verifier puts real mass there, and that the test
rejects a decoder with a known residual bug.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import decoding
from harness.models import configs, layers, random_gemma, random_t5
from harness.models import subset_vocab
from harness.models.toy import BigramLM
from harness.testing import bigram as tu

SUBSET = np.array([0, 2, 3])  # EOS (5) is added by the model helper
BIGRAM_S = np.array([0, 2, 3, tu.EOS])
N_SAMPLES = 20_000
LENGTH = 3
PROMPT = np.array([2, 3])


def _models():
  key = jax.random.key(0)
  return {"t5": random_t5(key, configs.TINY_T5),
          "gemma3": random_gemma(key, configs.TINY_GEMMA3),
          "gemma2": random_gemma(key, configs.TINY_GEMMA2)}


@pytest.mark.parametrize("name", ["t5", "gemma3", "gemma2"])
def test_logits_are_the_models_own_on_s_and_neg_inf_elsewhere(name):
  model = _models()[name]
  ids = np.arange(3, model.vocab_size, 7)
  small = subset_vocab.restrict_output(model, ids, keep=(4,))
  s = subset_vocab.output_ids(small)
  assert set(s) == set(ids) | {4, model.eos_id}
  prompt = jnp.arange(6, dtype=jnp.int32) + 3
  full_cache = model.prefill(prompt, 6, 16)
  sub_cache = small.prefill(prompt, 6, 16)
  tokens = jnp.array([[7, 9, 11]], jnp.int32)
  want, _ = model.score(tokens, full_cache)
  got, _ = jax.jit(lambda m, t, c: m.score(t, c))(small, tokens, sub_cache)
  assert got.shape == want.shape
  np.testing.assert_allclose(got[..., s], want[..., s], rtol=1e-5, atol=1e-5)
  outside = np.setdiff1d(np.arange(model.vocab_size), s)
  assert np.all(np.asarray(got)[..., outside] == layers.NEG_INF)


def test_bad_subsets_are_one_line_errors():
  model = _models()["t5"]
  with pytest.raises(ValueError, match="subset id 128 is outside"):
    subset_vocab.restrict_output(model, [1, 128])
  small = subset_vocab.restrict_output(model, [1, 2])
  with pytest.raises(ValueError, match="already restricted"):
    subset_vocab.restrict_output(small, [3])


@pytest.mark.parametrize("name", ["t5", "gemma3"])
def test_greedy_speculative_equals_the_verifier(name):
  verifier = _models()[name]
  drafter = subset_vocab.restrict_output(
      (random_t5 if name == "t5" else random_gemma)(
          jax.random.key(1), verifier.config),
      np.arange(0, verifier.vocab_size, 2))
  prompt = np.arange(5, dtype=np.int32) + 3
  ref = decoding.decode("autoregressive", drafter, verifier, prompt,
                        temperature=0.0, max_decode_len=12)
  assert int(ref.num_tokens) > 2
  for gamma in (1, 3):
    out = decoding.decode("spec_decode", drafter, verifier, prompt,
                          gamma=gamma, temperature=0.0, max_decode_len=12)
    assert np.array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
    assert int(out.num_tokens) == int(ref.num_tokens)


def _restricted_to_s(model):
  """The bigram model with every next token outside BIGRAM_S at NEG_INF."""
  mask = np.full(tu.VOCAB, layers.NEG_INF, np.float32)
  mask[BIGRAM_S] = 0.0
  return BigramLM(model.logits + mask, eos_id=tu.EOS)


def _subset_pair(seed=0):
  drafter, verifier = tu.pair(seed)
  return _restricted_to_s(drafter), verifier


def _decode(method, gamma, temperature, top_p, alpha=0.0, **options):
  drafter, verifier = _subset_pair()
  keys = jax.random.split(jax.random.key(7), N_SAMPLES)
  out = decoding.decode_many(method, drafter, verifier, PROMPT, keys,
                             gamma=gamma, alpha=alpha,
                             temperature=temperature, top_p=top_p,
                             max_decode_len=LENGTH, **options)
  return drafter, verifier, tu.empirical(out.tokens, LENGTH)


def _p_value(observed, drafter, verifier, rule, alpha, temperature, top_p,
             **rule_options):
  table = tu.target_table(drafter, verifier, rule, alpha, temperature, top_p,
                          **rule_options)
  expected = tu.exact_distribution(table, int(PROMPT[-1]), LENGTH)
  return tu.chi_square_p(observed, expected)


def test_the_verifier_puts_real_mass_outside_s():
  _, verifier = _subset_pair()
  p = np.asarray(jax.nn.softmax(verifier.logits, -1))
  outside = np.setdiff1d(np.arange(tu.VOCAB), BIGRAM_S)
  mass = p[:, outside].sum(-1)
  # After the prompt's last token (3) a fifth of p lies outside S, and
  # over a quarter on average.
  assert mass[int(PROMPT[-1])] > 0.15 and mass.mean() > 0.25


@pytest.mark.parametrize("gamma,temperature,top_p", [
    (1, 1.0, 1.0), pytest.param(3, 1.0, 1.0, marks=pytest.mark.slow),
    (3, 0.5, 0.8)])
def test_spec_decode_is_exact_with_a_subset_drafter(gamma, temperature,
                                                    top_p):
  drafter, verifier, observed = _decode("spec_decode", gamma, temperature,
                                        top_p)
  assert _p_value(observed, drafter, verifier, "verifier", 0.0, temperature,
                  top_p) > tu.P_VALUE_FLOOR
  # The test can fail: the same samples against p restricted to S (what a
  # decoder that drops the mass outside S would produce) are rejected.
  restricted = _restricted_to_s(verifier)
  try:
    rejected = _p_value(observed, drafter, restricted, "verifier", 0.0,
                        temperature, top_p) < tu.P_VALUE_FLOOR
  except AssertionError:  # samples outside S: outside that target's support
    rejected = True
  assert rejected


def _drafted_token_only(gen_spec_sample):
  """The bug class: a residual norm(max(0, p - q)) that subtracts q only at
  the drafted token (acceptance unchanged: q at the drafts is the same)."""
  def buggy(key, drafts, q, pi):
    at_drafts = jax.nn.one_hot(drafts, q.shape[-1], dtype=q.dtype)
    return gen_spec_sample(key, drafts, q * at_drafts, pi)
  return buggy


def _before_mapping_back(residual):
  """The bug class: q subtracted in the drafter's own subset order (its
  j-th entry at id j) instead of at the full-vocabulary ids S[j]."""
  order = np.concatenate([BIGRAM_S, np.setdiff1d(np.arange(tu.VOCAB),
                                                 BIGRAM_S)])
  return lambda pi, q: residual(pi, q[..., order])


@pytest.mark.parametrize("bug", ["drafted_token_only", "before_mapping_back"])
def test_a_biased_residual_fails_the_exactness_test(bug, monkeypatch):
  """The chi-square test of SpecDecode with a subset drafter catches the
  known residual bugs: the decoder with one injected is rejected."""
  from harness.decoding import gen_spec, program, speculative  # pylint: disable=g-import-not-at-top
  if bug == "drafted_token_only":
    monkeypatch.setattr(speculative, "gen_spec_sample",
                        _drafted_token_only(gen_spec.gen_spec_sample))
  else:
    monkeypatch.setattr(gen_spec, "residual",
                        _before_mapping_back(gen_spec.residual))
  program.clear_cache()
  jax.clear_caches()
  try:
    drafter, verifier, observed = _decode("spec_decode", 1, 1.0, 1.0)
  finally:
    monkeypatch.undo()
    program.clear_cache()
    jax.clear_caches()
  assert _p_value(observed, drafter, verifier, "verifier", 0.0, 1.0,
                  1.0) < tu.P_VALUE_FLOOR


# Two rules in the default suite, the rest with `make test-slow`.
RULE_CASES = [
    ("spec_cascade_chow", "chow", 0.4, {}, {}),
    pytest.param("spec_cascade_diff", "diff", 0.1, {}, {},
                 marks=pytest.mark.slow),
    ("spec_cascade_opt", "opt", 0.5, {}, {}),
    pytest.param("spec_cascade_token", "token_v3", 0.3, {}, {},
                 marks=pytest.mark.slow),
    pytest.param("spec_decode_lossy", "lossy_one", 0.3, {"beta": "one"}, {},
                 marks=pytest.mark.slow),
    pytest.param("bild_star", "bild_star", 0.2, {"discrepancy": "prob_gap"},
                 {"discrepancy": "prob_gap"}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("method,rule,alpha,opts,rule_opts", RULE_CASES)
def test_each_rule_is_exact_with_a_subset_drafter(method, rule, alpha, opts,
                                                  rule_opts):
  drafter, verifier, observed = _decode(method, 3, 1.0, 1.0, alpha, **opts)
  assert _p_value(observed, drafter, verifier, rule, alpha, 1.0, 1.0,
                  **rule_opts) > tu.P_VALUE_FLOOR


def test_each_decode_records_the_verifiers_mass_on_the_drafter_support():
  """support_mass_e5: Σ over evaluated drafts of p_raw(S), in 1e-5 units."""
  drafter, verifier = _subset_pair()
  full_drafter, _ = tu.pair(0)
  p = np.asarray(jax.nn.softmax(verifier.logits, -1))
  p_s = p[:, BIGRAM_S].sum(-1)
  keys = jax.random.split(jax.random.key(3), 400)
  out = decoding.decode_many("spec_decode", drafter, verifier, PROMPT, keys,
                             gamma=1, temperature=1.0, max_decode_len=LENGTH)
  stats = {k: np.asarray(v) for k, v in out.stats.items()}
  evaluated = stats["drafts_evaluated"].sum()
  mean = stats["support_mass_e5"].sum() * 1e-5 / evaluated
  # With γ = 1 every draft is evaluated right after the previous token, so
  # the mean lies within the range of p(S) over the contexts met.
  assert p_s.min() - 1e-4 <= mean <= p_s.max() + 1e-4
  assert mean < 0.9
  full = decoding.decode_many("spec_decode", full_drafter, verifier, PROMPT,
                              keys[:50], gamma=2, temperature=1.0,
                              max_decode_len=LENGTH)
  fs = {k: np.asarray(v) for k, v in full.stats.items()}
  assert fs["support_mass_e5"].sum() * 1e-5 / fs["drafts_evaluated"].sum() \
      == pytest.approx(1.0, abs=1e-4)


def test_frequent_ids_by_count_then_id():
  seqs = [[5, 5, 5, 2, 2, 9], [9, 9, 1, 7]]
  # counts: 5 -> 3, 9 -> 3, 2 -> 2, 1 -> 1, 7 -> 1.
  assert list(subset_vocab.frequent_ids(seqs, 2, 10)) == [5, 9]
  assert list(subset_vocab.frequent_ids(seqs, 4, 10)) == [1, 2, 5, 9]
  assert list(subset_vocab.frequent_ids(seqs, 3, 10, keep=(0,))) == [
      0, 2, 5, 9]
  # Unseen ids fill no slot.
  assert list(subset_vocab.frequent_ids(seqs, 50, 10)) == [1, 2, 5, 7, 9]
  with pytest.raises(ValueError, match="token id 10 is outside"):
    subset_vocab.frequent_ids([[10]], 2, 10)
  with pytest.raises(ValueError, match="subset size 0"):
    subset_vocab.frequent_ids(seqs, 0, 10)
