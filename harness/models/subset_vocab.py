"""Drafters whose output layer scores a subset S of the verifier's vocabulary.

A drafter's cost at batch size 1 is often its output layer: Gemma's has
262,144 rows, several times the rest of a small drafter. Scoring only a
subset S of the vocabulary (the most frequent tokens, say) cuts that cost
by |S| / V while the input embedding still reads any token of the context.

`restrict_output(model, ids)` returns a copy of a T5 or Gemma model whose
`score` computes logits for the ids in S only and returns them at their
full-vocabulary positions, with every other position at `layers.NEG_INF`.
So the drafter's distribution q is exactly 0 outside S and every
speculative method is unchanged and exact: the acceptance test
min(1, π(y) / q(y)) only meets drafted tokens (in S), and the residual
norm(max(0, π − q)) is taken over the whole vocabulary, so it carries all of
π's mass outside S. What S costs is acceptance: at most the target's mass
on S.

The output rows start as the model's own (the tied embedding's rows, or
the untied head's columns, for S); `params["head"]` can then be trained.
Layout: params["head"] is [|S|, D] for a tied model (Gemma, tied T5) and
[D, |S|] for T5's untied head; params["head_ids"] [|S|] int32, sorted.
Such a model runs on one device (the tensor-parallel layouts don't know
these two entries).

On disk (`save_output` / `load_output`, called by `save_pretrained` and
`weights.load_checkpoint`): the checkpoint as usual (its full embedding is
the input embedding) plus `output_subset.safetensors` holding `head` and
`head_ids`; a checkpoint folder with that file loads as a subset drafter.
"""

from __future__ import annotations

import os
from typing import Iterable

import jax.numpy as jnp
import numpy as np
import safetensors.numpy

# Beside a checkpoint's weights: the output subset's rows and ids.
SUBSET_FILE = "output_subset.safetensors"


def output_ids(model) -> np.ndarray | None:
  """The model's output subset S (sorted ids), or None for the full vocab."""
  ids = model.params.get("head_ids")
  return None if ids is None else np.asarray(ids)


def restrict_output(model, ids, keep: tuple[int, ...] = ()):
  """A copy of `model` whose logits cover only `ids` (and `keep`, EOS).

  Args:
    model: a T5 or Gemma model with the full vocabulary.
    ids: full-vocabulary ids of S (any order; duplicates are merged).
    keep: ids that must be in S whatever `ids` says (stop-string pieces);
      the model's EOS is always added.

  Raises:
    ValueError naming the offending id when one is outside the vocabulary,
    or when the model is already restricted.
  """
  if output_ids(model) is not None:
    raise ValueError("the model's output is already restricted to a subset")
  vocab = model.vocab_size
  chosen = np.unique(np.concatenate([
      np.asarray(ids, np.int64).reshape(-1), np.asarray(keep, np.int64),
      np.asarray([model.eos_id], np.int64)]))
  bad = chosen[(chosen < 0) | (chosen >= vocab)]
  if bad.size:
    raise ValueError(f"subset id {int(bad[0])} is outside the vocabulary "
                     f"[0, {vocab})")
  params = dict(model.params)
  index = jnp.asarray(chosen, jnp.int32)
  tied = "lm_head" not in params
  params["head"] = (params["embed"][index] if tied
                    else params["lm_head"][:, index])
  params["head_ids"] = index
  return model.replace(params=params)


def save_output(model, directory: str | os.PathLike) -> str | None:
  """Writes a restricted model's `head` and `head_ids` into `directory`;
  returns the file's path (None, and nothing written, for a full-vocabulary
  model)."""
  ids = output_ids(model)
  if ids is None:
    return None
  path = os.path.join(os.fspath(directory), SUBSET_FILE)
  safetensors.numpy.save_file(
      {"head": np.ascontiguousarray(np.asarray(model.params["head"])),
       "head_ids": ids.astype(np.int32)}, path,
      metadata={"vocab_size": str(model.vocab_size)})
  return path


def load_output(model, path: str | os.PathLike):
  """`model` (full vocabulary) with the output subset saved at `path`.

  Raises:
    ValueError naming the file and the problem: ids unsorted, repeated or
    outside the vocabulary, or a `head` whose shape does not match them.
  """
  path = os.fspath(path)
  tensors = safetensors.numpy.load_file(path)
  ids = np.asarray(tensors["head_ids"], np.int64)
  head = tensors["head"]
  if ids.ndim != 1 or np.any(np.diff(ids) <= 0):
    raise ValueError(f"{path}: head_ids must be sorted and distinct")
  if ids.size and (ids[0] < 0 or ids[-1] >= model.vocab_size):
    raise ValueError(f"{path}: head_ids outside the vocabulary "
                     f"[0, {model.vocab_size})")
  tied = "lm_head" not in model.params
  d = model.config.d_model
  want = (ids.size, d) if tied else (d, ids.size)
  if tuple(head.shape) != want:
    raise ValueError(f"{path}: head has shape {tuple(head.shape)}, expected "
                     f"{want} for {ids.size} ids and d_model {d}")
  params = dict(model.params)
  params["head"] = jnp.asarray(head, model.params["embed"].dtype)
  params["head_ids"] = jnp.asarray(ids, jnp.int32)
  return model.replace(params=params)


def frequency_ranking(sequences: Iterable[Iterable[int]],
                      vocab_size: int) -> np.ndarray:
  """Every id seen in `sequences`, most frequent first (ties: smaller id).

  `frequent_ids(..., size)` takes its first `size`; a subset cut from a
  larger one by the same ranking stays inside it.
  """
  counts = np.zeros(vocab_size, np.int64)
  for seq in sequences:
    ids = np.asarray(list(seq), np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
      bad = ids[(ids < 0) | (ids >= vocab_size)][0]
      raise ValueError(f"token id {int(bad)} is outside the vocabulary "
                       f"[0, {vocab_size})")
    np.add.at(counts, ids, 1)
  order = np.lexsort((np.arange(vocab_size), -counts))
  return order[counts[order] > 0]


def frequent_ids(sequences: Iterable[Iterable[int]], size: int,
                 vocab_size: int, keep: Iterable[int] = ()) -> np.ndarray:
  """The `size` most frequent ids of `sequences`, plus `keep`, sorted.

  Ties are broken by the smaller id, so the choice is deterministic; ids
  never seen fill no slot (the result can be smaller than `size` when the
  text uses fewer distinct tokens). `keep` (EOS, stop-string pieces) is
  added on top of the `size` chosen.
  """
  if size < 1:
    raise ValueError(f"subset size {size} must be >= 1")
  chosen = frequency_ranking(sequences, vocab_size)[:size]
  return np.unique(np.concatenate([chosen, np.asarray(list(keep), np.int64)]))
