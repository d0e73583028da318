"""Timed decoding passes over the prompts, and the α-sweep compile count.

Every pass calls the compiled decoding program of ``harness.decoding``
(a ``decoding.Program``, i.e. ``decode()`` without its host-side argument
checks and compile-cache lookup, which are measured apart) once per prompt,
batch size 1, blocking on each output, greedy (T = 0).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from benchmarks import timing
from benchmarks.pair import Pair, Prompts
from harness import decoding

AR = "autoregressive"


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One decoding configuration.

  Attributes:
    name: key in the report, e.g. "spec_decode/g5".
    method: registry name.
    gamma: block size γ (unused by autoregressive, but it sets the buffer).
    alpha: lenience α.
    options: method options, e.g. (("model", "drafter"),).
  """
  name: str
  method: str
  gamma: int
  alpha: float = 0.0
  options: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class RunResult:
  """Timings and counters of one configuration over every prompt.

  Attributes:
    spec: the configuration.
    passes: wall time of each timed pass over all prompts.
    stats: counters summed over the prompts (scalars only).
    tokens: generated ids per prompt (EOS included).
  """
  spec: RunSpec
  passes: timing.Timing
  stats: dict[str, int]
  tokens: tuple[tuple[int, ...], ...]

  @property
  def seconds_per_token(self) -> float:
    return self.passes.min / max(self.stats["num_tokens"], 1)


def ar_spec(model: str, gamma: int) -> RunSpec:
  """Autoregressive decoding with the drafter or the verifier alone."""
  return RunSpec(f"autoregressive/{model}", AR, gamma,
                 options=(("model", model),))


def program(pair: Pair, prompts: Prompts, spec: RunSpec,
            max_decode_len: int) -> decoding.Program:
  """The compiled program of ``spec`` for the prompts' bucket."""
  return decoding.compile(spec.method, pair.drafter, pair.verifier,
                          prompt_bucket=prompts.bucket, gamma=spec.gamma,
                          max_decode_len=max_decode_len, **dict(spec.options))


def _program(pair: Pair, prompts: Prompts, spec: RunSpec,
             max_decode_len: int):
  """Returns call(i) -> DecodeOutput for prompt i: the compiled program
  (``compile`` checks the static arguments, each call α and the prompt)."""
  prog = program(pair, prompts, spec, max_decode_len)
  ids = [prompts.ids(i) for i in range(len(prompts))]
  rng = jax.random.key(0)

  def call(i: int):
    return prog(ids[i], alpha=spec.alpha, temperature=0.0, top_p=1.0,
                rng=rng)

  return call


def _sum_stats(outputs) -> dict[str, int]:
  total: dict[str, int] = {}
  for out in outputs:
    for name, value in out.stats.items():
      if np.ndim(value) == 0:
        total[name] = total.get(name, 0) + int(value)
  return total


def _tokens(out) -> tuple[int, ...]:
  return tuple(int(t) for t in np.asarray(out.tokens)[:int(out.num_tokens)])


def _one_pass(call, num: int) -> tuple[float, list]:
  start = time.perf_counter()
  outs = [jax.block_until_ready(call(i)) for i in range(num)]
  return time.perf_counter() - start, outs


def run_all(pair: Pair, prompts: Prompts, specs: list[RunSpec],
            max_decode_len: int, repeats: int) -> dict[str, RunResult]:
  """Times every configuration, interleaved so load drifts hit all alike.

  One untimed warm-up pass each, then ``repeats`` rounds; in every round each
  configuration makes one pass over all prompts.
  """
  calls = {s.name: _program(pair, prompts, s, max_decode_len) for s in specs}
  first = {name: _one_pass(call, len(prompts))[1]
           for name, call in calls.items()}
  samples: dict[str, list[float]] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      samples[name].append(_one_pass(call, len(prompts))[0])
  return {s.name: RunResult(s, timing.Timing(tuple(samples[s.name])),
                            _sum_stats(first[s.name]),
                            tuple(_tokens(o) for o in first[s.name]))
          for s in specs}


@dataclasses.dataclass(frozen=True)
class CompileResult:
  """Compiles and compile time of one program over an α sweep.

  Attributes:
    compiles: traces of (method, γ) during the sweep (1 = compiled once; 0
      when another method of its family compiled the shared program first).
    compile_seconds: trace + lower + XLA compile seconds of the sweep.
    alphas: the α values swept.
  """
  compiles: int
  compile_seconds: float
  alphas: tuple[float, ...]


def alpha_sweep(pair: Pair, prompts: Prompts, spec: RunSpec,
                alphas: tuple[float, ...],
                max_decode_len: int) -> CompileResult:
  """Runs prompt 0 at every α; counts the program's compiles.

  Must run before anything else compiles (method, γ) in this process.
  """
  before = decoding.trace_count(spec.method, spec.gamma)
  seconds_before = decoding.compile_stats()["compile_s"]
  for alpha in alphas:
    call = _program(pair, prompts, dataclasses.replace(spec, alpha=alpha),
                    max_decode_len)
    jax.block_until_ready(call(0))
  compiles = decoding.trace_count(spec.method, spec.gamma) - before
  seconds = decoding.compile_stats()["compile_s"] - seconds_before
  return CompileResult(compiles, seconds, tuple(alphas))


def host_overhead(pair: Pair, prompts: Prompts, spec: RunSpec,
                  max_decode_len: int, repeats: int) -> float:
  """Seconds per call that ``decode()`` adds on the host to a ``Program``.

  Times what ``decode`` does before calling the program -- the argument
  checks (``decoding.validate``) and the compile-cache lookup
  (``decoding.compile`` of a compiled program) -- over every prompt.
  """
  program(pair, prompts, spec, max_decode_len)  # compiled before timing

  def prepare_all():
    for i in range(len(prompts)):
      decoding.validate(
          spec.method, pair.drafter, pair.verifier, prompts.ids(i),
          gamma=spec.gamma, alpha=spec.alpha, temperature=0.0, top_p=1.0,
          max_decode_len=max_decode_len, options=dict(spec.options))
      program(pair, prompts, spec, max_decode_len)
  return timing.repeat(prepare_all, repeats).median / len(prompts)
