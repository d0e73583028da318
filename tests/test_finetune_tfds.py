"""A tiny T5 v1.1 fine-tuned on 8 fake devices (data 4 × model 2) on TFDS
mock data of each fine-tuning task: the loss falls on every one.

One subprocess (XLA_FLAGS must be set before jax starts) trains the three
tasks one after another with the shapes and settings of tests/test_finetune.py's
runs (unpacked 12/12 rows, batch 16 in 2 microbatches, dropout 0.1), so the
training step is the one those runs compiled: the session's persistent
compilation cache (conftest.py) serves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("seqio")
pytest.importorskip("tensorflow_datasets")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(REPO, "checkpoints", "multi30k_t5", "small",
                     "spiece.model")
TASKS = ("ft_wmt14_ende", "ft_xsum", "ft_cnn_dailymail")
STEPS = 8

_SCRIPT = textwrap.dedent("""
    import json, os, pathlib, sys
    import jax
    import tensorflow_datasets as tfds
    from harness.finetune import config, data, trainer

    root, vocab, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tasks = sys.argv[4:]
    jax.config.update("jax_compilation_cache_dir", sys.argv[-1])
    tasks = tasks[:-1]
    tfds_dir = os.path.join(root, "tfds")
    num = 48
    for name in tasks:  # split metadata, so that seqio can list the shards
      builder = tfds.builder(data.TASKS[name].tfds_name, data_dir=tfds_dir)
      builder.info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
          name=s, shard_lengths=[num], num_bytes=0,
          filename_template=tfds.core.ShardedFileTemplate(
              data_dir=builder.data_dir, dataset_name=builder.name, split=s,
              filetype_suffix="tfrecord")) for s in data.SPLITS]))
      pathlib.Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
      builder.info.write_to_directory(builder.data_dir)
    out = {}
    with tfds.testing.mock_data(num_examples=num, data_dir=tfds_dir,
                                policy=tfds.testing.MockPolicy.USE_FILES):
      for name in tasks:
        cfg = config.FinetuneConfig(
            model_size="tiny", vocab_path=vocab, task=name,
            data_dir=tfds_dir, inputs_length=12, targets_length=12,
            pack=False, batch_size=16, accumulate_steps=2, model_parallel=2,
            train_steps=steps, learning_rate=0.01, dropout_rate=0.1,
            activation_dtype="float32", checkpoint_every_steps=steps,
            eval_every_steps=0, eval_split=None, eval_batches=0,
            eval_examples=0, export_dir=None)
        workdir = os.path.join(root, name)
        summary = trainer.train(cfg, workdir, progress=False,
                                log=lambda m: None)
        with open(os.path.join(workdir, "provenance.json")) as f:
          mesh = json.load(f)["mesh"]
        with open(os.path.join(workdir, "train_log.jsonl")) as f:
          log = [json.loads(line) for line in f]
        out[name] = {"mesh": mesh, "end_step": summary["end_step"],
                     "losses": [r["loss"] for r in log],
                     "segments": [r["target_tokens"] for r in log]}
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("finetune_tfds"))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  proc = subprocess.run(
      [sys.executable, "-c", _SCRIPT, root, VOCAB, str(STEPS), *TASKS,
       os.environ["HARNESS_TEST_FINETUNE_XLA_CACHE"]],
      env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
  return json.loads(line[-1][len("RESULT "):])


@pytest.mark.parametrize("task", TASKS)
def test_loss_decreases_on_tfds_mock_data(results, task):
  run = results[task]
  assert run["mesh"] == {"data": 4, "model": 2}
  assert run["end_step"] == STEPS
  losses = run["losses"]
  assert len(losses) == STEPS and all(t > 0 for t in run["segments"])
  assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
