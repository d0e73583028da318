"""Method registry and the public ``decode`` entry point.

Every method is one jitted program: ``(drafter, verifier, prompt, knobs,
rng) -> DecodeOutput`` with the models passed as pytrees (weights traced),
α / T / top-P traced, and only the method name, γ, the length limit, the
prompt bucket and the method options static. A sweep over α, T or top-P
therefore compiles each (method, γ) once; ``trace_count`` counts compiles.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from harness.decoding import state as st
from harness.decoding import targets

# Smallest prompt bucket; prompts are padded to a power of two ≥ this so that
# prompt length changes do not recompile.
MIN_PROMPT_BUCKET = 8


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """A decoding method.

  Attributes:
    name: registry name.
    fn: loop function (drafter, verifier, prompt, prompt_len, knobs, rng, *,
      gamma, max_decode_len, size, **options) -> DecodeOutput.
    rule: name of the target rule in ``targets.RULES`` whose α range applies
      (None: α is validated by ``alpha_range``).
    alpha_range: closed α range when ``rule`` is None.
    defaults: default method options.
    option_choices: allowed values of string-valued options.
    description: one line for ``python -m harness list``.
    scratch: optional (gamma, options, drafter) -> buffer room the method
      needs beyond the prompt and the output (default: from γ and
      max_small_run).
    check: optional (options, drafter) -> None, raising ValueError for bad
      method options or drafters.
    multi_drafter: whether ``drafter`` may be a tuple of drafters.
  """
  name: str
  fn: Callable[..., st.DecodeOutput]
  rule: str | None
  alpha_range: tuple[float, float] = (-math.inf, math.inf)
  defaults: tuple[tuple[str, Any], ...] = ()
  option_choices: tuple[tuple[str, tuple[Any, ...]], ...] = ()
  description: str = ""
  scratch: Callable[..., int] | None = None
  check: Callable[..., None] | None = None
  multi_drafter: bool = False

  def valid_alpha(self, options: dict[str, Any]) -> tuple[float, float]:
    if self.rule is None:
      return self.alpha_range
    spec = targets.RULES[self.rule]
    return spec.alpha_min, spec.alpha_max


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
  if spec.name in METHODS:
    raise ValueError(f"method {spec.name!r} is registered twice")
  METHODS[spec.name] = spec
  return spec


_TRACE_COUNTS: collections.Counter = collections.Counter()


def trace_count(method: str, gamma: int | None = None) -> int:
  """Number of times (method[, γ]) has been traced, i.e. compiled."""
  return sum(n for (m, g, *_), n in _TRACE_COUNTS.items()
             if m == method and (gamma is None or g == gamma))


def _buffer_size(prompt_bucket: int, max_decode_len: int, gamma: int,
                 options: dict[str, Any]) -> int:
  # Room for the decoder prompt, the output and the widest scratch window.
  pending = int(options.get("max_small_run", 0)) + 1
  window = max(gamma + 1, 2, 1 << max(pending - 1, 0).bit_length())
  return prompt_bucket + max_decode_len + window + 1


def _decode_impl(drafter, verifier, prompt, prompt_len, alpha, temperature,
                 top_p, rng, *, method, gamma, max_decode_len, options):
  _TRACE_COUNTS[(method, gamma, max_decode_len, prompt.shape[0], options)] += 1
  spec = METHODS[method]
  knobs = st.Knobs(alpha=alpha, temperature=temperature, top_p=top_p)
  if spec.scratch is not None:
    size = (prompt.shape[0] + max_decode_len
            + spec.scratch(gamma, dict(options), drafter))
  else:
    size = _buffer_size(prompt.shape[0], max_decode_len, gamma, dict(options))
  return spec.fn(drafter, verifier, prompt, prompt_len, knobs, rng,
                 gamma=gamma, max_decode_len=max_decode_len, size=size,
                 **dict(options))


_STATIC = ("method", "gamma", "max_decode_len", "options")
_decode_jit = jax.jit(_decode_impl, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _decode_many_jit(drafter, verifier, prompt, prompt_len, alpha,
                     temperature, top_p, rngs, *, method, gamma,
                     max_decode_len, options):
  fn = functools.partial(_decode_impl, method=method, gamma=gamma,
                         max_decode_len=max_decode_len, options=options)
  return jax.vmap(fn, in_axes=(None,) * 7 + (0,))(
      drafter, verifier, prompt, prompt_len, alpha, temperature, top_p, rngs)


def prompt_bucket(n: int) -> int:
  """Smallest power of two ≥ max(n, MIN_PROMPT_BUCKET)."""
  return max(MIN_PROMPT_BUCKET, 1 << (max(n, 1) - 1).bit_length())


def _check_range(name: str, value: float, lo: float, hi: float, what: str):
  if not (lo <= value <= hi) or math.isnan(value):
    raise ValueError(f"{name}={value!r} is outside {what} range [{lo}, {hi}]")


def validate(method: str, drafter, verifier, prompt, *, gamma, alpha,
             temperature, top_p, max_decode_len,
             options: dict[str, Any]) -> dict[str, Any]:
  """Checks every argument before tracing; returns the full option dict.

  Raises:
    ValueError naming the offending argument.
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r} is unknown; known: {sorted(METHODS)}")
  spec = METHODS[method]
  if isinstance(gamma, bool) or not isinstance(gamma, (int, np.integer)) \
      or gamma < 1:
    raise ValueError(f"gamma={gamma!r} must be an integer ≥ 1")
  if not isinstance(max_decode_len, (int, np.integer)) or max_decode_len < 1:
    raise ValueError(f"max_decode_len={max_decode_len!r} must be an int ≥ 1")
  if not temperature >= 0 or not math.isfinite(temperature):
    raise ValueError(f"temperature={temperature!r} must be finite and ≥ 0")
  if not 0 < top_p <= 1:
    raise ValueError(f"top_p={top_p!r} must be in (0, 1]")
  unknown = set(options) - {k for k, _ in spec.defaults}
  if unknown:
    raise ValueError(f"method option(s) {sorted(unknown)} unknown for "
                     f"{method!r}; known: {[k for k, _ in spec.defaults]}")
  full = dict(spec.defaults, **options)
  for key, choices in spec.option_choices:
    if full[key] not in choices:
      raise ValueError(f"{key}={full[key]!r} for {method!r} must be one of "
                       f"{list(choices)}")
  for key in ("max_small_run",):
    if key in full and (not isinstance(full[key], (int, np.integer))
                        or isinstance(full[key], bool) or full[key] < 1):
      raise ValueError(f"{key}={full[key]!r} must be an integer ≥ 1")
  if "rollback_threshold" in full and not full["rollback_threshold"] >= 0:
    raise ValueError(f"rollback_threshold={full['rollback_threshold']!r} "
                     "must be ≥ 0")
  lo, hi = spec.valid_alpha(full)
  _check_range("alpha", float(alpha), lo, hi, f"{method}'s")
  drafters = drafter if isinstance(drafter, (tuple, list)) else (drafter,)
  if len(drafters) != 1 and not spec.multi_drafter:
    raise ValueError(f"drafter: {method!r} takes one drafter, got "
                     f"{len(drafters)}")
  for d in drafters:
    if d.vocab_size != verifier.vocab_size:
      raise ValueError(f"drafter vocab_size={d.vocab_size} differs from "
                       f"verifier vocab_size={verifier.vocab_size}")
    d_tok = getattr(d, "tokenizer_id", verifier.tokenizer_id)
    if d_tok != verifier.tokenizer_id:
      raise ValueError(f"drafter tokenizer {d_tok!r} differs from verifier "
                       f"tokenizer {verifier.tokenizer_id!r}")
  if spec.check is not None:
    spec.check(full, drafter)
  prompt = np.asarray(prompt)
  if prompt.ndim != 1 or prompt.size == 0:
    raise ValueError(f"prompt must be a non-empty 1-D int array, got shape "
                     f"{prompt.shape}")
  if not np.issubdtype(prompt.dtype, np.integer):
    raise ValueError(f"prompt dtype {prompt.dtype} must be an integer type")
  if prompt.min() < 0 or prompt.max() >= verifier.vocab_size:
    raise ValueError(f"prompt ids must lie in [0, {verifier.vocab_size})")
  return full


def _prepare(method, drafter, verifier, prompt, gamma, alpha, temperature,
             top_p, max_decode_len, options):
  full = validate(method, drafter, verifier, prompt, gamma=gamma, alpha=alpha,
                  temperature=temperature, top_p=top_p,
                  max_decode_len=max_decode_len, options=options)
  prompt = np.asarray(prompt, np.int32)
  padded = np.zeros((prompt_bucket(prompt.size),), np.int32)
  padded[:prompt.size] = prompt
  args = (drafter, verifier, jnp.asarray(padded),
          jnp.asarray(prompt.size, jnp.int32),
          jnp.asarray(alpha, jnp.float32),
          jnp.asarray(temperature, jnp.float32),
          jnp.asarray(top_p, jnp.float32))
  static = dict(method=method, gamma=int(gamma),
                max_decode_len=int(max_decode_len),
                options=tuple(sorted(full.items())))
  return args, static


def decode(method: str, drafter, verifier, prompt, *, gamma: int = 5,
           alpha: float = 0.0, temperature: float = 1.0, top_p: float = 1.0,
           max_decode_len: int = 64, rng=None,
           **method_options) -> st.DecodeOutput:
  """Decodes one prompt (batch size 1) with the named method.

  Args:
    method: a name in ``METHODS``.
    drafter: small model (a ``DecodingModel`` pytree).
    verifier: large model (a ``DecodingModel`` pytree).
    prompt: [P] int array (encoder input for encoder-decoders).
    gamma: block size γ ≥ 1 (draft tokens per verifier call).
    alpha: lenience α, within the method's range.
    temperature: T ≥ 0; 0 is greedy.
    top_p: nucleus mass in (0, 1]; 1 is no truncation.
    max_decode_len: maximum number of generated tokens.
    rng: PRNG key (default ``jax.random.key(0)``).
    **method_options: static, method-specific options (see ``METHODS``).

  Returns:
    A ``DecodeOutput`` (device arrays; call ``jax.block_until_ready`` to time).
  """
  args, static = _prepare(method, drafter, verifier, prompt, gamma, alpha,
                          temperature, top_p, max_decode_len, method_options)
  rng = jax.random.key(0) if rng is None else rng
  return _decode_jit(*args, rng, **static)


def decode_many(method: str, drafter, verifier, prompt, rngs, *,
                gamma: int = 5, alpha: float = 0.0, temperature: float = 1.0,
                top_p: float = 1.0, max_decode_len: int = 64,
                **method_options) -> st.DecodeOutput:
  """``decode`` vmapped over a batch of PRNG keys [N] (one prompt).

  For statistics over many seeded samples (tests, quality-only runs); the
  outputs gain a leading [N] axis. Not for latency measurement.
  """
  args, static = _prepare(method, drafter, verifier, prompt, gamma, alpha,
                          temperature, top_p, max_decode_len, method_options)
  return _decode_many_jit(*args, rngs, **static)
