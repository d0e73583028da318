"""Original BiLD (Kim et al., 2023): a dynamic draft window with fallback and
rollback policies.

* Fallback: the drafter emits tokens while its confidence max q_raw ≥ α (the
  fallback threshold, swept as the lenience) and it has emitted fewer than
  ``max_small_run`` tokens in a row; otherwise control falls back to the
  verifier, and the drafter's last (unconfident) token is discarded.
* The verifier scores, in one call, every token since its previous call.
  Rollback: if some drafted token y_t has -log p_raw(y_t) >
  ``rollback_threshold``, the sequence is cut at the first such t and y_t is
  replaced by a sample from the verifier's p_t; otherwise the verifier emits
  the next token itself.

With T = 0 this is the deterministic procedure of the BiLD paper; with T > 0
tokens are sampled from the scaled distributions (not lossless either way).
The loop shares the cascade state of ``cascade.py``: the verifier's cache
lags behind the sequence and catches up in one bucketed call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from harness.decoding import cascade
from harness.decoding import sampling
from harness.decoding import state as st
from harness.decoding.protocol import DecodingModel

# Kim et al. use a rollback threshold on the cross-entropy -log p(y); 2.0 is
# a mid-range value of the grid they tune (the harness sweeps it as an option).
DEFAULT_ROLLBACK_THRESHOLD = 2.0

BILD_STATS = cascade.TOKEN_STATS + ("rollbacks",)


def _fallback(verifier: DecodingModel, s: cascade.CascadeState,
              knobs: st.Knobs, widths: tuple[int, ...],
              rollback_threshold: float, key: jax.Array):
  """Verifier catch-up call with the rollback policy.

  Example: v_len = 4, m = 8 (x[4..7] pending, x[5..7] drafted since the last
  call). Row i of the call predicts x[4 + i + 1]. If x[6] fails the rollback
  test, the sequence is cut to 6 tokens and x[6] is resampled from row 1;
  otherwise x[8] is sampled from row 3.

  Returns:
    (token, position to write it at, verifier cache, positions scored,
    rolled back?).
  """
  rows, v_cache = st.score_pending(verifier, s.v_cache, s.seq, s.v_len,
                                   widths)
  n = s.seq.length - s.v_len
  width = rows.shape[0]
  idx = jnp.arange(width)
  # Token predicted by row i is x[v_len + i + 1]; drafted ones are those after
  # the verifier's last own token, i.e. rows [n - 1 - run, n - 1).
  targets = jax.lax.dynamic_slice(s.seq.buf, (s.v_len + 1,), (width,))
  raw = jax.nn.softmax(sampling.sanitize_logits(rows), -1)
  p_t = jnp.take_along_axis(raw, targets[:, None], -1)[:, 0]
  nll = -jnp.log(jnp.maximum(p_t, sampling.MIN_PROB))
  drafted = (idx >= n - 1 - s.run) & (idx < n - 1)
  bad = drafted & (nll > rollback_threshold)
  first_bad = jnp.argmax(jnp.concatenate([bad, jnp.ones((1,), bool)]))
  rolled = first_bad < width
  row = jnp.where(rolled, first_bad, n - 1)
  p, _ = sampling.process_logits(rows[row], knobs.temperature, knobs.top_p)
  token = sampling.sample(key, p)
  write_at = s.v_len + row + 1
  return token, write_at, v_cache, n, rolled


def bild_step(drafter: DecodingModel, verifier: DecodingModel,
              knobs: st.Knobs, max_decode_len: int, max_small_run: int,
              widths: tuple[int, ...], rollback_threshold: float,
              s: cascade.CascadeState) -> cascade.CascadeState:
  """One BiLD token: draft, or fall back to the verifier (with rollback)."""
  rng, key = jax.random.split(s.rng)
  logits, d_cache = drafter.score(s.seq.last(1)[None], s.d_cache)
  q, q_raw = sampling.process_logits(logits[0, 0], knobs.temperature,
                                     knobs.top_p)
  by_rule = jnp.max(q_raw) < knobs.alpha
  forced = ~by_rule & (s.run >= max_small_run)
  fallback = by_rule | forced

  def large(_):
    return _fallback(verifier, s, knobs, widths, rollback_threshold, key)

  def small(_):
    return (sampling.sample(key, q), s.seq.length, s.v_cache,
            jnp.zeros((), jnp.int32), jnp.asarray(False))

  token, write_at, v_cache, n, rolled = jax.lax.cond(fallback, large, small,
                                                     None)
  # Drafted tokens cut by a rollback leave the output (and the counts).
  removed = s.seq.length - write_at
  seq = s.seq.replace(length=write_at)
  seq, emitted = st.emit(seq, token[None], 1, drafter.eos_id, max_decode_len)
  # Both caches hold every token but the newest (or fewer, for the drafter
  # after a rollback: its stale entries beyond the length are never read).
  d_cache = drafter.rollback(d_cache, jnp.minimum(
      drafter.cache_length(d_cache), seq.length - 1))
  v_len = jnp.where(fallback, seq.length - 1, s.v_len)
  v_cache = verifier.rollback(v_cache, v_len)
  stats = st.add_stats(
      s.stats, iterations=1, drafter_steps=1, verifier_calls=fallback,
      verifier_positions=n, deferrals=fallback, forced_deferrals=forced,
      rollbacks=rolled, emitted_drafter=(~fallback) * emitted - removed,
      emitted_verifier=fallback * emitted)
  return s.replace(seq=seq, d_cache=d_cache, v_cache=v_cache, v_len=v_len,
                   run=jnp.where(fallback, 0, s.run + 1), rng=rng, stats=stats)


def bild(drafter: DecodingModel, verifier: DecodingModel, prompt: jax.Array,
         prompt_len: jax.Array, knobs: st.Knobs, variant: jax.Array,
         rng: jax.Array, *, gamma: int, max_decode_len: int, size: int,
         stop_sequences: st.StopSequences = (),
         max_small_run: int = cascade.DEFAULT_MAX_SMALL_RUN,
         rollback_threshold: float = DEFAULT_ROLLBACK_THRESHOLD
         ) -> st.DecodeOutput:
  """Method ``bild`` (original BiLD, dynamic window).

  Arguments as in ``speculative.decode`` (γ and ``variant`` are unused);
  ``max_small_run`` caps the drafter's run, ``rollback_threshold`` is the
  rollback test's -log p bound.
  """
  del gamma, variant
  widths = cascade.buckets(max_small_run + 1)
  s = cascade.init_state(drafter, verifier, prompt, prompt_len, size, rng,
                         stop_sequences)
  s = s.replace(stats=st.zero_stats(BILD_STATS))
  body = functools.partial(bild_step, drafter, verifier, knobs,
                           max_decode_len, max_small_run, widths,
                           float(rollback_threshold))
  s = jax.lax.while_loop(lambda s: ~s.seq.done, body, s)
  return st.output(s.seq, s.stats, max_decode_len)
