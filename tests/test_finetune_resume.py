"""Resuming a fine-tuning run on a text task restores the input pipeline
from the iterator state saved with the checkpoint (no replay), and the
resumed run logs exactly the uninterrupted run's losses.

In-process, one device. Marked slow: each ``train`` call compiles its step
(about 45 s a call on a busy 2-core CPU, three calls a test). The data-level
tests in test_finetune_data.py check the restore itself in the default
suite.
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("seqio")

from harness.finetune import config as config_lib  # noqa: E402
from harness.finetune import trainer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(REPO, "checkpoints", "multi30k_t5", "large",
                     "spiece.model")


def _cfg(**kw) -> config_lib.FinetuneConfig:
  base = dict(model_size="tiny", vocab_path=VOCAB,
              task="ft_wmt_newstest_offline", inputs_length=16,
              targets_length=16, pack=True, batch_size=8, accumulate_steps=2,
              train_steps=6, learning_rate=0.01, dropout_rate=0.1,
              activation_dtype="float32", checkpoint_every_steps=3,
              eval_every_steps=0, eval_split=None, eval_batches=0,
              eval_examples=0, export_dir=None)
  base.update(kw)
  return config_lib.FinetuneConfig(**base)


def _losses(workdir):
  with open(os.path.join(workdir, "train_log.jsonl"), encoding="utf-8") as f:
    return [(r["step"], r["loss"]) for r in map(json.loads, f)]


@pytest.mark.slow
def test_resume_restores_the_input_iterator(tmp_path):
  full, parts = str(tmp_path / "full"), str(tmp_path / "parts")
  trainer.train(_cfg(), full, progress=False, log=lambda m: None)
  messages = []
  trainer.train(_cfg(max_steps=3), parts, progress=False,
                log=messages.append)
  state = os.path.join(parts, "checkpoints", "3", "input_iterator",
                       "process_0_of_1", "meta.json")
  with open(state, encoding="utf-8") as f:
    assert json.load(f)["position"] == 3 * 2  # steps × accumulate_steps
  trainer.train(_cfg(), parts, progress=False, log=messages.append)
  assert any("input pipeline at batch 6: restored" in m for m in messages), (
      messages)
  assert _losses(parts) == _losses(full)
  assert [s for s, _ in _losses(full)] == list(range(1, 7))


@pytest.mark.slow
def test_resume_without_iterator_state_replays(tmp_path):
  """A checkpoint without the state (an older run, or killed between the
  two writes) resumes by replaying, to the same losses."""
  import shutil  # pylint: disable=g-import-not-at-top
  full, parts = str(tmp_path / "full"), str(tmp_path / "parts")
  trainer.train(_cfg(train_steps=4), full, progress=False,
                log=lambda m: None)
  trainer.train(_cfg(train_steps=4, max_steps=3), parts, progress=False,
                log=lambda m: None)
  shutil.rmtree(os.path.join(parts, "checkpoints", "3", "input_iterator"))
  messages = []
  trainer.train(_cfg(train_steps=4), parts, progress=False,
                log=messages.append)
  assert any("input pipeline at batch 6: replayed" in m for m in messages), (
      messages)
  assert _losses(parts) == _losses(full)
