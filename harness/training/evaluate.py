"""Greedy BLEU and decode cost of saved checkpoints, via the harness decode.

Everything here goes through the same path as a benchmark run: load the
checkpoint directory, build the prompt the harness builds, and decode with
`harness.decoding.decode("autoregressive", ...)` at temperature 0.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from harness import decoding, metrics, tasks
from harness.models import T5, Tokenizer, load_pretrained
from harness.training import data as data_lib

TASK = "multi30k_ende"
MAX_DECODE_LEN = 64


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Greedy evaluation of one checkpoint.

  Attributes:
    bleu: sacrebleu corpus BLEU (harness `bleu` metric).
    chrf: chrF (harness `chrf` metric).
    num_examples: sentences evaluated (the first ones of the split).
    num_tokens: generated tokens, EOS included.
    predictions: the postprocessed translations.
    seconds: wall-clock time of the decode loop (compilation included).
  """
  bleu: float
  chrf: float
  num_examples: int
  num_tokens: int
  predictions: tuple[str, ...]
  seconds: float


def arch_of(model) -> str:
  return "t5" if isinstance(model, T5) else "gemma"


def greedy_tokens(model, prompt: Sequence[int],
                  max_decode_len: int = MAX_DECODE_LEN) -> list[int]:
  """Greedy continuation of one prompt, EOS included if produced."""
  out = decoding.decode("autoregressive", model, model,
                        np.asarray(prompt, np.int32), gamma=1, alpha=0.0,
                        temperature=0.0, top_p=1.0,
                        max_decode_len=max_decode_len, rng=jax.random.key(0),
                        model="verifier")
  n = int(out.num_tokens)
  return [int(t) for t in np.asarray(out.tokens)[:n]]


def translate(model, tokenizer: Tokenizer, sources: Sequence[str],
              max_decode_len: int = MAX_DECODE_LEN) -> tuple[list[str], int]:
  """Greedy translations of English sentences; also the token count.

  Args:
    model: a loaded T5 or Gemma checkpoint model.
    tokenizer: its tokenizer.
    sources: the `multi30k_ende` task inputs (raw English sentences).
    max_decode_len: the task's output limit.

  Returns:
    (postprocessed predictions, total generated tokens).
  """
  arch = arch_of(model)
  predictions, total = [], 0
  for src in sources:
    tokens = greedy_tokens(model, data_lib.prompt_ids(tokenizer, src, arch),
                           max_decode_len)
    total += len(tokens)
    if model.eos_id in tokens:
      tokens = tokens[:tokens.index(model.eos_id)]
    predictions.append(tasks.postprocess(TASK, tokenizer.decode(tokens)))
  return predictions, total


def evaluate_bleu(checkpoint_dir: str | os.PathLike,
                  num_examples: int | None = None, split: str = "test",
                  dtype=jnp.float32) -> EvalResult:
  """Greedy BLEU of a checkpoint on the first sentences of a split.

  Args:
    checkpoint_dir: a directory written by `train_pair`.
    num_examples: the first this many sentences (file order); None: all.
    split: "test" (Multi30k test_2016_flickr) or "validation".
    dtype: compute dtype the stored weights are cast to.

  Returns:
    An `EvalResult`.
  """
  loaded = load_pretrained(checkpoint_dir, dtype)
  examples = tasks.load_examples(TASK, split=split)[:num_examples]
  start = time.monotonic()
  predictions, num_tokens = translate(loaded.model, loaded.tokenizer,
                                      [ex.inputs for ex in examples])
  seconds = time.monotonic() - start
  targets = [ex.targets for ex in examples]
  scores = metrics.compute_metrics(["bleu", "chrf"], targets, predictions)
  return EvalResult(bleu=scores["bleu"], chrf=scores["chrf"],
                    num_examples=len(examples), num_tokens=num_tokens,
                    predictions=tuple(predictions), seconds=seconds)


@dataclasses.dataclass(frozen=True)
class DecodeCost:
  """Per-token greedy decode time of one model.

  Attributes:
    ms_per_token: total decode time / generated tokens (prefill included).
    ms_per_extra_token: slope of a least-squares fit of time against
      tokens over the sentences (the marginal cost of one more token).
    num_tokens: generated tokens over the timed sentences.
  """
  ms_per_token: float
  ms_per_extra_token: float
  num_tokens: int


def decode_cost(checkpoint_dir: str | os.PathLike, num_sentences: int = 50,
                repeats: int = 3) -> DecodeCost:
  """Times greedy decoding on the first test sentences (after warm-up).

  Each sentence is decoded once untimed (compilation) and then `repeats`
  times; the fastest repeat of each sentence is kept.
  """
  loaded = load_pretrained(checkpoint_dir, jnp.float32)
  arch = arch_of(loaded.model)
  examples = tasks.load_examples(TASK, split="test")[:num_sentences]
  prompts = [data_lib.prompt_ids(loaded.tokenizer, ex.inputs, arch)
             for ex in examples]
  times, counts = [], []
  for prompt in prompts:
    n = len(greedy_tokens(loaded.model, prompt))  # warm-up / compile
    best = np.inf
    for _ in range(repeats):
      start = time.perf_counter()
      greedy_tokens(loaded.model, prompt)
      best = min(best, time.perf_counter() - start)
    times.append(best)
    counts.append(n)
  times, counts = np.array(times), np.array(counts)
  slope = np.polyfit(counts, times, 1)[0] if np.ptp(counts) else np.nan
  return DecodeCost(ms_per_token=1e3 * times.sum() / counts.sum(),
                    ms_per_extra_token=1e3 * float(slope),
                    num_tokens=int(counts.sum()))
