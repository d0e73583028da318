"""Bigram toy pairs for the decoding tests: exact distributions by
enumeration and a chi-square goodness-of-fit check."""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from harness.decoding import sampling, targets
from harness.models.toy import BigramLM

VOCAB = 6
EOS = 5
# p-value below which a goodness-of-fit test fails (the bar).
P_VALUE_FLOOR = 1e-3
MIN_EXPECTED = 5.0


def bigram(seed: int, vocab: int = VOCAB, eos: int = EOS,
           scale: float = 1.5) -> BigramLM:
  """A random bigram model with EOS made rarer, so sequences run on."""
  logits = scale * jax.random.normal(jax.random.key(seed), (vocab, vocab))
  return BigramLM(logits.at[:, eos].add(-1.5), eos_id=eos)


def pair(seed: int = 0):
  return bigram(2 * seed + 1), bigram(2 * seed + 2)


def target_table(drafter: BigramLM, verifier: BigramLM, rule: str, alpha,
                 temperature, top_p, **options) -> np.ndarray:
  """π(next | prev) [V, V] of a rule for every previous token."""
  q, q_raw = sampling.process_logits(drafter.logits, jnp.float32(temperature),
                                     jnp.float32(top_p))
  p, p_raw = sampling.process_logits(verifier.logits,
                                     jnp.float32(temperature),
                                     jnp.float32(top_p))
  fn = functools.partial(targets.RULES[rule].fn, **options)
  pi, _ = fn(q, p, q_raw, p_raw, jnp.float32(alpha),
             jnp.asarray(temperature == 0))
  return np.asarray(pi, np.float64)


def exact_distribution(table: np.ndarray, prev: int, length: int,
                       eos: int = EOS) -> dict[tuple[int, ...], float]:
  """Probability of every length-`length` continuation (padded with -1
  after EOS) when each token is drawn from table[prev]."""
  out: dict[tuple[int, ...], float] = collections.defaultdict(float)

  def rec(last, seq, prob):
    if len(seq) == length or (seq and seq[-1] == eos):
      out[tuple(seq) + (-1,) * (length - len(seq))] += prob
      return
    for tok, pr in enumerate(table[last]):
      if pr > 0:
        rec(tok, seq + [tok], prob * pr)

  rec(prev, [], 1.0)
  return dict(out)


def empirical(tokens: np.ndarray, length: int) -> collections.Counter:
  return collections.Counter(map(tuple, np.asarray(tokens)[:, :length]))


def chi_square_p(observed: collections.Counter,
                 expected_probs: dict[tuple[int, ...], float]) -> float:
  """Goodness-of-fit p-value; cells with expected count < 5 are pooled.

  Any observation outside the support of the expected distribution fails.
  """
  n = sum(observed.values())
  outside = [k for k in observed if expected_probs.get(k, 0.0) <= 1e-12]
  assert not outside, f"samples outside the target's support: {outside[:5]}"
  big, small_obs, small_exp = [], 0.0, 0.0
  for key, pr in expected_probs.items():
    if pr * n >= MIN_EXPECTED:
      big.append((observed.get(key, 0), pr * n))
    else:
      small_obs += observed.get(key, 0)
      small_exp += pr * n
  obs = [o for o, _ in big] + ([small_obs] if small_exp > 0 else [])
  exp = [e for _, e in big] + ([small_exp] if small_exp > 0 else [])
  if len(obs) < 2:
    # A target with one outcome (e.g. a low temperature and a small top-P):
    # the support check above already required every sample to be it, and
    # a one-category χ² has no degrees of freedom (its p-value is NaN).
    return 1.0
  exp = np.asarray(exp) * (n / np.sum(exp))
  return float(scipy.stats.chisquare(obs, exp).pvalue)
