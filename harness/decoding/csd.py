"""CS Drafting (Chen et al., NeurIPS 2024): vertical and horizontal cascades
of drafters, with Max-Gram at the bottom, reviewed losslessly by the target.

Levels: 0 is the target (the verifier), 1..n the neural drafters from
largest to smallest, n+1 Max-Gram. The k-matrix (code form of the official
repository; docs/algorithms.md#cs-drafting) has one row per reviewer level
r = 0..n and one column per draft level c + 1 = 1..n+1; row r uses columns
c ≥ r. To build
the draft that level r reviews, the levels below it take turns, largest
first (horizontal cascade): level c + 1 keeps adding tokens until the draft
holds at least K[r][r] + … + K[r][c] tokens. A neural level's tokens are
themselves the output of its own review of a draft built from row c + 1
(vertical cascade); Max-Gram proposes ``mag_len`` tokens per call. A row of
zeros makes a level generate one token per call (autoregressively).

Every review is GenSpecSample (``gen_spec.py``) over the draft with the
distributions the draft tokens were sampled from (one-hot for Max-Gram; the
reviewing level's target π for neural levels). Between drafters the review
is lenient: π is the lossy rule with lenience l = 1 / (1 - α), i.e. accept
y w.p. min(1, l·p(y)/q(y)) (greedy: keep y iff it is the reviewer's argmax or
p_raw(y) > q_raw(y)/l, the official rule). The target reviews with π = p, so
the output is the target's distribution (its greedy output at T = 0).

The whole recursion is unrolled at trace time into nested ``lax.while_loop``s
over one state; all drafts live in the scratch area of the token buffer,
with their distributions in ``qbuf`` (rows indexed from the committed
length). Each level's cache tracks ``valid``: the prefix of the buffer it
holds; a review scores the buffer from there in one bucketed call.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import flax.struct
import jax
import jax.numpy as jnp

from harness.decoding import maxgram
from harness.decoding import sampling
from harness.decoding import state as st
from harness.decoding import targets
from harness.decoding.gen_spec import gen_spec_sample
from harness.decoding.protocol import DecodingModel

# Tokens Max-Gram proposes per call (``_MAG_GENERATION`` in the official code).
DEFAULT_MAG_LEN = 10


class Mode(enum.StrEnum):
  """CS Drafting's cascades: both, or one of the two (ablations)."""
  FULL = "full"
  VERTICAL = "vertical"
  HORIZONTAL = "horizontal"


def default_k_matrix(num_neural: int, mode: str) -> tuple[tuple[int, ...], ...]:
  """Default k-matrices (official configurations).

  See docs/algorithms.md#cs-drafting.

  One neural drafter: full ((5, 10), (0, 10)) as the repository's example;
  two: ((5, 14, 10), (0, 1, 10), (0, 0, 10)) as its FLAN-T5 setting. The
  vertical ablation keeps only the next lower level in each row; the
  horizontal one keeps row 0 and lets neural drafters decode on their own.
  """
  if num_neural == 1:
    full = ((5, 10), (0, 10))
  elif num_neural == 2:
    full = ((5, 14, 10), (0, 1, 10), (0, 0, 10))
  else:
    size = num_neural + 1
    full = tuple(tuple(0 if c < r else (5 if c == r else 10)
                       for c in range(size)) for r in range(size))
  size = len(full)
  if mode == Mode.VERTICAL:
    return tuple(tuple(full[r][c] if c == r else 0 for c in range(size))
                 for r in range(size))
  if mode == Mode.HORIZONTAL:
    return tuple(full[0] if r == 0 else (0,) * size for r in range(size))
  return full


def check_k_matrix(k_matrix, num_neural: int) -> None:
  """Raises ValueError unless k_matrix is (n+1)×(n+1), upper triangular, ≥ 0."""
  size = num_neural + 1
  ok = (isinstance(k_matrix, tuple) and len(k_matrix) == size and
        all(isinstance(row, tuple) and len(row) == size for row in k_matrix))
  if not ok:
    raise ValueError(f"k_matrix={k_matrix!r} must be a {size}x{size} tuple of "
                     f"tuples for {num_neural} neural drafter(s) + Max-Gram")
  for r, row in enumerate(k_matrix):
    for c, k in enumerate(row):
      if not isinstance(k, int) or k < 0 or (c < r and k):
        raise ValueError(f"k_matrix[{r}][{c}]={k!r}: entries must be ints "
                         "≥ 0, and 0 below the diagonal")


@dataclasses.dataclass(frozen=True)
class Plan:
  """Static shape of the recursion.

  Attributes:
    k_matrix: the (n+1)×(n+1) k-matrix (see the module docstring).
    mag_len: tokens per Max-Gram proposal.
    bounds: max draft length reviewed by each level 0..n.
    window: max tokens one review call scores.
    buckets: power-of-two call widths up to ``window``.
  """
  k_matrix: tuple[tuple[int, ...], ...]
  mag_len: int

  @property
  def num_neural(self) -> int:
    return len(self.k_matrix) - 1

  @functools.cached_property
  def bounds(self) -> tuple[int, ...]:
    out: dict[int, int] = {}
    for r in reversed(range(len(self.k_matrix))):
      bound, cum = 0, 0
      for c in range(r, len(self.k_matrix)):
        if self.k_matrix[r][c] == 0:
          continue
        cum += self.k_matrix[r][c]
        level = c + 1
        step = self.mag_len if level > self.num_neural else out[level] + 1
        bound = max(bound, cum - 1 + step)
      out[r] = bound
    return tuple(out[r] for r in range(len(self.k_matrix)))

  @property
  def window(self) -> int:
    # A review scores a gap of already committed tokens (at most two top-level
    # drafts) plus its own draft.
    return 2 * self.bounds[0] + max(self.bounds) + 4

  @property
  def buckets(self) -> tuple[int, ...]:
    return tuple(1 << i for i in range((self.window - 1).bit_length() + 1))

  @property
  def scratch(self) -> int:
    return self.buckets[-1] + 2 * self.bounds[0] + self.mag_len + 4


def csd_review_target(q, p, q_raw, p_raw, alpha, greedy):
  """Lenient review between drafters, l = 1 / (1 - α).

  Sampling: lossy rule (accept min(1, l·p/q), residual ∝ max(0, p - q)).
  Greedy: keep the draft y = argmax q iff it is argmax p or p_raw(y) >
  (1 - α)·q_raw(y) (the official CS Drafting rule); otherwise π = p.
  """
  lenient, defer = targets.lossy_one_target(q, p, q_raw, p_raw, alpha,
                                            jnp.asarray(False))
  y = sampling.argmax(q)
  take = lambda a: jnp.take_along_axis(a, y[..., None], -1)[..., 0]
  keep = (sampling.argmax(p) == y) | (take(p_raw) > (1.0 - alpha) * take(q_raw))
  greedy_pi = jnp.where(keep[..., None], q, p)
  pi = jnp.where(greedy, greedy_pi, lenient)
  return pi, defer


@flax.struct.dataclass
class CSDState:
  """Loop state of CS Drafting.

  Attributes:
    seq: committed sequence (m tokens); drafts live in buf[m:].
    caches: tuple of caches of levels 0..n.
    valid: [n+1] int32, buffer prefix each level's cache holds.
    qbuf: [R, V] scaled distributions of scratch tokens (row i = buf[m + i]).
    qraw: [R, V] T = 1 distributions of the same tokens.
    rng: PRNG key.
    stats: counters.
  """
  seq: st.Sequence
  caches: tuple
  valid: jax.Array
  qbuf: jax.Array
  qraw: jax.Array
  rng: jax.Array
  stats: dict


@dataclasses.dataclass(frozen=True)
class _Ctx:
  """What every recursive step needs (static structure + traced values)."""
  plan: Plan
  models: tuple  # levels 0..n
  mag: maxgram.MaxGram
  prompt: jax.Array
  prompt_len: jax.Array
  knobs: st.Knobs


def _write_rows(s: CSDState, at: jax.Array, q, q_raw) -> CSDState:
  """Writes distribution rows [K, V] for buffer positions at.. (absolute)."""
  row = at - s.seq.length
  return s.replace(qbuf=jax.lax.dynamic_update_slice(s.qbuf, q, (row, 0)),
                   qraw=jax.lax.dynamic_update_slice(s.qraw, q_raw, (row, 0)))


def _mag_step(ctx: _Ctx, b, n, s: CSDState):
  """Max-Gram proposes mag_len tokens at buf[b + n]."""
  count = ctx.plan.mag_len
  toks = maxgram.propose(ctx.mag, ctx.prompt, ctx.prompt_len, s.seq.buf,
                         b + n, count)
  buf = jax.lax.dynamic_update_slice(s.seq.buf, toks, (b + n,))
  onehot = jax.nn.one_hot(toks, s.qbuf.shape[-1], dtype=jnp.float32)
  s = _write_rows(s.replace(seq=s.seq.replace(buf=buf)), b + n, onehot,
                  onehot)
  s = s.replace(valid=jnp.minimum(s.valid, b + n),
                stats=st.add_stats(s.stats, mag_calls=1))
  return n + count, s


def extend(ctx: _Ctx, level: int, b, n, s: CSDState):
  """Builds the draft reviewed by ``level`` at buf[b:] (horizontal cascade)."""
  row = ctx.plan.k_matrix[level]
  cum = 0
  for col in range(level, len(row)):
    if row[col] == 0:
      continue
    cum += row[col]
    lower = col + 1
    if lower > ctx.plan.num_neural:
      body = lambda c: _mag_step(ctx, b, *c)
    else:
      body = functools.partial(_level_step, ctx, lower, b)
    n, s = jax.lax.while_loop(lambda c, cum=cum: c[0] < cum, body, (n, s))
  return n, s


def _level_step(ctx: _Ctx, level: int, b, carry):
  """Level ``level`` appends its own tokens at buf[b + n] (vertical)."""
  n, s = carry
  sub_n, s = extend(ctx, level, b + n, jnp.zeros((), jnp.int32), s)
  out, s = review(ctx, level, b + n, sub_n, s)
  return n + out, s


def review(ctx: _Ctx, level: int, b, n, s: CSDState):
  """``level`` reviews the n drafts at buf[b:b+n]; returns (tokens kept, s).

  One call scores buf[start:b+n] with start = min(valid, b - 1); rows
  predicting positions b..b+n feed GenSpecSample; the first rejected
  position gets the residual sample, or position b + n the bonus token.
  Example: drafts [u, v, w], u and v accepted -> keeps [u, v, z] (3).
  """
  model, knobs = ctx.models[level], ctx.knobs
  bound = ctx.plan.bounds[level]
  rng, acc_key, bonus_key = jax.random.split(s.rng, 3)
  start = jnp.minimum(s.valid[level], b - 1)
  end = b + n
  rows, cache = st.score_window(model, s.caches[level], s.seq.buf, start,
                                end, ctx.plan.buckets)
  rows = jax.lax.dynamic_slice(rows, (b - 1 - start, 0),
                               (bound + 1, rows.shape[-1]))
  p, p_raw = sampling.process_logits(rows, knobs.temperature, knobs.top_p)
  base = b - s.seq.length
  q = jax.lax.dynamic_slice(s.qbuf, (base, 0), (bound, s.qbuf.shape[-1]))
  q_raw = jax.lax.dynamic_slice(s.qraw, (base, 0), (bound, s.qbuf.shape[-1]))
  drafts = jax.lax.dynamic_slice(s.seq.buf, (b,), (bound,))
  if level == 0:
    pi = p[:bound]
  else:
    pi, _ = csd_review_target(q, p[:bound], q_raw, p_raw[:bound], knobs.alpha,
                              knobs.greedy)
  if bound > 0:
    k, correction, _ = gen_spec_sample(acc_key, drafts, q, pi)
    k = jnp.minimum(k, n)
  else:
    k, correction = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
  bonus = sampling.sample(bonus_key, p[n])
  token = jnp.where(k < n, correction, bonus)
  buf = s.seq.buf.at[b + k].set(token)
  # Distributions of the kept tokens, for the level above: π where a draft
  # was tested, the level's own p for the bonus token.
  idx = jnp.arange(bound + 1)[:, None]
  pi_ext = jnp.concatenate([pi, p[bound:]]) if bound else p
  kept_q = jnp.where(idx < n, pi_ext, p)
  s = s.replace(seq=s.seq.replace(buf=buf))
  s = _write_rows(s, b, kept_q, p_raw)
  valid = jnp.minimum(s.valid, b + k).at[level].set(b + k)
  caches = tuple(cache if i == level else c for i, c in enumerate(s.caches))
  stats = s.stats
  stats["level_calls"] = stats["level_calls"].at[level].add(1)
  stats["level_positions"] = stats["level_positions"].at[level].add(end - start)
  if level == 0:
    stats = st.add_stats(stats, verifier_calls=1,
                         verifier_positions=end - start, drafts_proposed=n,
                         drafts_evaluated=jnp.minimum(k + 1, n),
                         drafts_accepted=k, rejections=k < n)
  else:
    stats = st.add_stats(stats, drafter_steps=1)
  return k + 1, s.replace(caches=caches, valid=valid, rng=rng, stats=stats)


CSD_STATS = ("iterations", "drafter_steps", "verifier_calls",
             "verifier_positions", "drafts_proposed", "drafts_evaluated",
             "drafts_accepted", "rejections", "emitted_drafts",
             "emitted_corrections", "emitted_bonus", "mag_calls")


def _init(ctx: _Ctx, size: int, rng: jax.Array,
          stop_sequences: st.StopSequences) -> CSDState:
  target = ctx.models[0]
  start, start_len = target.decoder_prompt(ctx.prompt, ctx.prompt_len)
  seq = st.new_sequence(start, start_len, size, stop_sequences)
  caches = tuple(m.prefill(ctx.prompt, ctx.prompt_len, size)
                 for m in ctx.models)
  valid = jnp.stack([m.cache_length(c) for m, c in zip(ctx.models, caches)])
  plan = ctx.plan
  rows = plan.bounds[0] + max(max(plan.bounds), plan.mag_len) + 2
  zeros = jnp.zeros((rows, target.vocab_size), jnp.float32)
  stats = st.zero_stats(CSD_STATS)
  levels = ctx.plan.num_neural + 1
  stats["level_calls"] = jnp.zeros((levels,), jnp.int32)
  stats["level_positions"] = jnp.zeros((levels,), jnp.int32)
  return CSDState(seq=seq, caches=caches, valid=valid.astype(jnp.int32),
                  qbuf=zeros, qraw=zeros, rng=rng, stats=stats)


def _top_step(ctx: _Ctx, max_decode_len: int, s: CSDState) -> CSDState:
  m = s.seq.length
  zero = jnp.zeros((), jnp.int32)
  n, s = extend(ctx, 0, m, zero, s)
  kept, s = review(ctx, 0, m, n, s)
  window = jax.lax.dynamic_slice(s.seq.buf, (m,), (ctx.plan.bounds[0] + 1,))
  seq, emitted = st.emit(s.seq, window, kept, ctx.models[0].eos_id,
                         max_decode_len)
  k = kept - 1
  full = emitted == kept
  stats = st.add_stats(s.stats, iterations=1,
                       emitted_drafts=jnp.minimum(k, emitted),
                       emitted_corrections=full & (k < n),
                       emitted_bonus=full & (k == n))
  valid = jnp.minimum(s.valid, seq.length - 1)
  return s.replace(seq=seq, valid=valid, stats=stats)


def split_drafters(drafter) -> tuple[tuple, maxgram.MaxGram | None]:
  """Splits the ``drafter`` argument into neural levels and Max-Gram."""
  items = tuple(drafter) if isinstance(drafter, (tuple, list)) else (drafter,)
  mags = [d for d in items if isinstance(d, maxgram.MaxGram)]
  neural = tuple(d for d in items if not isinstance(d, maxgram.MaxGram))
  return neural, (mags[0] if mags else None)


def decode(drafter, verifier: DecodingModel, prompt: jax.Array,
           prompt_len: jax.Array, knobs: st.Knobs, variant: jax.Array,
           rng: jax.Array, *, gamma: int, max_decode_len: int, size: int,
           stop_sequences: st.StopSequences = (), mode: str = Mode.FULL.value,
           k_matrix=None, mag_len: int = DEFAULT_MAG_LEN) -> st.DecodeOutput:
  """Methods ``cs_drafting``, ``cs_drafting_vertical``, ``cs_drafting_horizontal``.

  ``drafter`` is one neural drafter or a tuple (largest first), optionally
  ending with a ``MaxGram``; without one, Max-Gram falls back to repeating
  the last token when no suffix matches. Other arguments as in
  ``speculative.decode`` (γ and ``variant`` are unused; the k-matrix and
  ``mag_len`` shape the recursion statically).
  """
  del gamma, variant
  neural, mag = split_drafters(drafter)
  if mag is None:
    mag = maxgram.MaxGram.identity(verifier.vocab_size)
  k_matrix = k_matrix or default_k_matrix(len(neural), mode)
  plan = Plan(k_matrix=k_matrix, mag_len=mag_len)
  ctx = _Ctx(plan=plan, models=(verifier,) + neural, mag=mag, prompt=prompt,
             prompt_len=prompt_len, knobs=knobs)
  s = _init(ctx, size, rng, stop_sequences)
  s = jax.lax.while_loop(lambda s: ~s.seq.done,
                         functools.partial(_top_step, ctx, max_decode_len), s)
  return st.output(s.seq, s.stats, max_decode_len)
