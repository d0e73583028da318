"""Adversarial tests for the MBPP sandbox: each attack is contained."""

import json
import os
import signal
import sys
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
  # The namespace launchers' init reports a signal as 128 + n.
  assert sandbox._classify(128 + signal.SIGKILL, "", False) == "signal: SIGKILL"
  assert sandbox._classify(128 + signal.SIGKILL, "ok", False) == "exit code 137"


def _kernel_available():
  return sandbox.launcher().name in ("userns", "bwrap")


def test_launcher_is_kernel_enforced_where_the_host_allows():
  how = sandbox.launcher()
  if how.name not in ("userns", "bwrap"):
    why = sandbox.missing_isolation()
    assert why and all(isinstance(w, str) and w for w in why)
    pytest.skip("no kernel launcher here: " + "; ".join(why))
  assert sandbox.provenance()["launcher"] == how.name
  assert sandbox.provenance()["isolation"] == sandbox.ISOLATION[how.name]


def _victims(tmp_path):
  """Directories outside the working directory that the child's uid could
  write by file permissions alone."""
  own = tmp_path / "own"
  own.mkdir()
  uid = sandbox.launcher().uid
  if uid is not None:
    os.chown(tmp_path, uid, uid)
    os.chown(own, uid, uid)
  return [str(own), "/var/tmp", tempfile.gettempdir()]


def _traces(targets):
  """Entries named evil* in every target; mode, times and xattrs of the
  first (our own directory; the shared ones change under other processes)."""
  own = os.stat(targets[0])
  return ([sorted(x for x in os.listdir(t) if x.startswith("evil"))
           for t in targets],
          own.st_mode, own.st_mtime_ns, os.listxattr(targets[0]))


_KERNEL_ATTACKS = (
    "os.mkfifo(t + '/evil-fifo')",
    "import stat; os.mknod(t + '/evil-node', 0o600 | stat.S_IFREG)",
    "os.setxattr(t, 'user.evil', b'1')",
    "os.chmod(t, 0o777)",
    "os.utime(t, (0, 0))",
    "open(t + '/evil-file', 'w').write('x')",
    "os.symlink('/etc/passwd', t + '/evil-link')",
    "import sqlite3\n"
    "    sqlite3.connect(t + '/evil-db').execute('create table x(a)')",
)


@pytest.mark.parametrize("audit_hook", [True, False])
def test_writes_outside_leave_no_trace(tmp_path, audit_hook):
  """Without the hook, the kernel alone must stop every write."""
  if not audit_hook and not _kernel_available():
    pytest.skip("no kernel launcher here")
  targets = _victims(tmp_path)
  before = _traces(targets)
  for attack in _KERNEL_ATTACKS:
    code = (f"import os\nfor t in {targets!r}:\n  try:\n    {attack}\n"
            "  except Exception:\n    pass\n")
    result = sandbox.run_program(code, _LIMITS, audit_hook=audit_hook)
    assert result.reason in ("ok", "blocked: filesystem"), (attack, result)
  assert _traces(targets) == before


def _working_kernel_launchers():
  found = {}
  for how in sandbox._candidates():
    if how.name in ("userns", "bwrap") and how.name not in found and (
        sandbox._run_with(how, "pass", _LIMITS).passed):
      found[how.name] = how
  return list(found.values())


def test_each_kernel_launcher_alone_stops_writes(tmp_path):
  """userns and, where installed, bwrap: no trace without the hook."""
  launchers = _working_kernel_launchers()
  if not launchers:
    pytest.skip("no kernel launcher here")
  targets = _victims(tmp_path)
  before = _traces(targets)
  for how in launchers:
    for attack in _KERNEL_ATTACKS:
      code = (f"import os\nfor t in {targets!r}:\n  try:\n    {attack}\n"
              "  except Exception:\n    pass\nprint(os.listdir('/tmp'))\n")
      result = sandbox._run_with(how, code, _LIMITS, audit_hook=False)
      assert result.passed, (how.name, attack, result)
  assert _traces(targets) == before


def test_private_tmp_proc_and_no_capabilities():
  if not _kernel_available():
    pytest.skip("no kernel launcher here")
  result = _run("import os\nprint(sorted(set(os.listdir('/tmp')) - "
                "{os.path.basename(os.getcwd())}))\n"
                "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
                "print(open('/proc/self/status').read().split('CapEff:')[1]"
                ".split()[0])")
  assert result.passed, result
  tmp, pids, caps = result.output.strip().splitlines()[-3:]
  assert tmp == "[]" and pids == "['1', '2']" and int(caps, 16) == 0


def test_a_denied_event_cannot_be_caught_or_forgotten():
  result = _run("import sys\ng = sys.modules['__main__']\n"
                "try:\n  open('/var/tmp/evil', 'w')\nexcept BaseException:\n"
                "  pass\ng._violations = []\n")
  assert not result.passed and result.reason == "blocked: filesystem"


_SMOKE = os.path.join(os.path.dirname(__file__), "..", "experiments",
                      "smoke.gin")
_MBPP_SWEEP = ["sweep", "--gin_file", _SMOKE, "--no_progress",
               "--gin.include 'gin/tasks/gemma_mbpp_3shot.gin'",
               "--gin.TASKS=[@gemma_mbpp_3shot/TaskRun()]",
               "--gin.gemma_mbpp_3shot/TaskRun.num_examples=2",
               "--gin.NUM_LATENCY_EXAMPLES=None"]


def _no_kernel_sandbox(monkeypatch):
  """The probe finds only the audit hook; user namespaces are off."""
  weak = sandbox.Launcher("audit hook only", (), sys.executable, None)
  monkeypatch.setattr(sandbox, "launcher", lambda: weak)
  monkeypatch.setattr(sandbox, "_sysctl", lambda name: {
      "kernel.unprivileged_userns_clone": "0"}.get(name))
  monkeypatch.delenv(sandbox.ALLOW_AUDIT_ONLY_ENV, raising=False)
  return weak


def test_audit_hook_only_is_refused_unless_opted_in(monkeypatch):
  weak = _no_kernel_sandbox(monkeypatch)
  with pytest.raises(sandbox.SandboxUnavailable) as err:
    sandbox.require_isolation()
  assert "kernel.unprivileged_userns_clone=1" in str(err.value)
  assert sandbox.ALLOW_AUDIT_ONLY_ENV in str(err.value)
  with pytest.raises(execution.registry.MetricError, match="refusing"):
    execution.pass_at_1([("",)], ["x = 1"], [{"test_list": ["assert x"]}])
  # The opt-in is an argument: the library does not read the environment.
  monkeypatch.setenv(sandbox.ALLOW_AUDIT_ONLY_ENV, "1")
  with pytest.raises(sandbox.SandboxUnavailable):
    sandbox.require_isolation()
  assert sandbox.require_isolation(allow_audit_only=True) is weak
  scores = execution.pass_at_1([("",)], ["x = 1"],
                               [{"test_list": ["assert x == 1"]}],
                               allow_unisolated=True)
  assert scores["pass@1"] == 100
  assert execution.registry.compute_metrics(
      ["pass@1"], [("",)], ["x = 1"], [{"test_list": ["assert x == 1"]}],
      allow_unisolated=True)["pass@1"] == 100
  assert sandbox.opted_in_by_env() and not sandbox.opted_in_by_env({})


def test_mbpp_sweep_is_refused_before_the_first_cell(monkeypatch, capsys,
                                                      tmp_path):
  from harness.__main__ import main  # pylint: disable=g-import-not-at-top
  _no_kernel_sandbox(monkeypatch)
  results = tmp_path / "results"
  code = main([*_MBPP_SWEEP, f"--gin.RESULTS_DIR='{results}'"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and len(err) == 1, err
  assert err[0].startswith("error: sandbox: gemma_mbpp_3shot (pass@1): "
                           "refusing to run generated code")
  assert "kernel.unprivileged_userns_clone=1" in err[0]
  assert sandbox.ALLOW_AUDIT_ONLY_ENV in err[0]
  assert not results.exists()  # Not a single cell ran.


def test_mbpp_dry_run_lists_the_sandbox_refusal(monkeypatch, capsys,
                                                tmp_path):
  from harness.__main__ import main  # pylint: disable=g-import-not-at-top
  from harness.runner import preflight  # pylint: disable=g-import-not-at-top
  _no_kernel_sandbox(monkeypatch)
  args = [*_MBPP_SWEEP, "--dry_run", f"--gin.RESULTS_DIR='{tmp_path}'"]
  assert main(args) == preflight.PROBLEMS_EXIT
  problems = [l for l in capsys.readouterr().out.splitlines()
              if l.startswith("problem (")]
  assert len(problems) == 1 and problems[0].startswith(
      "problem (sandbox): gemma_mbpp_3shot (pass@1): refusing to run "
      "generated code (MBPP) with the audit hook as the only sandbox layer: "
      "unprivileged user namespaces are disabled"), problems
  # The explicit opt-in lifts the refusal; tasks without pass@1 never ask.
  monkeypatch.setenv(sandbox.ALLOW_AUDIT_ONLY_ENV, "1")
  assert main(args) == 0
  monkeypatch.delenv(sandbox.ALLOW_AUDIT_ONLY_ENV)
  assert main(args) == preflight.PROBLEMS_EXIT  # refused again without it
  assert main([*args, "--allow_unisolated_mbpp"]) == 0  # the flag form
  assert sandbox.ALLOW_AUDIT_ONLY_ENV not in os.environ  # never written
  capsys.readouterr()
  assert main(["sweep", "--gin_file", _SMOKE, "--dry_run",
               f"--gin.RESULTS_DIR='{tmp_path}'"]) == 0


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
