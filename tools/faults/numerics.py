"""Numerics: hostile logits never put a NaN into a distribution.

Two levels:

* ``process_logits`` on hand-made rows (NaN, ±inf, all −inf, all NaN, huge
  finite values) at temperatures 0, 1e-30, 1e-6, 1e-4, 1 and top-P 1e-6,
  0.5, 1: the scaled and raw distributions must be finite, non-negative and
  sum to 1, and each row's documented behaviour must hold.
* Whole decodes of every registered method on toy bigram models whose
  logit tables hold NaN, +inf and all −inf rows: every distribution that
  reaches ``sampling.sample`` (draft distributions, targets π, residuals) is
  checked on the device with ``jax.debug.callback``, and the output tokens
  and counters must be valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

VOCAB = 6
EOS = 5
TEMPERATURES = (0.0, 1e-30, 1e-6, 1e-4, 1.0)
TOP_PS = (1e-6, 0.5, 1.0)
DECODE_TEMPERATURES = (0.0, 1e-6, 1.0)
DECODE_TOP_PS = (1e-6, 1.0)
SUM_TOLERANCE = 1e-4
MAX_DECODE_LEN = 6
GAMMA = 3
NAN, INF = math.nan, math.inf

# Row name -> (logits, behaviour, check(scaled at T=1 top-P=1, raw) -> bool).
ROWS = {
    "NaN entries": ([NAN, 1.0, 0.0, NAN], "NaN entries get probability 0",
                    lambda s, r: s[0] == 0 and s[3] == 0 and r[0] == 0),
    "+inf entry": ([INF, 0.0, 0.0, 0.0], "+inf takes all the mass",
                   lambda s, r: s[0] > 0.999 and r[0] > 0.999),
    "-inf entries": ([-INF, 0.0, 1.0, -INF], "-inf entries get probability 0",
                     lambda s, r: s[0] == 0 and s[3] == 0),
    "all -inf": ([-INF] * 4, "an all -inf row becomes uniform",
                 lambda s, r: np.allclose(r, 0.25) and np.allclose(s, 0.25)),
    "all NaN": ([NAN] * 4, "an all-NaN row becomes uniform",
                lambda s, r: np.allclose(r, 0.25)),
    "NaN, +inf, -inf": ([NAN, INF, -INF, 0.0], "+inf wins; NaN/-inf get 0",
                        lambda s, r: s[1] > 0.999 and s[0] == 0),
    "two +inf": ([INF, INF, 0.0, 0.0], "mass split between the +inf entries",
                 lambda s, r: abs(s[0] - 0.5) < 1e-3 and abs(s[1] - 0.5) < 1e-3),
    "huge finite": ([3e38, -3e38, 0.0, 0.0], "no overflow: the max wins",
                    lambda s, r: s[0] > 0.999),
}


@dataclasses.dataclass(frozen=True)
class RowOutcome:
  """``process_logits`` on one hostile row over every (T, top-P).

  Attributes:
    row: row name.
    behaviour: what happens (documented).
    combos: (T, top-P) combinations tried.
    distributions_ok: combinations whose scaled and raw outputs are finite,
      non-negative and sum to 1.
    behaviour_ok: the documented behaviour holds at T = 1, top-P = 1.
    greedy_ok: at T = 0 the output is one-hot; at top-P = 1e-6 it keeps
      only the most likely tokens (all of them when tied).
  """
  row: str
  behaviour: str
  combos: int
  distributions_ok: int
  behaviour_ok: bool
  greedy_ok: bool

  @property
  def passed(self) -> bool:
    return (self.distributions_ok == self.combos and self.behaviour_ok
            and self.greedy_ok)


def _is_distribution(p: np.ndarray) -> bool:
  return bool(np.all(np.isfinite(p)) and np.all(p >= 0)
              and abs(float(np.sum(p)) - 1.0) < SUM_TOLERANCE)


def _one_hot(p: np.ndarray) -> bool:
  return bool(np.sum(p > 0) == 1 and abs(float(np.max(p)) - 1) < 1e-6)


def check_rows() -> list[RowOutcome]:
  """``process_logits`` on every row of ``ROWS``."""
  from harness.decoding import sampling  # pylint: disable=g-import-not-at-top
  process = jax.jit(sampling.process_logits)  # One compile for every row.
  out = []
  for name, (logits, behaviour, check) in ROWS.items():
    row = jnp.asarray(logits, jnp.float32)
    ok = 0
    greedy = True
    for t in TEMPERATURES:
      full, _ = process(row, jnp.float32(t), jnp.float32(1))
      full = np.asarray(full, np.float64)
      for top_p in TOP_PS:
        s, r = (np.asarray(x, np.float64) for x in process(
            row, jnp.float32(t), jnp.float32(top_p)))
        ok += _is_distribution(s) and _is_distribution(r)
        if t == 0.0:
          greedy &= _one_hot(s)
        if top_p == TOP_PS[0]:
          greedy &= bool(np.all(full[s > 0] == np.max(full)))
    s, r = (np.asarray(x, np.float64) for x in process(
        row, jnp.float32(1.0), jnp.float32(1.0)))
    out.append(RowOutcome(name, behaviour, len(TEMPERATURES) * len(TOP_PS),
                          ok, bool(check(s, r)), greedy))
  return out


# --- Whole decodes ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecodeOutcome:
  """Every decode of one method on the hostile toy models.

  Attributes:
    method: method name.
    decodes: decodes run.
    bad_distributions: distributions reaching ``sample`` that were not
      finite, non-negative with positive mass.
    bad_outputs: decodes with a token outside the vocabulary, a NaN counter
      or a wrong length.
    error: an exception raised, if any.
  """
  method: str
  decodes: int
  bad_distributions: int
  bad_outputs: int
  error: str = ""

  @property
  def passed(self) -> bool:
    return not (self.bad_distributions or self.bad_outputs or self.error)


def hostile_models():
  """(name, drafter, verifier) toy pairs with poisoned logit tables."""
  from harness.models.toy import BigramLM  # pylint: disable=g-import-not-at-top
  base = np.asarray(jax.random.normal(jax.random.key(0), (VOCAB, VOCAB)))
  nan_drafter = base.copy()
  nan_drafter[:, 1] = NAN
  nan_drafter[2] = NAN
  inf_verifier = base.copy() * 0.5
  inf_verifier[:, 3] = INF
  inf_verifier[4] = -INF
  dead_verifier = base.copy()
  dead_verifier[1:4] = -INF
  toy = lambda t: BigramLM(jnp.asarray(t, jnp.float32), eos_id=EOS)
  return [("NaN drafter", toy(nan_drafter), toy(base)),
          ("inf / -inf verifier", toy(base), toy(inf_verifier)),
          ("all -inf rows in both", toy(dead_verifier), toy(dead_verifier))]


class _Monitor:
  """Counts bad distributions passed to ``sample`` (host callback)."""

  def __init__(self):
    self.bad = 0
    self.seen = 0

  def reset(self) -> None:
    self.bad = self.seen = 0

  def record(self, probs) -> None:
    p = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    self.seen += p.shape[0]
    finite = np.all(np.isfinite(p), -1) & np.all(p >= 0, -1)
    self.bad += int(np.sum(~finite | (np.sum(p, -1) <= 0)))


@contextlib.contextmanager
def monitored_sample(monitor: _Monitor):
  """Routes every ``sample`` call of the decoders through ``monitor``.

  Compiled programs are dropped on entry and exit (``jax.clear_caches`` and
  ``decoding.clear_cache``), so that the patched ``sample`` is traced in.
  """
  from harness import decoding  # pylint: disable=g-import-not-at-top
  from harness.decoding import gen_spec  # pylint: disable=g-import-not-at-top
  from harness.decoding import sampling  # pylint: disable=g-import-not-at-top
  original = sampling.sample

  def sample(key, probs):
    jax.debug.callback(monitor.record, probs)
    return original(key, probs)

  sampling.sample = gen_spec.sample = sample
  jax.clear_caches()
  decoding.clear_cache()
  try:
    yield
  finally:
    sampling.sample = gen_spec.sample = original
    jax.clear_caches()
    decoding.clear_cache()


def _output_ok(out, vocab: int) -> bool:
  tokens = np.asarray(out.tokens)
  n = int(out.num_tokens)
  stats_ok = all(np.all(np.isfinite(np.asarray(v, np.float64)))
                 for v in out.stats.values())
  return bool(0 < n <= MAX_DECODE_LEN and np.all(tokens[:n] >= 0)
              and np.all(tokens[:n] < vocab) and stats_ok)


def _alpha(spec) -> float:
  lo, hi = spec.valid_alpha()
  return float(min(max(0.5, lo), hi)) if math.isfinite(lo) else 0.0


def check_decodes(methods: list[str] | None = None,
                  log=print) -> list[DecodeOutcome]:
  """Every method × hostile pair × T × top-P (one seed each)."""
  from harness import decoding  # pylint: disable=g-import-not-at-top
  names = methods or sorted(decoding.METHODS)
  pairs = hostile_models()
  prompt = np.asarray([0, 2], np.int32)
  monitor = _Monitor()
  out = []
  with monitored_sample(monitor):
    for name in names:
      monitor.reset()
      outcome = _decode_method(decoding, name, pairs, prompt, monitor)
      out.append(outcome)
      log(f"numerics: {'ok  ' if outcome.passed else 'FAIL'} {name}: "
          f"{outcome.decodes} decodes, {monitor.seen} distributions sampled, "
          f"{monitor.bad} bad, {outcome.bad_outputs} bad outputs "
          f"{outcome.error}")
  return out


def _decode_method(decoding, name, pairs, prompt, monitor) -> DecodeOutcome:
  spec = decoding.METHODS[name]
  decodes = bad_outputs = 0
  error = ""
  try:
    for _, drafter, verifier in pairs:
      for t in DECODE_TEMPERATURES:
        for top_p in DECODE_TOP_PS:
          result = jax.block_until_ready(decoding.decode(
              name, drafter, verifier, prompt, gamma=GAMMA,
              alpha=_alpha(spec), temperature=t, top_p=top_p,
              max_decode_len=MAX_DECODE_LEN, rng=jax.random.key(decodes)))
          decodes += 1
          bad_outputs += not _output_ok(result, VOCAB)
  except Exception as err:  # pylint: disable=broad-except
    error = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
  return DecodeOutcome(name, decodes, monitor.bad, bad_outputs, error)
