"""The fine-tuning run's configuration and its gin edge.

One frozen dataclass, :class:`FinetuneConfig`, holds every setting of a run
(model, task, optimiser, schedule, checkpoints, validation, export). Gin
files bind its fields, layered as model size × task × run, e.g.
``gin/finetune/wmt14_ende_small.gin`` includes
``gin/finetune/models/t5_1_1_small.gin``, ``gin/finetune/tasks/wmt14_ende.gin``
and ``gin/finetune/runs/finetune.gin``; ``--gin.FinetuneConfig.X=Y`` overrides
any field last. Gin files are found by ``harness.edge.gin_files``' rule
(working directory, repository root, its ``gin/``), so ``--gin_file
finetune/wmt14_ende_small.gin`` works from anywhere.

Bad values raise :class:`harness.edge.gin_files.ConfigError`, one line
naming the file, line and binding.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Sequence

from harness.edge import errors, gin_files

GIN_MODULE = "harness.finetune"
SCHEDULES = ("constant", "rsqrt")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """Every setting of a fine-tuning (or continued pre-training) run.

  Attributes:
    init_checkpoint: weights to start from: any form
      `harness.models.load_pretrained` reads (Hugging Face folder with
      safetensors / pytorch_model.bin / flax_model.msgpack, a T5X checkpoint
      directory). None: random weights of `model_size`.
    model_size: with no `init_checkpoint`, a size of
      `harness.models.configs.T5_SIZES` (e.g. "t5_v1_1_small") or "tiny".
    vocab_path: SentencePiece model of the tasks; None: the checkpoint's
      `spiece.model`.
    vocab_size: with random weights, the embedding rows (None: the
      SentencePiece vocabulary size rounded up to a multiple of 128).
    task: a task registered by `harness.finetune.data` (e.g.
      "ft_wmt14_ende") or "synthetic" (random tokens, no data needed).
    prefix: task prefix for the tasks' inputs, None: the task's default.
    data_dir: TFDS data directory (None: TFDS's default).
    extra_ids: sentinel ids appended to the vocabulary (span corruption).
    inputs_length: encoder length of a (packed) row.
    targets_length: decoder length of a (packed) row.
    pack: pack several examples into a row (t5x's default).
    train_split: the split trained on.
    eval_split: validation split (loss and greedy decoding), None: none.
    test_split: split of the final evaluation, None: none.
    train_steps: optimiser steps of the whole run (the schedule's end).
    max_steps: stop this invocation after this many steps in total (a
      resumed run continues later); None: `train_steps`.
    time_limit_s: stop (with a checkpoint) after this many seconds of
      this invocation; None: no limit.
    batch_size: global batch (rows) of one optimiser step.
    accumulate_steps: microbatches per step (gradient accumulation); the
      batch size must be a multiple of it.
    learning_rate: constant rate, or the rsqrt schedule's scale.
    schedule: "constant" (fine-tuning) or "rsqrt": lr * 1/sqrt(max(step,
      warmup_steps)) (T5 pre-training).
    warmup_steps: the rsqrt schedule's constant part.
    schedule_offset: added to the step in the schedule: continued
      pre-training from a released checkpoint (T5 v1.1: step 1,000,000)
      goes on with that checkpoint's learning rate, as in t5x, where the
      step is restored with the weights.
    decay_rate: Adafactor's second-moment decay exponent.
    clipping_threshold: Adafactor's update clipping (None: off).
    dropout_rate: dropout of the training forward pass.
    z_loss: coefficient of t5x's auxiliary z-loss (0: off).
    param_dtype: parameter storage dtype.
    activation_dtype: matmul dtype of the forward pass.
    seed: data order, dropout and random init.
    shuffle: shuffle the training data.
    model_parallel: size of the mesh's "model" axis; "data" takes the rest.
    checkpoint_every_steps: save every this many steps.
    checkpoint_every_s: also save when this many seconds passed since the
      last save (None: off).
    keep_checkpoints: checkpoints kept (the newest ones).
    eval_every_steps: validation period in steps (0: only at the end).
    eval_batches: validation loss batches.
    eval_examples: greedy-decoded validation examples (0: none).
    eval_before: evaluate the initial weights (test split) before training.
    test_examples: first N examples of the test split in the final
      evaluation.
    decode_length: maximal decoded tokens of the greedy evaluations.
    export_dir: where the final Hugging Face folder is written (relative to
      the workdir); None: no export.
    log_every_steps: tqdm postfix / stdout line period.
  """
  init_checkpoint: str | None = None
  model_size: str = "t5_v1_1_small"
  vocab_path: str | None = None
  vocab_size: int | None = None
  task: str = "synthetic"
  prefix: str | None = None
  data_dir: str | None = None
  extra_ids: int = 0
  inputs_length: int = 512
  targets_length: int = 114
  pack: bool = True
  train_split: str = "train"
  eval_split: str | None = "validation"
  test_split: str | None = None
  train_steps: int = 1000
  max_steps: int | None = None
  time_limit_s: float | None = None
  batch_size: int = 128
  accumulate_steps: int = 1
  learning_rate: float = 1e-3
  schedule: str = "constant"
  warmup_steps: int = 10_000
  schedule_offset: int = 0
  decay_rate: float = 0.8
  clipping_threshold: float | None = 1.0
  dropout_rate: float = 0.1
  z_loss: float = 1e-4
  param_dtype: str = "float32"
  activation_dtype: str = "bfloat16"
  seed: int = 0
  shuffle: bool = True
  model_parallel: int = 1
  checkpoint_every_steps: int = 5000
  checkpoint_every_s: float | None = None
  keep_checkpoints: int = 3
  eval_every_steps: int = 5000
  eval_batches: int = 4
  eval_examples: int = 64
  eval_before: bool = False
  test_examples: int = 500
  decode_length: int = 128
  export_dir: str | None = "export"
  log_every_steps: int = 10

  def __post_init__(self):
    positive = ("inputs_length", "targets_length", "train_steps",
                "batch_size", "accumulate_steps", "warmup_steps",
                "checkpoint_every_steps", "keep_checkpoints",
                "log_every_steps", "model_parallel", "decode_length")
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r}: must be a positive integer")
    for name in ("eval_every_steps", "eval_batches", "eval_examples",
                 "test_examples", "extra_ids", "seed", "schedule_offset"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}={value!r}: must be an integer >= 0")
    if self.batch_size % self.accumulate_steps:
      raise ValueError(f"batch_size={self.batch_size}: must be a multiple of "
                       f"accumulate_steps={self.accumulate_steps}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"schedule={self.schedule!r}: must be one of "
                       f"{SCHEDULES}")
    for name in ("param_dtype", "activation_dtype"):
      if getattr(self, name) not in DTYPES:
        raise ValueError(f"{name}={getattr(self, name)!r}: must be one of "
                         f"{DTYPES}")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"dropout_rate={self.dropout_rate!r}: must be in "
                       "[0, 1)")
    for name in ("learning_rate", "decay_rate"):
      if not self.__dict__[name] > 0:
        raise ValueError(f"{name}={getattr(self, name)!r}: must be > 0")
    if self.z_loss < 0:
      raise ValueError(f"z_loss={self.z_loss!r}: must be >= 0")
    for name in ("max_steps",):
      value = getattr(self, name)
      if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}={value!r}: must be a positive integer or "
                         "None")
    for name in ("time_limit_s", "checkpoint_every_s"):
      value = getattr(self, name)
      if value is not None and not value > 0:
        raise ValueError(f"{name}={value!r}: must be > 0 or None")
    if self.init_checkpoint is None and self.task != "synthetic" and (
        self.vocab_path is None):
      raise ValueError("vocab_path=None: a random init on a text task needs "
                       "a SentencePiece vocab_path")

  @property
  def microbatch_size(self) -> int:
    return self.batch_size // self.accumulate_steps

  @property
  def last_step(self) -> int:
    """The step this invocation stops at (time limit aside)."""
    return min(self.train_steps, self.max_steps or self.train_steps)


def _make(**kwargs) -> FinetuneConfig:
  """FinetuneConfig(**kwargs); a bad field names its binding."""
  try:
    return FinetuneConfig(**kwargs)
  except ValueError as err:
    detail = errors.first_line(err)
    field = detail.split("=", 1)[0]
    raise gin_files.BindingError(f"FinetuneConfig.{field}", detail) from None


_make.__signature__ = inspect.signature(FinetuneConfig)


def parse(gin_file_paths: Sequence[str], bindings: Sequence[str] = ()
          ) -> tuple[FinetuneConfig, str]:
  """Gin files and ``X=Y`` overrides -> (config, operative gin text).

  Raises:
    ConfigError: one line naming the file, line, binding and value.
  """
  gin_files.register(_make, "FinetuneConfig", GIN_MODULE)
  return gin_files.parse(gin_file_paths, bindings,
                         f"{GIN_MODULE}.FinetuneConfig")
