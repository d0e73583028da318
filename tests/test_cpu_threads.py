"""--cpu_threads: XLA:CPU's pool size, set before JAX creates its backends."""

import json
import os
import subprocess
import sys

import pytest

from harness.edge import cpu_threads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, os, sys, time, resource
sys.path.insert(0, {repo!r})
from harness.edge import cpu_threads
n = int(sys.argv[1])
before = os.sched_getaffinity(0)
set_to = cpu_threads.limit(n)
import jax, jax.numpy as jnp
threads_after = {{int(t): sorted(os.sched_getaffinity(int(t)))
                 for t in os.listdir("/proc/self/task")}}
x = jnp.ones((1024, 1024), jnp.float32)
f = jax.jit(lambda a: jax.lax.fori_loop(0, 40, lambda i, b: jnp.tanh(b @ a), a))
f(x).block_until_ready()
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.perf_counter()
for _ in range(3):
  f(x).block_until_ready()
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
print(json.dumps({{"set": set_to, "applied": cpu_threads.applied(),
                  "before": sorted(before),
                  "after": sorted(set(map(tuple, threads_after.values()))),
                  "cpu_per_wall": cpu / (time.perf_counter() - w0)}}))
"""


def _child(n: int) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  out = subprocess.run([sys.executable, "-c", _CHILD.format(repo=REPO),
                        str(n)], check=True, capture_output=True, text=True,
                       env=env, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(
    os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 or more CPUs")
def test_one_thread_runs_programs_on_one_core_and_leaves_every_cpu_allowed():
  one = _child(1)
  assert one["set"] == 1 and one["applied"] == 1
  # Every thread (XLA's pool included) may run on every CPU again ...
  assert one["after"] == [one["before"]]
  # ... but a matmul loop keeps one core busy, not all of them.
  assert one["cpu_per_wall"] < 1.2
  default = _child(0)
  assert default["set"] is None and default["applied"] is None
  assert default["cpu_per_wall"] > 1.3


def test_resolve_reads_auto_numbers_and_rejects_the_rest(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert cpu_threads.resolve("auto") == 1
  assert cpu_threads.resolve(None) == 1  # HARNESS_CPU_THREADS unset: auto
  monkeypatch.setenv(cpu_threads.ENV, "3")
  assert cpu_threads.resolve(None) == 3
  assert cpu_threads.resolve("0") == 0
  monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert cpu_threads.resolve("auto") == 0
  for bad in ("-1", "two", "1.5"):
    with pytest.raises(ValueError, match="--cpu_threads"):
      cpu_threads.resolve(bad)


def test_limit_refuses_once_backends_exist():
  import jax  # pylint: disable=g-import-not-at-top
  jax.devices()
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("one CPU: limit(1) is the default and does nothing")
  with pytest.raises(RuntimeError, match="already exist"):
    cpu_threads.limit(1)


def test_sweep_rejects_a_bad_cpu_threads_in_one_line(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "harness", "sweep", "--gin_file",
       "experiments/default.gin", "--cpu_threads", "many"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert lines == ["error: --cpu_threads / HARNESS_CPU_THREADS: 'many' is not "
                   "'auto' or an integer >= 0"]


def test_report_names_the_thread_count_and_warns_when_runs_mix_them():
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from harness.report import report  # pylint: disable=g-import-not-at-top
  one = pd.DataFrame({"platform": ["cpu", "cpu"], "xla_cpu_threads": [1, 1]})
  assert "XLA:CPU threads per program: 1" in report.cpu_threads_note(one)
  mixed = pd.DataFrame({"platform": ["cpu", "cpu"],
                        "xla_cpu_threads": [1, 0]})
  note = report.cpu_threads_note(mixed)
  assert note.startswith("Warning") and "one per CPU, 1;" in note
  gpu = pd.DataFrame({"platform": ["gpu"], "xla_cpu_threads": [0]})
  assert report.cpu_threads_note(gpu) is None


def test_in_process_sweep_keeps_a_running_jax_under_auto_but_not_explicit(
    capsys):
  import jax  # pylint: disable=g-import-not-at-top
  from harness import __main__ as cli  # pylint: disable=g-import-not-at-top
  jax.devices()
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("one CPU: limit(1) is the default and does nothing")
  code = cli.main(["sweep", "--gin_file", "experiments/default.gin",
                   "--cpu_threads", "1", "--gin.NUM_EXAMPLES=1"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert err[-1].startswith("error: --cpu_threads 1: JAX's backends already "
                            "exist")
