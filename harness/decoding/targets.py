"""Target distributions π = 𝕋(q, p) of every speculative method.

Each rule is a pure function of the drafter's and verifier's distributions at
one (or, vectorised, several) positions. ``q``/``p`` are the *scaled*
probabilities (temperature and top-P applied; what the models sample from),
``q_raw``/``p_raw`` the T = 1 softmax used by deferral thresholds
(docs/algorithms.md#conventions). All arrays are [..., V]; ``alpha`` is a
traced scalar.

Every rule returns ``(pi, defer)``: the target π [..., V] (sums to 1) and the
deferral indicator r [..., V] in {0, 1} (broadcast over V for position-level
rules; token-specific for the Token rules). The speculative loop feeds π to
GenSpecSample; r only feeds statistics.

Worked example (docs/algorithms.md#worked-example): q = [.5, .3, .15,
.05], p = [.2, .6, .1, .1], α = 0.3, T = 1. Chow defers (π = p); Diff and OPT do not (π = q); the
Token rule gives π = [.14, .72, .07, .07].
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Callable

import jax
import jax.numpy as jnp

from harness.decoding.sampling import MIN_PROB
from harness.decoding.sampling import argmax

# Bisection steps for the normalising β of lossy speculative decoding; 60
# halvings of [0, 1/(1-α)] reach float32 resolution.
BETA_BISECTION_STEPS = 60
# α is clipped below 1 where 1 / (1 - α) appears; α = 1 itself is the
# drafter-only end and is handled explicitly.
_ALPHA_CLIP = 1.0 - 1e-7

RuleFn = Callable[..., tuple[jax.Array, jax.Array]]


def _position_rule(defer: jax.Array, q: jax.Array, p: jax.Array):
  """π = (1 - r) q + r p for a position-level deferral r [...]."""
  r = defer[..., None].astype(q.dtype)
  return (1.0 - r) * q + r * p, jnp.broadcast_to(r, q.shape)


def _token_rule(defer: jax.Array, q: jax.Array, p: jax.Array):
  """π(v) = q(v)(1 - r(v)) + p(v) Σ_u r(u) q(u) for a token-level r [..., V]."""
  r = defer.astype(q.dtype)
  eta = jnp.sum(r * q, axis=-1, keepdims=True)
  return q * (1.0 - r) + p * eta, r


def total_variation(p: jax.Array, q: jax.Array) -> jax.Array:
  """D_TV(p, q) = Σ max(0, q - p) over the last axis."""
  return jnp.sum(jnp.maximum(q - p, 0.0), axis=-1)


def verifier_target(q, p, q_raw, p_raw, alpha, greedy):
  """π = p: lossless speculative decoding."""
  del q_raw, p_raw, alpha, greedy
  return p, jnp.ones_like(q)


def drafter_target(q, p, q_raw, p_raw, alpha, greedy):
  """π = q: the drafter alone."""
  del p, q_raw, p_raw, alpha, greedy
  return q, jnp.zeros_like(q)


def chow_target(q, p, q_raw, p_raw, alpha, greedy):
  """Chow (Eq. 2): defer iff max q_raw < 1 - α; α ∈ [0, 1]."""
  del p_raw, greedy
  return _position_rule(jnp.max(q_raw, -1) < 1.0 - alpha, q, p)


def diff_target(q, p, q_raw, p_raw, alpha, greedy):
  """Diff (Eq. 5): defer iff max q_raw < max p_raw - α; α ∈ [-1, 1]."""
  del greedy
  defer = jnp.max(q_raw, -1) < jnp.max(p_raw, -1) - alpha
  return _position_rule(defer, q, p)


def opt_target(q, p, q_raw, p_raw, alpha, greedy):
  """OPT (Eq. 10): defer iff max q_raw < max p_raw - α·D_TV(p, q).

  D_TV uses the scaled distributions (as the reference notebook). α ∈ ℝ,
  ±inf included; α·0 is taken as 0 so that α = ±inf with p = q is defined.
  """
  del greedy
  tv = total_variation(p, q)
  penalty = jnp.where(tv == 0, 0.0, alpha * tv)
  defer = jnp.max(q_raw, -1) < jnp.max(p_raw, -1) - penalty
  return _position_rule(defer, q, p)


def token_v1_target(q, p, q_raw, p_raw, alpha, greedy):
  """TokenV1 (Eq. 13): defer v iff q_raw(v) < max p_raw - α; α ∈ [-1, 1]."""
  del greedy
  return _token_rule(q_raw < jnp.max(p_raw, -1, keepdims=True) - alpha, q, p)


def token_v2_target(q, p, q_raw, p_raw, alpha, greedy):
  """TokenV2 (Eq. 14): defer v iff p_raw(v) < max p_raw - α; α ∈ [-1, 1]."""
  del q_raw, greedy
  return _token_rule(p_raw < jnp.max(p_raw, -1, keepdims=True) - alpha, q, p)


def token_v3_target(q, p, q_raw, p_raw, alpha, greedy):
  """Token / TokenV3 (Eq. 15): A = {v : p_raw(v) ≥ (1 - α) max p_raw}.

  π(v) = q(v)·1[v ∈ A] + p(v)·Σ_{u ∉ A} q(u); α ∈ [0, 1].
  """
  del q_raw, greedy
  threshold = (1.0 - alpha) * jnp.max(p_raw, -1, keepdims=True)
  return _token_rule(p_raw < threshold, q, p)


def _lossy_greedy(q, p, q_raw, p_raw, alpha):
  """T = 0 lossy rule: keep argmax q iff p_raw(y) ≥ (1 - α) max p_raw.

  With one-hot q and p this is exactly the Token rule (Lemma 9).
  """
  return token_v3_target(q, p, q_raw, p_raw, alpha, True)


def _lossy_defer(q, p, alpha):
  """Tokens whose acceptance min(1, p / ((1-α) q)) is below 1."""
  return (p < (1.0 - alpha) * q).astype(q.dtype)


def lossy_one_target(q, p, q_raw, p_raw, alpha, greedy):
  """Lossy SD with β = 1 (the reference notebook's form); α ∈ [0, 1].

  Procedure: accept y ~ q w.p. min(1, p(y) / ((1 - α) q(y))), else sample
  from norm(max(0, p - q)). Its output distribution, used as π here so that
  GenSpecSample executes exactly that procedure, is

    π = m + c·max(0, p - q),  m = min(q, p / (1 - α)),
    c = (1 - Σ m) / Σ max(0, p - q)  (c ≥ 0; c = 0 when p = q).
  """
  a = jnp.minimum(alpha, _ALPHA_CLIP)
  m = jnp.minimum(q, p / (1.0 - a))
  excess = jnp.maximum(p - q, 0.0)
  mass = jnp.sum(excess, -1, keepdims=True)
  c = (1.0 - jnp.sum(m, -1, keepdims=True)) / jnp.maximum(mass, MIN_PROB)
  pi = jnp.where(mass > 0, m + jnp.maximum(c, 0.0) * excess, q)
  pi = pi / jnp.sum(pi, -1, keepdims=True)
  pi = jnp.where(alpha >= 1.0, q, pi)
  sampled = (pi, _lossy_defer(q, p, a))
  greedy_pi = _lossy_greedy(q, p, q_raw, p_raw, alpha)
  return jax.tree.map(lambda g, s: jnp.where(greedy, g, s), greedy_pi, sampled)


def lossy_beta(q: jax.Array, p: jax.Array, alpha: jax.Array) -> jax.Array:
  """Solves Σ_v max(min(q, p/(1-α)), p/β) = 1 for β ≥ 1 - α (Tran-Thien).

  Bisection on s = 1/β ∈ [0, 1/(1-α)], where the sum increases with s from
  Σ min(q, p/(1-α)) ≤ 1 to 1/(1-α) ≥ 1. (The paper reports a grid search
  over 1,000 values of β; this solves the same equation to float precision.)

  Returns:
    β [...]; +inf where Σ min(q, p/(1-α)) = 1 already (then π = q).
  """
  a = jnp.minimum(alpha, _ALPHA_CLIP)
  m = jnp.minimum(q, p / (1.0 - a))

  def total(s):
    return jnp.sum(jnp.maximum(m, s[..., None] * p), -1)

  def step(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    too_big = total(mid) > 1.0
    return jnp.where(too_big, lo, mid), jnp.where(too_big, mid, hi)

  lo = jnp.zeros(q.shape[:-1], q.dtype)
  hi = jnp.full(q.shape[:-1], 1.0 / (1.0 - a), q.dtype)
  lo, hi = jax.lax.fori_loop(0, BETA_BISECTION_STEPS, step, (lo, hi))
  s = 0.5 * (lo + hi)
  return jnp.where(s > 0, 1.0 / jnp.maximum(s, 1e-30), jnp.inf)


def lossy_normalize_target(q, p, q_raw, p_raw, alpha, greedy):
  """Lossy SD with the normalising β: π = max(min(q, p/(1-α)), p/β).

  GenSpecSample then accepts w.p. min(1, p/((1-α) q)) and resamples from
  norm(max(0, p - β q)). α ∈ [0, 1].
  """
  a = jnp.minimum(alpha, _ALPHA_CLIP)
  beta = lossy_beta(q, p, a)
  m = jnp.minimum(q, p / (1.0 - a))
  pi = jnp.maximum(m, p / beta[..., None])
  pi = pi / jnp.sum(pi, -1, keepdims=True)
  pi = jnp.where(alpha >= 1.0, q, pi)
  sampled = (pi, _lossy_defer(q, p, a))
  greedy_pi = _lossy_greedy(q, p, q_raw, p_raw, alpha)
  return jax.tree.map(lambda g, s: jnp.where(greedy, g, s), greedy_pi, sampled)


class Discrepancy(enum.StrEnum):
  """Names of the BiLD* discrepancy D(q, p) (docs/algorithms.md#bild)."""
  PROB_GAP = "prob_gap"  # max p_raw - p_raw(argmax q_raw), in [0, 1]
  NLL = "nll"            # -log p_raw(argmax q_raw), in [0, inf)
  TV = "tv"              # D_TV(p, q) on scaled distributions, in [0, 1]


DISCREPANCIES = tuple(d.value for d in Discrepancy)


def bild_discrepancy(kind: str, q, p, q_raw, p_raw) -> jax.Array:
  """D(q, p) [...] for BiLD*; ``kind`` is a :class:`Discrepancy` name."""
  top = argmax(q_raw)
  p_top = jnp.take_along_axis(p_raw, top[..., None], -1)[..., 0]
  if kind == Discrepancy.PROB_GAP:
    return jnp.max(p_raw, -1) - p_top
  if kind == Discrepancy.NLL:
    return -jnp.log(jnp.maximum(p_top, MIN_PROB))
  if kind == Discrepancy.TV:
    return total_variation(p, q)
  raise ValueError(f"discrepancy: unknown {kind!r}; known: {DISCREPANCIES}")


def bild_star_target(q, p, q_raw, p_raw, alpha, greedy, *,
                     discrepancy: str = Discrepancy.PROB_GAP.value):
  """BiLD*: π = q if D(q, p) ≤ α else p; α ≥ 0."""
  del greedy
  d = bild_discrepancy(discrepancy, q, p, q_raw, p_raw)
  return _position_rule(d > alpha, q, p)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """A target rule and the range of its lenience α.

  Attributes:
    fn: (q, p, q_raw, p_raw, alpha, greedy, **options) -> (π, r).
    alpha_min, alpha_max: closed range of valid α.
    verifier_end: α at which π = p (lossless), or None if no α gives p.
    drafter_end: α at which π = q (drafter only).
    uses_drafter: False when π depends on p only (no drafter call is needed
      to build the bonus token's target).
  """
  fn: RuleFn
  alpha_min: float
  alpha_max: float
  verifier_end: float | None
  drafter_end: float
  uses_drafter: bool = True


RULES: dict[str, RuleSpec] = {
    "verifier": RuleSpec(verifier_target, -math.inf, math.inf, 0.0, math.nan,
                         uses_drafter=False),
    "drafter": RuleSpec(drafter_target, -math.inf, math.inf, None, 0.0),
    "lossy_one": RuleSpec(lossy_one_target, 0.0, 1.0, 0.0, 1.0),
    "lossy_normalize": RuleSpec(lossy_normalize_target, 0.0, 1.0, 0.0, 1.0),
    "chow": RuleSpec(chow_target, 0.0, 1.0, None, 1.0),
    "diff": RuleSpec(diff_target, -1.0, 1.0, -1.0, 1.0),
    "opt": RuleSpec(opt_target, -math.inf, math.inf, -math.inf, math.inf),
    "token_v1": RuleSpec(token_v1_target, -1.0, 1.0, -1.0, 1.0),
    "token_v2": RuleSpec(token_v2_target, -1.0, 1.0, -1.0, 1.0),
    "token_v3": RuleSpec(token_v3_target, 0.0, 1.0, None, 1.0),
    "bild_star": RuleSpec(bild_star_target, 0.0, math.inf, None, math.inf),
}


def target(rule: str, q, p, alpha, q_raw, p_raw, *, greedy=False,
           **options) -> jax.Array:
  """π for the named rule (the issue's ``target(rule, q, p, α, q_raw, p_raw)``)."""
  pi, _ = RULES[rule].fn(q, p, q_raw, p_raw, jnp.asarray(alpha, jnp.float32),
                         jnp.asarray(greedy), **options)
  return pi
