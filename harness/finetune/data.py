"""seqio Tasks and batched input pipelines for fine-tuning and pre-training.

Tasks (each with the splits listed; register with ``register_finetune_tasks``):

* ``ft_wmt14_ende``: TFDS ``wmt14_translate/de-en`` (train,
  validation), inputs ``prefix + en`` (default "translate English to
  German: "), targets ``de``.
* ``ft_xsum``: TFDS ``xsum`` (train, validation), ``prefix + document``
  (default "summarize: ") → ``summary``.
* ``ft_cnn_dailymail``: TFDS ``cnn_dailymail`` (train, validation),
  ``prefix + article`` (default "summarize: ") → ``highlights``.
* ``ft_c4_span``: TFDS ``c4/en`` (train, validation), T5's span
  corruption of ``text`` (noise density 0.15, mean span length 3; see
  ``harness.finetune.span_corruption``).
* ``ft_wmt_newstest_offline``: bundled text, no network: train = newstest
  2008–2012 (``data/wmt_newstest_2008_2012_ende``, 13,071 pairs),
  validation = newstest2013, test = newstest2014 (``data/wmt14_en_de``);
  prefix default "" (the shipped Multi30k pair was trained on raw English).

The TFDS versions are pinned in ``harness.tasks.datasets.TFDS_VERSIONS``
(nowhere else), and the Tasks are registered through
``harness.tasks.seqio_tasks`` (``replace_task``, ``tfds_source``), the
project's one seqio registration.

Both features get an EOS appended after trimming to the task lengths
(seqio's ``append_eos_after_trim``, as T5 fine-tuning tasks do).

``make_dataset`` turns a task split into numpy batches in the layout of
seqio's ``EncDecFeatureConverter`` (packed or padded), sharded per host with
``seqio.ShardInfo``, deterministic for a seed, resumable at a batch index:
in constant time from an iterator state that ``InputIterator.save`` wrote,
else by replaying the stream.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from typing import Any, Mapping

import numpy as np

from harness import extras
from harness.finetune import span_corruption
from harness.tasks import datasets
from harness.tasks import prompts
from harness.tasks import registry
from harness.tasks import seqio_tasks
from harness.tasks.spec import DataError

seqio = extras.require("seqio", "fine-tuning data")
tf = extras.require("tensorflow", "fine-tuning data")

T5_EXTRA_IDS = 100  # Sentinels of T5's vocabulary (<extra_id_0..99>).
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class FinetuneTask:
  """A fine-tuning/pre-training task.

  Attributes:
    name: seqio Task name.
    tfds_name: TFDS name with version (``datasets.tfds_versioned``), or None
      for bundled data.
    input_field: Raw feature read as the input text.
    target_field: Raw feature read as the target text (None: span
      corruption of ``input_field``).
    prefix: Default text prepended to the input.
    splits: Splits served.
  """
  name: str
  tfds_name: str | None
  input_field: str
  target_field: str | None
  prefix: str
  splits: tuple[str, ...] = SPLITS


def _tfds_name(harness_task: str) -> str:
  """The versioned TFDS name of a harness task's dataset."""
  spec = registry.TASKS[harness_task].tfds
  assert spec is not None
  return datasets.tfds_versioned(spec.name)


TASKS: dict[str, FinetuneTask] = {t.name: t for t in (
    FinetuneTask("ft_wmt14_ende", _tfds_name("wmt14_ende"), "en", "de",
                 prompts.T5_TRANSLATE_PREFIX),
    FinetuneTask("ft_xsum", _tfds_name("xsum"), "document", "summary",
                 prompts.T5_SUMMARIZE_PREFIX),
    FinetuneTask("ft_cnn_dailymail", _tfds_name("cnn_dailymail"), "article",
                 "highlights", prompts.T5_SUMMARIZE_PREFIX),
    FinetuneTask("ft_c4_span", datasets.tfds_versioned("c4/en"), "text", None,
                 ""),
    FinetuneTask("ft_wmt_newstest_offline", None, "src", "tgt", "",
                 ("train", "validation", "test")),
)}

# Settings of the last registration (make_dataset re-registers on change).
_REGISTERED: dict[str, Any] = {}


def _check_vocab(vocab_path: str) -> str:
  path = os.path.abspath(os.fspath(vocab_path))
  if not os.path.isfile(path):
    raise DataError(f"{vocab_path}: SentencePiece model file not found")
  return path


def _offline_dataset_fn(split: str, shuffle_files: bool,
                        seed: int | None = None) -> tf.data.Dataset:
  """Bundled newstest pairs; a full reshuffle per epoch when shuffling."""
  records = datasets.offline_records("wmt14", split)
  ds = tf.data.Dataset.from_tensor_slices({
      "src": [r["src"] for r in records],
      "tgt": [r["tgt"] for r in records]})
  if shuffle_files:  # In memory: a true permutation, not a buffer's.
    ds = ds.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
  return ds


def _to_text_pair(ds: tf.data.Dataset, *, prefix: str, input_field: str,
                  target_field: str) -> tf.data.Dataset:
  def fn(ex):
    return {"inputs": tf.strings.join([prefix, ex[input_field]]),
            "targets": ex[target_field]}
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def _source(task: FinetuneTask, data_dir: str | None) -> seqio.DataSource:
  if task.tfds_name is None:
    return seqio.FunctionDataSource(_offline_dataset_fn, splits=task.splits)
  return seqio_tasks.tfds_source(task.tfds_name, task.splits, data_dir)


def _seqio_task(task: FinetuneTask, vocab_path: str, prefix: str,
                data_dir: str | None, extra_ids: int) -> seqio.Task:
  if task.target_field is None:
    vocabulary = seqio.SentencePieceVocabulary(
        vocab_path, extra_ids=extra_ids or T5_EXTRA_IDS)
    preprocessors = span_corruption.seqio_preprocessors(
        text_field=task.input_field)
  else:
    vocabulary = seqio.SentencePieceVocabulary(vocab_path, extra_ids=extra_ids)
    preprocessors = [
        functools.partial(_to_text_pair, prefix=prefix,
                          input_field=task.input_field,
                          target_field=task.target_field),
        seqio.preprocessors.tokenize,
        seqio.preprocessors.append_eos_after_trim,
    ]
  return seqio.Task(
      task.name, source=_source(task, data_dir),
      output_features={
          "inputs": seqio.Feature(vocabulary, add_eos=True),
          "targets": seqio.Feature(vocabulary, add_eos=True)},
      preprocessors=preprocessors)


def register_finetune_tasks(
    vocab_path: str, *, prefixes: Mapping[str, str] | None = None,
    data_dir: str | None = None, extra_ids: int = 0) -> dict[str, seqio.Task]:
  """Registers (or re-registers) every task of ``TASKS`` with seqio.

  Args:
    vocab_path: Local SentencePiece model file.
    prefixes: Task name → input prefix, overriding ``TASKS[...].prefix``.
    data_dir: TFDS data directory (None: TFDS's default).
    extra_ids: Sentinel ids appended to the vocabulary (seqio's
      ``extra_ids``). ``ft_c4_span`` uses ``extra_ids`` or, when 0, T5's 100:
      the model's vocabulary size must leave room for them.

  Returns:
    Task name → registered seqio Task.

  Raises:
    DataError: unknown task in ``prefixes``, missing vocabulary file.
  """
  vocab = _check_vocab(vocab_path)
  prefixes = dict(prefixes or {})
  unknown = sorted(set(prefixes) - set(TASKS))
  if unknown:
    raise DataError(f"prefixes: unknown task {unknown[0]!r} (tasks: "
                    f"{', '.join(TASKS)})")
  if extra_ids < 0:
    raise DataError(f"extra_ids: must be >= 0, got {extra_ids}")
  tasks = {}
  for name, task in TASKS.items():
    tasks[name] = seqio_tasks.replace_task(_seqio_task(
        task, vocab, prefixes.get(name, task.prefix), data_dir, extra_ids))
  _REGISTERED.clear()
  _REGISTERED.update(vocab_path=vocab, data_dir=data_dir, prefixes=prefixes,
                     extra_ids=extra_ids)
  return tasks


def _registered_task(name: str, vocab_path: str,
                     data_dir: str | None) -> seqio.Task:
  """The registered Task; (re-)registers when vocabulary/data_dir differ."""
  if name not in TASKS:
    raise DataError(f"task: unknown fine-tuning task {name!r} (tasks: "
                    f"{', '.join(TASKS)})")
  vocab = _check_vocab(vocab_path)
  if (_REGISTERED.get("vocab_path") != vocab
      or _REGISTERED.get("data_dir") != data_dir
      or name not in seqio.TaskRegistry.names()):
    register_finetune_tasks(vocab, data_dir=data_dir,
                            prefixes=_REGISTERED.get("prefixes"),
                            extra_ids=_REGISTERED.get("extra_ids", 0))
  return seqio.TaskRegistry.get(name)


def _pad_batch(batch: dict[str, tf.Tensor],
               batch_size: int) -> dict[str, tf.Tensor]:
  """Pads a short final batch with all-zero rows (zero loss weight)."""
  def pad(x):
    x = tf.pad(x, [[0, batch_size - tf.shape(x)[0]], [0, 0]])
    return tf.ensure_shape(x, [batch_size, x.shape[1]])
  return {k: pad(v) for k, v in batch.items()}


class InputIterator:
  """Numpy batches of a tf.data pipeline whose position can be saved.

  Iterates like a plain iterator (``next`` gives feature name → int32
  array). ``save(directory)`` writes the pipeline iterator's state (tf.data's
  own checkpoint of every stage: file offsets, shuffle buffers and seeds,
  packing and prefetch buffers) with ``tf.train.Checkpoint``; building the
  same pipeline with ``make_dataset(..., iterator_state=directory)`` restores
  it, so resuming costs the same at any position instead of replaying the
  stream.

  Attributes:
    position: batches of the stream yielded so far (counting the ones
      skipped or restored at construction).
    resume: how the start position was reached: "start" (position 0),
      "restored" (iterator state read) or "replayed" (the first ``position``
      batches were read and skipped).
    replayed: batches this iterator reads and drops to reach its start
      (``position`` when replayed, 0 when started or restored).
  """

  def __init__(self, dataset: tf.data.Dataset, *, skipped: int,
               position: int, resume: str, signature: dict):
    self._iterator = iter(dataset)
    self._skipped = skipped  # The pipeline's skip(): part of its structure.
    self._signature = signature
    self.position = position
    self.resume = resume
    self.replayed = position if resume == "replayed" else 0

  def __iter__(self) -> "InputIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    self.position += 1
    return {k: v.numpy() for k, v in batch.items()}

  def save(self, directory: str) -> None:
    """Writes the iterator state to ``directory`` (atomically: a temporary
    sibling, then a rename; an existing state is replaced).

    Raises:
      tf.errors.OpError: a pipeline stage cannot be checkpointed.
    """
    directory = os.path.abspath(directory)
    tmp = f"{directory}.tmp-{os.getpid()}"
    tf.io.gfile.makedirs(tmp)
    try:
      tf.train.Checkpoint(iterator=self._iterator).write(
          os.path.join(tmp, _STATE_PREFIX))
      meta = {"format": 1, "position": self.position,
              "skipped": self._skipped, "signature": self._signature}
      with tf.io.gfile.GFile(os.path.join(tmp, _STATE_META), "w") as f:
        f.write(json.dumps(meta))
    except BaseException:
      tf.io.gfile.rmtree(tmp)
      raise
    if tf.io.gfile.exists(directory):
      tf.io.gfile.rmtree(directory)
    tf.io.gfile.rename(tmp, directory)

  def _restore(self, directory: str) -> None:
    tf.train.Checkpoint(iterator=self._iterator).read(
        os.path.join(directory, _STATE_PREFIX)).assert_consumed()


_STATE_PREFIX = "iterator"
_STATE_META = "meta.json"


def read_iterator_meta(directory: str | None) -> dict | None:
  """The metadata of an iterator state written by ``InputIterator.save``,
  or None when there is none (or it is unreadable)."""
  if not directory:
    return None
  path = os.path.join(directory, _STATE_META)
  try:
    with tf.io.gfile.GFile(path) as f:
      meta = json.loads(f.read())
  except (tf.errors.NotFoundError, OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) and meta.get("format") == 1 else None


def _check_stream(lengths: Mapping[str, int], batch_size: int,
                  shard_index: int, num_shards: int, start_batch: int
                  ) -> None:
  """Raises DataError naming the first bad argument of ``make_dataset``."""
  if set(lengths) != {"inputs", "targets"} or any(
      int(v) < 2 for v in lengths.values()):
    raise DataError(f"lengths: expected {{'inputs': P, 'targets': T}} with "
                    f"values >= 2, got {dict(lengths)}")
  if batch_size < 1:
    raise DataError(f"batch_size: must be >= 1, got {batch_size}")
  if not 0 <= shard_index < num_shards:
    raise DataError(f"shard_index: {shard_index} not in [0, {num_shards})")
  if start_batch < 0:
    raise DataError(f"start_batch: must be >= 0, got {start_batch}")


def _pipeline(seqio_task: seqio.Task, stream: Mapping[str, Any],
              skip: int) -> tf.data.Dataset:
  """The batched int32 pipeline of a stream (``make_dataset``'s signature
  of it), after ``skip`` batches."""
  lengths, batch_size = stream["lengths"], stream["batch_size"]
  shards = stream["num_shards"]
  ds = seqio_task.get_dataset(
      sequence_length=lengths, split=stream["split"],
      shuffle=stream["shuffle"], seed=stream["seed"],
      shard_info=(seqio.ShardInfo(index=stream["shard_index"],
                                  num_shards=shards) if shards > 1 else None),
      num_epochs=None if stream["repeat"] else 1, try_in_mem_cache=False)
  ds = seqio.EncDecFeatureConverter(pack=stream["pack"])(
      ds, task_feature_lengths=lengths)
  if stream["repeat"]:
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    ds = ds.batch(batch_size).map(
        functools.partial(_pad_batch, batch_size=batch_size))
  ds = ds.skip(skip).map(
      lambda b: {k: tf.cast(v, tf.int32) for k, v in b.items()})
  options = tf.data.Options()
  # The pipelines' Python stages (span corruption) are pure functions of
  # their inputs and the SentencePiece resource is read-only: there is no
  # external state that a checkpoint of the iterator would miss.
  options.experimental_external_state_policy = (
      tf.data.experimental.ExternalStatePolicy.IGNORE)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def make_dataset(task: str, split: str, *, vocab_path: str,
                 lengths: Mapping[str, int], batch_size: int, pack: bool,
                 seed: int, shuffle: bool, repeat: bool, shard_index: int = 0,
                 num_shards: int = 1, start_batch: int = 0,
                 data_dir: str | None = None,
                 iterator_state: str | None = None) -> InputIterator:
  """Batches of a task split in seqio's ``EncDecFeatureConverter`` layout.

  Features (int32, ``[batch_size, length]``): ``encoder_input_tokens``
  ``[B, P]``, ``decoder_input_tokens``, ``decoder_target_tokens``,
  ``decoder_loss_weights`` ``[B, T]``, and when ``pack`` also
  ``encoder_segment_ids``, ``encoder_positions``, ``decoder_segment_ids``,
  ``decoder_positions`` (segment 0 = padding). Packing (seqio's) fills each
  row with several examples, so short inputs are not padded to ``P``.

  The stream is a function of (task, split, vocabulary, lengths, pack,
  batch_size, seed, shuffle, shard): ``start_batch=k`` yields exactly the
  batches an uninterrupted iterator yields from its k-th on. When
  ``iterator_state`` names a state that ``InputIterator.save`` wrote at
  position k for the same stream, it is restored (constant time in k);
  otherwise (no state, another position or stream) the pipeline is replayed
  and the first k batches skipped. ``InputIterator.resume`` says which. Every
  host must pass the same ``seed`` so that the shards stay disjoint. With
  ``repeat`` the epochs run forever (a fresh shuffle each) and incomplete
  batches never occur; without it the last batch is completed with all-zero
  rows (loss weight 0).

  If the tasks were not registered with this vocabulary and data_dir,
  registers them (keeping earlier ``register_finetune_tasks`` prefixes and
  extra ids).

  Args:
    task: Name in ``TASKS``.
    split: A split of the task.
    vocab_path: Local SentencePiece model file.
    lengths: ``{"inputs": P, "targets": T}`` token lengths.
    batch_size: Rows per batch (per host).
    pack: Pack several examples per row.
    seed: Seed of shuffling and span corruption.
    shuffle: Shuffle the examples.
    repeat: Repeat the split indefinitely.
    shard_index: This host's shard.
    num_shards: Number of shards (hosts).
    start_batch: Resume position (batches already consumed).
    data_dir: TFDS data directory.
    iterator_state: Directory of a saved iterator state to restore at
      ``start_batch`` (ignored when absent or not of this stream).

  Returns:
    An ``InputIterator`` (arguments are checked and the pipeline built
    before it is returned).

  Raises:
    DataError: a bad argument, naming it.
  """
  _check_stream(lengths, batch_size, shard_index, num_shards, start_batch)
  seqio_task = _registered_task(task, vocab_path, data_dir)
  if split not in TASKS[task].splits:
    raise DataError(f"split: {task} has splits {TASKS[task].splits}, not "
                    f"{split!r}")
  lengths = {k: int(v) for k, v in lengths.items()}
  signature = {"task": task, "split": split, "lengths": lengths,
               "batch_size": batch_size, "pack": pack, "seed": seed,
               "shuffle": shuffle, "repeat": repeat,
               "shard_index": shard_index, "num_shards": num_shards}
  meta = read_iterator_meta(iterator_state) if start_batch else None
  restore = (meta is not None and meta.get("position") == start_batch
             and meta.get("signature") == signature)
  build = functools.partial(_pipeline, seqio_task, signature)
  if restore:
    # The restored state includes the skip() of the run that saved it (a
    # stage of the pipeline's structure); nothing is read again.
    skipped = int(meta["skipped"])
    it = InputIterator(build(skipped), skipped=skipped, position=start_batch,
                       resume="restored", signature=signature)
    try:
      it._restore(iterator_state)  # pylint: disable=protected-access
      return it
    except (tf.errors.OpError, AssertionError, ValueError) as err:
      logging.warning("%s: iterator state not restored (%s); replaying %d "
                      "batches", iterator_state, str(err).splitlines()[0],
                      start_batch)
  return InputIterator(build(start_batch), skipped=start_batch,
                       position=start_batch,
                       resume="replayed" if start_batch else "start",
                       signature=signature)
