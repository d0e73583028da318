"""Method registry and argument checks.

A method is a loop function plus how it maps onto a compiled program: the
*family* of methods sharing one program, the traced *variant* index that
selects the method inside it, and which options and whether γ are static
(shape the program). ``program.compile`` turns a method into a ``Program``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

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
    fn: loop function (drafter, verifier, prompt [P], prompt_len, knobs,
      variant, rng, *, gamma, max_decode_len, size, stop_sequences,
      **static options) -> DecodeOutput; ``variant`` is a traced int32.
    rule: name of the target rule in ``targets.RULES`` whose α range applies
      (None: α is validated by ``alpha_range``).
    alpha_range: closed α range when ``rule`` is None.
    defaults: default method options.
    option_choices: allowed values of string-valued options.
    description: one line for ``python -m harness list``.
    scratch: optional (gamma, options, drafter) -> buffer room the method
      needs beyond the decoder prompt and the output (default:
      ``default_scratch``).
    check: optional (options, drafter) -> None, raising ValueError for bad
      method options or drafters.
    multi_drafter: whether ``drafter`` may be a tuple of drafters.
    family: name of the compiled program shared by several methods (default:
      the method's own name). Members of one family share ``fn``.
    variant: optional (options) -> int, the traced branch index of this
      method (and its options) inside its family's program (default 0).
    static_options: names of the options that shape the compiled program
      (None: all of them); the others only select the variant.
    uses_gamma: whether γ shapes the program (False: one program for all γ).
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
  family: str | None = None
  variant: Callable[[dict[str, Any]], int] | None = None
  static_options: tuple[str, ...] | None = None
  uses_gamma: bool = True

  def valid_alpha(self) -> tuple[float, float]:
    """The closed range of α this method accepts."""
    if self.rule is None:
      return self.alpha_range
    spec = targets.RULES[self.rule]
    return spec.alpha_min, spec.alpha_max

  @property
  def family_name(self) -> str:
    return self.family or self.name

  def variant_index(self, options: dict[str, Any]) -> int:
    return 0 if self.variant is None else int(self.variant(options))

  def compile_options(self, options: dict[str, Any]) -> tuple:
    """The options that shape the program, as a sorted hashable tuple."""
    keep = options if self.static_options is None else {
        k: options[k] for k in self.static_options}
    return tuple(sorted(keep.items()))


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
  """Adds a method to ``METHODS``; raises ValueError on a duplicate name."""
  if spec.name in METHODS:
    raise ValueError(f"method {spec.name!r} is registered twice")
  METHODS[spec.name] = spec
  return spec


def default_scratch(gamma: int, options: dict[str, Any]) -> int:
  """Buffer room beyond prompt and output: the widest scratch window + 1.

  The window holds γ + 1 tokens of a speculative block, or the bucketed
  catch-up call of a token cascade (``max_small_run`` + 1 pending tokens).
  """
  pending = int(options.get("max_small_run", 0)) + 1
  return window_scratch(
      max(gamma + 1, 2, 1 << max(pending - 1, 0).bit_length()))


def window_scratch(window: int) -> int:
  """Buffer room beyond prompt and output for a widest scratch window of
  ``window`` tokens: the window and one position more."""
  return window + 1


def prompt_bucket(n: int) -> int:
  """Smallest power of two ≥ max(n, MIN_PROMPT_BUCKET)."""
  return max(MIN_PROMPT_BUCKET, 1 << (max(n, 1) - 1).bit_length())


def check_int(name: str, value: Any, minimum: int = 1) -> None:
  """Raises ValueError unless value is an int (not a bool) ≥ minimum."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
      or value < minimum:
    raise ValueError(f"{name}={value!r} must be an integer ≥ {minimum}")


def _check_range(name: str, value: float, lo: float, hi: float, what: str):
  if not (lo <= value <= hi) or math.isnan(value):
    raise ValueError(f"{name}={value!r} is outside {what} range [{lo}, {hi}]")


def check_stop_sequences(stop_sequences: Any,
                         vocab_size: int) -> st.StopSequences:
  """Returns stop sequences as a tuple of int tuples, or raises ValueError."""
  out = []
  for seq in stop_sequences or ():
    ids = tuple(seq) if isinstance(seq, (tuple, list)) else None
    if not ids or not all(isinstance(t, (int, np.integer))
                          and not isinstance(t, bool)
                          and 0 <= t < vocab_size for t in ids):
      raise ValueError(f"stop_sequences: {seq!r} must be a non-empty tuple of "
                       f"token ids in [0, {vocab_size})")
    out.append(tuple(int(t) for t in ids))
  return tuple(out)


def check_program(method: str, drafter, verifier, *, gamma: int,
                  max_decode_len: int, prompt_bucket: int,
                  options: dict[str, Any]) -> dict[str, Any]:
  """Checks what shapes a program (everything but prompt and α, T, top-P).

  Returns:
    The full option dict (defaults filled in).

  Raises:
    ValueError naming the offending argument.
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r} is unknown; known: {sorted(METHODS)}")
  spec = METHODS[method]
  check_int("gamma", gamma)
  check_int("max_decode_len", max_decode_len)
  check_int("prompt_bucket", prompt_bucket)
  unknown = set(options) - {k for k, _ in spec.defaults}
  if unknown:
    raise ValueError(f"method option(s) {sorted(unknown)} unknown for "
                     f"{method!r}; known: {[k for k, _ in spec.defaults]}")
  full = dict(spec.defaults, **options)
  for key, choices in spec.option_choices:
    if full[key] not in choices:
      raise ValueError(f"{key}={full[key]!r} for {method!r} must be one of "
                       f"{list(choices)}")
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
  return full


_HOST_NUMBER = (int, float, np.integer, np.floating)


def check_knobs(method: str, *, alpha, temperature, top_p) -> None:
  """Checks the traced knobs α, T and top-P against the method's ranges.

  Only host numbers are checked (a few comparisons, no device round trip);
  a tracer or a device array is passed through unchecked.

  Raises:
    ValueError naming the offending argument.
  """
  if isinstance(temperature, _HOST_NUMBER) and (
      not temperature >= 0 or not math.isfinite(temperature)):
    raise ValueError(f"temperature={temperature!r} must be finite and ≥ 0")
  if isinstance(top_p, _HOST_NUMBER) and not 0 < top_p <= 1:
    raise ValueError(f"top_p={top_p!r} must be in (0, 1]")
  if isinstance(alpha, _HOST_NUMBER):
    lo, hi = METHODS[method].valid_alpha()
    _check_range("alpha", float(alpha), lo, hi, f"{method}'s")


def check_prompt(prompt, vocab_size: int) -> np.ndarray:
  """Checks a prompt's shape, dtype and ids; returns it as int32 [n].

  Raises:
    ValueError naming the prompt.
  """
  prompt = np.asarray(prompt)
  if prompt.ndim != 1 or prompt.size == 0:
    raise ValueError(f"prompt must be a non-empty 1-D int array, got shape "
                     f"{prompt.shape}")
  if not np.issubdtype(prompt.dtype, np.integer):
    raise ValueError(f"prompt dtype {prompt.dtype} must be an integer type")
  if prompt.min() < 0 or prompt.max() >= vocab_size:
    raise ValueError(f"prompt ids must lie in [0, {vocab_size})")
  return prompt.astype(np.int32)


def check_call(method: str, verifier, prompt, *, alpha: float,
               temperature: float, top_p: float) -> np.ndarray:
  """Checks the per-call arguments; returns the prompt as an int32 array.

  Raises:
    ValueError naming the offending argument.
  """
  check_knobs(method, alpha=alpha, temperature=temperature, top_p=top_p)
  return check_prompt(prompt, verifier.vocab_size)


def validate(method: str, drafter, verifier, prompt, *, gamma, alpha,
             temperature, top_p, max_decode_len,
             options: dict[str, Any]) -> dict[str, Any]:
  """Checks every argument of ``decode`` before tracing.

  Returns:
    The full option dict (defaults filled in).

  Raises:
    ValueError naming the offending argument.
  """
  size = np.asarray(prompt).size if np.ndim(prompt) == 1 else 1
  full = check_program(method, drafter, verifier, gamma=gamma,
                       max_decode_len=max_decode_len,
                       prompt_bucket=prompt_bucket(size), options=options)
  check_call(method, verifier, prompt, alpha=alpha, temperature=temperature,
             top_p=top_p)
  return full
