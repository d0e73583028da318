"""Task specifications and examples (frozen, declarative, versioned).

Changelog of ``TASK_VERSION`` (bump on any prompt or preprocessing change):
  1: initial prompts, shots and limits (this file's ``TASKS``).
  2: offline CNN/DailyMail = 500 test articles with highlights (was 1,000
     truncated articles without); TFDS shot pools are a bounded, seeded
     slice of the shot split (``registry.SHOT_POOL_SIZE``).
  3: few-shot outputs are cut at their first stop string before the other
     post-processing (``prompts.STOP_STRINGS``: a newline for translation
     and QA, "\\nQuestion:" for GSM8K, "[DONE]" for MBPP), as lm-eval's
     ``until``; only outputs that began with a newline score differently.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from typing import Any, Mapping

TASK_VERSION = 3


class DataError(ValueError):
  """Malformed or missing data; the message names the file, line and field."""


class Source(enum.StrEnum):
  """Where examples come from."""
  OFFLINE = "offline"  # Files bundled under <repo>/data (or $HARNESS_DATA_DIR).
  TFDS = "tfds"  # Prepared TFDS datasets under a caller-given data_dir.


class PromptFormat(enum.StrEnum):
  """How a record becomes model input text (see ``prompts.py``)."""
  T5_TRANSLATE = "t5_translate"
  T5_SUMMARIZE = "t5_summarize"
  RAW_TRANSLATE = "raw_translate"
  FEWSHOT_TRANSLATE = "fewshot_translate"
  INSTRUCT_SUMMARIZE = "instruct_summarize"
  GSM8K_COT = "gsm8k_cot"
  MBPP = "mbpp"
  CLOSED_BOOK_QA = "closed_book_qa"
  READING_QA = "reading_qa"


@dataclasses.dataclass(frozen=True)
class OfflineSource:
  """Bundled files for a task.

  Attributes:
    dataset: Key of a reader in ``datasets.OFFLINE_READERS``.
    eval_split: Default split that is evaluated.
    shot_split: Split few-shot exemplars come from (None: zero-shot). When it
      equals ``eval_split`` (no training split is bundled), exemplars are
      removed from the evaluation pool.
    note: Caveats for reports, e.g. missing references.
  """
  dataset: str
  eval_split: str
  shot_split: str | None = None
  note: str = ""


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """A TFDS dataset for a task (read from a prepared ``data_dir``).

  Attributes:
    name: TFDS name with config, e.g. "wmt14_translate/de-en".
    dataset: Key of the record adapter in ``datasets.TFDS_ADAPTERS``.
    eval_split: Split that is evaluated (the paper uses validation sets).
    shot_split: Split few-shot exemplars come from, None for zero-shot.
  """
  name: str
  dataset: str
  eval_split: str
  shot_split: str | None = None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One benchmark task.

  Attributes:
    name: Registry key, e.g. "gemma_gsm8k_8shot".
    description: One line for ``python -m harness list``.
    prompt: How records become inputs.
    max_input_len: Input limit in model tokens (the runner truncates).
    max_output_len: Decoding limit in model tokens.
    metrics: Metric names; the first is the headline the paper reports.
    num_shots: Few-shot exemplars in each prompt (0 for fine-tuned T5).
    offline: Bundled-data source.
    tfds: TFDS source, or None if the data has no TFDS builder (MBPP: served
      from the bundled file everywhere; Multi30k).
    version: ``TASK_VERSION`` when the spec was built.
  """
  name: str
  description: str
  prompt: PromptFormat
  max_input_len: int
  max_output_len: int
  metrics: tuple[str, ...]
  num_shots: int
  offline: OfflineSource
  tfds: TfdsSource | None
  version: int = TASK_VERSION

  @property
  def headline_metric(self) -> str:
    return self.metrics[0]


@dataclasses.dataclass(frozen=True)
class Example:
  """One evaluation example.

  Attributes:
    id: Stable id within the dataset (from the data where it has one).
    inputs: Full model input text, few-shot prompt included.
    targets: All references / answer aliases; () when the data has none
      or the question is unanswerable (SQuAD 2.0,
      then ``extra["is_impossible"]`` is True).
    extra: Small read-only mapping for metrics, e.g. MBPP ``test_list``.
  """
  id: str
  inputs: str
  targets: tuple[str, ...]
  extra: Mapping[str, Any] = dataclasses.field(
      default_factory=lambda: types.MappingProxyType({}))


def frozen_mapping(values: Mapping[str, Any]) -> Mapping[str, Any]:
  """A read-only copy of ``values`` for ``Example.extra``."""
  return types.MappingProxyType(dict(values))
