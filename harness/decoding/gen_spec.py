"""GenSpecSample (Algorithm 4): speculative sampling towards a target π.

One routine serves every speculative method; methods differ only in π.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from harness.decoding.sampling import MIN_PROB, sample


def first_false(flags: jax.Array) -> jax.Array:
  """Index of the first False in flags [γ], or γ if all are True.

  Example: [T, T, F, T] -> 2; [T, T] -> 2.
  """
  padded = jnp.concatenate([flags, jnp.zeros((1,), bool)])
  return jnp.argmin(padded).astype(jnp.int32)


def residual(pi: jax.Array, q: jax.Array) -> jax.Array:
  """norm(max(0, π - q)) [..., V], falling back to π where π = q."""
  res = jnp.maximum(pi - q, 0.0)
  mass = jnp.sum(res, -1, keepdims=True)
  return jnp.where(mass > MIN_PROB, res / jnp.maximum(mass, MIN_PROB), pi)


def gen_spec_sample(key: jax.Array, drafts: jax.Array, q: jax.Array,
                    pi: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Accepts a prefix of the drafts against π; samples the correction.

  Draft y_j ~ q_j is accepted with probability min(1, π_j(y_j) / q_j(y_j));
  at the first rejection k the token is resampled from norm(max(0, π_k -
  q_k)). Each emitted token is then distributed exactly as π at its position.

  Example (γ = 3): coins accept positions [T, F, T] -> k = 1; the caller
  emits drafts[:1] followed by ``correction`` (sampled from the residual at
  position 1). With coins [T, T, T], k = 3 and the caller emits all drafts
  plus a bonus token (not sampled here).

  Args:
    key: PRNG key.
    drafts: [γ] int32 drafted tokens, y_j sampled from q_j.
    q: [γ, V] the distributions the drafts were sampled from.
    pi: [γ, V] target distributions at the same positions.

  Returns:
    k: scalar int32, number of accepted drafts (0..γ).
    correction: scalar int32, residual sample at position k (meaningless
      when k = γ).
    accept: [γ] bool, the per-position coin outcomes.
  """
  coin_key, res_key = jax.random.split(key)
  q_y = jnp.take_along_axis(q, drafts[:, None], -1)[:, 0]
  pi_y = jnp.take_along_axis(pi, drafts[:, None], -1)[:, 0]
  accept_prob = jnp.minimum(1.0, pi_y / jnp.maximum(q_y, MIN_PROB))
  coins = jax.random.uniform(coin_key, accept_prob.shape)
  accept = coins < accept_prob
  k = first_false(accept)
  gamma = drafts.shape[0]
  at = jnp.minimum(k, gamma - 1)
  correction = sample(res_key, residual(pi[at], q[at]))
  return k, correction, accept
