"""Adversarial tests for the MBPP sandbox: each attack is contained."""

import json
import os
import signal
import tempfile
import time

import pytest

from harness.metrics import execution
from harness.metrics import sandbox

_LIMITS = sandbox.SandboxLimits(timeout_s=3.0, cpu_s=3,
                                memory_bytes=256 << 20, file_bytes=1 << 20)
_MBPP = os.path.join(os.path.dirname(__file__), "..", "data", "mbpp",
                     "mbpp.jsonl")


def _run(code):
  return sandbox.run_program(code, _LIMITS)


def test_clean_program_passes_and_output_is_kept():
  result = _run("print('hello')\nassert sum(range(4)) == 6")
  assert result.passed and result.reason == "ok"
  assert "hello" in result.output


def test_failed_assert_is_an_exception():
  result = _run("assert 1 + 1 == 3")
  assert not result.passed and result.reason == "exception: AssertionError"


def test_infinite_loop_times_out_quickly():
  start = time.monotonic()
  result = _run("while True:\n  pass")
  assert not result.passed and result.reason in ("timeout", "cpu limit")
  assert time.monotonic() - start < _LIMITS.timeout_s + 3


def test_fork_bomb_is_blocked():
  result = _run("import os\nwhile True:\n  os.fork()")
  assert not result.passed and result.reason == "blocked: process"


def test_subprocess_is_blocked():
  result = _run("import subprocess\nsubprocess.run(['true'])")
  assert not result.passed and result.reason.startswith("blocked:")


def test_memory_hog_hits_the_limit():
  result = _run("x = []\nwhile True:\n  x.append(bytearray(10 << 20))")
  assert not result.passed and result.reason == "memory"


def test_write_outside_workdir_is_blocked():
  target = os.path.join(tempfile.gettempdir(), f"harness-evil-{os.getpid()}")
  for code in (f"open({target!r}, 'w').write('x')",
               f"import os\nos.open({target!r}, os.O_WRONLY | os.O_CREAT)",
               f"import os\nos.mkdir({target!r})"):
    result = _run(code)
    assert not result.passed and result.reason == "blocked: filesystem", code
  assert not os.path.exists(target)


def test_write_inside_workdir_is_allowed_and_removed():
  result = _run("open('scratch.txt', 'w').write('ok')\n"
                "import os\nprint(os.getcwd())")
  assert result.passed, result.reason
  workdir = result.output.strip().splitlines()[-1]
  assert not os.path.exists(workdir)


def test_socket_is_blocked_even_if_caught():
  result = _run("import socket\ntry:\n  socket.socket().connect(('1.1.1.1', 53))"
                "\nexcept BaseException:\n  pass")
  assert not result.passed and result.reason == "blocked: network"


def test_parent_environment_is_not_visible(monkeypatch):
  monkeypatch.setenv("HARNESS_TEST_SECRET", "s3cret")
  result = _run("import os\nprint(os.environ['HARNESS_TEST_SECRET'])")
  assert result.reason == "exception: KeyError"
  result = _run("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())")
  assert not result.passed and "s3cret" not in result.output


def test_killing_the_parent_is_blocked():
  result = _run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
  assert not result.passed and result.reason == "blocked: signal"
  result = _run("import os, signal\nos.killpg(0, signal.SIGKILL)")
  assert not result.passed and result.reason == "blocked: signal"


def test_stdout_flood_is_capped():
  result = _run("while True:\n  print('x' * 10000)")
  assert not result.passed and result.reason == "output limit"
  assert len(result.output) <= _LIMITS.output_bytes


def test_sys_exit_does_not_count_as_pass():
  result = _run("import sys\nsys.exit(0)\nassert False")
  assert not result.passed and result.reason == "exception: SystemExit"


def test_classify_signals():
  assert sandbox._classify(-signal.SIGXCPU, "", False) == "cpu limit"
  assert sandbox._classify(-signal.SIGKILL, "", False) == "signal: SIGKILL"
  assert sandbox._classify(0, "", True) == "timeout"


def _mbpp_records():
  with open(_MBPP, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _reference_results(records, workers=2):
  programs = [execution.mbpp_program(r["code"], r) for r in records]
  limits = sandbox.SandboxLimits(timeout_s=20.0, cpu_s=20)
  return sandbox.run_programs(programs, limits, workers=workers)


def test_mbpp_reference_solutions_subset_pass():
  records = _mbpp_records()[10:40]
  results = _reference_results(records)
  failed = [(r["task_id"], x.reason) for r, x in zip(records, results)
            if not x.passed]
  assert not failed


@pytest.mark.slow
def test_mbpp_all_974_reference_solutions():
  records = _mbpp_records()
  assert len(records) == 974
  start = time.monotonic()
  results = _reference_results(records)
  failed = [(r["task_id"], x.reason) for r, x in zip(records, results)
            if not x.passed]
  print(f"MBPP references: {974 - len(failed)}/974 passed in "
        f"{time.monotonic() - start:.0f}s; failed: {failed}")
  assert 974 - len(failed) >= 970, failed
