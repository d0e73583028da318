"""The speculative loop (Algorithms 1, 4, 5, 6): draft γ, verify once, accept
against a rule's target π with GenSpecSample.

One iteration, with m tokens in the sequence (x[m-1] is the newest):

1. Drafter: γ sequential calls. The first call scores the 2-token window
   x[m-2], x[m-1] (re-writing x[m-2] is harmless and covers the case where the
   previous iteration accepted every draft, so the drafter never saw y_γ);
   each further call feeds the token just drafted. Output y_1..y_γ and their
   distributions q_1..q_γ.
2. Verifier: ONE call on [x[m-1], y_1, …, y_γ] -> p_1..p_{γ+1}.
3. π_j = rule(q_j, p_j); GenSpecSample accepts k drafts, samples a correction
   at k < γ; at k = γ a bonus token is sampled from π_{γ+1} (for rules that
   need q_{γ+1}, the drafter scores y_γ once more, only in that case; for
   lossless speculative decoding π = p and no drafter call is needed).
4. Emit y_1..y_k and the correction/bonus (cut at EOS and the length limit);
   roll the verifier back so that its cache again holds all tokens but the
   newest. Caches are rolled back by index only.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp

from harness.decoding import sampling
from harness.decoding import state as st
from harness.decoding import targets
from harness.decoding.gen_spec import gen_spec_sample
from harness.decoding.protocol import Cache, DecodingModel

SPEC_STATS = ("iterations", "drafter_steps", "verifier_calls",
              "verifier_positions", "drafts_proposed", "drafts_evaluated",
              "drafts_accepted", "accepted_per_position",
              "evaluated_per_position", "rejections", "deferrals",
              "emitted_drafts", "emitted_corrections", "emitted_bonus",
              "support_mass_e5")
# Units of ``support_mass_e5`` (an int32 counter: 1e-5 keeps a decode of
# thousands of evaluated drafts far from overflow).
SUPPORT_MASS_UNIT = 1e-5


@flax.struct.dataclass
class SpecState:
  """Loop state of the speculative loop.

  Attributes:
    seq: the decoder sequence (m = seq.length tokens).
    d_cache: drafter cache; holds at least x[0..m-3] (see module docstring).
    v_cache: verifier cache; length m - 1.
    rng: PRNG key, split every iteration.
    stats: counters (``SPEC_STATS``; per-position ones are [γ]).
  """
  seq: st.Sequence
  d_cache: Cache
  v_cache: Cache
  rng: jax.Array
  stats: dict


@flax.struct.dataclass
class Draft:
  """γ drafted tokens and the distributions they were sampled from.

  Attributes:
    tokens: [γ] int32.
    q: [γ, V] scaled drafter distributions (sampled from).
    q_raw: [γ, V] T = 1 drafter distributions.
  """
  tokens: jax.Array
  q: jax.Array
  q_raw: jax.Array


def init(drafter: DecodingModel, verifier: DecodingModel, prompt: jax.Array,
         prompt_len: jax.Array, size: int, rng: jax.Array, gamma: int,
         stop_sequences: st.StopSequences = ()) -> SpecState:
  """Prefills both models; returns the initial loop state."""
  start, start_len = verifier.decoder_prompt(prompt, prompt_len)
  return SpecState(
      seq=st.new_sequence(start, start_len, size, stop_sequences),
      d_cache=drafter.prefill(prompt, prompt_len, size),
      v_cache=verifier.prefill(prompt, prompt_len, size),
      rng=rng, stats=st.zero_stats(SPEC_STATS, gamma))


def first_draft_logits(drafter: DecodingModel, cache: Cache,
                       seq: st.Sequence) -> tuple[jax.Array, Cache]:
  """Scores the 2-token window ending at x[m-1]; returns (logits [V], cache).

  Example: m = 5 -> rolls back to 3, scores x[3], x[4], keeps the row of
  x[4]. m = 1 (an encoder-decoder's start token) -> scores x[0] and a
  scratch token, keeps row 0, and rolls back to length 1.
  """
  m = seq.length
  begin = jnp.maximum(m - 2, 0)
  window = jax.lax.dynamic_slice(seq.buf, (begin,), (2,))
  logits, cache = drafter.score(window[None], drafter.rollback(cache, begin))
  return logits[0, m - 1 - begin], drafter.rollback(cache, m)


def draft(drafter: DecodingModel, knobs: st.Knobs, s: SpecState, gamma: int,
          key: jax.Array) -> tuple[Draft, Cache]:
  """γ sequential drafter calls; returns (Draft, drafter cache)."""
  first, cache = first_draft_logits(drafter, s.d_cache, s.seq)
  keys = jax.random.split(key, gamma)

  def body(carry, k):
    logits, cache = carry
    q, q_raw = sampling.process_logits(logits, knobs.temperature, knobs.top_p)
    y = sampling.sample(k, q)
    nxt, cache = drafter.score(y[None, None], cache)
    return (nxt[0, 0], cache), (y, q, q_raw)

  (last, cache), (ys, qs, qraws) = jax.lax.scan(body, (first, cache),
                                                keys[:-1])
  q_last, qraw_last = sampling.process_logits(last, knobs.temperature,
                                              knobs.top_p)
  y_last = sampling.sample(keys[-1], q_last)
  out = Draft(tokens=jnp.concatenate([ys, y_last[None]]),
              q=jnp.concatenate([qs, q_last[None]]),
              q_raw=jnp.concatenate([qraws, qraw_last[None]]))
  return out, cache


def bonus_token(rule_fn: targets.RuleFn, uses_drafter: jax.Array,
                drafter: DecodingModel, d_cache: Cache, drafted: Draft,
                p: jax.Array, p_raw: jax.Array, knobs: st.Knobs,
                accepted_all: jax.Array,
                key: jax.Array) -> tuple[jax.Array, Cache, jax.Array]:
  """Samples the bonus token from π_{γ+1}; returns (token, cache, steps).

  For rules whose π depends on q (``uses_drafter``, a traced bool), the
  drafter scores y_γ to get q_{γ+1}, but only when every draft was accepted
  (the token is unused otherwise); other rules build π from p alone.

  Args:
    rule_fn: the target rule (q, p, q_raw, p_raw, alpha, greedy) -> (π, r).
    uses_drafter: scalar bool, whether π_{γ+1} needs q_{γ+1}.
    drafter: the drafter.
    d_cache: drafter cache holding x[..m-1] and y_1..y_{γ-1}.
    drafted: the γ drafts.
    p, p_raw: [V] scaled and T = 1 verifier distributions at position γ+1.
    knobs: α, T, top-P.
    accepted_all: scalar bool, k == γ.
    key: PRNG key.

  Returns:
    (token scalar int32, drafter cache, drafter steps taken scalar int32).
  """
  with_q = accepted_all & uses_drafter

  def with_drafter(cache):
    logits, cache = drafter.score(drafted.tokens[-1:][None], cache)
    q, q_raw = sampling.process_logits(logits[0, 0], knobs.temperature,
                                       knobs.top_p)
    pi, _ = rule_fn(q, p, q_raw, p_raw, knobs.alpha, knobs.greedy)
    return sampling.sample(key, pi), cache

  def from_p(cache):
    pi, _ = rule_fn(p, p, p_raw, p_raw, knobs.alpha, knobs.greedy)
    return sampling.sample(key, pi), cache

  token, d_cache = jax.lax.cond(with_q, with_drafter, from_p, d_cache)
  return token, d_cache, with_q.astype(jnp.int32)


def step(rule_fn: targets.RuleFn, uses_drafter: jax.Array,
         drafter: DecodingModel, verifier: DecodingModel, knobs: st.Knobs,
         gamma: int, max_decode_len: int, s: SpecState) -> SpecState:
  """One draft-verify-accept iteration."""
  rng, draft_key, accept_key, bonus_key = jax.random.split(s.rng, 4)
  drafted, d_cache = draft(drafter, knobs, s, gamma, draft_key)

  # Verifier: one call on [x[m-1], y_1..y_γ] -> [γ+1, V].
  v_tokens = jnp.concatenate([s.seq.last(1), drafted.tokens])
  logits, v_cache = verifier.score(v_tokens[None], s.v_cache)
  p, p_raw = sampling.process_logits(logits[0], knobs.temperature,
                                     knobs.top_p)

  pi, defer = rule_fn(drafted.q, p[:gamma], drafted.q_raw, p_raw[:gamma],
                      knobs.alpha, knobs.greedy)
  k, correction, _ = gen_spec_sample(accept_key, drafted.tokens, drafted.q, pi)
  bonus, d_cache, bonus_steps = bonus_token(
      rule_fn, uses_drafter, drafter, d_cache, drafted, p[gamma],
      p_raw[gamma], knobs, k == gamma, bonus_key)

  window = jnp.concatenate([drafted.tokens, jnp.zeros((1,), jnp.int32)])
  window = window.at[k].set(jnp.where(k < gamma, correction, bonus))
  seq, n = st.emit(s.seq, window, k + 1, verifier.eos_id, max_decode_len)
  v_cache = verifier.rollback(v_cache, seq.length - 1)

  pos = jnp.arange(gamma)
  evaluated = pos <= k
  deferred_y = jnp.take_along_axis(defer, drafted.tokens[:, None], -1)[:, 0]
  full = n == k + 1
  # p(S): the verifier's (T = 1) mass on the drafter's support at each
  # evaluated position; 1 for a full-vocabulary drafter up to underflow.
  mass = jnp.sum(jnp.where(drafted.q_raw > 0, p_raw[:gamma], 0.0), -1)
  support_mass = jnp.round(jnp.sum(jnp.where(evaluated, mass, 0.0))
                           / SUPPORT_MASS_UNIT)
  stats = st.add_stats(
      s.stats, iterations=1, drafter_steps=gamma + bonus_steps,
      verifier_calls=1, verifier_positions=gamma + 1, drafts_proposed=gamma,
      drafts_evaluated=jnp.minimum(k + 1, gamma), drafts_accepted=k,
      accepted_per_position=(pos < k).astype(jnp.int32),
      evaluated_per_position=evaluated.astype(jnp.int32),
      rejections=k < gamma,
      # Deferral decisions at positions that made it into the output.
      deferrals=jnp.sum(jnp.where(evaluated & (pos < n), deferred_y,
                                  0.0)).astype(jnp.int32),
      emitted_drafts=jnp.minimum(k, n),
      emitted_corrections=full & (k < gamma),
      emitted_bonus=full & (k == gamma),
      support_mass_e5=support_mass)
  return SpecState(seq=seq, d_cache=d_cache, v_cache=v_cache, rng=rng,
                   stats=stats)


# The target rules of the speculative family, in ``lax.switch`` branch
# order: (rule name in ``targets.RULES``, static rule options).
FAMILY_RULES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("verifier", ()), ("chow", ()), ("diff", ()), ("opt", ()),
    ("token_v3", ()), ("token_v1", ()), ("token_v2", ()),
    ("lossy_one", ()), ("lossy_normalize", ()),
    *(("bild_star", (("discrepancy", d),)) for d in targets.DISCREPANCIES))


def rule_index(rule: str, **rule_options: str) -> int:
  """Branch index of a rule (with its options) in ``FAMILY_RULES``."""
  return FAMILY_RULES.index((rule, tuple(sorted(rule_options.items()))))


def family_rule(index: jax.Array) -> tuple[targets.RuleFn, jax.Array]:
  """(rule_fn, uses_drafter) for a traced branch index into FAMILY_RULES.

  The rule function runs only the selected rule (``lax.switch``), so one
  compiled loop serves every rule at the cost of a conditional.
  """
  fns = [functools.partial(targets.RULES[name].fn, **dict(opts))
         for name, opts in FAMILY_RULES]

  def rule_fn(q, p, q_raw, p_raw, alpha, greedy):
    return jax.lax.switch(index, fns, q, p, q_raw, p_raw, alpha, greedy)

  uses = jnp.asarray([targets.RULES[name].uses_drafter
                      for name, _ in FAMILY_RULES])
  return rule_fn, uses[index]


def decode(drafter: DecodingModel, verifier: DecodingModel,
           prompt: jax.Array, prompt_len: jax.Array, knobs: st.Knobs,
           variant: jax.Array, rng: jax.Array, *, gamma: int,
           max_decode_len: int, size: int,
           stop_sequences: st.StopSequences = ()) -> st.DecodeOutput:
  """Runs the speculative loop to completion (the speculative family).

  Args:
    drafter, verifier: the models.
    prompt: [P] int32 padded prompt; prompt_len: scalar int32.
    knobs: traced α, T, top-P.
    variant: scalar int32, the target rule's index in ``FAMILY_RULES``.
    rng: PRNG key.
    gamma: static block size γ.
    max_decode_len: static generation limit.
    size: static buffer length.
    stop_sequences: static stop sequences (see ``state.emit``).

  Returns:
    The ``DecodeOutput``.
  """
  rule_fn, uses_drafter = family_rule(variant)
  s = init(drafter, verifier, prompt, prompt_len, size, rng, gamma,
           stop_sequences)
  body = functools.partial(step, rule_fn, uses_drafter, drafter, verifier,
                           knobs, gamma, max_decode_len)
  s = jax.lax.while_loop(lambda s: ~s.seq.done, body, s)
  return st.output(s.seq, s.stats, max_decode_len)
