"""Fault suite: its checks (fast) and small live runs of each section (slow).

The full suite with its figures is ``python -m tools.faults``
(``make faults``); see docs/reliability.md.
"""

import json
import os
import random

import pytest

from tools.faults import badinput
from tools.faults import common
from tools.faults import crash
from tools.faults import numerics
from tools.faults import sandbox as sandbox_faults
from tools.faults import table


def _child(stderr, code=2):
  return common.ChildResult(code, "", stderr, 0.1)


# --- Error classification -----------------------------------------------------


def test_one_error_line_is_accepted():
  check = common.check_error(_child("error: x.gin:3: gin syntax error\n"))
  assert check.one_line and not check.traceback
  assert check.error_line == "error: x.gin:3: gin syntax error"


def test_argparse_usage_block_is_allowed():
  stderr = ("usage: python -m harness [-h]\n"
            "                         {list,run}\n"
            "python -m harness: error: unrecognized arguments: --bogus\n")
  assert common.check_error(_child(stderr)).one_line


def test_traceback_or_extra_lines_fail():
  tb = ("Traceback (most recent call last):\n  File \"x\", line 1\n"
        "ValueError: boom\nerror: boom\n")
  check = common.check_error(_child(tb))
  assert check.traceback and not check.one_line
  assert not common.check_error(_child("error: a\nerror: b\n")).one_line
  assert not common.check_error(_child("noise\nerror: a\n")).one_line
  assert not common.check_error(_child("")).one_line


def test_warning_mode_looks_for_a_warning_line():
  result = _child("warning: --gin.SEEED=1: unused\n", code=0)
  assert common.check_error(result, warning=True).one_line
  assert not common.check_error(result).one_line


# --- Canonical files ------------------------------------------------------------


def _summary(latency=1.0, created="t0", results_dir="/a"):
  return {"cell_id": "c", "quality": {"bleu": 1.0},
          "latency": {"mean_s": latency}, "relative_latency": latency,
          "cost_model": {"c_q": latency},
          "stats": {"num_tokens": 3, "measured_speedup": latency,
                    "predicted_speedup": latency},
          "provenance": {"created": created, "git_commit": "abc",
                         "git_dirty": True,
                         "gin_config": f"RESULTS_DIR = '{results_dir}'\nX = 1"}}


def _write_json(path, obj):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def test_timing_fields_and_results_dir_are_masked(tmp_path):
  a, b = tmp_path / "a.json", tmp_path / "b.json"
  _write_json(a, _summary())
  _write_json(b, _summary(latency=2.0, created="t1", results_dir="/b"))
  assert common.canonical_file(a, "cells/c.json") == common.canonical_file(
      b, "cells/c.json")
  other = _summary()
  other["quality"]["bleu"] = 2.0
  _write_json(b, other)
  assert common.canonical_file(a, "cells/c.json") != common.canonical_file(
      b, "cells/c.json")


def test_record_timings_masked_but_tokens_compared(tmp_path):
  path = tmp_path / "c.jsonl"
  line = lambda t, toks: json.dumps({"index": 0, "times_s": [t],
                                     "modeled_s": t, "tokens": toks},
                                    sort_keys=True) + "\n"
  path.write_text(line(1.0, [1, 2]))
  first = common.canonical_file(path, "cells/c.jsonl")
  path.write_text(line(9.0, [1, 2]))
  assert common.canonical_file(path, "cells/c.jsonl") == first
  path.write_text(line(1.0, [1, 3]))
  assert common.canonical_file(path, "cells/c.jsonl") != first


@pytest.mark.parametrize("text", ['{"a": 1', '{"a": 1}', "{\n  \"a\": 1\n}"])
def test_corrupt_or_unformatted_json_is_flagged(tmp_path, text):
  path = tmp_path / "x.json"
  path.write_text(text)
  with pytest.raises(common.CorruptFile):
    common.canonical_file(path, "cells/x.json")


def test_unterminated_jsonl_is_flagged(tmp_path):
  path = tmp_path / "x.jsonl"
  path.write_text('{"index": 0}\n{"index": 1}')
  with pytest.raises(common.CorruptFile, match="not terminated"):
    common.canonical_file(path, "cells/x.jsonl")


# --- Row accounting -------------------------------------------------------------


def _records(path, indices):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps({"index": i, "tokens": [i]},
                                     sort_keys=True) + "\n" for i in indices))


def _reference(tmp_path):
  exp = tmp_path / "ref"
  _records(exp / "cells" / "c1.jsonl", [0, 1, 2])
  _write_json(exp / "cells" / "c1.json", _summary())
  files, corrupt = crash.snapshot(exp)
  assert not corrupt
  return crash.Reference(files, {"c1": [0, 1, 2]}, 1.0, 0.5)


def test_compare_counts_lost_duplicated_corrupt_and_temporaries(tmp_path):
  ref = _reference(tmp_path)
  exp = tmp_path / "run"
  _records(exp / "cells" / "c1.jsonl", [0, 0, 2])
  _write_json(exp / "cells" / "c1.json", _summary())
  (exp / "cells" / "x.json").write_text("{")
  (exp / "cells" / ".tmp-abc").write_text("")
  got = crash.compare(exp, ref)
  assert (got.lost_rows, got.duplicated_rows, got.corrupted_files,
          got.temporaries) == (1, 1, 1, 1)
  assert got.differing_files == 2 and not got.identical


def test_compare_identical_run(tmp_path):
  ref = _reference(tmp_path)
  exp = tmp_path / "run"
  _records(exp / "cells" / "c1.jsonl", [0, 1, 2])
  _write_json(exp / "cells" / "c1.json", _summary(latency=5.0))
  assert crash.compare(exp, ref).identical


def test_kill_state_flags_a_summary_over_partial_records(tmp_path):
  ref = _reference(tmp_path)
  exp = tmp_path / "run"
  _records(exp / "cells" / "c1.jsonl", [0, 1])
  _write_json(exp / "cells" / "c1.json", _summary())
  _records(exp / "cells" / "c2.jsonl", [0])
  state = crash.kill_state(exp, ref, exited=False)
  assert state.false_complete == 1 and state.records_without_summary == 1


def test_kill_delays_are_seeded_and_inside_their_window(tmp_path):
  ref = crash.Reference({}, {}, duration_s=10.0, first_write_s=4.0)
  draw = lambda: [crash.draw_delay(random.Random(3), i, ref)
                  for i in range(6)]
  assert draw() == draw()
  for i, (delay, window) in enumerate(draw()):
    low = 0.0 if i % 2 == 0 else 4.0
    assert low <= delay <= 10.0, (i, delay, window)


# --- Corpus and table -------------------------------------------------------------


def test_corpus_covers_the_issue():
  cases = badinput.corpus()
  names = [c.name for c in cases]
  assert len(cases) >= 30 and len(set(names)) == len(names)
  by_category = {c.category for c in cases}
  assert by_category == {"gin", "checkpoint", "data", "cli"}
  for needle in ("syntax", "unknown configurable", "REQUIRED", "wrong type",
                 "missing tensor", "wrong tensor shape", "header", "truncated",
                 "tokenizer mismatch", "malformed JSONL", "missing field",
                 "empty file", "non-UTF-8", "unknown method", "shard",
                 "alpha out of range"):
    assert any(needle in n for n in names), needle
  assert set(badinput.DEBUG_CASES) <= set(names)
  assert all(c.expect for c in cases)


def test_process_logits_rows_are_distributions():
  outcomes = numerics.check_rows()
  assert len(outcomes) == len(numerics.ROWS)
  for o in outcomes:
    assert o.passed, o


def test_table_renders_every_section():
  machine = {"date": "2026-01-01T00:00:00+00:00", "host": "h",
             "platform": "linux", "cpus": 2, "python": "3", "jax": "0",
             "device": "cpu"}
  trial = {"index": 0, "delay_s": 1.0, "window": "whole run",
           "at_kill": {"exited_before_kill": False, "cells_done": 1,
                       "records_without_summary": 0, "temporaries": 1,
                       "false_complete": 0, "corrupted_files": 0},
           "resume_exit": 0,
           "after_resume": {"lost_rows": 0, "duplicated_rows": 0,
                            "corrupted_files": 0, "differing_files": 0,
                            "temporaries": 0, "files_compared": 7,
                            "identical": True}}
  crash_result = {"trials": [trial], "rerun": trial["after_resume"],
                  "duration_s": 9.0, "first_write_s": 3.0,
                  "tokens_compared": 9}
  case = {"name": "gin syntax error", "category": "gin", "exit_code": 2,
          "error_line": "error: x|y", "one_line": True, "traceback": False,
          "names_cause": True, "summaries_left": 0, "library_error": None,
          "debug_traceback": True, "warning": False, "passed": True}
  sections = {
      "crash": {"machine": machine, "seconds": 1, "options": {"seed": 0},
                "result": crash_result},
      "badinput": {"machine": machine, "seconds": 1, "result": [case]}}
  text = table.render(sections)
  assert "| **lost rows** after resume | **0** |" in text
  assert "1/1 identical" in text and "error: x\\|y" in text
  figs = table.figures(sections)
  assert figs["crash"]["lost_rows"] == 0
  assert figs["crash"]["kills_with_temporaries"] == 1
  assert figs["badinput"]["passed"] == 1


# --- Live runs (slow) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def context(tmp_path_factory):
  work = tmp_path_factory.mktemp("faults")
  cache = work / "jax_cache"
  cache.mkdir()
  return common.Context(common.make_snapshot(work / "code"), str(cache))


@pytest.mark.slow
def test_crash_trials_lose_nothing(context, tmp_path):
  report = crash.run_crash_trials(tmp_path, context, num_trials=2, seed=1,
                                  log=lambda *_: None)
  assert report.rerun.identical
  for trial in report.trials:
    assert trial.resume_exit == 0
    assert trial.after_resume.identical, trial
    assert trial.at_kill.false_complete == 0 and not (
        trial.at_kill.corrupted_files)


@pytest.mark.slow
def test_gin_and_cli_cases_fail_in_one_line(context, tmp_path):
  outcomes = badinput.run_corpus(tmp_path, context, log=lambda *_: None,
                                 only="cli ")
  outcomes += badinput.run_corpus(tmp_path, context, log=lambda *_: None,
                                  only="gin syntax")
  assert len(outcomes) >= 10
  failed = [o for o in outcomes if not o.passed]
  assert not failed, failed


@pytest.mark.slow
def test_every_method_keeps_nan_out_of_distributions():
  outcomes = numerics.check_decodes(log=lambda *_: None)
  failed = [o for o in outcomes if not o.passed]
  assert not failed, failed
  assert sum(o.decodes for o in outcomes) >= 10 * len(outcomes)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")
def test_disk_full_is_one_line_and_resumable(context, tmp_path):
  from tools.faults import disk  # pylint: disable=g-import-not-at-top
  ref, _ = crash.reference_run(tmp_path, "reference", context)
  outcome = disk.disk_full(tmp_path, context, ref, "24k")
  assert outcome.passed, outcome
  assert outcome.names_path and outcome.resumed_identical


def test_sandbox_table_has_a_row_per_attack_and_user():
  machine = {"date": "2026-01-01T00:00:00+00:00", "host": "h",
             "platform": "linux", "cpus": 2, "python": "3", "jax": "0",
             "device": "cpu"}
  attack = {"attack": "mkfifo", "kind": "special file", "contained": True,
            "reason": "exception: AssertionError", "traces": [],
            "seconds": 0.2, "kernel_contained": False, "kernel_reason": "ok",
            "kernel_traces": ["/tmp/harness-attack-new: added"]}
  runs = [{"user": user, "launcher": "userns", "isolation": "ns",
           "targets": ["/tmp"], "attacks": [attack], "error": None}
          for user in ("root", "uid 65534")]
  sections = {"sandbox": {"machine": machine, "seconds": 1, "result": {
      "runs": runs, "tests_passed": 3, "tests_total": 4}}}
  text = table.render(sections)
  assert "### As root: launcher `userns`" in text
  assert "### As uid 65534: launcher `userns`" in text
  assert "**1/1 contained**; kernel layers alone: 0/1" in text
  assert "| mkfifo | special file | yes | exception: AssertionError | **NO** |"\
      " ok | /tmp/harness-attack-new: added |" in text
  figs = table.figures(sections)["sandbox"]
  assert [r["contained"] for r in figs["runs"]] == [1, 1]
  assert [r["kernel_contained"] for r in figs["runs"]] == [0, 0]


def test_sandbox_attack_programs_compile_and_try_every_target():
  for name, _, body in sandbox_faults.ATTACKS:
    program = sandbox_faults._program(body, ["/a", "/b"], 1)
    compile(program, name, "exec")
    if sandbox_faults._EACH in body:
      assert "for t in TARGETS:\n  try:\n" in program, name
