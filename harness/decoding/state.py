"""Loop state, statistics and token-buffer helpers shared by the loops.

Every loop keeps the decoder sequence in one fixed-size token buffer
``buf [L]``; ``length`` tokens are valid (prompt start included). Entries at
and after ``length`` are scratch: windows are written there speculatively and
only ``length`` says what was emitted.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from harness.decoding.protocol import Cache, DecodingModel

# Value of ``DecodeOutput.tokens`` after EOS or the length limit.
PAD_TOKEN = -1

# Token-id sequences that end a decode like EOS (static, hashable).
StopSequences = tuple[tuple[int, ...], ...]


@flax.struct.dataclass
class Knobs:
  """Traced decoding hyper-parameters: changing them never recompiles.

  Attributes:
    alpha: scalar float32 lenience α.
    temperature: scalar float32 T ≥ 0 (0 = greedy).
    top_p: scalar float32 in (0, 1].
  """
  alpha: jax.Array
  temperature: jax.Array
  top_p: jax.Array

  @property
  def greedy(self) -> jax.Array:
    return self.temperature == 0


@flax.struct.dataclass
class Sequence:
  """The decoder sequence being generated.

  Attributes:
    buf: [L] int32 token buffer.
    length: scalar int32, valid tokens in buf.
    start: scalar int32, length of the decoder prompt (first generated index).
    done: scalar bool, EOS or a stop sequence emitted, or length limit
      reached.
    stop_sequences: static tuple of token-id tuples; the sequence is done
      once its generated tokens end with any of them.
  """
  buf: jax.Array
  length: jax.Array
  start: jax.Array
  done: jax.Array
  stop_sequences: StopSequences = flax.struct.field(pytree_node=False,
                                                    default=())

  @property
  def generated(self) -> jax.Array:
    return self.length - self.start

  def last(self, n: int) -> jax.Array:
    """The window of n tokens ending at the last valid one, clamped at 0."""
    begin = jnp.maximum(self.length - n, 0)
    return jax.lax.dynamic_slice(self.buf, (begin,), (n,))


@flax.struct.dataclass
class DecodeOutput:
  """What :func:`harness.decoding.decode` returns.

  Attributes:
    tokens: [max_decode_len] int32 generated ids (EOS included), PAD_TOKEN
      after EOS or the length limit.
    num_tokens: scalar int32, number of generated ids.
    stats: dict of scalar or [γ] int32 counters (see ``STAT_DOCS``).
  """
  tokens: jax.Array
  num_tokens: jax.Array
  stats: dict[str, jax.Array]


STAT_DOCS = {
    "num_tokens": "tokens emitted (EOS included)",
    "iterations": "loop iterations",
    "drafter_steps": "sequential drafter calls",
    "verifier_calls": "sequential verifier calls (counted cost)",
    "verifier_positions": "positions scored by the verifier over all calls",
    "drafts_proposed": "draft tokens proposed",
    "drafts_evaluated": "draft tokens that reached an accept/reject test",
    "drafts_accepted": "draft tokens accepted",
    "accepted_per_position": "[γ] accepted drafts by draft position",
    "evaluated_per_position": "[γ] evaluated drafts by draft position",
    "rejections": "verification rounds that ended in a rejection",
    "deferrals": "emitted positions deferred to the verifier by the rule",
    "forced_deferrals": "deferrals forced by the small-model run cap",
    "emitted_drafts": "emitted tokens that were accepted drafts",
    "emitted_corrections": "emitted residual (correction) tokens",
    "emitted_bonus": "emitted bonus tokens (all drafts accepted)",
    "support_mass_e5": "the verifier's T = 1 mass on the drafter's support "
                       "(q > 0), summed over evaluated drafts, in 1e-5 "
                       "units (p(S) for a subset-vocabulary drafter)",
    "emitted_drafter": "tokens emitted from the drafter's distribution",
    "emitted_verifier": "tokens emitted from the verifier's distribution",
    "oracle_evaluations": "verifier evaluations not counted as cost (oracle)",
    "rollbacks": "BiLD rollbacks",
    "deferred_sequence": "1 if a sequence cascade deferred the whole output",
}


def zero_stats(names: tuple[str, ...], gamma: int = 0) -> dict[str, jax.Array]:
  """Zero counters; the per-position ones have shape [gamma]."""
  stats = {}
  for name in names:
    shape = (gamma,) if name.endswith("_per_position") else ()
    stats[name] = jnp.zeros(shape, jnp.int32)
  return stats


def add_stats(stats: dict[str, jax.Array], **increments: Any):
  """Returns stats with each named counter increased."""
  out = dict(stats)
  for name, inc in increments.items():
    out[name] = out[name] + jnp.asarray(inc, jnp.int32)
  return out


def new_sequence(start_tokens: jax.Array, start_len: jax.Array, size: int,
                 stop_sequences: StopSequences = ()) -> Sequence:
  """A buffer of static size holding the decoder prompt.

  Args:
    start_tokens: [P0] int decoder prompt (padded).
    start_len: scalar, its valid length.
    size: static buffer length L ≥ P0.
    stop_sequences: static token-id tuples that end the decode (see
      ``emit``).

  Returns:
    The sequence, with ``length == start == start_len``.
  """
  buf = jnp.zeros((size,), jnp.int32)
  buf = jax.lax.dynamic_update_slice(buf, start_tokens.astype(jnp.int32), (0,))
  start_len = jnp.asarray(start_len, jnp.int32)
  return Sequence(buf=buf, length=start_len, start=start_len,
                  done=jnp.asarray(False),
                  stop_sequences=tuple(tuple(int(t) for t in s)
                                       for s in stop_sequences))


def _first_stop(seq: Sequence, buf: jax.Array, width: int) -> jax.Array:
  """Index i < width of the first new token buf[length + i] that completes a
  stop sequence lying wholly in the generated part, or ``width`` if none.

  Example: stop (4, 2), generated [.., 4], new window [2, 9] -> 0.
  """
  idx = jnp.arange(width)
  hit = jnp.zeros((width,), bool)
  # One-token stops in one comparison (a tokenizer may list hundreds).
  singles = [s[0] for s in seq.stop_sequences if len(s) == 1]
  if singles:
    new = jax.lax.dynamic_slice(buf, (seq.length,), (width,))
    hit = jnp.any(new[:, None] == jnp.asarray(singles, jnp.int32)[None, :],
                  axis=1)
  for stop in seq.stop_sequences:
    n = len(stop)
    if n == 1:
      continue
    # first[i]: buffer position where a match ending at length + i begins.
    first = seq.length + idx - (n - 1)
    pos = first[:, None] + jnp.arange(n)[None, :]
    got = jnp.take(buf, jnp.clip(pos, 0, buf.shape[0] - 1))
    match = jnp.all(got == jnp.asarray(stop, jnp.int32)[None, :], axis=1)
    hit = hit | (match & (first >= seq.start))
  return jnp.argmax(jnp.concatenate([hit, jnp.ones((1,), bool)]))


def emit(seq: Sequence, window: jax.Array, n_valid: jax.Array, eos_id: int,
         max_decode_len: int) -> tuple[Sequence, jax.Array]:
  """Appends window[:n_valid], cut after the first EOS or stop sequence and
  at the limit.

  Example: window [5, 0, 7] with n_valid 3, eos 0, and room for 10 tokens
  appends [5, 0] and sets done; the returned count is 2. With stop sequence
  (3, 5) and the last emitted token 3, window [5, 6] appends [5] and sets
  done (the stop tokens stay in the output).

  Args:
    seq: current sequence.
    window: [W] candidate tokens.
    n_valid: scalar, how many of them the method emits (≤ W).
    eos_id: end-of-sequence id.
    max_decode_len: static generation limit.

  Returns:
    (new sequence, number of tokens actually appended).
  """
  width = window.shape[0]
  idx = jnp.arange(width)
  is_eos = (window == eos_id) & (idx < n_valid)
  first_end = jnp.argmax(jnp.concatenate([is_eos, jnp.ones((1,), bool)]))
  buf = jax.lax.dynamic_update_slice(seq.buf, window.astype(jnp.int32),
                                     (seq.length,))
  if seq.stop_sequences:
    first_end = jnp.minimum(first_end, _first_stop(seq, buf, width))
  n = jnp.minimum(n_valid, first_end + 1)
  room = max_decode_len - seq.generated
  n = jnp.minimum(n, room).astype(jnp.int32)
  done = (first_end < n) | (seq.generated + n >= max_decode_len)
  return seq.replace(buf=buf, length=seq.length + n, done=done), n


def output(seq: Sequence, stats: dict[str, jax.Array],
           max_decode_len: int) -> DecodeOutput:
  """Extracts generated tokens [max_decode_len], padded with PAD_TOKEN."""
  gen = jax.lax.dynamic_slice(seq.buf, (seq.start,), (max_decode_len,))
  n = seq.generated
  tokens = jnp.where(jnp.arange(max_decode_len) < n, gen, PAD_TOKEN)
  full = {name: jnp.zeros((), jnp.int32) for name in STAT_DOCS
          if not name.endswith("_per_position")}
  full.update(stats)
  full["num_tokens"] = n.astype(jnp.int32)
  stats = full
  return DecodeOutput(tokens=tokens, num_tokens=n, stats=stats)


def bucket_index(n: jax.Array, buckets: tuple[int, ...]) -> jax.Array:
  """Index of the smallest bucket ≥ n (n ≤ buckets[-1])."""
  return jnp.searchsorted(jnp.asarray(buckets), n, side="left").astype(
      jnp.int32)


def score_window(model: DecodingModel, cache: Cache, buf: jax.Array,
                 start: jax.Array, end: jax.Array,
                 buckets: tuple[int, ...]) -> tuple[jax.Array, Cache]:
  """Scores buf[start:end] in one call with a static bucketed width.

  The number of tokens n = end - start varies at run time; the call uses the
  smallest width in ``buckets`` ≥ n (one compiled branch per width). Tokens
  written past ``end`` are forgotten by the rollback to ``end``.

  Returns:
    rows: [buckets[-1], V] logits; row i predicts buf[start + i + 1]; rows
      ≥ n are undefined.
    cache: the model cache with length ``end``.
  """
  width = buckets[-1]

  def branch(size):
    def run(cache):
      tokens = jax.lax.dynamic_slice(buf, (start,), (size,))
      logits, cache = model.score(tokens[None], model.rollback(cache, start))
      rows = jnp.zeros((width, logits.shape[-1]), jnp.float32)
      rows = jax.lax.dynamic_update_slice(rows, logits[0].astype(jnp.float32),
                                          (0, 0))
      return rows, model.rollback(cache, end)
    return run

  return jax.lax.switch(bucket_index(end - start, buckets),
                        [branch(b) for b in buckets], cache)


def score_pending(model: DecodingModel, cache: Cache, seq: Sequence,
                  start: jax.Array,
                  buckets: tuple[int, ...]) -> tuple[jax.Array, Cache]:
  """Scores buf[start:length] in one call (see ``score_window``)."""
  return score_window(model, cache, seq.buf, start, seq.length, buckets)
