"""The MBPP sandbox's adversarial suite, summarised.

Every attack of ``ATTACKS`` runs through ``harness.metrics.sandbox`` with the
test suite's limits, as the current user and, when that is root, once more as
an unprivileged user (uid ``nobody``, in a child ``python -m
tools.faults.sandbox --json``). An attack aims at every directory of
``_targets()`` outside the working directory: the host's world-writable
/tmp, /dev/shm and /var/tmp, a directory standing for the user's own files
(owned by the sandboxed uid, so that file permissions alone would allow the
write) and the home directory. Before each attack every target holds a
victim file and a victim directory; *contained* means that afterwards no
entry named ``harness-attack-*`` was added, changed (content, mode, owner,
times, extended attributes, link target) or removed in any target, nothing
connected to a socket the suite listens on, no secret of the suite's
environment reached the program's output, and the program did not pass (the
controls: it passed). The test file ``tests/test_sandbox.py`` is also run
with pytest and its pass count recorded.

  python -m tools.faults --sections sandbox   # this section, as a table
  python -m tools.faults.sandbox --json       # the attacks only, as JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import xml.etree.ElementTree as ET

from tools.faults import common

PREFIX = "harness-attack-"
_SECRET_ENV = "HARNESS_ATTACK_SECRET"
# Marks a body run once per target ``t`` (``_program`` wraps it so that a
# failure on one target does not spare the others).
_EACH = "for t in TARGETS:\n  "
_VICTIM = "t + '/" + PREFIX + "victim'"
_NEW = "t + '/" + PREFIX + "new'"
_VDIR = "t + '/" + PREFIX + "vdir'"

# (attack, class, program body). The header defines TARGETS, PORT, PID
# (the suite's pid) and imports os, sys, signal, socket.
ATTACKS = (
    ("clean program (control)", "control",
     "print('hello')\nassert sum(range(4)) == 6"),
    ("write and delete inside the working directory (control)", "control",
     "open('x', 'w').write('1')\nos.mkdir('d')\nos.rename('x', 'd/y')\n"
     "os.remove('d/y')\nos.rmdir('d')"),
    ("namedtuple, enum, dataclass, re, heapq (control)", "control",
     "import collections, enum, dataclasses, re, heapq\n"
     "P = collections.namedtuple('P', 'a b')\nassert P(1, 2).b == 2"),
    # Limits and outcome.
    ("failed assert", "outcome", "assert 1 + 1 == 3"),
    ("sys.exit(0) before the asserts", "outcome", "sys.exit(0)\nassert False"),
    ("infinite loop", "resource", "while True:\n  pass"),
    ("memory hog", "resource",
     "x = []\nwhile True:\n  x.append(bytearray(10 << 20))"),
    ("stdout flood", "resource", "while True:\n  print('x' * 10000)"),
    ("fork bomb", "process", "while True:\n  os.fork()"),
    # Special files.
    ("mkfifo", "special file", _EACH + f"os.mkfifo({_NEW})"),
    ("mknod (regular file)", "special file",
     "import stat\n" + _EACH + f"os.mknod({_NEW}, 0o600 | stat.S_IFREG)"),
    ("mknod (fifo)", "special file",
     "import stat\n" + _EACH + f"os.mknod({_NEW}, 0o600 | stat.S_IFIFO)"),
    ("bind a unix socket", "special file",
     _EACH + f"socket.socket(socket.AF_UNIX).bind({_NEW})"),
    # Metadata.
    ("chmod", "metadata", _EACH + f"os.chmod({_VICTIM}, 0o777)"),
    ("chown", "metadata", _EACH + f"os.chown({_VICTIM}, os.getuid(), 0)"),
    ("utime", "metadata", _EACH + f"os.utime({_VICTIM}, (0, 0))"),
    ("setxattr", "metadata",
     _EACH + f"os.setxattr({_VICTIM}, 'user.evil', b'1')"),
    ("fchmod through a read-only fd", "metadata",
     _EACH + f"os.chmod(open({_VICTIM}).fileno(), 0o777)"),
    # Links.
    ("symlink outside", "link", _EACH + f"os.symlink('/etc/passwd', {_NEW})"),
    ("hard link outside", "link", _EACH + f"os.link({_VICTIM}, {_NEW})"),
    ("write through a symlink made inside", "link",
     _EACH + f"os.symlink({_VICTIM}, 'l')\n  open('l', 'w').write('x')\n"
     "  os.remove('l')"),
    ("write through a hard link made inside", "link",
     _EACH + f"os.link({_VICTIM}, 'h')\n  open('h', 'a').write('x')\n"
     "  os.remove('h')"),
    # Every write path of the standard library.
    ("open(w)", "write", _EACH + f"open({_NEW}, 'w').write('x')"),
    ("open(a) of a file outside", "write",
     _EACH + f"open({_VICTIM}, 'a').write('x')"),
    ("open(x)", "write", _EACH + f"open({_NEW}, 'x').write('x')"),
    ("open(r+)", "write", _EACH + f"open({_VICTIM}, 'r+').write('x')"),
    ("open(wb, buffering=0)", "write",
     _EACH + f"open({_NEW}, 'wb', buffering=0).write(b'x')"),
    ("os.open(O_WRONLY|O_CREAT)", "write",
     _EACH + f"os.write(os.open({_NEW}, os.O_WRONLY | os.O_CREAT), b'x')"),
    ("os.open(O_RDWR|O_TRUNC)", "write",
     _EACH + f"os.open({_VICTIM}, os.O_RDWR | os.O_TRUNC)"),
    ("os.open relative to a directory fd", "write",
     _EACH + "d = os.open(t, os.O_RDONLY)\n  os.write(os.open('" + PREFIX +
     "new', os.O_WRONLY | os.O_CREAT, dir_fd=d), b'x')"),
    ("chdir outside, then a relative write", "write",
     _EACH + f"os.chdir(t)\n  open('{PREFIX}new', 'w').write('x')"),
    ("io.FileIO", "write",
     "import io\n" + _EACH + f"io.FileIO({_NEW}, 'w').write(b'x')"),
    ("_io.open", "write",
     "import _io\n" + _EACH + f"_io.open({_NEW}, 'w').write('x')"),
    ("pathlib write_text / touch / mkdir", "write",
     "import pathlib\n" + _EACH + f"pathlib.Path({_NEW}).touch()\n  "
     f"pathlib.Path({_NEW} + 'd').mkdir()\n  "
     f"pathlib.Path({_VICTIM}).write_text('x')"),
    ("shutil.copyfile / copy", "write",
     "import shutil\n" + _EACH + f"shutil.copyfile('program.py', {_NEW})\n  "
     f"shutil.copy('program.py', {_VICTIM})"),
    ("shutil.copytree", "write",
     "import shutil\n" + _EACH + f"shutil.copytree('.', {_NEW})"),
    ("shutil.move of a victim", "write",
     "import shutil\n" + _EACH + f"shutil.move({_VICTIM}, 'stolen')"),
    ("shutil.rmtree of a victim directory", "write",
     "import shutil\n" + _EACH + f"shutil.rmtree({_VDIR})"),
    ("shutil.make_archive", "write",
     "import shutil\n" + _EACH + f"shutil.make_archive({_NEW}, 'zip', '.')"),
    ("tempfile.mkstemp / mkdtemp / NamedTemporaryFile", "write",
     "import tempfile\n" + _EACH + f"tempfile.mkstemp(dir=t, prefix='{PREFIX}')"
     f"\n  tempfile.mkdtemp(dir=t, prefix='{PREFIX}')\n  "
     f"tempfile.NamedTemporaryFile(dir=t, prefix='{PREFIX}', delete=False)"),
    ("os.mkdir / makedirs", "write",
     _EACH + f"os.makedirs({_NEW} + '/a/b')"),
    ("os.remove / unlink", "write", _EACH + f"os.unlink({_VICTIM})"),
    ("os.rmdir", "write", _EACH + f"os.remove({_VDIR} + '/f')\n  "
     f"os.rmdir({_VDIR})"),
    ("os.rename / replace", "write",
     _EACH + f"os.rename({_VICTIM}, {_NEW})\n  os.replace({_NEW}, {_VICTIM})"),
    ("os.truncate", "write", _EACH + f"os.truncate({_VICTIM}, 0)"),
    ("sqlite3", "write",
     "import sqlite3\n" + _EACH +
     f"sqlite3.connect({_NEW}).execute('create table x(a)')"),
    ("dbm", "write", "import dbm\n" + _EACH + f"dbm.open({_NEW}, 'c')"),
    ("mmap of a read-only fd with ACCESS_WRITE", "write",
     "import mmap\n" + _EACH + f"f = open({_VICTIM}, 'rb')\n  "
     "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE)\n  m[0:1] = b'X'"
     "\n  m.flush()"),
    ("logging.FileHandler", "write",
     "import logging\n" + _EACH + f"logging.FileHandler({_NEW}).emit("
     "logging.makeLogRecord({'msg': 'x'}))"),
    ("zipfile", "write",
     "import zipfile\n" + _EACH + f"zipfile.ZipFile({_NEW}, 'w').close()"),
    # Processes.
    ("subprocess", "process", "import subprocess\n" + _EACH +
     f"subprocess.run(['touch', {_NEW}])"),
    ("os.system", "process", _EACH + f"os.system('touch ' + {_NEW})"),
    ("os.execv", "process",
     _EACH + f"os.execv('/usr/bin/touch', ['touch', {_NEW}])"),
    ("os.posix_spawn", "process", _EACH +
     f"os.waitpid(os.posix_spawn('/usr/bin/touch', ['touch', {_NEW}], {{}}),"
     " 0)"),
    ("os.spawnv", "process", _EACH +
     f"os.spawnv(os.P_WAIT, '/usr/bin/touch', ['touch', {_NEW}])"),
    ("os.fork, the child writes", "process", _EACH +
     f"if os.fork() == 0:\n    open({_NEW}, 'w').write('x')\n    os._exit(0)"
     "\n  os.wait()"),
    ("pty.spawn", "process",
     "import pty\n" + _EACH + f"pty.spawn(['touch', {_NEW}])"),
    ("_posixsubprocess.fork_exec", "process",
     "import _posixsubprocess\n_posixsubprocess.fork_exec()"),
    ("remount / read-write (mount command)", "process",
     "os.system('mount -o remount,rw /')\n" + _EACH + f"open({_NEW}, 'w')"),
    # ctypes and known audit-hook bypasses.
    ("ctypes libc.creat", "ctypes",
     "import ctypes\nlibc = ctypes.CDLL(None)\n" + _EACH +
     f"assert libc.creat({_NEW}.encode(), 0o644) >= 0"),
    ("ctypes: clear the audit hooks", "hook bypass",
     "import ctypes\nctypes.pythonapi._PySys_ClearAuditHooks()\n" + _EACH +
     f"open({_NEW}, 'w')"),
    ("load _ctypes from its file (no import event)", "hook bypass",
     "import importlib.util, glob, sysconfig\n"
     "p = glob.glob(sysconfig.get_path('platstdlib') + '/lib-dynload/"
     "_ctypes*.so')[0]\nspec = importlib.util.spec_from_file_location("
     "'_ctypes', p)\nm = importlib.util.module_from_spec(spec)\n"
     "f = m.dlsym(m.dlopen(None), 'creat')\n" + _EACH + f"open({_NEW}, 'w')"),
    ("ctypes left in memory by the guard (via __subclasses__)", "hook bypass",
     "c = [k for k in object.__subclasses__() if 'CData' in k.__name__]\n"
     "assert c, 'no ctypes types'\n" + _EACH + f"open({_NEW}, 'w')"),
    ("gc.get_objects to find the hook", "hook bypass",
     "import gc\nhooks = [o for o in gc.get_objects() if getattr(o, "
     "'__name__', '') == 'hook']\n" + _EACH + f"open({_NEW}, 'w')"),
    ("rebind the guard's globals via sys.modules['__main__']",
     "hook bypass",
     "g = sys.modules['__main__']\n"
     "g._make_hook = g._category = g._status = lambda *a: 'ok'\n"
     "g.os = type('os', (), {'_exit': staticmethod(lambda c: os._exit(0))})"
     "\n" + _EACH + f"try:\n    open({_NEW}, 'w')\n  except BaseException:"
     "\n    pass"),
    ("forge the status: rebind the guard's _status and os, then fail",
     "outcome",
     "g = sys.modules['__main__']\ng._status = lambda *a: 'ok'\n"
     "g.os = type('os', (), {'_exit': staticmethod(lambda c: os._exit(0))})"
     "\nassert False"),
    ("monkeypatch os.path.realpath, then write", "hook bypass",
     "os.path.realpath = lambda p, **k: os.getcwd() + '/x'\n" + _EACH +
     f"open({_NEW}, 'w').write('x')"),
    ("sys.modules['os'] swapped for a fake", "hook bypass",
     "import types\nsys.modules['os'] = types.ModuleType('os')\nimport posix"
     "\n" + _EACH + f"posix.close(posix.open({_NEW}, 0o101))"),
    ("write /proc/self/mem", "hook bypass",
     "f = open('/proc/self/mem', 'r+b')\nf.seek(id(sys))\nf.write(b'\\0')"),
    ("os.open /proc/self/mem", "hook bypass",
     "os.open('/proc/self/mem', os.O_RDWR)"),
    ("sys.settrace / setprofile", "hook bypass",
     "sys.settrace(lambda *a: None)\n" + _EACH + f"open({_NEW}, 'w')"),
    # Network.
    ("connect to the host (exception caught)", "network",
     "try:\n  socket.create_connection(('127.0.0.1', PORT), 1)\n"
     "except BaseException:\n  pass"),
    ("UDP sendto", "network",
     "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
     "('127.0.0.1', PORT))"),
    ("urllib", "network", "import urllib.request\n"
     "urllib.request.urlopen(f'http://127.0.0.1:{PORT}/', timeout=1)"),
    ("DNS lookup", "network", "socket.getaddrinfo('example.com', 80)"),
    # Signals and other processes.
    ("signal 0 to the harness (is it visible?)", "signal", "os.kill(PID, 0)"),
    ("kill the parent", "signal", "os.kill(os.getppid(), signal.SIGKILL)"),
    ("kill the process group", "signal", "os.killpg(0, signal.SIGKILL)"),
    ("read the harness's environment", "proc",
     "print(open(f'/proc/{PID}/environ').read())"),
    ("read the harness's environment by listing /proc", "proc",
     "for p in os.listdir('/proc'):\n  try:\n    print(open(f'/proc/{p}/"
     "environ').read())\n  except BaseException:\n    pass"),
)


@dataclasses.dataclass(frozen=True)
class AttackOutcome:
  """One attack.

  Attributes:
    attack: what the program tries.
    kind: the attack's class.
    contained: no trace outside the working directory and the program did
      not pass (a control: it passed).
    reason: the sandbox's reason.
    traces: what the attack left outside (empty when contained).
    seconds: wall time.
    kernel_contained, kernel_reason, kernel_traces: the same attack run
      again without the audit hook (the kernel layers alone; contained: no
      trace, and a control passed); None when the launcher has no kernel
      filesystem layer.
  """
  attack: str
  kind: str
  contained: bool
  reason: str
  traces: list[str]
  seconds: float
  kernel_contained: bool | None = None
  kernel_reason: str = ""
  kernel_traces: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class AttackRun:
  """The attacks as one user.

  Attributes:
    user: who ran the suite ("root" or "uid 65534").
    launcher: the sandbox launcher used (``harness.metrics.sandbox``).
    isolation: what that launcher enforces.
    targets: directories watched for traces.
    attacks: one outcome per attack.
    error: why the run failed (then attacks is empty), or None.
  """
  user: str
  launcher: str
  isolation: str
  targets: list[str]
  attacks: list[AttackOutcome]
  error: str | None = None


@dataclasses.dataclass(frozen=True)
class SandboxReport:
  """Attacks as each user and the pytest run of ``tests/test_sandbox.py``."""
  runs: list[AttackRun]
  tests_passed: int
  tests_total: int


def _targets(uid: int) -> list[str]:
  """Directories outside the working directory that attacks aim at."""
  own = os.path.join("/var/tmp", f"{PREFIX}home-{uid}")
  os.makedirs(own, mode=0o700, exist_ok=True)
  if os.getuid() == 0:
    os.chown(own, uid, uid)
  found = [tempfile.gettempdir(), "/dev/shm", "/var/tmp", own]
  home = os.path.expanduser("~")
  if os.path.isdir(home) and os.access(home, os.W_OK):
    found.append(home)
  return [t for t in dict.fromkeys(found) if os.path.isdir(t)]


def _plant(targets: list[str], uid: int) -> None:
  """A victim file and a victim directory (owned by ``uid``) per target."""
  for t in targets:
    victim, vdir = f"{t}/{PREFIX}victim", f"{t}/{PREFIX}vdir"
    with open(victim, "w", encoding="utf-8") as f:
      f.write("victim")
    os.makedirs(vdir, exist_ok=True)
    with open(f"{vdir}/f", "w", encoding="utf-8") as f:
      f.write("f")
    for path in (victim, vdir, f"{vdir}/f"):
      os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
      if os.getuid() == 0:
        os.chown(path, uid, uid)


def _describe(path: str) -> tuple:
  st = os.lstat(path)
  digest = ""
  if os.path.isfile(path) and not os.path.islink(path):
    with open(path, "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()[:12]
  try:
    xattrs = tuple(sorted(os.listxattr(path, follow_symlinks=False)))
  except OSError:
    xattrs = ()
  link = os.readlink(path) if os.path.islink(path) else ""
  return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
          st.st_nlink, digest, xattrs, link)


def _snapshot(targets: list[str]) -> dict[str, tuple]:
  """Every ``harness-attack-*`` entry under the targets, described."""
  out = {}
  for t in targets:
    for name in os.listdir(t):
      if not name.startswith(PREFIX) or name.startswith(PREFIX + "home-"):
        continue
      path = os.path.join(t, name)
      out[path] = _describe(path)
      if os.path.isdir(path) and not os.path.islink(path):
        for sub in os.listdir(path):
          out[os.path.join(path, sub)] = _describe(os.path.join(path, sub))
  return out


def _clean(targets: list[str]) -> None:
  for t in targets:
    for name in os.listdir(t):
      if name.startswith(PREFIX) and not name.startswith(PREFIX + "home-"):
        path = os.path.join(t, name)
        if os.path.isdir(path) and not os.path.islink(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          os.unlink(path)


def _program(body: str, targets: list[str], port: int) -> str:
  """The attack's program: a header, then ``body``; a per-target part (after
  ``_EACH``) is tried on every target, and the program fails if any try
  failed."""
  if _EACH in body:
    setup, each = body.split(_EACH)
    each = "\n".join("    " + line for line in each.split("\n  "))
    body = (setup + "_errors = []\nfor t in TARGETS:\n  try:\n" + each +
            "\n  except Exception as e:\n    _errors.append(f'{t}: {e!r}')\n"
            "print(_errors)\nassert not _errors")
  return (f"import os, sys, signal, socket\nTARGETS = {targets!r}\n"
          f"PORT = {port}\nPID = {os.getpid()}\n" + body + "\n")


def _connections(server: socket.socket) -> int:
  count = 0
  while True:
    try:
      conn, _ = server.accept()
    except (BlockingIOError, OSError):
      return count
    conn.close()
    count += 1


def _udp_received(udp: socket.socket) -> bool:
  try:
    return bool(udp.recv(16))
  except (BlockingIOError, OSError):
    return False


def run_attacks(log=print) -> AttackRun:
  """Runs every attack as the current user, with the test suite's limits."""
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  limits = sandbox.SandboxLimits(timeout_s=3.0, cpu_s=3,
                                 memory_bytes=256 << 20, file_bytes=1 << 20)
  how = sandbox.launcher()
  uid = how.uid if how.uid is not None else os.getuid()
  user = "root" if os.getuid() == 0 else f"uid {os.getuid()}"
  targets = _targets(uid)
  secret = secrets.token_hex(8)
  os.environ[_SECRET_ENV] = secret
  server = socket.socket()
  server.bind(("127.0.0.1", 0))
  server.listen(8)
  server.setblocking(False)
  port = server.getsockname()[1]
  udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
  udp.bind(("127.0.0.1", port))
  udp.setblocking(False)
  out = []
  kernel = how.name in ("userns", "bwrap")

  def attempt(body, audit_hook):
    _clean(targets)
    _plant(targets, uid)
    before = _snapshot(targets)
    result = sandbox.run_program(_program(body, targets, port), limits,
                                 audit_hook=audit_hook)
    after = _snapshot(targets)
    traces = sorted(
        f"{p}: " + ("added" if p not in before else
                    "removed" if p not in after else "changed")
        for p in set(before) | set(after) if before.get(p) != after.get(p))
    if _connections(server) or _udp_received(udp):
      traces.append(f"connection to 127.0.0.1:{port}")
    if secret in result.output:
      traces.append("the harness's secret in the output")
    return result, traces

  try:
    for attack, kind, body in ATTACKS:
      control = kind == "control"
      begin = time.monotonic()
      result, traces = attempt(body, True)
      seconds = time.monotonic() - begin
      contained = not traces and result.passed == control
      k_result, k_traces = attempt(body, False) if kernel else (None, [])
      # Without the hook many attacks fail silently (os.system returns a
      # status, a caught exception), so the kernel layer is judged by traces
      # alone (and a control must still pass).
      k_contained = None if k_result is None else (
          not k_traces and (k_result.passed or not control))
      out.append(AttackOutcome(
          attack, kind, contained, result.reason, traces, seconds,
          k_contained, k_result.reason if k_result else "", k_traces))
      log(f"sandbox[{user}]: {'ok  ' if contained else 'FAIL'} {attack}: "
          f"{result.reason} {'; '.join(traces)} ({seconds:.1f} s); kernel "
          f"alone: {k_contained} {k_result.reason if k_result else ''} "
          f"{'; '.join(k_traces)}")
  finally:
    _clean(targets)
    server.close()
    udp.close()
    del os.environ[_SECRET_ENV]
  return AttackRun(user, how.name, how.isolation, targets, out)


def _unprivileged_env() -> dict[str, str]:
  """Environment of the unprivileged run: this checkout and our packages."""
  paths = [str(common.REPO)] + list(dict.fromkeys(
      sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
  return {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(paths),
          "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}


def _interpreter_for(drop: list[str]) -> str | None:
  """An interpreter that the ``drop`` prefix's uid can run and that imports
  this suite, or None."""
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  fallbacks = sandbox.FALLBACK_PYTHONS
  for python in (sys.executable,) + fallbacks:
    check = subprocess.run(
        drop + [python, "-c", "import subprocess, sys, tools.faults.sandbox\n"
                "subprocess.run([sys.executable, '-c', ''], check=True)"],
        capture_output=True, check=False, cwd=common.REPO,
        env=_unprivileged_env())
    if check.returncode == 0:
      return python
  return None


def run_attacks_unprivileged(uid: int, log=print) -> AttackRun:
  """``run_attacks`` as ``uid`` (from root), in a child interpreter."""
  user = f"uid {uid}"
  setpriv = shutil.which("setpriv")
  drop = [setpriv or "setpriv", f"--reuid={uid}", f"--regid={uid}",
          "--clear-groups", "--"]
  python = _interpreter_for(drop) if setpriv else None
  if python is None:
    return AttackRun(user, "", "", [], [], "no setpriv, or no interpreter "
                     f"that uid {uid} can run")
  proc = subprocess.run(
      drop + [python, "-m", "tools.faults.sandbox", "--json"],
      cwd=common.REPO, env=_unprivileged_env(), capture_output=True,
      text=True, check=False)
  for line in proc.stderr.splitlines():
    log(line)
  try:
    raw = json.loads(proc.stdout)
  except json.JSONDecodeError:
    return AttackRun(user, "", "", [], [],
                     f"exit {proc.returncode}: {proc.stderr[-300:]}")
  raw["attacks"] = [AttackOutcome(**a) for a in raw["attacks"]]
  return AttackRun(**raw)


def run_test_file() -> tuple[int, int]:
  """(passed, total) of ``pytest tests/test_sandbox.py`` (default markers)."""
  with tempfile.TemporaryDirectory() as tmp:
    xml = os.path.join(tmp, "junit.xml")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                    "no:cacheprovider", f"--junitxml={xml}",
                    "tests/test_sandbox.py"], cwd=common.REPO,
                   capture_output=True, check=False)
    if not os.path.exists(xml):
      return 0, 0
    suite = ET.parse(xml).getroot().iter("testsuite")
    total = failed = 0
    for s in suite:
      total += int(s.get("tests", 0)) - int(s.get("skipped", 0))
      failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
  return total - failed, total


def run_sandbox(log=print) -> SandboxReport:
  """The attacks as this user (and as nobody when root), then the tests."""
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  runs = [run_attacks(log)]
  if os.getuid() == 0:
    runs.append(run_attacks_unprivileged(sandbox.NOBODY_ID, log))
  for run in runs:
    contained = sum(a.contained for a in run.attacks)
    log(f"sandbox[{run.user}]: {contained}/{len(run.attacks)} contained, "
        f"launcher {run.launcher or '-'} {run.error or ''}")
  passed, total = run_test_file()
  log(f"sandbox: tests/test_sandbox.py {passed}/{total} passed")
  return SandboxReport(runs, passed, total)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", action="store_true",
                      help="run the attacks as this user; JSON on stdout")
  args = parser.parse_args(argv)
  log = lambda line: print(line, file=sys.stderr, flush=True)
  if args.json:
    print(json.dumps(dataclasses.asdict(run_attacks(log))))
    return 0
  report = run_sandbox(log)
  return 0 if all(a.contained for r in report.runs for a in r.attacks) else 1


if __name__ == "__main__":
  sys.exit(main())
