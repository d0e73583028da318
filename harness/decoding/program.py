"""Compiled decoding programs: ``compile`` -> ``Program``, and ``decode``.

A ``Program`` is one ahead-of-time compiled XLA executable
(``jax.jit(...).lower(...).compile()``) plus the models and method it was
compiled for. Its static shape is (method family, γ where it matters,
prompt bucket, ``max_decode_len``, the options that shape the loop, stop
sequences, the models' architecture: pytree structure, static config and
leaf shapes/dtypes/shardings). Everything else is traced: the weights, the
prompt and its length, α, T, top-P, the PRNG key and the method's *variant*
index inside its family. So

* a sweep over α, T, top-P or weights never recompiles;
* methods of one family share one executable: every rule-based speculative
  method (``spec_decode``, the ``spec_cascade_*`` rules, both lossy
  variants, BiLD* with each discrepancy) runs the one speculative loop with
  the rule chosen by ``lax.switch``; ``autoregressive`` serves both models,
  and ``seq_cascade_chow`` all three confidences;
* methods whose loop does not depend on γ compile once for every γ.

Executables are cached for the life of the process (``clear_cache`` drops
them); ``compile_stats`` counts the distinct ones compiled and their compile
seconds; ``enable_compilation_cache`` persists them across processes.

Prompt buckets: a prompt of n tokens is padded on the host to a static
bucket (``prompt_bucket(n)``: the smallest power of two ≥ max(n, 8) for
``decode``; any size ≥ n for ``compile``), so prompts of different lengths
share a program. For decoder-only models the bucket is also the decoder
prompt, so the token buffer and KV caches hold bucket + ``max_decode_len`` +
scratch positions. For encoder–decoder models the bucket only sizes the
encoder input and the cross-attention cache; the decoder buffer and
self-attention cache hold the decoder prompt (its static length from
``jax.eval_shape`` of ``decoder_prompt``, 1 for T5) + ``max_decode_len`` +
scratch, whatever the encoder bucket.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from harness.decoding import registry
from harness.decoding import state as st
from harness.decoding.protocol import DecodingModel

_I32 = jax.ShapeDtypeStruct((), jnp.int32)
_F32 = jax.ShapeDtypeStruct((), jnp.float32)

# Traces of each program shape: (family, γ or None, max_decode_len, prompt
# bucket, static options, stop sequences) -> count.
_TRACE_COUNTS: collections.Counter = collections.Counter()
_EXECUTABLES: dict[tuple, "_Executable"] = {}
_STATS = {"programs": 0, "compile_s": 0.0}


@dataclasses.dataclass(frozen=True)
class _Executable:
  compiled: Any  # jax.stages.Compiled
  compile_s: float


def trace_count(method: str, gamma: int | None = None) -> int:
  """Times the program serving (method[, γ]) has been traced, i.e. compiled.

  Counts every trace of the method's family (shared with the other methods
  of the family); programs that do not depend on γ count for every γ.
  """
  family = registry.METHODS[method].family_name
  return sum(n for (f, g, *_), n in _TRACE_COUNTS.items()
             if f == family and (gamma is None or g in (gamma, None)))


def compile_stats() -> dict[str, Any]:
  """{"programs": distinct executables compiled, "compile_s": their total
  trace + lower + compile seconds} since process start (or the last
  ``reset_compile_stats``)."""
  return dict(_STATS)


def reset_compile_stats() -> None:
  """Zeroes ``compile_stats`` (the cache of executables is kept)."""
  _STATS.update(programs=0, compile_s=0.0)


def clear_cache() -> None:
  """Drops every cached executable (e.g. after patching traced code)."""
  _EXECUTABLES.clear()


def enable_compilation_cache(path: str | os.PathLike,
                             min_compile_time_s: float = 0.5) -> None:
  """Opt-in persistent compilation cache in directory ``path``.

  Sets ``jax_compilation_cache_dir`` so that XLA executables compiled in one
  process are read back from disk by later ones (same jax version, backend
  and program); tracing and lowering still run, compiling is skipped. Only
  programs that took at least ``min_compile_time_s`` to compile are written
  (``jax_persistent_cache_min_compile_time_secs``; tiny programs are
  cheaper to compile than to read), and entries of any size are kept
  (``jax_persistent_cache_min_entry_size_bytes = 0``). Call it before the
  first compile; the directory is created if missing. ``compile_stats``
  still counts cache hits as compiled programs (with their shorter time).
  """
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", os.fspath(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(min_compile_time_s))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _leaf_key(x) -> tuple:
  if isinstance(x, jax.Array):
    return (x.shape, x.dtype, x.aval.weak_type, x.sharding)
  x = np.asarray(x)
  return (x.shape, x.dtype)


def _architecture(model) -> tuple:
  """Hashable (pytree structure incl. static config, leaf avals/shardings)."""
  leaves, treedef = jax.tree.flatten(model)
  return treedef, tuple(_leaf_key(x) for x in leaves)


def decoder_prompt_len(verifier: DecodingModel, bucket: int) -> int:
  """Static length of the decoder prompt for a prompt bucket (no FLOPs):
  the bucket for decoder-only models, one start token for T5."""
  start, _ = jax.eval_shape(verifier.decoder_prompt,
                            jax.ShapeDtypeStruct((bucket,), jnp.int32), _I32)
  return int(start.shape[0])


def window_buffer_size(verifier: DecodingModel, *, prompt_bucket: int,
                       max_decode_len: int, window: int) -> int:
  """Token buffer / KV cache positions of a program whose widest scratch
  window holds ``window`` tokens (γ + 1 for a speculative block).

  What ``buffer_size`` gives a method with the default scratch; for code
  that allocates a cache as a decode would without naming a method (the
  cost calibration, cost probes).
  """
  return (decoder_prompt_len(verifier, prompt_bucket) + max_decode_len
          + registry.window_scratch(window))


def buffer_size(method: str, drafter, verifier: DecodingModel, *,
                prompt_bucket: int, gamma: int, max_decode_len: int,
                options: dict[str, Any]) -> int:
  """Token buffer / KV cache positions of a program (module docstring).

  Args:
    method: a registered method; options: its full option dict.
    drafter, verifier: the models.
    prompt_bucket, gamma, max_decode_len: as for ``compile``.

  Returns:
    decoder prompt length + max_decode_len + the method's scratch room.
  """
  spec = registry.METHODS[method]
  gamma = gamma if spec.uses_gamma else 1
  if spec.scratch is not None:
    scratch = spec.scratch(gamma, options, drafter)
  else:
    scratch = registry.default_scratch(gamma, options)
  return (decoder_prompt_len(verifier, prompt_bucket) + max_decode_len
          + scratch)


def _key_spec(num: int | None) -> jax.ShapeDtypeStruct:
  dtype = jax.eval_shape(lambda: jax.random.key(0)).dtype
  return jax.ShapeDtypeStruct(() if num is None else (num,), dtype)


def _as_key(rng) -> jax.Array:
  """A typed PRNG key (raw uint32 keys, as from PRNGKey, are wrapped)."""
  if rng is None:
    return jax.random.key(0)
  rng = jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  return jax.random.wrap_key_data(rng)


@dataclasses.dataclass(frozen=True)
class _Shape:
  """Everything static about a program (the executable cache key)."""
  family: str
  fn: Callable[..., st.DecodeOutput]
  gamma: int | None
  prompt_bucket: int
  max_decode_len: int
  size: int
  options: tuple
  stop_sequences: st.StopSequences
  drafter: tuple
  verifier: tuple

  @property
  def trace_key(self) -> tuple:
    return (self.family, self.gamma, self.max_decode_len, self.prompt_bucket,
            self.options, self.stop_sequences)

  def traced(self, drafter, verifier, prompt, prompt_len, alpha, temperature,
             top_p, variant, rng) -> st.DecodeOutput:
    _TRACE_COUNTS[self.trace_key] += 1
    knobs = st.Knobs(alpha=alpha, temperature=temperature, top_p=top_p)
    return self.fn(drafter, verifier, prompt, prompt_len, knobs, variant, rng,
                   gamma=self.gamma or 1, max_decode_len=self.max_decode_len,
                   size=self.size, stop_sequences=self.stop_sequences,
                   **dict(self.options))


def _executable(shape: _Shape, drafter, verifier,
                num_keys: int | None) -> _Executable:
  """The cached executable of ``shape`` (vmapped over [num_keys] keys)."""
  key = (shape, num_keys)
  if key in _EXECUTABLES:
    return _EXECUTABLES[key]
  fn = shape.traced
  if num_keys is not None:
    fn = jax.vmap(fn, in_axes=(None,) * 8 + (0,))
  specs = (jax.ShapeDtypeStruct((shape.prompt_bucket,), jnp.int32), _I32,
           _F32, _F32, _F32, _I32, _key_spec(num_keys))
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(drafter, verifier, *specs).compile()
  seconds = time.perf_counter() - start
  _STATS["programs"] += 1
  _STATS["compile_s"] += seconds
  _EXECUTABLES[key] = _Executable(compiled, seconds)
  return _EXECUTABLES[key]


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """A compiled decoding program bound to its models.

  Call it as ``program(prompt, alpha=, temperature=, top_p=, rng=)``: the
  prompt ([n] ints, n ≤ ``prompt_bucket``) is padded on the host and the
  executable runs once; nothing is traced per call. The prompt's shape and
  ids and the knobs α, T and top-P are checked on the host first (a few
  comparisons; knobs given as device arrays or tracers are not checked):
  an out-of-range value is a ValueError naming the argument, as from
  ``decode``.

  Attributes:
    method: the method name.
    gamma: block size γ.
    prompt_bucket: static prompt length P the prompt is padded to.
    max_decode_len: generation limit.
    options: the full method option dict (defaults filled in).
    stop_sequences: token-id tuples that end a decode like EOS.
    buffer_size: token buffer / KV cache positions (module docstring).
    variant: the method's traced branch index inside its family.
    drafter, verifier: the models whose weights the program is called with.
  """
  method: str
  gamma: int
  prompt_bucket: int
  max_decode_len: int
  options: dict[str, Any]
  stop_sequences: st.StopSequences
  buffer_size: int
  variant: int
  drafter: Any
  verifier: DecodingModel
  _shape: _Shape
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def _single(self) -> _Executable:
    """The single-decode executable, compiled on first use (cached)."""
    if None not in self._compiled:
      self._compiled[None] = _executable(self._shape, self.drafter,
                                         self.verifier, None)
    return self._compiled[None]

  @property
  def family(self) -> str:
    """The method family whose executable this program shares."""
    return self._shape.family

  @property
  def executable(self) -> Any:
    """The compiled ``jax.stages.Compiled`` (shared within the family)."""
    return self._single.compiled

  @property
  def compile_s(self) -> float:
    """Seconds it took to trace, lower and compile the executable."""
    return self._single.compile_s

  def _args(self, prompt, alpha, temperature, top_p) -> tuple:
    registry.check_knobs(self.method, alpha=alpha, temperature=temperature,
                         top_p=top_p)
    prompt = np.asarray(prompt)
    if prompt.ndim != 1 or not 0 < prompt.size <= self.prompt_bucket:
      raise ValueError(f"prompt: shape {prompt.shape} must be [n] with "
                       f"1 ≤ n ≤ prompt_bucket={self.prompt_bucket}")
    prompt = registry.check_prompt(prompt, self.verifier.vocab_size)
    padded = np.zeros((self.prompt_bucket,), np.int32)
    padded[:prompt.size] = prompt
    return (self.drafter, self.verifier, jnp.asarray(padded),
            jnp.asarray(prompt.size, jnp.int32),
            jnp.asarray(alpha, jnp.float32),
            jnp.asarray(temperature, jnp.float32),
            jnp.asarray(top_p, jnp.float32),
            jnp.asarray(self.variant, jnp.int32))

  def __call__(self, prompt, *, alpha: float = 0.0, temperature: float = 1.0,
               top_p: float = 1.0, rng=None) -> st.DecodeOutput:
    """Decodes one prompt [n] (batch size 1).

    Returns:
      A ``DecodeOutput`` of device arrays (call ``jax.block_until_ready`` to
      time it).
    """
    args = self._args(prompt, alpha, temperature, top_p)
    return self._single.compiled(*args, _as_key(rng))

  def many(self, prompt, rngs, *, alpha: float = 0.0,
           temperature: float = 1.0, top_p: float = 1.0) -> st.DecodeOutput:
    """The program vmapped over PRNG keys rngs [N] (one prompt).

    Compiles (once per N) a second executable; outputs gain a leading [N]
    axis. For statistics, not for latency.
    """
    rngs = _as_key(rngs)
    num = int(rngs.shape[0])
    if num not in self._compiled:
      self._compiled[num] = _executable(self._shape, self.drafter,
                                        self.verifier, num)
    args = self._args(prompt, alpha, temperature, top_p)
    return self._compiled[num].compiled(*args, rngs)


def _compile_checked(method: str, drafter, verifier, *, prompt_bucket: int,
                     gamma: int, max_decode_len: int, options: dict[str, Any],
                     stop_sequences: st.StopSequences) -> Program:
  spec = registry.METHODS[method]
  size = buffer_size(method, drafter, verifier, prompt_bucket=prompt_bucket,
                     gamma=gamma, max_decode_len=max_decode_len,
                     options=options)
  shape = _Shape(family=spec.family_name, fn=spec.fn,
                 gamma=int(gamma) if spec.uses_gamma else None,
                 prompt_bucket=int(prompt_bucket),
                 max_decode_len=int(max_decode_len), size=size,
                 options=spec.compile_options(options),
                 stop_sequences=stop_sequences,
                 drafter=_architecture(drafter),
                 verifier=_architecture(verifier))
  return Program(method=method, gamma=int(gamma),
                 prompt_bucket=int(prompt_bucket),
                 max_decode_len=int(max_decode_len), options=dict(options),
                 stop_sequences=stop_sequences, buffer_size=size,
                 variant=spec.variant_index(options), drafter=drafter,
                 verifier=verifier, _shape=shape)


def compile(  # pylint: disable=redefined-builtin
    method: str, drafter, verifier: DecodingModel, *, prompt_bucket: int,
    gamma: int, max_decode_len: int, stop_sequences=(),
    **options) -> Program:
  """Compiles (or fetches from the cache) the program of a method.

  Args:
    method: a name in ``METHODS``.
    drafter: small model (a ``DecodingModel`` pytree; CS Drafting also takes
      a tuple of drafters, optionally ending with a ``MaxGram``).
    verifier: large model (a ``DecodingModel`` pytree).
    prompt_bucket: static prompt length P; calls take prompts of ≤ P tokens.
    gamma: block size γ ≥ 1.
    max_decode_len: maximum number of generated tokens.
    stop_sequences: token-id tuples; a decode whose generated tokens end
      with one of them is done (the stop tokens are kept in the output).
    **options: method options (see ``METHODS``).

  Returns:
    The ``Program``, bound to these models. Another call with the same
    arguments and models of the same architecture reuses the executable.

  Raises:
    ValueError naming the offending argument, before anything is traced.
  """
  full = registry.check_program(method, drafter, verifier, gamma=gamma,
                                max_decode_len=max_decode_len,
                                prompt_bucket=prompt_bucket, options=options)
  stops = registry.check_stop_sequences(stop_sequences, verifier.vocab_size)
  program = _compile_checked(method, drafter, verifier,
                             prompt_bucket=prompt_bucket, gamma=gamma,
                             max_decode_len=max_decode_len, options=full,
                             stop_sequences=stops)
  _ = program.executable  # compile now, so that compile_s is known
  return program


def _checked_program(method, drafter, verifier, prompt, *, gamma, alpha,
                     temperature, top_p, max_decode_len, stop_sequences,
                     options) -> Program:
  full = registry.validate(method, drafter, verifier, prompt, gamma=gamma,
                           alpha=alpha, temperature=temperature, top_p=top_p,
                           max_decode_len=max_decode_len, options=options)
  stops = registry.check_stop_sequences(stop_sequences, verifier.vocab_size)
  return _compile_checked(
      method, drafter, verifier,
      prompt_bucket=registry.prompt_bucket(np.asarray(prompt).size),
      gamma=gamma, max_decode_len=max_decode_len, options=full,
      stop_sequences=stops)


def decode(method: str, drafter, verifier: DecodingModel, prompt, *,
           gamma: int = 5, alpha: float = 0.0, temperature: float = 1.0,
           top_p: float = 1.0, max_decode_len: int = 64, rng=None,
           stop_sequences=(), **method_options) -> st.DecodeOutput:
  """Decodes one prompt (batch size 1): validate -> compile (cached) -> call.

  Args:
    method: a name in ``METHODS``.
    drafter: small model (a ``DecodingModel`` pytree).
    verifier: large model (a ``DecodingModel`` pytree).
    prompt: [n] int array (encoder input for encoder-decoders), padded to
      ``prompt_bucket(n)``.
    gamma: block size γ ≥ 1 (draft tokens per verifier call).
    alpha: lenience α, within the method's range.
    temperature: T ≥ 0; 0 is greedy.
    top_p: nucleus mass in (0, 1]; 1 is no truncation.
    max_decode_len: maximum number of generated tokens.
    rng: PRNG key (default ``jax.random.key(0)``).
    stop_sequences: token-id tuples ending the decode (see ``compile``).
    **method_options: static, method-specific options (see ``METHODS``).

  Returns:
    A ``DecodeOutput`` (device arrays; call ``jax.block_until_ready`` to time).

  Raises:
    ValueError naming the offending argument, before anything is traced.
  """
  program = _checked_program(
      method, drafter, verifier, prompt, gamma=gamma, alpha=alpha,
      temperature=temperature, top_p=top_p, max_decode_len=max_decode_len,
      stop_sequences=stop_sequences, options=method_options)
  return program(prompt, alpha=alpha, temperature=temperature, top_p=top_p,
                 rng=rng)


def decode_many(method: str, drafter, verifier: DecodingModel, prompt, rngs,
                *, gamma: int = 5, alpha: float = 0.0,
                temperature: float = 1.0, top_p: float = 1.0,
                max_decode_len: int = 64, stop_sequences=(),
                **method_options) -> st.DecodeOutput:
  """``decode`` vmapped over a batch of PRNG keys rngs [N] (one prompt).

  For statistics over many seeded samples (tests, quality-only runs); the
  outputs gain a leading [N] axis. Not for latency measurement.
  """
  program = _checked_program(
      method, drafter, verifier, prompt, gamma=gamma, alpha=alpha,
      temperature=temperature, top_p=top_p, max_decode_len=max_decode_len,
      stop_sequences=stop_sequences, options=method_options)
  return program.many(prompt, rngs, alpha=alpha, temperature=temperature,
                      top_p=top_p)
