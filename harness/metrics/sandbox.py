"""A sandbox for running generated Python code (MBPP pass@1).

Every program runs in its own child process, started by the strongest
*launcher* that works on this host (probed once by running a program through
it; ``launcher``, ``LAUNCHERS``; ``docs/reliability.md``):

* **userns** (util-linux ``unshare``; root and non-root alike): fresh user,
  mount, network, PID and IPC namespaces. The guard (``_sandbox_guard.py
  --isolate``), uid 0 of the new user namespace, remounts every mount
  read-only, mounts private tmpfs on /tmp and /dev/shm, binds the working
  directory back read-write at its own path and mounts a private /proc; then
  it drops every capability, bounding set included, and sets no-new-privs.
  A write outside the working directory fails in the kernel (EROFS) whatever
  call makes it; the network namespace has no interfaces up; other processes
  are invisible. As root, the child first switches to uid/gid ``nobody``
  (``setpriv``), so the namespace's uid 0 is ``nobody`` on the host.
* **bwrap** (bubblewrap, where installed; also setuid bubblewrap on hosts
  without unprivileged user namespaces): the same view.
* **netns+nobody**, **nobody**, **netns**: the older, weaker layers (root
  hosts where user namespaces are off).
* **audit hook only**: ``require_isolation`` refuses this (MBPP does not run)
  unless the caller opts in (``--allow_unisolated_mbpp`` or
  ``HARNESS_SANDBOX_ALLOW_AUDIT_HOOK_ONLY=1``, read by the command line); the
  refusal names what is missing and how to enable it (``missing_isolation``).

In every launcher the child also has:

* **Resource limits** (set by the child on itself, soft = hard, so they cannot
  be raised again; CPU's hard limit is 1 s above the soft one): RLIMIT_CPU,
  RLIMIT_AS (memory), RLIMIT_FSIZE (also caps stdout/stderr, which go to
  files), RLIMIT_NPROC, RLIMIT_NOFILE.
* **Wall-clock timeout**: the child starts a new session (its own process
  group); on timeout the whole group is killed with SIGKILL.
* **An allow-list audit hook** (PEP 578), the second layer: only the events a
  solution needs pass (imports, compiling, reading files, writing inside the
  working directory, ...); any other event ends the program at once with
  "blocked: <filesystem|network|process|signal|event>".
* **Clean environment**: the child's environment is built from scratch
  (``_child_env``), nothing is inherited; ``python -I -B`` ignores PYTHON*
  variables and the user site directory and writes no bytecode.
* **Capped output**: at most ``SandboxLimits.output_bytes`` of stdout/stderr
  are kept, and the file-size limit stops a flood ("output limit").

Each run returns a ``SandboxResult(passed, reason)``; ``provenance`` names the
launcher for the results files.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Mapping, Sequence

_GUARD_PATH = os.path.join(os.path.dirname(__file__), "_sandbox_guard.py")
# The unprivileged uid/gid ("nobody") the child switches to when we are root.
NOBODY_ID = 65534
# Interpreters tried for the child, in order, when running as nobody: ours may
# live under /root (mode 0700), which nobody cannot enter.
FALLBACK_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
_MIB = 1 << 20


class Reason:
  """Reason strings reported for a sandboxed run (values, not an enum, since
  exception and blocked reasons carry a suffix)."""
  OK = "ok"
  TIMEOUT = "timeout"
  CPU = "cpu limit"
  MEMORY = "memory"
  OUTPUT = "output limit"
  NO_STATUS = "no status"


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Limits for one sandboxed run.

  Attributes:
    timeout_s: Wall-clock limit; the process group is killed after it.
    cpu_s: RLIMIT_CPU in seconds (SIGXCPU after it).
    memory_bytes: RLIMIT_AS. 512 MiB leaves room for the interpreter (~30 MB)
      and any reasonable MBPP solution while stopping a memory hog early.
    file_bytes: RLIMIT_FSIZE: largest file the child may write, including
      its stdout/stderr files.
    nproc: RLIMIT_NPROC (enforced only for non-root uids).
    nofile: RLIMIT_NOFILE.
    output_bytes: How much of stdout/stderr is kept in the result.
  """
  timeout_s: float = 10.0
  cpu_s: int = 10
  memory_bytes: int = 512 * _MIB
  file_bytes: int = 1 * _MIB
  nproc: int = 1
  nofile: int = 64
  output_bytes: int = 4096

  def rlimits_json(self) -> str:
    return json.dumps({
        "RLIMIT_CPU": self.cpu_s, "RLIMIT_AS": self.memory_bytes,
        "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_NPROC": self.nproc,
        "RLIMIT_NOFILE": self.nofile})


@dataclasses.dataclass(frozen=True)
class SandboxResult:
  """Outcome of one sandboxed run.

  Attributes:
    passed: True iff the program ran to completion without an exception or a
      blocked operation, within every limit.
    reason: "ok", "timeout", "cpu limit", "memory", "output limit",
      "exception: <Type>", "blocked: <network|filesystem|process|signal|...>",
      "signal: <NAME>" or "exit code <n>".
    output: The first ``output_bytes`` of stdout then stderr (for debugging).
  """
  passed: bool
  reason: str
  output: str = ""


@dataclasses.dataclass(frozen=True)
class Launcher:
  """How the child is started.

  Attributes:
    name: "userns", "bwrap", "netns+nobody", "nobody", "netns" or
      "audit hook only" (``LAUNCHERS``, strongest first).
    prefix: Command prefix; "{workdir}" stands for the working directory.
    python: Interpreter for the child (ours, else a system python3 when
      ours cannot be run inside).
    uid: The child's host uid if it differs from ours, else None.
    isolate: The guard builds the filesystem view itself (``--isolate``).
  """
  name: str
  prefix: tuple[str, ...]
  python: str
  uid: int | None
  isolate: bool = False

  @property
  def isolation(self) -> str:
    return ISOLATION[self.name]


# What each launcher enforces in the kernel, strongest first.
ISOLATION = {
    "userns": "user+mount+net+pid+ipc namespaces (unshare): read-only "
              "filesystem, writable working directory only, private /tmp, "
              "/dev/shm and /proc, no network, no capabilities",
    "bwrap": "bubblewrap: read-only filesystem, writable working directory "
             "only, private /tmp, /dev, /dev/shm and /proc, no network, no "
             "capabilities",
    "netns+nobody": "network namespace, uid nobody (root hosts only)",
    "nobody": "uid nobody (root hosts only)",
    "netns": "network namespace only",
    "audit hook only": "none (audit hook only, not a security boundary)",
}
LAUNCHERS = tuple(ISOLATION)
# Setting this environment variable to 1 lets MBPP run with the audit hook as
# the only layer: the command line reads it once (``opted_in_by_env``) and
# passes the choice down to ``require_isolation``.
ALLOW_AUDIT_ONLY_ENV = "HARNESS_SANDBOX_ALLOW_AUDIT_HOOK_ONLY"


def opted_in_by_env(environ: Mapping[str, str] | None = None) -> bool:
  """Whether ``ALLOW_AUDIT_ONLY_ENV`` is 1 (read by the command line)."""
  environ = os.environ if environ is None else environ
  return environ.get(ALLOW_AUDIT_ONLY_ENV) == "1"


class SandboxUnavailable(RuntimeError):
  """No kernel-enforced launcher works and the user did not opt in."""


def _drop_to_nobody() -> tuple[str, ...] | None:
  """setpriv prefix to uid nobody when we are root; () otherwise; None if
  root without setpriv."""
  if os.geteuid() != 0:
    return ()
  setpriv = shutil.which("setpriv")
  if not setpriv:
    return None
  return (setpriv, f"--reuid={NOBODY_ID}", f"--regid={NOBODY_ID}",
          "--clear-groups", "--")


def _candidates() -> list[Launcher]:
  """Launchers from strongest to weakest isolation."""
  unshare, bwrap = shutil.which("unshare"), shutil.which("bwrap")
  drop = _drop_to_nobody()
  uid = NOBODY_ID if drop else None
  # Ours may be unreachable inside (e.g. under /root, mode 0700).
  pythons = (sys.executable,) + FALLBACK_PYTHONS
  found = []
  if unshare and drop is not None:
    found += [Launcher("userns", drop + (
        unshare, "--user", "--map-root-user", "--mount", "--net", "--pid",
        "--ipc", "--fork", "--kill-child", "--"), p, uid, True)
              for p in pythons]
  if bwrap and drop is not None:
    found += [Launcher("bwrap", drop + (
        bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--bind", "{workdir}",
        "{workdir}", "--chdir", "{workdir}", "--"), p, uid) for p in pythons]
  if drop and unshare:
    found += [Launcher("netns+nobody", (unshare, "--net", "--") + drop, p,
                       uid) for p in pythons]
  if drop:
    found += [Launcher("nobody", drop, p, uid) for p in pythons]
  if unshare:
    found.append(Launcher("netns", (unshare, "--net", "--"), sys.executable,
                          None))
  return found


# Why each candidate that was probed failed (for the refusal message).
_probe_errors: dict[str, str] = {}


@functools.lru_cache(maxsize=1)
def launcher() -> Launcher:
  """The strongest launcher that runs a program on this host (probed once by
  running one through it)."""
  for candidate in _candidates():
    result = _run_with(candidate, "import resource, json", SandboxLimits())
    if result.passed:
      return candidate
    _probe_errors.setdefault(candidate.name,
                             f"{result.reason} {result.output.strip()}"[:300])
  return Launcher("audit hook only", (), sys.executable, None)


def _sysctl(name: str) -> str | None:
  try:
    with open("/proc/sys/" + name.replace(".", "/"), encoding="ascii") as f:
      return f.read().strip()
  except OSError:
    return None


def missing_isolation() -> list[str]:
  """Why the kernel layers are unavailable, each with how to enable them."""
  why = []
  if not shutil.which("unshare"):
    why.append("util-linux `unshare` is not installed (install util-linux)")
  if _sysctl("kernel.unprivileged_userns_clone") == "0":
    why.append("unprivileged user namespaces are disabled by the distribution"
               " (enable: sudo sysctl -w kernel.unprivileged_userns_clone=1)")
  if _sysctl("user.max_user_namespaces") == "0":
    why.append("user namespaces are disabled (enable: sudo sysctl -w "
               "user.max_user_namespaces=15000)")
  if _sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
    why.append("AppArmor restricts unprivileged user namespaces (enable: "
               "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
               ", or install bubblewrap, whose AppArmor profile allows them)")
  why += [f"launcher {k} failed: {v}" for k, v in _probe_errors.items()]
  return why or ["no launcher could run a program"]


def require_isolation(allow_audit_only: bool = False) -> Launcher:
  """The launcher, or SandboxUnavailable if only the audit hook is left and
  ``allow_audit_only`` (``--allow_unisolated_mbpp`` or
  ``ALLOW_AUDIT_ONLY_ENV=1`` on the command line) is False."""
  how = launcher()
  if how.name == "audit hook only" and not allow_audit_only:
    raise SandboxUnavailable(
        "refusing to run generated code (MBPP) with the audit hook as the only"
        " sandbox layer: " + "; ".join(missing_isolation()) +
        f". To run anyway (unsafe), pass --allow_unisolated_mbpp or set "
        f"{ALLOW_AUDIT_ONLY_ENV}=1.")
  return how


def provenance() -> dict[str, str]:
  """Which launcher runs the programs, for results' provenance."""
  how = launcher()
  return {"launcher": how.name, "isolation": how.isolation,
          "python": how.python}


def _child_env(workdir: str) -> dict[str, str]:
  """The child's whole environment (built here; nothing is inherited)."""
  return {"HOME": workdir, "TMPDIR": workdir, "LC_ALL": "C.UTF-8",
          "PATH": "/usr/bin:/bin"}


def _prepare_workdir(code: str, uid: int | None) -> str:
  """A fresh directory holding program.py and the guard script."""
  workdir = tempfile.mkdtemp(prefix="harness-sandbox-")
  with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
    f.write(code)
  shutil.copy(_GUARD_PATH, os.path.join(workdir, "guard.py"))
  if uid is not None:
    for name in ("", "program.py", "guard.py"):
      os.chown(os.path.join(workdir, name), uid, uid)
  os.chmod(workdir, 0o700)
  return workdir


def _signal_reason(returncode: int) -> str:
  sig = -returncode
  if sig == signal.SIGXCPU:
    return Reason.CPU
  if sig == signal.SIGXFSZ:
    return Reason.OUTPUT
  return f"signal: {signal.Signals(sig).name}"


def _classify(returncode: int, status: str, timed_out: bool) -> str:
  """Reason for a finished child from its exit code and status line.

  Without a status line, an exit code 128 + n is signal n: the namespace
  launchers' init process reports a child killed by a signal that way.
  """
  if timed_out:
    return Reason.TIMEOUT
  if returncode < 0:
    return _signal_reason(returncode)
  if not status and 128 < returncode < 128 + signal.NSIG:
    return _signal_reason(128 - returncode)
  if status:
    if status == Reason.OK and returncode != 0:
      return f"exit code {returncode}"
    return status
  if returncode == 0:
    return Reason.NO_STATUS
  return f"exit code {returncode}"


def _read_capped(path: str, cap: int) -> str:
  with open(path, "rb") as f:
    return f.read(cap).decode("utf-8", errors="replace")


def _spawn(how: Launcher, workdir: str, limits: SandboxLimits, status_w: int,
           out_file, err_file, audit_hook: bool) -> subprocess.Popen:
  flags = ["--isolate"] * how.isolate + ["--no-audit-hook"] * (not audit_hook)
  command = [a.replace("{workdir}", workdir) for a in how.prefix] + [
      how.python, "-I", "-B", "guard.py", *flags, "program.py", str(status_w),
      limits.rlimits_json()]
  return subprocess.Popen(
      command, cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
      stdout=out_file, stderr=err_file, pass_fds=(status_w,),
      start_new_session=True, close_fds=True)


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
  """Waits for the child; kills its process group on timeout. True if so."""
  try:
    proc.wait(timeout=timeout_s)
    return False
  except subprocess.TimeoutExpired:
    return True
  finally:
    try:
      os.killpg(proc.pid, signal.SIGKILL)  # Also reaps stray descendants.
    except (ProcessLookupError, PermissionError):
      pass
    proc.wait()


def run_program(code: str, limits: SandboxLimits = SandboxLimits(),
                audit_hook: bool = True) -> SandboxResult:
  """Runs Python source ``code`` in the sandbox.

  Args:
    code: A complete Python program (for MBPP: setup code, the candidate
      solution and the assert statements).
    limits: Resource and time limits.
    audit_hook: False runs without the audit hook (the kernel layers alone);
      for the fault suite only.

  Returns:
    A SandboxResult; ``passed`` iff the program completed cleanly.
  """
  return _run_with(launcher(), code, limits, audit_hook)


def _run_with(how: Launcher, code: str, limits: SandboxLimits,
              audit_hook: bool = True) -> SandboxResult:
  """``run_program`` through launcher ``how``."""
  workdir = _prepare_workdir(code, how.uid)
  logdir = tempfile.mkdtemp(prefix="harness-sandbox-log-")
  status_r, status_w = os.pipe()
  try:
    out_path, err_path = (os.path.join(logdir, n) for n in ("out", "err"))
    with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
      try:
        proc = _spawn(how, workdir, limits, status_w, out_file, err_file,
                      audit_hook)
      except OSError as e:
        return SandboxResult(False, f"launch failed: {e}")
    os.close(status_w)
    status_w = -1
    timed_out = _wait(proc, limits.timeout_s)
    status = os.read(status_r, 256).decode("utf-8", "replace").strip()
    reason = _classify(proc.returncode, status, timed_out)
    output = (_read_capped(out_path, limits.output_bytes) +
              _read_capped(err_path, limits.output_bytes))
    return SandboxResult(reason == Reason.OK, reason,
                         output[:limits.output_bytes])
  finally:
    for fd in (status_r, status_w):
      if fd >= 0:
        os.close(fd)
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(logdir, ignore_errors=True)


def run_programs(codes: Sequence[str],
                 limits: SandboxLimits = SandboxLimits(),
                 workers: int = 2) -> list[SandboxResult]:
  """Runs several programs, ``workers`` sandboxes at a time, in order."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    return list(pool.map(lambda c: run_program(c, limits), codes))
