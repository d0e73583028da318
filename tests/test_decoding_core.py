"""Decoding core: target rules, counters, recompilation, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import decoding
from harness.decoding import gen_spec, sampling, targets
from harness.models.toy import BigramLM
from harness.testing import bigram as tu

# docs/algorithms.md#worked-example (T = 1, α = 0.3).
Q = jnp.array([0.50, 0.30, 0.15, 0.05])
P = jnp.array([0.20, 0.60, 0.10, 0.10])
ALPHA = 0.3


def _pi(rule, q=Q, p=P, alpha=ALPHA, greedy=False, **opts):
  return np.asarray(targets.target(rule, q, p, alpha, q, p, greedy=greedy,
                                   **opts))


def test_worked_example_position_rules():
  np.testing.assert_allclose(_pi("chow"), P, atol=1e-7)
  np.testing.assert_allclose(_pi("diff"), Q, atol=1e-7)
  np.testing.assert_allclose(_pi("opt"), Q, atol=1e-7)


def test_worked_example_token_rule():
  pi = _pi("token_v3")
  np.testing.assert_allclose(pi, [0.14, 0.72, 0.07, 0.07], atol=1e-6)
  np.testing.assert_allclose(np.minimum(1, pi / Q), [0.28, 1, 0.4667, 1],
                             atol=1e-4)
  np.testing.assert_allclose(np.minimum(Q, pi).sum(), 0.56, atol=1e-6)
  np.testing.assert_allclose(gen_spec.residual(jnp.asarray(pi), Q),
                             [0, 0.9545, 0, 0.0455], atol=1e-4)


def test_worked_example_lossy_normalize():
  beta = targets.lossy_beta(Q, P, jnp.float32(ALPHA))
  np.testing.assert_allclose(beta, 1.225, atol=1e-4)
  pi = _pi("lossy_normalize")
  np.testing.assert_allclose(pi, [0.2857, 0.4898, 0.1429, 0.0816], atol=1e-4)
  np.testing.assert_allclose(gen_spec.residual(jnp.asarray(pi), Q),
                             [0, 0.8571, 0, 0.1429], atol=1e-4)


def test_lossy_one_executes_the_notebook_procedure():
  """Accept min(1, p/((1-α)q)), residual ∝ max(0, p - q) (β = 1)."""
  rng = np.random.default_rng(0)
  for _ in range(20):
    q = rng.dirichlet(np.ones(7))
    p = rng.dirichlet(np.ones(7))
    pi = _pi("lossy_one", jnp.asarray(q), jnp.asarray(p))
    np.testing.assert_allclose(np.minimum(1, pi / q),
                               np.minimum(1, p / ((1 - ALPHA) * q)),
                               atol=1e-5)
    res = np.asarray(gen_spec.residual(jnp.asarray(pi), jnp.asarray(q)))
    want = np.maximum(p - q, 0) / np.maximum(p - q, 0).sum()
    np.testing.assert_allclose(res, want, atol=1e-5)


@pytest.mark.parametrize("rule,alpha", [
    ("chow", 0.3), ("diff", 0.0), ("opt", 1.0), ("token_v1", 0.1),
    ("token_v2", 0.1), ("token_v3", 0.4), ("lossy_one", 0.5),
    ("lossy_normalize", 0.5), ("bild_star", 0.2)])
def test_targets_are_distributions(rule, alpha):
  key = jax.random.key(3)
  q = jax.nn.softmax(2 * jax.random.normal(key, (64, 9)))
  p = jax.nn.softmax(2 * jax.random.normal(jax.random.key(4), (64, 9)))
  pi = _pi(rule, q, p, alpha)
  assert np.all(pi >= 0)
  np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("rule", ["chow", "diff", "opt", "bild_star"])
def test_position_rule_rejection_rate(rule):
  """Lemma 3: rejection = r · D_TV(p, q) for π = (1 - r) q + r p."""
  q = jax.nn.softmax(jax.random.normal(jax.random.key(5), (32, 6)))
  p = jax.nn.softmax(jax.random.normal(jax.random.key(6), (32, 6)))
  pi, r = targets.RULES[rule].fn(q, p, q, p, jnp.float32(0.2),
                                 jnp.asarray(False))
  rejection = np.sum(np.maximum(q - pi, 0), -1)
  np.testing.assert_allclose(
      rejection, r[:, 0] * targets.total_variation(p, q), atol=1e-6)


@pytest.mark.parametrize("rule", list(targets.RULES))
def test_range_ends(rule):
  spec = targets.RULES[rule]
  q = jax.nn.softmax(jax.random.normal(jax.random.key(7), (16, 5)))
  p = jax.nn.softmax(jax.random.normal(jax.random.key(8), (16, 5)))
  if spec.verifier_end is not None:
    np.testing.assert_allclose(_pi(rule, q, p, spec.verifier_end), p,
                               atol=1e-5)
  if not np.isnan(spec.drafter_end):
    np.testing.assert_allclose(_pi(rule, q, p, spec.drafter_end), q,
                               atol=1e-6)


def test_top_p_filter():
  probs = jnp.array([0.5, 0.3, 0.15, 0.05])
  np.testing.assert_allclose(sampling.top_p_filter(probs, 0.8),
                             [0.625, 0.375, 0, 0], atol=1e-6)
  np.testing.assert_allclose(sampling.top_p_filter(probs, 0.81),
                             [0.5 / .95, 0.3 / .95, 0.15 / .95, 0], atol=1e-6)
  np.testing.assert_allclose(sampling.top_p_filter(probs, 1.0), probs)
  np.testing.assert_allclose(sampling.top_p_filter(probs, 0.01),
                             [1, 0, 0, 0])


def test_process_logits_never_nan():
  logits = jnp.array([[jnp.nan, 1.0, -jnp.inf], [-jnp.inf] * 3,
                      [jnp.inf, 0.0, 0.0]])
  for t in (0.0, 1e-9, 1.0):
    for top_p in (1e-6, 0.5, 1.0):
      probs, raw = sampling.process_logits(logits, jnp.float32(t),
                                           jnp.float32(top_p))
      assert np.all(np.isfinite(probs)) and np.all(np.isfinite(raw))
      np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)



@pytest.mark.parametrize("vocab", [1, 2, 7, 64, 65, 6000, 6001])
def test_argmax_matches_jnp_argmax_and_takes_first_tie(vocab):
  x = jax.random.normal(jax.random.key(vocab), (3, vocab))
  np.testing.assert_array_equal(sampling.argmax(x), jnp.argmax(x, -1))
  ties = jnp.array([[1.0, 3.0, 3.0, 0.0], [-jnp.inf, -jnp.inf, 2.0, 2.0]])
  np.testing.assert_array_equal(sampling.argmax(ties), [1, 2])


@pytest.mark.parametrize("vocab", [1, 3, 8, 9, 100, 6001])
def test_sample_one_hot_gives_its_id_at_every_block_position(vocab):
  ids = np.unique(np.linspace(0, vocab - 1, 7).astype(int))
  onehots = jax.nn.one_hot(ids, vocab)
  keys = jax.random.split(jax.random.key(0), len(ids))
  np.testing.assert_array_equal(jax.vmap(sampling.sample)(keys, onehots), ids)
  # Batched rows with one key: the same ids.
  np.testing.assert_array_equal(sampling.sample(keys[0], onehots), ids)


def test_sample_distribution_and_zero_weight_ids():
  """Two-level inverse CDF: chi-square against the weights; ids of weight 0
  (whole blocks of them, too) are never drawn; unnormalised weights work."""
  from scipy import stats as scipy_stats
  vocab = 37  # blocks of 8: 5 blocks, the last one partly padding
  w = np.random.default_rng(0).dirichlet(np.full(vocab, 0.3))
  zero = [0, 3, 8, 9, 10, 11, 12, 13, 14, 15, 36]  # block 1 entirely zero
  w[zero] = 0
  keys = jax.random.split(jax.random.key(1), 100_000)
  draw = jax.jit(jax.vmap(sampling.sample, (0, None)))
  ids = np.asarray(draw(keys, jnp.asarray(7.0 * w, jnp.float32)))
  counts = np.bincount(ids, minlength=vocab)
  assert counts[zero].sum() == 0
  live = w > 0
  expected = w[live] / w[live].sum() * len(ids)
  assert scipy_stats.chisquare(counts[live], expected).pvalue > 1e-3


def test_sample_threshold_at_total_falls_back_to_last_positive(monkeypatch):
  """u * total rounding up to the total must still give a positive id."""
  monkeypatch.setattr(jax.random, "uniform",
                      lambda key, shape, dtype: jnp.ones(shape, dtype))
  w = jnp.zeros(50).at[jnp.array([4, 21, 30])].set(1.0)
  assert int(sampling.sample(jax.random.key(0), w)) == 30

# --- counters ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["spec_decode", "spec_cascade_chow",
                                    "spec_cascade_opt", "spec_cascade_diff"])
@pytest.mark.parametrize("gamma", [1, 4])
def test_identical_drafter_accepts_everything(method, gamma):
  """π ∈ {q, p} = {p}: every draft is accepted (the Token rule is not among
  these: with q = p it still rejects tokens outside its set A)."""
  model = tu.bigram(11)
  same = BigramLM(model.logits, eos_id=tu.EOS)
  out = decoding.decode(method, same, model, np.array([1]), gamma=gamma,
                        alpha=0.3 if method != "spec_cascade_opt" else 0.0,
                        temperature=1.0, max_decode_len=40,
                        rng=jax.random.key(2))
  s = {k: np.asarray(v) for k, v in out.stats.items()}
  assert s["drafts_accepted"] == s["drafts_evaluated"] == s["drafts_proposed"]
  assert s["rejections"] == 0
  # Every verifier call but the last yields γ + 1 tokens.
  assert s["num_tokens"] > (gamma + 1) * (s["verifier_calls"] - 1)
  np.testing.assert_array_equal(s["accepted_per_position"],
                                s["evaluated_per_position"])


@pytest.mark.parametrize("method", ["spec_decode", "spec_cascade_chow",
                                    "spec_cascade_token", "bild_star",
                                    "spec_decode_lossy"])
def test_spec_statistics_add_up(method):
  drafter, verifier = tu.pair(9)
  keys = jax.random.split(jax.random.key(0), 200)
  out = decoding.decode_many(method, drafter, verifier, np.array([2]), keys,
                             gamma=3, alpha=0.2, temperature=1.0,
                             max_decode_len=30)
  s = {k: np.asarray(v) for k, v in out.stats.items()}
  np.testing.assert_array_equal(
      s["num_tokens"],
      s["emitted_drafts"] + s["emitted_corrections"] + s["emitted_bonus"])
  np.testing.assert_array_equal(s["drafts_accepted"],
                                s["accepted_per_position"].sum(-1))
  np.testing.assert_array_equal(s["drafts_evaluated"],
                                s["evaluated_per_position"].sum(-1))
  np.testing.assert_array_equal(s["verifier_positions"],
                                4 * s["verifier_calls"])
  assert np.all(s["rejections"] <= s["verifier_calls"])
  valid = np.asarray(out.tokens) != decoding.PAD_TOKEN
  np.testing.assert_array_equal(valid.sum(-1), s["num_tokens"])


@pytest.mark.parametrize("method", ["token_cascade_chow", "oracle_cascade_diff",
                                    "bild", "seq_cascade_chow"])
def test_cascade_statistics_add_up(method):
  drafter, verifier = tu.pair(10)
  keys = jax.random.split(jax.random.key(1), 100)
  out = decoding.decode_many(method, drafter, verifier, np.array([3]), keys,
                             gamma=1, alpha=0.5, temperature=1.0,
                             max_decode_len=30)
  s = {k: np.asarray(v) for k, v in out.stats.items()}
  np.testing.assert_array_equal(s["num_tokens"],
                                s["emitted_drafter"] + s["emitted_verifier"])
  assert np.all(s["verifier_calls"] <= s["num_tokens"] + s["rollbacks"])
  if method == "token_cascade_chow":
    np.testing.assert_array_equal(s["deferrals"], s["verifier_calls"])
    np.testing.assert_array_equal(s["drafter_steps"], s["num_tokens"])
    assert np.all(s["verifier_positions"] >= s["verifier_calls"])


def test_token_cascade_run_cap_forces_deferral():
  drafter, verifier = tu.pair(12)
  out = decoding.decode("token_cascade_chow", drafter, verifier,
                        np.array([1]), alpha=1.0, temperature=0.0,
                        max_decode_len=30, max_small_run=4)
  s = {k: int(v) for k, v in out.stats.items() if np.ndim(v) == 0}
  assert s["forced_deferrals"] == s["verifier_calls"] > 0
  # Each forced call scores the 4 drafter tokens plus the newest one.
  assert s["verifier_positions"] <= 5 * s["verifier_calls"]
  assert s["emitted_verifier"] == s["verifier_calls"]


# --- recompilation ------------------------------------------------------------

@pytest.mark.parametrize("method", ["spec_cascade_token", "token_cascade_chow"])
def test_alpha_sweep_compiles_once(method):
  drafter, verifier = tu.pair(13)
  before = decoding.trace_count(method, 6)
  programs = decoding.compile_stats()["programs"]
  for alpha in np.linspace(0.0, 1.0, 20):
    decoding.decode(method, drafter, verifier, np.array([1, 2]), gamma=6,
                    alpha=float(alpha), temperature=1.0, max_decode_len=17)
  for temperature, top_p in [(0.0, 1.0), (0.5, 0.3), (1.0, 0.9)]:
    decoding.decode(method, drafter, verifier, np.array([3]), gamma=6,
                    alpha=0.5, temperature=temperature, top_p=top_p,
                    max_decode_len=17)
  if method == "spec_cascade_token":
    # Every other rule-based speculative method shares the program.
    for other, opts in [("spec_decode", {}), ("spec_cascade_chow", {}),
                        ("spec_cascade_diff", {}), ("spec_cascade_opt", {}),
                        ("spec_cascade_token_v1", {}),
                        ("spec_cascade_token_v2", {}),
                        ("spec_decode_lossy", {"beta": "one"}),
                        ("spec_decode_lossy", {"beta": "normalize"}),
                        ("bild_star", {"discrepancy": "prob_gap"}),
                        ("bild_star", {"discrepancy": "nll"}),
                        ("bild_star", {"discrepancy": "tv"})]:
      decoding.decode(other, drafter, verifier, np.array([1, 2]), gamma=6,
                      alpha=0.5, temperature=1.0, max_decode_len=17, **opts)
  assert decoding.trace_count(method, 6) - before == 1
  assert decoding.compile_stats()["programs"] - programs == 1


def test_new_weights_do_not_recompile():
  before = decoding.trace_count("spec_decode", 2)
  for seed in range(3):
    drafter, verifier = tu.pair(20 + seed)
    decoding.decode("spec_decode", drafter, verifier, np.array([1]), gamma=2,
                    max_decode_len=9)
  assert decoding.trace_count("spec_decode", 2) - before == 1


# --- bad input ----------------------------------------------------------------

BAD = [
    (dict(gamma=0), "gamma"),
    (dict(gamma=2.5), "gamma"),
    (dict(temperature=-0.1), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=-0.1), "alpha"),
    (dict(max_decode_len=0), "max_decode_len"),
    (dict(method="nope"), "method"),
    (dict(prompt=np.array([], np.int32)), "prompt"),
    (dict(prompt=np.array([99])), "prompt"),
    (dict(beta="two", method="spec_decode_lossy"), "beta"),
    (dict(typo_option=1), "typo_option"),
    (dict(method="token_cascade_chow", max_small_run=0), "max_small_run"),
]


@pytest.mark.parametrize("changes,name", BAD)
def test_bad_input_raises_before_tracing(changes, name):
  drafter, verifier = tu.pair(0)
  kw = dict(method="spec_cascade_token", prompt=np.array([1]), gamma=3,
            alpha=0.5, temperature=1.0, top_p=1.0, max_decode_len=8)
  kw.update(changes)
  method, prompt = kw.pop("method"), kw.pop("prompt")
  before = decoding.compile_stats()["programs"]
  with pytest.raises(ValueError, match=name):
    decoding.decode(method, drafter, verifier, prompt, **kw)
  assert decoding.compile_stats()["programs"] == before


def test_vocabulary_mismatch():
  drafter = tu.bigram(1, vocab=5, eos=4)
  verifier = tu.bigram(2)
  with pytest.raises(ValueError, match="vocab_size"):
    decoding.decode("spec_decode", drafter, verifier, np.array([1]))


def test_alpha_range_per_rule():
  drafter, verifier = tu.pair(0)
  # Diff accepts α = -1; Chow does not.
  decoding.decode("spec_cascade_diff", drafter, verifier, np.array([1]),
                  alpha=-1.0, max_decode_len=4)
  with pytest.raises(ValueError, match="alpha"):
    decoding.decode("spec_cascade_chow", drafter, verifier, np.array([1]),
                    alpha=-1.0, max_decode_len=4)
