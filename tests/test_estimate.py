"""The dry run's time estimate: its arithmetic by hand, its assumptions
line, and docs/running.md's transcripts against what the commands print."""

import os
import subprocess
import sys

import pytest

from harness.models import chips
from harness.runner import estimate, preflight
from harness.testing import estimates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHIP = estimates.CHIP
_fp = estimates.footprint


def test_step_reads_the_step_weights_and_the_cache():
  # Decoder weights 1,200 B + KV 100 B at 1 GB/s = 1.3 µs; FLOPs:
  # 2 × (1000 × 1200 / 2000) = 1,200 at 1 GFLOP/s = 1.2 µs; + 50 µs.
  assert estimate.step_seconds(_fp(), CHIP) == pytest.approx(51.3e-6)
  # Split two ways: + 2 all-reduces per layer.
  assert estimate.step_seconds(_fp(split=2), CHIP) == pytest.approx(
      50e-6 + 1.3e-6 + 2 * 4 * estimate.COLLECTIVE_S)


def test_prefill_reads_every_weight_once_and_runs_the_prompt():
  # max(2,100 B / 1 GB/s = 2.1 µs, 40,000 FLOPs / 1 GFLOP/s = 40 µs) + 50.
  assert estimate.prefill_seconds(_fp(), CHIP) == pytest.approx(90e-6)
  assert estimate.prefill_seconds(None, CHIP) is None  # size unknown


def test_prefill_at_the_typical_prompt_length():
  # Sized for 100 prompt tokens at 300 FLOPs each (+ 10,000 fixed); at the
  # task's typical 20 tokens: 10,000 + 20 × 300 = 16,000 FLOPs = 16 µs,
  # against 2.1 µs of bytes, + 50 µs.
  fp = _fp(prefill_flops=40_000.0, input_len=100,
           prefill_flops_per_token=300.0)
  assert fp.prefill_flops_at(20) == pytest.approx(16_000.0)
  assert fp.prefill_flops_at(None) == fp.prefill_flops
  assert fp.prefill_flops_at(500) == fp.prefill_flops  # never above the max
  assert estimate.prefill_seconds(fp, CHIP, 20) == pytest.approx(66e-6)
  from harness.models import configs  # pylint: disable=g-import-not-at-top
  from harness.runner import config as cfg  # pylint: disable=g-import-not-at-top
  gemma = preflight.footprint(configs.get_config("gemma3_270m"),
                              cfg.DType.FLOAT32, 1, 2048, 5, 2)
  assert gemma.prefill_flops_at(44) == pytest.approx(
      2 * gemma.num_params * 44)
  t5 = preflight.footprint(configs.get_config("t5_v1_1_large"),
                           cfg.DType.BFLOAT16, 1, 512, 128, 5)
  # The decoder's one position stays; the encoder's share scales.
  assert t5.prefill_flops_at(0) == pytest.approx(
      t5.prefill_flops - 512 * t5.prefill_flops_per_token)
  assert t5.prefill_flops_at(0) > 0


def test_measured_chip_figures_replace_the_flat_overhead():
  measured = chips.Chip("m", "Measured chip", 16, 1e9, 1e9, 1,
                        bandwidth_fraction=0.5, layer_s=10e-6,
                        step_overhead_s=20e-6)
  # The loop's 20 µs + 4 layers × 10 µs + 1,300 B at 0.5 GB/s = 2.6 µs.
  assert estimate.step_seconds(_fp(), measured) == pytest.approx(62.6e-6)
  line = estimate.assumptions(estimate.Estimate(1, 1, 1.0, {}), measured)
  assert "20 µs per step (the loop, measured on Measured chip)" in line
  assert "10 µs per layer per step and 50% of the vendor bandwidth" in line
  # Without a measured loop cost: the stated default, said to be so.
  unmeasured = chips.Chip("u", "Unmeasured chip", 16, 1e9, 1e9, 1)
  assert estimate.step_seconds(_fp(), unmeasured) == pytest.approx(
      estimate.ACCELERATOR_STEP_OVERHEAD_S + 1.3e-6)
  line = estimate.assumptions(estimate.Estimate(1, 1, 1.0, {}), unmeasured)
  assert "50 µs per step (the loop, Unmeasured chip: not measured)" in line


def test_the_h200_row_carries_its_measured_loop_cost():
  h200 = chips.chip_named("H200")
  assert h200.step_overhead_s == pytest.approx(118e-6)
  assert estimate.loop_seconds(h200) == pytest.approx(118e-6)
  for name in ("v4", "H100", "v5e"):
    assert chips.chip_named(name).step_overhead_s is None


def test_cpu_overhead_is_calibrated_once(monkeypatch):
  from harness.runner import loop_overhead, topologies  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(loop_overhead, "cpu_step_overhead",
                      lambda: calls.append(1) or 123e-6)
  cpu = chips.Chip(topologies.CPU, "CPU (measured)", 16, 1e9, 1e9, 1)
  assert estimate.step_seconds(_fp(), cpu) == pytest.approx(124.3e-6)
  assert "123 µs per step (CPU, measured now" in estimate.assumptions(
      estimate.Estimate(1, 1, 1.0, {}), cpu)


def test_cpu_calibration_is_short_and_plausible():
  from harness.runner import loop_overhead  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  seconds = loop_overhead.cpu_step_overhead()
  assert time.perf_counter() - start < 20  # a second or two, plus compile
  assert 1e-7 < seconds < 1e-2


def test_t5_footprint_counts_the_encoder_in_prefill_only():
  from harness.models import configs  # pylint: disable=g-import-not-at-top
  from harness.runner import config as cfg  # pylint: disable=g-import-not-at-top
  fp = preflight.footprint(configs.get_config("t5_v1_1_large"),
                           cfg.DType.BFLOAT16, 1, 512, 128, 5)
  # The decoder (with the shared embedding and the head) is ~61% of T5 v1.1
  # large's weights; the encoder runs over all 512 prompt tokens once.
  assert 0.55 < fp.step_weight_bytes / fp.weight_bytes < 0.65
  assert fp.prefill_flops > 2 * 0.3 * fp.num_params * 512
  gemma = preflight.footprint(configs.get_config("gemma2_2b"),
                              cfg.DType.BFLOAT16, 1, 512, 128, 5)
  assert gemma.step_weight_bytes == gemma.weight_bytes
  assert gemma.prefill_flops == pytest.approx(2 * gemma.num_params * 512)


def test_dry_run_uses_the_typical_length_and_says_so(capsys, tmp_path):
  from harness.__main__ import main  # pylint: disable=g-import-not-at-top
  code = main(["sweep", "--gin_file", "experiments/default.gin", "--dry_run",
               "--simulate_devices", "1xH200",
               f"--gin.RESULTS_DIR='{tmp_path}'"])
  out = capsys.readouterr().out
  assert code == 0
  line = next(l for l in out.splitlines() if "decodes to run" in l)
  seconds = float(line.split("estimated ")[1].split(" s (")[0])
  upper = float(line.split("at most ")[1].split(" s = ")[0])
  # 16 of 64 tokens: well under the upper bound, prefill included.
  assert 0 < seconds < 0.5 * upper
  assumed = next(l for l in out.splitlines() if l.startswith("assumed:"))
  assert "multi30k_ende 16" in assumed and "NVIDIA H200" in assumed


def test_docs_transcripts_match_what_the_commands_print():
  proc = subprocess.run([sys.executable, "scripts/dry_run_transcripts.py",
                         "--check"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr
