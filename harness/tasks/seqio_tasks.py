"""seqio Tasks for every harness task (import only when needed: seqio is heavy).

Each seqio Task reads its examples through ``load_examples`` (a
``seqio.FunctionDataSource``), so prompts, shots and sampling are identical on
the seqio and seqio-free paths, and MBPP (no TFDS builder) is served from the
bundled file. Features: ``inputs`` and ``targets`` (the first reference, or ""
when there is none) tokenized with a ``seqio.SentencePieceVocabulary`` built
from a caller-given local model file (never a cloud-hosted default
vocabulary); ``id`` and ``references`` (all references joined by
``REFERENCE_SEPARATOR``) pass through untokenized for scoring.

Metric functions score with ``harness.metrics`` on all references (the target
post-processor returns them from ``references``). ``pass@1`` needs MBPP's test
cases, which seqio metric functions do not see: score MBPP with
``harness.metrics.compute_metrics`` and the examples' ``extra``.

The seqio registration of the project is here: ``replace_task`` (re-)adds a
Task under its name and ``tfds_source`` reads a TFDS dataset at the version
pinned in ``datasets.TFDS_VERSIONS``; fine-tuning's Tasks
(``harness.finetune.data``) are registered through both.

Under ``tfds.testing.mock_data`` call ``get_dataset(...,
try_in_mem_cache=False)``.
"""

from __future__ import annotations

import functools
from typing import Any

from harness import extras
from harness import metrics as metrics_lib
from harness.tasks import datasets
from harness.tasks import registry
from harness.tasks.spec import Source, TaskSpec

seqio = extras.require("seqio", "the seqio tasks")
tf = extras.require("tensorflow", "the seqio tasks")

SEQIO_PREFIX = "harness_"
REFERENCE_SEPARATOR = "\x1f"  # ASCII unit separator: absent from the data.


def replace_task(task: seqio.Task) -> seqio.Task:
  """Registers ``task`` under its name, replacing an earlier registration."""
  seqio.TaskRegistry.remove(task.name)
  seqio.TaskRegistry.add_provider(task.name, task)
  return task


def tfds_source(name: str, splits: tuple[str, ...],
                data_dir: str | None = None) -> seqio.TfdsDataSource:
  """TFDS dataset ``name`` at its pinned version (``datasets.tfds_versioned``)
  read from ``data_dir`` (None: TFDS's default)."""
  return seqio.TfdsDataSource(tfds_name=datasets.tfds_versioned(name),
                              tfds_data_dir=data_dir, splits=splits)


def seqio_name(name: str, source: Source | str = Source.OFFLINE) -> str:
  """The seqio registry name of harness task ``name`` for a source."""
  return f"{SEQIO_PREFIX}{name}_{Source(source).value}"


def _splits(spec: TaskSpec, source: Source) -> tuple[str, ...]:
  if source is Source.TFDS and spec.tfds is not None:
    return tuple(dict.fromkeys(
        s for s in (spec.tfds.eval_split, spec.tfds.shot_split) if s))
  return datasets.OFFLINE_READERS[spec.offline.dataset][1]


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None, *,
                name: str, source: Source, data_dir: str | None,
                num_examples: int | None) -> tf.data.Dataset:
  del shuffle_files  # Examples come in load_examples' deterministic order.
  examples = registry.load_examples(
      name, split=split, num_examples=num_examples, seed=seed or 0,
      source=source, data_dir=data_dir)
  return tf.data.Dataset.from_tensor_slices({
      "id": [e.id for e in examples],
      "inputs": [e.inputs for e in examples],
      "targets": [e.targets[0] if e.targets else "" for e in examples],
      "references": [REFERENCE_SEPARATOR.join(e.targets) for e in examples],
  })


def _postprocess(output: Any, example: Any = None, is_target: bool = False,
                 *, name: str) -> Any:
  """Predictions: the task's post-processing; targets: all references."""
  if is_target:
    refs = example["references"]
    refs = refs.decode("utf-8") if isinstance(refs, bytes) else str(refs)
    return tuple(r for r in refs.split(REFERENCE_SEPARATOR) if r)
  return registry.postprocess(name, output)


def _metric_fn(targets, predictions, *, names: tuple[str, ...]):
  return metrics_lib.compute_metrics(names, targets, predictions)


def _task(spec: TaskSpec, vocabulary: seqio.Vocabulary, source: Source,
          data_dir: str | None, num_examples: int | None) -> seqio.Task:
  data_source = seqio.FunctionDataSource(
      dataset_fn=functools.partial(
          _dataset_fn, name=spec.name, source=source, data_dir=data_dir,
          num_examples=num_examples),
      splits=_splits(spec, source))
  names = tuple(m for m in spec.metrics
                if not metrics_lib.get_metric(m).uses_extras)
  return seqio.Task(
      seqio_name(spec.name, source), source=data_source,
      output_features={
          "inputs": seqio.Feature(vocabulary, add_eos=False),
          "targets": seqio.Feature(vocabulary, add_eos=True)},
      preprocessors=[seqio.preprocessors.tokenize,
                     seqio.preprocessors.append_eos],
      postprocess_fn=functools.partial(_postprocess, name=spec.name),
      metric_fns=[functools.partial(_metric_fn, names=names)] if names else [])


def register_tasks(vocab_model_path: str, *,
                   source: Source | str = Source.OFFLINE,
                   data_dir: str | None = None,
                   num_examples: int | None = None) -> dict[str, seqio.Task]:
  """Registers (or re-registers) a seqio Task for every harness task.

  Args:
    vocab_model_path: Local SentencePiece model file for the vocabulary.
    source: "offline" (bundled data) or "tfds" (prepared TFDS under
      ``data_dir``).
    data_dir: TFDS data directory for the TFDS source.
    num_examples: Sample this many examples per split (None: all).

  Returns:
    Harness task name → registered seqio Task.
  """
  source = Source(source)
  vocabulary = seqio.SentencePieceVocabulary(vocab_model_path)
  tasks = {}
  for spec in registry.TASKS.values():
    tasks[spec.name] = replace_task(
        _task(spec, vocabulary, source, data_dir, num_examples))
  return tasks
