"""Sequential cascades: token-level (Alg. 2), oracle Diff (Alg. 3) and
sequence-level (Chow's rule on the whole output).

Token-level loops keep the drafter's cache one token behind the sequence
(like autoregressive decoding) while the verifier's cache lags further:
``v_len`` tokens are written and x[v_len..m-1] are *pending*. A deferral
scores all pending tokens in ONE verifier call (a bucketed static window),
takes the verifier's distribution at the newest position, and yields exactly
one token.
"""

from __future__ import annotations

import enum
import functools

import flax.struct
import jax
import jax.numpy as jnp

from harness.decoding import autoregressive
from harness.decoding import sampling
from harness.decoding import state as st
from harness.decoding.protocol import Cache, DecodingModel

# Kim et al. (2023), as in the speculative-cascades paper's BiLD setup: the
# small model predicts at most 10 tokens before the large model is invoked.
DEFAULT_MAX_SMALL_RUN = 10

TOKEN_STATS = ("iterations", "drafter_steps", "verifier_calls",
               "verifier_positions", "deferrals", "forced_deferrals",
               "emitted_drafter", "emitted_verifier", "oracle_evaluations")


@flax.struct.dataclass
class CascadeState:
  """Loop state of a token-level cascade.

  Attributes:
    seq: decoder sequence (m tokens).
    d_cache: drafter cache, length m - 1.
    v_cache: verifier cache, length v_len ≤ m - 1.
    v_len: scalar int32, tokens the verifier has written.
    run: scalar int32, consecutive drafter tokens since the last deferral.
    rng: PRNG key.
    stats: counters (``TOKEN_STATS``).
  """
  seq: st.Sequence
  d_cache: Cache
  v_cache: Cache
  v_len: jax.Array
  run: jax.Array
  rng: jax.Array
  stats: dict


def init_state(drafter: DecodingModel, verifier: DecodingModel,
               prompt: jax.Array, prompt_len: jax.Array, size: int,
               rng: jax.Array,
               stop_sequences: st.StopSequences = ()) -> CascadeState:
  """Prefills both models; returns the initial token-cascade state."""
  start, start_len = verifier.decoder_prompt(prompt, prompt_len)
  v_cache = verifier.prefill(prompt, prompt_len, size)
  return CascadeState(
      seq=st.new_sequence(start, start_len, size, stop_sequences),
      d_cache=drafter.prefill(prompt, prompt_len, size), v_cache=v_cache,
      v_len=verifier.cache_length(v_cache), run=jnp.zeros((), jnp.int32),
      rng=rng, stats=st.zero_stats(TOKEN_STATS))


def buckets(max_pending: int) -> tuple[int, ...]:
  """Powers of two 1, 2, 4, … up to the first ≥ max_pending."""
  return tuple(1 << i for i in range(max(max_pending - 1, 0).bit_length() + 1))


def _verifier_probs(verifier: DecodingModel, s: CascadeState,
                    knobs: st.Knobs, widths: tuple[int, ...]):
  """Scores the pending tokens; returns (p, p_raw, cache, n_pending)."""
  rows, v_cache = st.score_pending(verifier, s.v_cache, s.seq, s.v_len,
                                   widths)
  n = s.seq.length - s.v_len
  p, p_raw = sampling.process_logits(rows[n - 1], knobs.temperature,
                                     knobs.top_p)
  return p, p_raw, v_cache, n


def token_step(drafter: DecodingModel, verifier: DecodingModel,
               knobs: st.Knobs, max_decode_len: int, max_small_run: int,
               widths: tuple[int, ...], s: CascadeState) -> CascadeState:
  """One token of TokenCascade [Chow]: defer iff max q_raw < 1 - α."""
  rng, key = jax.random.split(s.rng)
  logits, d_cache = drafter.score(s.seq.last(1)[None], s.d_cache)
  q, q_raw = sampling.process_logits(logits[0, 0], knobs.temperature,
                                     knobs.top_p)
  by_rule = jnp.max(q_raw) < 1.0 - knobs.alpha
  forced = ~by_rule & (s.run >= max_small_run)
  defer = by_rule | forced

  def large(_):
    p, _, v_cache, n = _verifier_probs(verifier, s, knobs, widths)
    return sampling.sample(key, p), v_cache, s.seq.length, n

  def small(_):
    return sampling.sample(key, q), s.v_cache, s.v_len, jnp.zeros((),
                                                                  jnp.int32)

  token, v_cache, v_len, n = jax.lax.cond(defer, large, small, None)
  seq, emitted = st.emit(s.seq, token[None], 1, drafter.eos_id, max_decode_len)
  stats = st.add_stats(
      s.stats, iterations=1, drafter_steps=1, verifier_calls=defer,
      verifier_positions=n, deferrals=defer, forced_deferrals=forced,
      emitted_drafter=(~defer) * emitted, emitted_verifier=defer * emitted)
  return CascadeState(seq=seq, d_cache=d_cache, v_cache=v_cache, v_len=v_len,
                      run=jnp.where(defer, 0, s.run + 1), rng=rng, stats=stats)


def token_cascade(drafter: DecodingModel, verifier: DecodingModel,
                  prompt: jax.Array, prompt_len: jax.Array, knobs: st.Knobs,
                  variant: jax.Array, rng: jax.Array, *, gamma: int,
                  max_decode_len: int, size: int,
                  stop_sequences: st.StopSequences = (),
                  max_small_run: int = DEFAULT_MAX_SMALL_RUN
                  ) -> st.DecodeOutput:
  """Method ``token_cascade_chow`` (Algorithm 2).

  Arguments as in ``speculative.decode`` (γ and ``variant`` are unused);
  ``max_small_run`` caps the drafter's tokens in a row.
  """
  del gamma, variant
  widths = buckets(max_small_run + 1)
  s = init_state(drafter, verifier, prompt, prompt_len, size, rng,
                 stop_sequences)
  body = functools.partial(token_step, drafter, verifier, knobs,
                           max_decode_len, max_small_run, widths)
  s = jax.lax.while_loop(lambda s: ~s.seq.done, body, s)
  return st.output(s.seq, s.stats, max_decode_len)


def oracle_step(drafter: DecodingModel, verifier: DecodingModel,
                knobs: st.Knobs, max_decode_len: int,
                s: CascadeState) -> CascadeState:
  """One token of the oracle Diff cascade: both models are evaluated, only
  deferrals are charged (the decision peeks at p for free)."""
  rng, key = jax.random.split(s.rng)
  last = s.seq.last(1)[None]
  q_logits, d_cache = drafter.score(last, s.d_cache)
  p_logits, v_cache = verifier.score(last, s.v_cache)
  q, q_raw = sampling.process_logits(q_logits[0, 0], knobs.temperature,
                                     knobs.top_p)
  p, p_raw = sampling.process_logits(p_logits[0, 0], knobs.temperature,
                                     knobs.top_p)
  defer = jnp.max(q_raw) < jnp.max(p_raw) - knobs.alpha
  token = sampling.sample(key, jnp.where(defer, p, q))
  seq, emitted = st.emit(s.seq, token[None], 1, drafter.eos_id, max_decode_len)
  stats = st.add_stats(
      s.stats, iterations=1, drafter_steps=1, verifier_calls=defer,
      verifier_positions=defer, deferrals=defer, oracle_evaluations=1,
      emitted_drafter=(~defer) * emitted, emitted_verifier=defer * emitted)
  return s.replace(seq=seq, d_cache=d_cache, v_cache=v_cache,
                   v_len=s.v_len + 1, rng=rng, stats=stats)


def oracle_cascade(drafter: DecodingModel, verifier: DecodingModel,
                   prompt: jax.Array, prompt_len: jax.Array, knobs: st.Knobs,
                   variant: jax.Array, rng: jax.Array, *, gamma: int,
                   max_decode_len: int, size: int,
                   stop_sequences: st.StopSequences = ()
                   ) -> st.DecodeOutput:
  """Method ``oracle_cascade_diff`` (Algorithm 3).

  Arguments as in ``speculative.decode`` (γ and ``variant`` are unused).
  """
  del gamma, variant
  s = init_state(drafter, verifier, prompt, prompt_len, size, rng,
                 stop_sequences)
  body = functools.partial(oracle_step, drafter, verifier, knobs,
                           max_decode_len)
  s = jax.lax.while_loop(lambda s: ~s.seq.done, body, s)
  return st.output(s.seq, s.stats, max_decode_len)


class SeqConfidence(enum.StrEnum):
  """Sequence-level confidence of the drafter's output, in [0, 1]."""
  MEAN_MAX_PROB = "mean_max_prob"  # mean over tokens of max_v q_raw(v)
  GEOMETRIC_MEAN_PROB = "geo_mean_prob"  # exp(mean log q_raw(y_t))
  MIN_MAX_PROB = "min_max_prob"  # min over tokens of max_v q_raw(v)


def sequence_confidence(kind: jax.Array, ar_stats: dict[str, jax.Array],
                        n_tokens: jax.Array) -> jax.Array:
  """Aggregates the drafter's per-token confidences.

  Args:
    kind: scalar int32 index into ``CONFIDENCES`` (traced).
    ar_stats: the drafter run's ``autoregressive.AR_STATS`` counters.
    n_tokens: scalar, tokens the drafter generated.

  Returns:
    Scalar float32 confidence in [0, 1].
  """
  n = jnp.maximum(n_tokens, 1).astype(jnp.float32)
  milli = autoregressive.MILLI
  by_kind = {
      SeqConfidence.MEAN_MAX_PROB: ar_stats["sum_max_prob_milli"] / milli / n,
      SeqConfidence.GEOMETRIC_MEAN_PROB: jnp.exp(
          ar_stats["sum_logprob_milli"] / milli / n),
      SeqConfidence.MIN_MAX_PROB: ar_stats["min_max_prob_milli"] / milli}
  return jnp.stack([by_kind[c] for c in CONFIDENCES])[kind]


# Variants of the sequence cascade (the traced ``variant`` index).
CONFIDENCES = tuple(c.value for c in SeqConfidence)


def seq_cascade(drafter: DecodingModel, verifier: DecodingModel,
                prompt: jax.Array, prompt_len: jax.Array, knobs: st.Knobs,
                variant: jax.Array, rng: jax.Array, *, gamma: int,
                max_decode_len: int, size: int,
                stop_sequences: st.StopSequences = ()) -> st.DecodeOutput:
  """Method ``seq_cascade_chow``: defer the whole output iff conf < 1 - α.

  ``variant`` indexes ``CONFIDENCES`` (the ``confidence`` option, traced so
  that one program serves all three); other arguments as in
  ``speculative.decode``.
  """
  del gamma
  d_key, v_key = jax.random.split(rng)
  run = functools.partial(autoregressive.run, prompt=prompt,
                          prompt_len=prompt_len, knobs=knobs,
                          max_decode_len=max_decode_len, size=size,
                          stop_sequences=stop_sequences)
  small = run(drafter, rng=d_key)
  conf = sequence_confidence(variant, small.stats, small.seq.generated)
  defer = conf < 1.0 - knobs.alpha

  def large(_):
    out = run(verifier, rng=v_key)
    return out.seq, out.stats["steps"]

  seq, v_steps = jax.lax.cond(defer, large,
                              lambda _: (small.seq, jnp.zeros((), jnp.int32)),
                              None)
  stats = {"iterations": small.stats["steps"] + v_steps,
           "drafter_steps": small.stats["steps"], "verifier_calls": v_steps,
           "verifier_positions": v_steps, "deferrals": defer.astype(jnp.int32),
           "deferred_sequence": defer.astype(jnp.int32),
           "emitted_drafter": jnp.where(defer, 0, seq.generated),
           "emitted_verifier": jnp.where(defer, seq.generated, 0)}
  return st.output(seq, stats, max_decode_len)
