"""Child-side guard for the code sandbox (runs in the sandboxed interpreter).

Usage (by ``harness.metrics.sandbox`` only)::

  python -I _sandbox_guard.py PROGRAM_PATH STATUS_FD LIMITS_JSON

It lowers its own resource limits (soft and hard, so they cannot be raised
again), installs an audit hook that blocks network, process creation,
signals to other processes, ctypes and writes outside the working directory,
then executes PROGRAM_PATH. One status line goes to STATUS_FD:
"ok", "exception: <Type>", "memory" or "blocked: <category>".

Stdlib only: this file is copied into the sandbox directory and may run
under a different interpreter than the harness.
"""

import errno
import json
import os
import resource
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_NETWORK_EVENTS = frozenset({
    "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto",
    "socket.sendmsg"})
_PROCESS_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
    "os.system", "os.startfile", "subprocess.Popen", "pty.spawn"})
_SIGNAL_EVENTS = frozenset({"os.kill", "os.killpg", "signal.pthread_kill"})
_PATH_EVENTS = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
    "os.link", "os.symlink", "os.truncate", "os.utime", "os.chdir",
    "os.chroot", "shutil.rmtree", "shutil.move", "shutil.copyfile"})
_BLOCKED_MODULES = frozenset({"ctypes", "_ctypes", "_posixsubprocess"})
_LIMITS = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC",
           "RLIMIT_NOFILE")


class SandboxViolation(BaseException):
  """Raised by the audit hook; a BaseException so `except Exception` misses."""


_violations = []


def _set_limits(limits):
  for name in _LIMITS:
    value = int(limits[name])
    resource.setrlimit(getattr(resource, name), (value, value))


def _inside(path, root):
  if isinstance(path, int):  # A file descriptor the program already holds.
    return True
  path = os.path.realpath(os.fsdecode(path))
  return path == root or path.startswith(root + os.sep)


def _block(category):
  _violations.append(category)
  raise SandboxViolation(category)


def _check_open(args, root):
  path, mode, flags = args
  writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
      isinstance(flags, int) and flags & _WRITE_FLAGS)
  if writes and not _inside(path, root):
    _block("filesystem")
  if isinstance(path, (str, bytes)) and not isinstance(path, int):
    text = os.fsdecode(path)
    if text.startswith("/proc/") and not text.startswith(("/proc/self/",
                                                          "/proc/thread-self")):
      _block("filesystem")


def _make_hook(root):
  me = os.getpid()

  def hook(event, args):
    if event == "open":
      _check_open(args, root)
    elif event in _NETWORK_EVENTS:
      _block("network")
    elif event in _PROCESS_EVENTS:
      _block("process")
    elif event in _SIGNAL_EVENTS:
      if event != "os.kill" or args[0] != me:
        _block("signal")
    elif event in _PATH_EVENTS:
      if not all(_inside(a, root) for a in args[:2]
                 if isinstance(a, (str, bytes, os.PathLike))):
        _block("filesystem")
    elif event == "import" and args[0] in _BLOCKED_MODULES:
      _block("import " + args[0])

  return hook


def _run(program_path):
  with open(program_path, encoding="utf-8") as f:
    source = f.read()
  code = compile(source, "program.py", "exec")
  exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


def _status(error):
  if _violations:
    return "blocked: " + _violations[0]
  if error is None:
    return "ok"
  if isinstance(error, MemoryError):
    return "memory"
  if isinstance(error, OSError) and error.errno == errno.EFBIG:
    return "output limit"  # RLIMIT_FSIZE: Python ignores SIGXFSZ.
  return "exception: " + type(error).__name__


def main():
  program_path, status_fd, limits_json = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  status = os.fdopen(status_fd, "w")
  _set_limits(json.loads(limits_json))
  sys.addaudithook(_make_hook(os.path.realpath(os.getcwd())))
  error = None
  try:
    _run(program_path)
  except BaseException as e:  # pylint: disable=broad-except
    error = e
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except BaseException as e:  # pylint: disable=broad-except
      error = error or e
  status.write(_status(error) + "\n")
  status.flush()
  os._exit(0 if error is None and not _violations else 1)


if __name__ == "__main__":
  main()
