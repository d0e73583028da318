"""How many threads XLA:CPU runs a program on (``--cpu_threads``).

On a CPU host the relative latency of a method is not a property of the
method alone: with two intra-op threads, the speculative loops (two models,
many small ops per iteration) gain more from the second core than the
verifier's own autoregressive loop does, and lose that gain whenever another
process takes the core. A Table 2 ratio measured on a 2-core machine then
moves by up to ~25 % when one core gets busy, although both sides of every
ratio are timed in the same window (``docs/timing.md``).

Running the programs on one thread removes that dependence: the ratio is the
one-core ratio whether or not the other cores are free. XLA sizes its CPU
thread pool once, from the CPU affinity mask, when JAX creates its backends.
``limit`` therefore narrows the mask to ``n`` CPUs, creates the backends, and
restores every thread's mask: the pool keeps ``n`` workers but the kernel may
run them on any CPU (a busy core is simply avoided), and compilation — which
runs on the calling thread and LLVM's own workers — keeps every core.

Call it before anything touches a JAX device; the sweep command does so
first thing.
"""

from __future__ import annotations

import importlib.util
import os

ENV = "HARNESS_CPU_THREADS"

_applied: int | None = None


def looks_cpu_only() -> bool:
  """True when no accelerator backend can exist in this process.

  Decided without creating backends: ``JAX_PLATFORMS`` when it is set, else
  whether a GPU plugin or libtpu is installed.
  """
  platforms = os.environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  for module in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                 "jax_rocm7_plugin", "libtpu"):
    if importlib.util.find_spec(module) is not None:
      return False
  return True


def resolve(value: str | int | None) -> int:
  """``--cpu_threads`` (or ``HARNESS_CPU_THREADS``) -> a thread count.

  ``auto`` (the default): 1 on a CPU-only host, else 0. ``0``: XLA's own
  choice (one per CPU). ``n ≥ 1``: n threads.

  Raises:
    ValueError naming the value when it is neither ``auto`` nor an integer
    ≥ 0.
  """
  if value is None:
    value = os.environ.get(ENV, "auto")
  text = str(value).strip().lower()
  if text == "auto":
    return 1 if looks_cpu_only() else 0
  try:
    n = int(text)
  except ValueError:
    n = -1
  if n < 0:
    raise ValueError(f"--cpu_threads / {ENV}: {value!r} is not 'auto' or an "
                     "integer >= 0")
  return n


def backends_exist() -> bool:
  """Whether JAX has created its backends (XLA's pools are sized)."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return xla_bridge.backends_are_initialized()


def limit(n: int) -> int | None:
  """Creates JAX's backends with an XLA:CPU pool of ``n`` threads.

  Args:
    n: threads; 0 (or ≥ the CPUs this process may use) leaves XLA's default.

  Returns:
    The pool size set, or None when XLA's default was kept.

  Raises:
    RuntimeError if JAX's backends already exist (the pool is sized).
  """
  global _applied
  allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else (
      None)
  if n <= 0 or allowed is None or n >= len(allowed):
    return None
  if backends_exist():
    raise RuntimeError(f"--cpu_threads {n}: JAX's backends already exist, so "
                       "XLA's CPU thread pool is already sized; set it "
                       "before the first JAX device call")
  import jax  # pylint: disable=g-import-not-at-top
  os.sched_setaffinity(0, sorted(allowed)[:n])
  try:
    jax.devices()
  finally:
    for tid in os.listdir("/proc/self/task") if os.path.isdir(
        "/proc/self/task") else [0]:
      try:
        os.sched_setaffinity(int(tid), allowed)
      except OSError:  # a thread that has just exited
        pass
  _applied = n
  return n


def apply(value: str | int | None) -> int | None:
  """``--cpu_threads`` as the sweep command takes it: resolve, then limit.

  An in-process caller (a notebook, the tests) whose JAX is already running
  keeps its pool under ``auto``; an explicit count that can no longer be
  honoured raises.

  Raises:
    ValueError for a bad value, RuntimeError as ``limit``.
  """
  n = resolve(value)
  explicit = value if value is not None else os.environ.get(ENV)
  if str(explicit or "auto").strip().lower() == "auto" and backends_exist():
    return None
  return limit(n)


def applied() -> int | None:
  """The pool size ``limit`` set in this process (None: XLA's default)."""
  return _applied
