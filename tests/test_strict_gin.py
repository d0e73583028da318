"""Strict gin and the gate before the first cell: each quiet mistake is now
one error line (exit 2 for gin, 1 or 3 for the gate), every problem at once.
"""

import os

import pytest

from harness.__main__ import main
from harness.edge import gin_files
from harness.runner import cli
from harness.runner import gin_config
from harness.runner import preflight

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "smoke.gin")
DEFAULT = os.path.join(REPO, "experiments", "default.gin")
TABLE2 = os.path.join(REPO, "experiments", "table2_t5.gin")


def _sweep(capsys, gin_file, *extra):
  code = main(["sweep", "--gin_file", gin_file, *extra])
  captured = capsys.readouterr()
  return code, captured.out, captured.err.strip().splitlines()


def _one_error(capsys, gin_file, *extra, code=2):
  got, _, err = _sweep(capsys, gin_file, *extra)
  assert got == code, err
  assert len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


def test_unused_macro_override_names_flag_and_closest_macro(capsys, tmp_path):
  line = _one_error(capsys, DEFAULT, "--gin.NUM_EXAMPLE=2", "--dry_run",
                    f"--gin.RESULTS_DIR='{tmp_path}'")
  assert line == ("error: --gin.NUM_EXAMPLE=2: macro NUM_EXAMPLE is set but "
                  "nothing uses it (did you mean NUM_EXAMPLES?)")


def test_misspelt_scope_names_flag_and_closest_scope(capsys):
  line = _one_error(capsys, SMOKE,
                    "--gin.spec_cascade_tokn/MethodGrid.alphas=[0.0]",
                    "--dry_run")
  assert line == ("error: --gin.spec_cascade_tokn/MethodGrid.alphas=[0.0]: "
                  "scope spec_cascade_tokn matches no scope the experiment "
                  "uses (did you mean spec_cascade_token?)")


def test_scope_the_experiment_lacks(capsys):
  line = _one_error(capsys, SMOKE, "--gin.wmt14/TaskRun.num_examples=500",
                    "--dry_run")
  assert line.startswith("error: --gin.wmt14/TaskRun.num_examples=500: "
                         "scope wmt14 matches no scope the experiment uses "
                         "(it uses ")
  assert "multi30k_ende" in line


def test_overridden_binding_applies_to_nothing(capsys):
  # smoke.gin sets multi30k_ende/TaskRun.num_examples, which wins.
  line = _one_error(capsys, SMOKE, "--gin.TaskRun.num_examples=2",
                    "--dry_run")
  assert line.startswith("error: --gin.TaskRun.num_examples=2: "
                         "TaskRun.num_examples applies to nothing")


def test_scope_with_no_binding_names_reference_and_scope(capsys):
  line = _one_error(capsys, SMOKE, "--gin.TASKS=[@nosuch/TaskRun()]",
                    "--dry_run")
  assert line.startswith("error: --gin.TASKS=[@nosuch/TaskRun()]: "
                         "nosuch/TaskRun: no binding sets task, num_examples")
  assert "no binding has scope nosuch" in line


def test_misspelt_scope_reference_suggests_the_bound_scope(capsys):
  line = _one_error(capsys, SMOKE, "--gin.TASKS=[@multi30k_end/TaskRun()]",
                    "--dry_run")
  assert "multi30k_end/TaskRun: no binding sets task" in line
  assert "(did you mean multi30k_ende?)" in line


def test_every_missing_required_macro_in_one_error(capsys):
  line = _one_error(capsys, TABLE2, "--dry_run")
  assert line.startswith("error: 6 macros are %gin.REQUIRED and were not "
                         "set: WMT_DRAFTER (gin/models/"
                         "t5_v1_1_small_large_per_task.gin:")
  for macro in ("WMT_DRAFTER", "WMT_VERIFIER", "XSUM_DRAFTER",
                "XSUM_VERIFIER", "CNN_DRAFTER", "CNN_VERIFIER"):
    assert f"--gin.{macro}=..." in line


def _experiment_file(tmp_path, text):
  path = tmp_path / "mine.gin"
  path.write_text(f"include '{SMOKE}'\n{text}")
  return str(path)


@pytest.mark.parametrize("text, expected", [
    ("NUM_EXAMPLE = 3\n",
     "mine.gin:2: macro NUM_EXAMPLE is set but nothing uses it"),
    ("spec_cascade_tokn/MethodGrid.alphas = [0.0]\n",
     "mine.gin:2: scope spec_cascade_tokn matches no scope the experiment "
     "uses (did you mean spec_cascade_token?)"),
    ("multi30k_ende/MethodGrid.alphas = [0.0]\n",
     "mine.gin:2: multi30k_ende/MethodGrid.alphas applies to nothing"),
])
def test_experiment_file_bindings_with_no_effect(tmp_path, capsys, text,
                                                 expected):
  line = _one_error(capsys, _experiment_file(tmp_path, text), "--dry_run")
  assert expected in line, line


def test_real_run_is_strict_too(capsys, tmp_path):
  line = _one_error(capsys, SMOKE, "--no_progress", "--gin.SEEED=1",
                    f"--gin.RESULTS_DIR='{tmp_path}/results'")
  assert line == ("error: --gin.SEEED=1: macro SEEED is set but nothing "
                  "uses it (did you mean SEED?)")
  assert not (tmp_path / "results").exists()


def test_gin_lenient_warns_and_runs(capsys, tmp_path):
  code, out, err = _sweep(capsys, SMOKE, "--gin_lenient", "--dry_run",
                          "--gin.SEEED=1",
                          "--gin.spec_cascade_tokn/MethodGrid.alphas=[0.0]",
                          f"--gin.RESULTS_DIR='{tmp_path}'")
  assert code == 0 and "dry run: no problems found" in out
  assert err == [
      "warning: --gin.SEEED=1: macro SEEED is set but nothing uses it "
      "(did you mean SEED?) (accepted: --gin_lenient)",
      "warning: --gin.spec_cascade_tokn/MethodGrid.alphas=[0.0]: scope "
      "spec_cascade_tokn matches no scope the experiment uses (did you mean "
      "spec_cascade_token?) (accepted: --gin_lenient)"]


def test_replacing_tasks_leaves_the_files_old_task_bindings_alone(
    capsys, tmp_path):
  code, out, err = _sweep(
      capsys, SMOKE, "--dry_run", "--gin.include 'gin/tasks/wmt14_ende.gin'",
      "--gin.TASKS=[@wmt14_ende/TaskRun()]",
      "--gin.wmt14_ende/TaskRun.num_examples=4",
      f"--gin.RESULTS_DIR='{tmp_path}'")
  assert code == 0 and not err, err
  assert "dry run: no problems found" in out


def _required_values(path):
  return [f"{m}='/nonexistent/{m.lower()}'"
          for m in gin_files.required_macros(gin_files.scan([path], []))]


@pytest.mark.parametrize("experiment", cli.list_experiments())
def test_shipped_experiments_parse_strictly(experiment):
  path = os.path.join(REPO, experiment)
  exp, _ = gin_config.parse([path], _required_values(path), strict=True)
  assert exp.tasks and exp.methods


# --- The gate before the first cell -----------------------------------------


def _missing_pair(tmp_path):
  return ["--gin.ModelPair.kind='checkpoint'",
          f"--gin.ModelPair.drafter='{tmp_path}/no_drafter'",
          f"--gin.ModelPair.verifier='{tmp_path}/no_verifier'"]


def test_real_run_checks_checkpoints_before_any_cell(capsys, tmp_path):
  line = _one_error(capsys, SMOKE, "--no_progress", *_missing_pair(tmp_path),
                    f"--gin.RESULTS_DIR='{tmp_path}/results'", code=1)
  assert line == (
      "error: 2 problems before the first cell (nothing was run): "
      f"checkpoint: drafter checkpoint {tmp_path}/no_drafter: no such "
      f"directory; checkpoint: verifier checkpoint {tmp_path}/no_verifier: "
      "no such directory")
  assert not (tmp_path / "results").exists()


def test_results_dir_that_is_a_file(capsys, tmp_path):
  (tmp_path / "results").write_text("not a directory")
  results = f"--gin.RESULTS_DIR='{tmp_path}/results'"
  code, out, _ = _sweep(capsys, SMOKE, "--dry_run", results)
  assert code == preflight.PROBLEMS_EXIT
  assert (f"problem (results): {tmp_path}/results/smoke: {tmp_path}/results "
          "is not a directory") in out.splitlines()
  line = _one_error(capsys, SMOKE, "--no_progress", results, code=1)
  assert line == (f"error: results: {tmp_path}/results/smoke: "
                  f"{tmp_path}/results is not a directory")


def test_gate_lists_problems_of_every_kind_at_once(capsys, tmp_path):
  (tmp_path / "results").write_text("")
  line = _one_error(capsys, SMOKE, "--no_progress", *_missing_pair(tmp_path),
                    f"--gin.RESULTS_DIR='{tmp_path}/results'",
                    "--gin.multi30k_ende/TaskRun.num_examples=5000", code=1)
  assert line.startswith("error: 4 problems before the first cell")
  for kind in ("sample size: ", "results: ", "checkpoint: drafter",
               "checkpoint: verifier"):
    assert kind in line
