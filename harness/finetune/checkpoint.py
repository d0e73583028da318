"""Training checkpoints with orbax: save every N steps, keep the last K,
restore the newest exactly (params, optimiser state, step).

A checkpoint is ``<workdir>/checkpoints/<step>/`` written by
`orbax.checkpoint.CheckpointManager` (temporary directory, then an atomic
rename: a SIGKILL mid-save leaves the previous checkpoints intact and the
partial one is ignored). It holds two items: ``state`` (the train state
pytree, sharded arrays written per shard) and ``meta`` (JSON: step, data
position, the config's fingerprint). The input pipeline's position is the
step itself (``start_batch = step × accumulate_steps``). Once the checkpoint
is complete, each process adds its input iterator's state
(``<step>/input_iterator/process_<i>_of_<n>/``, see
`harness.finetune.data.InputIterator`), so that a resume restores the
pipeline instead of replaying ``start_batch`` batches; a checkpoint without
it (killed in between, an older run, a pipeline that cannot be
checkpointed) is resumed by replaying.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """The run's checkpoint directory.

  Args:
    directory: ``<workdir>/checkpoints`` (created).
    keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Writes `state` (a pytree of arrays) and `meta` (JSON) as `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                       force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """(state, meta) of `step`; arrays get the shapes, dtypes and
    shardings of `like` (a pytree of arrays or ShapeDtypeStructs)."""
    abstract = jax.tree.map(_abstract, like)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def iterator_dir(self, step: int) -> str:
    """Where this process's input iterator state of `step` goes."""
    return os.path.join(
        self.directory, str(step), "input_iterator",
        f"process_{jax.process_index()}_of_{jax.process_count()}")

  def close(self) -> None:
    self._manager.close()


def _abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype,
                              sharding=getattr(x, "sharding", None))
