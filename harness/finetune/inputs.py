"""The fine-tuning loop's input: this host's microbatches of a split.

Text tasks come from the seqio Tasks of `harness.finetune.data` (imported
only when a text task is used: it needs seqio and TensorFlow); the
``synthetic`` task is random copy-task rows, indexed, so a resumed run
starts at any batch at once.
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np

from harness.finetune.config import FinetuneConfig
from harness.finetune.steps import Batch

FEATURES = ("encoder_input_tokens", "decoder_input_tokens",
            "decoder_target_tokens", "decoder_loss_weights")


def synthetic_batches(cfg: FinetuneConfig, vocab_size: int, split: str,
                      batch_size: int, start_batch: int = 0,
                      shard_index: int = 0, num_shards: int = 1
                      ) -> Iterator[Batch]:
  """Random copy-task rows (targets = inputs), unpacked, deterministic per
  (seed, split, batch index, shard): a stand-in for text when measuring
  speed or testing the loop. Row lengths vary; 0 pads, 1 ends."""
  del num_shards  # the shard index alone separates the hosts' streams
  split_id = {"train": 0, "validation": 1, "test": 2}.get(split, 3)
  length = min(cfg.inputs_length, cfg.targets_length)
  index = start_batch
  while True:
    rng = np.random.default_rng([cfg.seed, split_id, index, shard_index])
    enc = np.zeros((batch_size, cfg.inputs_length), np.int32)
    tgt = np.zeros((batch_size, cfg.targets_length), np.int32)
    for row in range(batch_size):
      n = int(rng.integers(max(1, length // 2), length))
      tokens = rng.integers(2, vocab_size, size=n - 1).astype(np.int32)
      enc[row, :n] = np.append(tokens, 1)
      tgt[row, :n] = np.append(tokens, 1)
    dec_in = np.zeros_like(tgt)
    dec_in[:, 1:] = tgt[:, :-1]
    yield {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
           "decoder_target_tokens": tgt,
           "decoder_loss_weights": (tgt != 0).astype(np.int32)}
    index += 1


def register_tasks(cfg: FinetuneConfig, vocab_path: str | None) -> None:
  """Registers the seqio tasks of `harness.finetune.data` for the vocab."""
  if cfg.task == "synthetic":
    return
  from harness.finetune import data  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if cfg.prefix is not None:
    kwargs["prefixes"] = {cfg.task: cfg.prefix}
  data.register_finetune_tasks(vocab_path, data_dir=cfg.data_dir,
                               extra_ids=cfg.extra_ids, **kwargs)


def batches(cfg: FinetuneConfig, vocab_path: str | None, vocab_size: int,
            split: str, *, train: bool, start_batch: int = 0,
            iterator_state: str | None = None) -> Iterator[Batch]:
  """This host's microbatches (rows = microbatch / hosts) of a split.

  Text tasks give a `harness.finetune.data.InputIterator` (its state can be
  saved; `iterator_state` is restored when it matches `start_batch`); the
  synthetic task indexes its batches, so starts anywhere at once."""
  hosts, host = jax.process_count(), jax.process_index()
  rows = cfg.microbatch_size // hosts
  if rows * hosts != cfg.microbatch_size:
    raise ValueError(f"batch_size={cfg.batch_size}: microbatch "
                     f"{cfg.microbatch_size} is not a multiple of the "
                     f"{hosts} hosts")
  if cfg.task == "synthetic":
    return synthetic_batches(cfg, vocab_size, split, rows, start_batch,
                             host, hosts)
  from harness.finetune import data  # pylint: disable=g-import-not-at-top
  return iter(data.make_dataset(
      cfg.task, split, vocab_path=vocab_path,
      lengths={"inputs": cfg.inputs_length, "targets": cfg.targets_length},
      batch_size=rows, pack=cfg.pack, seed=cfg.seed,
      shuffle=cfg.shuffle and train, repeat=train, shard_index=host,
      num_shards=hosts, start_batch=start_batch, data_dir=cfg.data_dir,
      iterator_state=iterator_state))


def stack(iterator: Iterator[Batch], num: int) -> Batch | None:
  """[num, rows, length] arrays of the next `num` microbatches (None when
  the iterator ends first)."""
  rows = []
  for _ in range(num):
    try:
      rows.append(next(iterator))
    except StopIteration:
      return None
  return {k: np.stack([np.asarray(r[k], np.int32) for r in rows])
          for k in rows[0] if k in FEATURES or k.endswith(
              ("segment_ids", "positions"))}


def text_examples(cfg: FinetuneConfig, vocab_path: str | None, split: str,
                  num: int) -> list[tuple[str, list[str]]]:
  """The first `num` (input text with its prefix, [reference]) pairs of a
  split, read from the seqio task's pretokenized features (none for the
  synthetic and the span-corruption tasks)."""
  if cfg.task == "synthetic" or num == 0 or "span" in cfg.task:
    return []
  from harness import extras  # pylint: disable=g-import-not-at-top
  seqio = extras.require("seqio", f"fine-tuning task {cfg.task!r}")
  task = seqio.get_mixture_or_task(cfg.task)
  ds = task.get_dataset(
      {"inputs": cfg.inputs_length, "targets": cfg.targets_length},
      split=split, shuffle=False, use_cached=False, seed=cfg.seed)
  out = []
  for ex in ds.take(num).as_numpy_iterator():
    out.append((ex["inputs_pretokenized"].decode("utf-8"),
                [ex["targets_pretokenized"].decode("utf-8")]))
  return out
