"""The fine-tuning command: config layering, schedules, FLOPs, and real runs
of a tiny T5 v1.1 on 8 fake devices (data 4 × model 2, in subprocesses:
XLA_FLAGS must be set before jax starts) — the loss falls, a SIGKILLed run
resumed from its checkpoint logs exactly the uninterrupted run's losses, and
the export loads and decodes.

The three subprocesses share a persistent compilation cache, so only the
first compiles the step.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import pytest

from harness.finetune import config as config_lib
from harness.finetune import mfu
from harness.models import configs
from harness.edge import gin_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(REPO, "checkpoints", "multi30k_t5", "small",
                     "spiece.model")
TOP_LEVEL = sorted(os.path.basename(p) for p in glob.glob(
    os.path.join(REPO, "gin", "finetune", "*.gin")))


# --- config -------------------------------------------------------------------
@pytest.mark.parametrize("name", TOP_LEVEL)
def test_shipped_gin_files_parse(name):
  bindings = [] if name.startswith("newstest") else [
      'INIT_CHECKPOINT="/ckpt/t5"']
  cfg, text = config_lib.parse([f"finetune/{name}"], bindings)
  assert "FinetuneConfig" in text
  if name.startswith("newstest"):
    assert (cfg.task, cfg.inputs_length, cfg.targets_length) == (
        "ft_wmt_newstest_offline", 128, 128)
    assert cfg.prefix == "" and cfg.time_limit_s == 1800
    assert cfg.test_split == "test" and cfg.test_examples == 500
    return
  size = "t5_v1_1_large" if "large" in name else "t5_v1_1_small"
  assert cfg.model_size == size and cfg.init_checkpoint == "/ckpt/t5"
  assert cfg.batch_size == 128 and cfg.pack
  want = {"wmt14_ende": ("ft_wmt14_ende", 80, 80, 250_000, "constant"),
          "xsum": ("ft_xsum", 1024, 64, 100_000, "constant"),
          "cnn_dailymail": ("ft_cnn_dailymail", 2048, 128, 200_000,
                            "constant"),
          "c4_span": ("ft_c4_span", 512, 114, 100_000, "rsqrt")}
  key = name.rsplit("_", 1)[0]
  assert (cfg.task, cfg.inputs_length, cfg.targets_length, cfg.train_steps,
          cfg.schedule) == want[key]
  if key == "c4_span":
    assert cfg.dropout_rate == 0.0 and cfg.extra_ids == 100
    assert cfg.schedule_offset == 1_000_000
  else:
    assert cfg.dropout_rate == 0.1 and cfg.learning_rate == 1e-3


def test_bad_value_is_one_line_naming_the_binding():
  with pytest.raises(gin_files.ConfigError) as err:
    config_lib.parse(["finetune/newstest_multi30k_large.gin"],
                     ["FinetuneConfig.accumulate_steps=5"])
  message = str(err.value)
  assert "\n" not in message
  assert message.startswith("gin/finetune/")
  assert "FinetuneConfig.batch_size" in message
  assert "batch_size=32" in message and "accumulate_steps=5" in message


def test_required_checkpoint_is_reported():
  with pytest.raises(gin_files.ConfigError, match="INIT_CHECKPOINT"):
    config_lib.parse(["finetune/wmt14_ende_small.gin"])


def test_schedules():
  from harness.finetune import steps  # pylint: disable=g-import-not-at-top
  const = steps.learning_rate_schedule(config_lib.FinetuneConfig())
  assert float(const(0)) == float(const(10**6)) == pytest.approx(1e-3)
  rsqrt = steps.learning_rate_schedule(config_lib.FinetuneConfig(
      schedule="rsqrt", learning_rate=1.0, warmup_steps=10_000))
  assert float(rsqrt(0)) == pytest.approx(0.01)
  assert float(rsqrt(40_000)) == pytest.approx(0.005)
  offset = steps.learning_rate_schedule(config_lib.FinetuneConfig(
      schedule="rsqrt", learning_rate=1.0, schedule_offset=1_000_000))
  assert float(offset(0)) == pytest.approx(1e-3)


def test_step_flops_counts_every_matmul():
  c = configs.TINY_T5  # D 32, H·K 32, F 64, V 128, 2 + 2 layers
  enc, dec, out = mfu.matmul_params(c)
  assert enc == 2 * (4 * 32 * 32 + 3 * 32 * 64)
  assert dec == 2 * (8 * 32 * 32 + 3 * 32 * 64)
  assert out == 32 * 128
  b, p, t = 4, 16, 8
  want = 6 * (enc * b * p + (dec + out) * b * t) + 12 * b * 32 * (
      2 * p * p + 2 * (t * t + t * p))
  assert mfu.step_flops(c, b, p, t) == want
  # T5 v1.1 large: the matmul weights plus the embedding are its published
  # 783M parameters (norms and position biases are a few thousand), and at
  # 128/128 tokens the weights' 6·N·tokens dominates the attention terms.
  large = configs.get_config("t5_v1_1_large")
  enc, dec, out = mfu.matmul_params(large)
  embed = large.vocab_size * large.d_model
  assert enc + dec + out + embed == pytest.approx(783e6, rel=0.01)
  ratio = mfu.step_flops(large, 1, 128, 128) / (6 * (enc + dec + out) * 128)
  assert 1.0 < ratio < 1.1
  assert mfu.utilisation(1e12, 2.0, None) is None
  assert mfu.utilisation(1e12, 2.0, 1e12) == 0.5


# --- real runs on 8 fake devices ---------------------------------------------
_GIN = """
FinetuneConfig.model_size = "tiny"
FinetuneConfig.vocab_path = "{vocab}"
FinetuneConfig.task = "synthetic"
FinetuneConfig.inputs_length = 12
FinetuneConfig.targets_length = 12
FinetuneConfig.batch_size = 16
FinetuneConfig.accumulate_steps = 2
FinetuneConfig.model_parallel = 2
FinetuneConfig.train_steps = 10
FinetuneConfig.learning_rate = 0.01
FinetuneConfig.dropout_rate = 0.1
FinetuneConfig.activation_dtype = "float32"
FinetuneConfig.checkpoint_every_steps = 4
FinetuneConfig.eval_every_steps = 0
FinetuneConfig.eval_split = None
FinetuneConfig.eval_batches = 0
FinetuneConfig.eval_examples = 0
FinetuneConfig.export_dir = "export"
"""


def _finetune(workdir: str, gin_file: str, cache: str, *extra: str):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  return subprocess.run(
      [sys.executable, "-m", "harness", "finetune", "--gin_file", gin_file,
       "--workdir", workdir, "--no_progress", "--compilation_cache_dir",
       cache, *extra],
      env=env, capture_output=True, text=True, timeout=300, check=False)


def _losses(workdir: str) -> list[tuple[int, float, float]]:
  with open(os.path.join(workdir, "train_log.jsonl"), encoding="utf-8") as f:
    return [(r["step"], r["loss"], r["learning_rate"])
            for r in map(json.loads, f)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """An uninterrupted run, and one SIGKILLed after step 6 then resumed."""
  root = tmp_path_factory.mktemp("finetune")
  gin_file = root / "tiny.gin"
  gin_file.write_text(_GIN.format(vocab=VOCAB))
  cache = os.environ["HARNESS_TEST_FINETUNE_XLA_CACHE"]  # conftest.py
  full, killed = str(root / "full"), str(root / "killed")
  first = _finetune(full, str(gin_file), cache)
  assert first.returncode == 0, first.stderr[-3000:]
  dead = _finetune(killed, str(gin_file), cache, "--kill_at_step", "6")
  resumed = _finetune(killed, str(gin_file), cache)
  return {"full": full, "killed": killed, "dead": dead, "resumed": resumed,
          "first": first}


def test_loss_decreases_with_data_and_model_parallelism(runs):
  log = _losses(runs["full"])
  assert [s for s, _, _ in log] == list(range(1, 11))
  losses = [l for _, l, _ in log]
  assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
  with open(os.path.join(runs["full"], "provenance.json"),
            encoding="utf-8") as f:
    prov = json.load(f)
  assert prov["mesh"] == {"data": 4, "model": 2}
  assert prov["device"]["num_devices"] == 8
  with open(os.path.join(runs["full"], "train_log.jsonl"),
            encoding="utf-8") as f:
    record = json.loads(f.readline())
  assert record["mfu"] == "unknown"  # CPU: no peak in the table
  assert record["tokens"] > 0 and record["tokens_per_s"] > 0


def test_sigkill_and_resume_reproduce_the_losses(runs):
  assert runs["dead"].returncode == -signal.SIGKILL, runs["dead"].stderr
  resumed = runs["resumed"]
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step 4" in resumed.stdout + resumed.stderr
  # Steps 5 and 6 ran twice (before the kill and after the resume): the log
  # keeps one record of each, equal to the uninterrupted run's.
  assert _losses(runs["killed"]) == _losses(runs["full"])


def test_export_loads_and_decodes(runs):
  from harness.models import load_pretrained  # pylint: disable=g-import-not-at-top
  from harness.training import evaluate  # pylint: disable=g-import-not-at-top
  loaded = load_pretrained(os.path.join(runs["full"], "export"),
                           dtype=jnp.float32)
  assert loaded.model.config.vocab_size % 128 == 0
  assert loaded.model.config.d_model == configs.TINY_T5.d_model
  prompt = loaded.tokenizer.encode("a small test sentence") + [1]
  tokens = evaluate.greedy_tokens(loaded.model, prompt, max_decode_len=8)
  assert 1 <= len(tokens) <= 8
  assert all(0 <= t < loaded.model.config.vocab_size for t in tokens)


def test_parses_after_another_gin_config_was_locked():
  # A sweep's gin parse locks gin's config; the fine-tuning config (and the
  # sweep's configurables, registered on first use) must still register.
  code = textwrap.dedent("""
      import gin
      gin.parse_config("")  # finalises: the config is now locked
      from harness.finetune import config
      cfg, _ = config.parse(["finetune/wmt14_ende_small.gin"],
                            ["INIT_CHECKPOINT = '/ckpt'"])
      from harness.runner import gin_config
      gin_config._register()  # pylint: disable=protected-access
      print("OK", cfg.task)
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 0, out.stderr[-2000:]
  assert "OK ft_wmt14_ende" in out.stdout
