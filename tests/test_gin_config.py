"""Gin edge and CLI: shipped experiments dry-run; bad gin fails in one line."""

import os
import subprocess
import sys

import pytest

from harness import decoding
from harness.__main__ import main
from harness.edge import gin_files
from harness.runner import cli
from harness.runner import preflight
from harness.runner import gin_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Checkpoint macros the user may set, with dummy values for --dry_run.
CHECKPOINT_MACROS = ("DRAFTER_CHECKPOINT", "VERIFIER_CHECKPOINT",
                     "WMT_DRAFTER", "WMT_VERIFIER", "XSUM_DRAFTER",
                     "XSUM_VERIFIER", "CNN_DRAFTER", "CNN_VERIFIER")


def dummies(experiment):
  """Dummy values for the checkpoint macros ``experiment`` uses (strict gin
  refuses a value for a macro nothing uses)."""
  locations = gin_files.scan([experiment], [])
  values = {m: f"{m}='/nonexistent/{m.lower()}'" for m in CHECKPOINT_MACROS
            if m in locations}
  unused = []
  gin_config.parse([experiment], list(values.values()), unused)
  return [f"--gin.{v}" for v in values.values()
          if not any(line.startswith(f"--gin.{v}:") for line in unused)]


def _dry_run(gin_file, *extra):
  return main(["sweep", "--gin_file", gin_file, "--dry_run", *extra])


@pytest.mark.parametrize("experiment", cli.list_experiments())
def test_every_shipped_experiment_dry_runs(experiment, capsys, tmp_path):
  # Paper-sized samples are capped to the offline data; on 8 simulated
  # H100s the only problems left are the dummy checkpoints.
  extra = dummies(experiment)
  code = _dry_run(os.path.join(REPO, experiment), *extra,
                  f"--gin.RESULTS_DIR='{tmp_path}'",
                  "--gin.SAMPLE_POLICY='cap'", "--simulate_devices", "8xH100")
  out = capsys.readouterr().out
  assert "decodes to run, estimated" in out
  assert out.count("todo ") >= 4
  problems = [l for l in out.splitlines() if l.startswith("problem (")]
  assert all(l.startswith("problem (checkpoint): ") and "/nonexistent/" in l
             for l in problems), problems
  assert code == (preflight.PROBLEMS_EXIT if problems else 0)


def test_paper_experiment_sizes(capsys, tmp_path):
  gamma = os.path.join(REPO, "experiments", "gamma.gin")
  _dry_run(gamma, *dummies(gamma),
           f"--gin.RESULTS_DIR='{tmp_path}'")
  lines = capsys.readouterr().out.splitlines()
  cells = [line for line in lines if line.startswith("todo")]
  # 3 tasks × (2 references + 3 γ × (23 + 23) α).
  assert len(cells) == 3 * (2 + 3 * 46)
  # WMT: 3,000 examples + 2 extra trials on 500 = 4,000 decodes per cell.
  assert any(" 4000 decodes  wmt14_ende__" in line for line in cells)


def test_missing_checkpoint_macros_are_one_line_error(capsys):
  code = _dry_run(os.path.join(REPO, "experiments", "gemma_fewshot.gin"))
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1
  assert "2 macros are %gin.REQUIRED and were not set: DRAFTER_CHECKPOINT " \
         "(gin/models/gemma2_2b_27b.gin:" in err
  assert "VERIFIER_CHECKPOINT (gin/models/gemma2_2b_27b.gin:" in err


@pytest.mark.parametrize("method_file", sorted(os.listdir(
    os.path.join(REPO, "gin", "methods"))))
def test_method_grids_span_the_full_alpha_range(method_file):
  exp, _ = gin_config.parse(
      [os.path.join(REPO, "experiments", "smoke.gin")],
      [f"include 'gin/methods/{method_file}'",
       f"METHODS = [@{method_file[:-4]}/MethodGrid()]"])
  (grid,) = exp.methods
  spec = decoding.METHODS[grid.method]
  lo, hi = spec.valid_alpha()
  if spec.rule == "verifier" or grid.method == "autoregressive":
    return  # α is unused.
  assert min(grid.alphas) == max(lo, -float("inf"))
  expected_hi = 1.0 if grid.method == "bild_star" else hi  # D ∈ [0, 1].
  assert max(grid.alphas) == expected_hi
  assert list(grid.alphas) == sorted(set(grid.alphas))


def _write(tmp_path, text):
  path = tmp_path / "bad.gin"
  path.write_text("include 'experiments/smoke.gin'\n" + text)
  return str(path)


@pytest.mark.parametrize("text, expected", [
    ("GAMMAS = [3\n", ["bad.gin:", "gin syntax error", "EOF"]),
    ("Experiment..gammas = [3]\n", ["bad.gin:2", "gin syntax error"]),
    ("Nope.x = 1\n", ["bad.gin:2", "No configurable matching 'Nope'"]),
    ("Experiment.gammaz = [3]\n", ["bad.gin:2", "gammaz"]),
    ("multi30k_ende/TaskRun.num_examples = 'four'\n",
     ["bad.gin:2", "multi30k_ende/TaskRun.num_examples", "'four'",
      "expected an integer"]),
    ("NUM_TRIALS = 2.5\n",
     ["benchmark.gin:", "Experiment.num_trials", "macro NUM_TRIALS set at",
      "bad.gin:2"]),
    ("EXPERIMENT_NAME = %gin.REQUIRED\n",
     ["bad.gin:2", "EXPERIMENT_NAME is %gin.REQUIRED"]),
    ("METHODS = [@spec_cascade_token/MethodGrid()]\n"
     "spec_cascade_token/MethodGrid.alphas = [0.5, 2.0]\n",
     ["bad.gin:3", "spec_cascade_token/MethodGrid.alphas", "α range"]),
    ("TASKS = %NOT_DEFINED\n", ["bad.gin:2", "NOT_DEFINED is used but"]),
])
def test_bad_gin_is_one_line_error_naming_file_and_binding(
    tmp_path, capsys, text, expected):
  code = _dry_run(_write(tmp_path, text))
  err = capsys.readouterr().err.strip()
  assert code == 2
  assert len(err.splitlines()) == 1, err
  for fragment in expected:
    assert fragment in err, err


def test_bad_override_names_the_flag(capsys):
  code = _dry_run(os.path.join(REPO, "experiments", "smoke.gin"),
                  "--gin.Experiment.bogus=1")
  err = capsys.readouterr().err
  assert code == 2 and "--gin.Experiment.bogus=1" in err


def test_cli_subprocess_has_no_traceback_unless_debug(tmp_path):
  bad = _write(tmp_path, "Experiment.gammaz = [3]\n")
  cmd = [sys.executable, "-m", "harness", "sweep", "--gin_file", bad,
         "--dry_run"]
  quiet = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  assert quiet.returncode == 2
  assert quiet.stderr.startswith("error: ") and "Traceback" not in (
      quiet.stderr)
  loud = subprocess.run(cmd + ["--debug"], cwd=REPO, capture_output=True,
                        text=True)
  assert loud.returncode == 2 and "Traceback" in loud.stderr


def test_list_still_lists_tasks_and_now_methods(capsys):
  assert main(["list"]) == 0
  out = capsys.readouterr().out
  assert "multi30k_ende" in out and "bleu" in out
  assert "spec_cascade_token" in out and "experiments/smoke.gin" in out


def test_report_without_report_module_or_with_it(tmp_path, capsys):
  (tmp_path / "cells").mkdir()
  assert main(["report", "--results", str(tmp_path)]) in (0, 1)
  assert main(["report", "--results", str(tmp_path / "nope")]) == 2
