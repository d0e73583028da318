"""Decoding and timing one cell (the paper's timing protocol).

1. Warm-up: one untimed-for-latency call per prompt bucket (the compiled
   program depends on the bucket, γ, the length limit and the method
   options, never on α, T or top-P); its wall time is the cell's
   ``compile_s``.
2. Trial 1: every example once, batch size 1, timed around
   ``jax.block_until_ready``.
3. Trials 2…num_trials: the first ``num_latency_examples`` examples again,
   with the same per-example key ``fold_in(key(seed), index)``; outputs must
   equal trial 1's (``NondeterminismError`` otherwise).

The timed span includes ``decode``'s argument checks and prompt padding on
the host (tens of microseconds), not tokenization or detokenization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Callable

import jax
import numpy as np

from harness import decoding
from harness import models
from harness import tasks
from harness.runner import calibration as cal
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import pairs
from harness.runner import schema


class NondeterminismError(RuntimeError):
  """A repeated trial produced different tokens or counters."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  """An example with its prompt ids.

  Attributes:
    index: position in the sampled example list (seeds its PRNG key).
    example: the task example.
    prompt: [P] int32 prompt ids.
  """
  index: int
  example: tasks.Example
  prompt: np.ndarray


@dataclasses.dataclass
class Decoded:
  """One example's outputs (host values) and its wall times per trial."""
  tokens: list[int]
  stats: dict[str, Any]
  times_s: list[float]


def prepare_examples(task_run: cfg.TaskRun, seed: int,
                     loaded: pairs.LoadedPair) -> list[Prepared]:
  """Loads the task's sampled examples and encodes their prompts."""
  spec = tasks.get_task(task_run.task)
  examples = tasks.load_examples(
      task_run.task, num_examples=task_run.num_examples, seed=seed,
      source=task_run.source.value, data_dir=task_run.data_dir)
  return [Prepared(i, ex, np.asarray(
      models.encode_prompt(loaded.tokenizer, ex.inputs, loaded.encoder_decoder,
                           spec.max_input_len), np.int32))
          for i, ex in enumerate(examples)]


def example_key(seed: int, index: int) -> jax.Array:
  """The PRNG key of example ``index``: independent of what ran before."""
  return jax.random.fold_in(jax.random.key(seed), index)


def _decode(cell: cells_lib.Cell, loaded: pairs.LoadedPair,
            item: Prepared) -> decoding.DecodeOutput:
  return decoding.decode(
      cell.method, loaded.drafter_for(cell.method), loaded.verifier,
      item.prompt,
      gamma=cell.gamma or 1, alpha=0.0 if cell.alpha is None else cell.alpha,
      temperature=cell.temperature, top_p=cell.top_p,
      max_decode_len=cell.max_decode_len,
      rng=example_key(cell.seed, item.index), **dict(cell.options))


def timed_decode(cell: cells_lib.Cell, loaded: pairs.LoadedPair,
                 item: Prepared) -> tuple[list[int], dict[str, Any], float]:
  """Decodes one example; returns (tokens, stats, seconds) on the host."""
  start = time.perf_counter()
  out = jax.block_until_ready(_decode(cell, loaded, item))
  seconds = time.perf_counter() - start
  out = jax.device_get(out)
  n = int(out.num_tokens)
  stats = {k: np.asarray(v).tolist() for k, v in out.stats.items()}
  return np.asarray(out.tokens)[:n].tolist(), stats, seconds


def warm_up(cell: cells_lib.Cell, loaded: pairs.LoadedPair,
            prepared: list[Prepared]) -> float:
  """Runs one example per prompt bucket; returns the total seconds."""
  firsts: dict[int, Prepared] = {}
  for item in prepared:
    firsts.setdefault(decoding.prompt_bucket(item.prompt.size), item)
  return sum(timed_decode(cell, loaded, item)[2] for item in firsts.values())


def run_trials(cell: cells_lib.Cell, loaded: pairs.LoadedPair,
               prepared: list[Prepared],
               on_example: Callable[[], None] = lambda: None
               ) -> list[Decoded]:
  """Trial 1 on every example, then the extra trials on the latency subset."""
  results = []
  for item in prepared:
    tokens, stats, seconds = timed_decode(cell, loaded, item)
    results.append(Decoded(tokens, stats, [seconds]))
    on_example()
  timed = prepared[:cell.task_run.latency_examples]
  for _ in range(cell.num_trials - 1):
    for item in timed:
      tokens, stats, seconds = timed_decode(cell, loaded, item)
      _check_same(cell, item, results[item.index], tokens, stats)
      results[item.index].times_s.append(seconds)
      on_example()
  return results


def _check_same(cell, item, first: Decoded, tokens, stats) -> None:
  if tokens != first.tokens or stats != first.stats:
    raise NondeterminismError(
        f"cell {cell.cell_id}: example {item.example.id} decoded differently "
        "in a repeated trial with the same key")


def num_decodes(cell: cells_lib.Cell) -> int:
  """Timed decodes of a cell: every example once plus the extra trials."""
  run = cell.task_run
  return run.num_examples + (cell.num_trials - 1) * run.latency_examples


def sha256(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _extra(example: tasks.Example) -> dict[str, Any] | None:
  extra = dict(example.extra)
  size = len(json.dumps(extra, default=str))
  return extra if size <= schema.MAX_EXTRA_BYTES else None


def to_record(cell: cells_lib.Cell, loaded: pairs.LoadedPair, item: Prepared,
              decoded: Decoded,
              calibration: schema.Calibration) -> schema.ExampleRecord:
  """The per-example JSONL record of one decoded example."""
  text = loaded.tokenizer.decode(decoded.tokens)
  record = schema.ExampleRecord(
      cell_id=cell.cell_id, example_id=item.example.id, index=item.index,
      prompt_sha256=sha256(item.example.inputs),
      target_sha256=sha256("\n".join(item.example.targets)),
      num_prompt_tokens=int(item.prompt.size),
      prediction=tasks.postprocess(cell.task, text),
      targets=list(item.example.targets), tokens=decoded.tokens,
      num_tokens=len(decoded.tokens), times_s=decoded.times_s,
      stats=decoded.stats,
      modeled_s=cal.modeled_seconds(decoded.stats, calibration))
  extra = _extra(item.example)
  if extra is not None:
    record["extra"] = extra
  return record
