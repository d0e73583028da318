"""scripts/accelerator_check.sh, the light core it relies on, and the chip
table's figures measured by it (results/accelerator/)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from benchmarks import accelerator
from harness.models import chips, configs
from harness.runner import config as cfg
from harness.runner import estimate, preflight

ROOT = pathlib.Path(__file__).resolve().parents[1]
H200 = ROOT / "results" / "accelerator" / "nvidia_h200"
HEAVY = ("tensorflow", "tensorflow_datasets", "tensorflow_text", "seqio")


def test_tiny_check_runs_every_part_and_summarises_them(tmp_path):
  # On a loaded host (another job beside the tests) the caps are tripled:
  # the parts must still all finish, but the 3-minute bound is checked only
  # where the host is quiet.
  quiet = os.getloadavg()[0] < 0.75 * (os.cpu_count() or 1)
  env = dict(os.environ, ACCEL_TINY="1", ACCEL_RESULTS=str(tmp_path),
             PYTHON=sys.executable, ACCEL_ARCHIVE=str(tmp_path / "a.tgz"),
             ACCEL_CAP_SCALE="1" if quiet else "3")
  proc = subprocess.run(["bash", str(ROOT / "scripts/accelerator_check.sh")],
                        env=env, capture_output=True, text=True, timeout=700,
                        check=False)
  out = tmp_path / "cpu"
  parts = [line.split("\t") for line in
           (out / "parts.tsv").read_text().splitlines()]
  assert [p[0] for p in parts] == ["env", "roofline", "bench", "sweep",
                                   "report", "finetune", "plan",
                                   "plan_paper"], proc.stdout
  assert all(p[1] == "ok" for p in parts), (parts, proc.stdout[-3000:])
  assert proc.returncode == 0
  # The caps add up to 240 s; the parts' own seconds stay inside them.
  if quiet:
    assert sum(int(p[2]) for p in parts) <= 240
  summary = (out / "summary.md").read_text()
  for heading in ("Batch-1 step against the HBM roofline",
                  "Speculative loops", "Fine-tuning speed",
                  "Reduced Table 2", "S_loop(γ=1)"):
    assert heading in summary
  data = json.loads((out / "summary.json").read_text())
  assert {m["model"] for m in data["models"]} == {"tiny_t5", "tiny_gemma2"}
  assert data["compiles_per_program"]["spec_decode"]["3"] <= 1
  assert (tmp_path / "a.tgz").stat().st_size > 0


def test_a_failed_part_is_named_and_the_script_fails(tmp_path):
  env = dict(os.environ, ACCEL_TINY="1", ACCEL_RESULTS=str(tmp_path),
             PYTHON=sys.executable, ACCEL_PARTS="env,roofline",
             ACCEL_MODELS="no_such_model")
  proc = subprocess.run(["bash", str(ROOT / "scripts/accelerator_check.sh")],
                        env=env, capture_output=True, text=True, timeout=120,
                        check=False)
  parts = (tmp_path / "cpu" / "parts.tsv").read_text().splitlines()
  assert parts[0].startswith("env\tok\t")
  assert parts[1].startswith("roofline\tfailed (1)\t")
  assert proc.returncode == 1
  assert "| roofline | failed (1) |" in (
      tmp_path / "cpu" / "summary.md").read_text()


def test_summary_of_the_h200_run():
  summary, text = accelerator.summarize(str(H200))
  assert summary["env"]["device"]["device_kind"] == "NVIDIA H200"
  gemma = next(m for m in summary["models"] if m["model"] == "gemma2_2b")
  # 5.26 GB at the vendor's 4.8 TB/s.
  assert gemma["vendor_roofline_ms"] == pytest.approx(1.096, rel=0.01)
  assert "| finetune | timeout | 60 |" in text
  assert summary["finetune"]["steps_per_s"] == pytest.approx(7.896, rel=1e-3)
  # The second session's plans: Gemma 3 270M verifies two tokens for less
  # than one, and the paper's 27B verifier does not.
  plans = {p["verifier"]: p for p in summary["plans"]}
  small = plans["gemma3_270m"]
  assert small["block_ratio"]["1"] == pytest.approx(0.678, abs=0.001)
  assert small["drafters"]["subset=8192,d_model=192,layers=4"]["c"] == (
      pytest.approx(0.187, abs=0.001))
  assert plans["gemma2_27b"]["block_ratio"]["1"] == pytest.approx(
      1.010, abs=0.001)


def test_h200_entry_matches_its_measurement():
  roof = json.loads((H200 / "roofline" / "roofline.json").read_text())
  gemma = next(m for m in roof["models"] if m["model"] == "gemma2_2b")
  measured_s = gemma["rows"][0]["t_ms"] / 1e3
  h200 = chips.chip_named("H200")
  assert h200.bandwidth_fraction == pytest.approx(
      gemma["bandwidth"]["used"] / h200.bandwidth_bytes_s, abs=0.01)
  fp = preflight.footprint(configs.get_config("gemma2_2b"),
                           cfg.DType.BFLOAT16, 1, gemma["prompt_len"],
                           gemma["max_decode_len"], 0)
  assert estimate.step_seconds(fp, h200) == pytest.approx(measured_s,
                                                          rel=0.05)
  # Without the measured figures the dry run was 2.4x optimistic.
  vendor = chips.Chip("x", "x", 141, h200.bandwidth_bytes_s, h200.flops, 8)
  assert estimate.step_seconds(fp, vendor) < 0.45 * measured_s


def test_light_core_runs_a_sweep_and_its_report_without_tensorflow(
    tmp_path):
  script = textwrap.dedent(f"""
      import sys
      for name in {HEAVY!r}:
        sys.modules[name] = None  # any import of it raises ImportError
      from harness.__main__ import main
      code = main(["sweep", "--gin_file", "experiments/smoke.gin",
                   "--no_progress", "--gin.RESULTS_DIR='{tmp_path}'"])
      assert code == 0, code
      assert main(["report", "--results", "{tmp_path}/smoke"]) == 0
      import benchmarks.roofline, benchmarks.run, harness.metrics
      from harness import extras
      try:
        extras.require("tensorflow_datasets", "a TFDS source")
      except extras.MissingExtraError as err:
        print("MISSING:", err)
      assert not any(sys.modules.get(n) for n in {HEAVY!r})
  """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "smoke" / "table2.md").exists()
  assert ("MISSING: a TFDS source needs tensorflow_datasets, which is not "
          "installed: pip install -e '.[tfds]'") in proc.stdout
