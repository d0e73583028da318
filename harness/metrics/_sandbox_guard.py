"""Child-side guard for the code sandbox (runs in the sandboxed interpreter).

Usage (by ``harness.metrics.sandbox`` only)::

  python -I _sandbox_guard.py [--isolate] [--no-audit-hook] PROGRAM_PATH \
      STATUS_FD LIMITS_JSON

With ``--isolate`` (the ``userns`` launcher: we are uid 0 of a fresh user,
mount, network and PID namespace) it first builds the filesystem view of
``docs/reliability.md``: every mount read-only, private tmpfs on /tmp and
/dev/shm, the working directory bound back read-write at the same path, a
private /proc; then it drops every capability (bounding set included) and
sets no-new-privs. Then, in every mode, it lowers its own resource limits
(soft and hard, so they cannot be raised again), installs an allow-list audit
hook (PEP 578; not with ``--no-audit-hook``, which the fault suite uses to
test the kernel layer alone) and executes PROGRAM_PATH. One status line goes
to STATUS_FD:
"ok", "exception: <Type>", "memory", "setup: <error>" or "blocked: <what>".

The hook is deny-by-default: an audit event not in ``_ALLOWED`` or
``_PATH_EVENTS`` is refused, whichever function raised it. Opening files for
reading is allowed (the filesystem is read-only under the kernel layers);
writing, and the path-changing calls of ``os``/``shutil``/``tempfile``, only
inside the working directory, by path (never relative to a directory fd).

Stdlib only: this file is copied into the sandbox directory and may run
under a different interpreter than the harness.
"""

import errno
import json
import os
import resource
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# Events a program may raise freely: imports, compiling, introspection that
# the stdlib itself uses (namedtuple and enum call sys._getframe; imports list
# directories and unmarshal bytecode).
_ALLOWED = frozenset({
    "import", "exec", "compile", "builtins.id", "builtins.input",
    "builtins.input/result", "object.__getattr__", "object.__setattr__",
    "object.__delattr__", "sys._getframe", "sys._getframemodulename",
    "time.sleep", "os.listdir", "os.scandir", "os.walk", "glob.glob",
    "glob.glob/2", "marshal.loads", "marshal.load", "marshal.dumps",
    "array.__new__", "code.__new__", "function.__new__", "pickle.find_class",
    "os.putenv", "os.unsetenv", "random.seed",
    "sys.set_asyncgen_hooks_firstiter", "sys.set_asyncgen_hooks_finalizer"})
# Path-changing events allowed inside the working directory: event ->
# (indices of path arguments, indices of dir_fd arguments, fd allowed).
_PATH_EVENTS = {
    "os.remove": ((0,), (1,), False), "os.rmdir": ((0,), (1,), False),
    "os.mkdir": ((0,), (2,), False), "os.rename": ((0, 1), (2, 3), False),
    "os.truncate": ((0,), (), True), "os.utime": ((0,), (3,), False),
    "os.chmod": ((0,), (2,), False), "os.link": ((0, 1), (2, 3), False),
    "os.symlink": ((0, 1), (2,), False),
    "shutil.copyfile": ((1,), (), False), "shutil.copymode": ((1,), (), False),
    "shutil.copystat": ((1,), (), False), "shutil.copytree": ((1,), (), False),
    "shutil.move": ((0, 1), (), False), "shutil.rmtree": ((0,), (1,), False),
    "tempfile.mkstemp": ((0,), (), False),
    "tempfile.mkdtemp": ((0,), (), False),
}
_CATEGORIES = (
    ("network", ("socket.", "http.", "urllib.", "ftplib.", "smtplib.",
                 "poplib.", "imaplib.", "nntplib.", "telnetlib.",
                 "webbrowser.")),
    ("process", ("os.fork", "os.exec", "os.posix_spawn", "os.spawn",
                 "os.system", "os.startfile", "subprocess.", "pty.",
                 "_posixsubprocess", "os.forkpty")),
    ("signal", ("os.kill", "os.killpg", "signal.")),
    ("filesystem", ("open", "os.", "shutil.", "tempfile.", "sqlite3.",
                    "mmap.", "fcntl.", "glob.", "pathlib.")),
)
_BLOCKED_MODULES = frozenset({"ctypes", "_ctypes", "_posixsubprocess",
                              "_xxsubinterpreters"})
_LIMITS = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC",
           "RLIMIT_NOFILE")


def _category(event):
  for name, prefixes in _CATEGORIES:
    if event.startswith(prefixes):
      return name
  return event


# --- Kernel isolation (``--isolate``) -------------------------------------

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC = 32, 4096, 16384
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21
_ST_TO_MS = ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV),
             (os.ST_NOEXEC, _MS_NOEXEC), (os.ST_NOATIME, _MS_NOATIME),
             (os.ST_NODIRATIME, _MS_NODIRATIME),
             (getattr(os, "ST_RELATIME", 4096), _MS_RELATIME))
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 24, 38
_CAP_VERSION_3 = 0x20080522


def _kept_flags(path):
  """Per-mount flags of ``path`` that a bind remount must keep (locked)."""
  try:
    have = os.statvfs(path).f_flag
  except OSError:
    return _MS_NOSUID | _MS_NODEV
  return sum(ms for st, ms in _ST_TO_MS if have & st)


def _mount_points():
  with open("/proc/self/mountinfo", encoding="utf-8") as f:
    points = [line.split()[4] for line in f]
  return sorted(set(p.replace("\\040", " ") for p in points), key=len)


def _isolate(workdir):
  """Read-only filesystem, private /tmp, /dev/shm and /proc, no capabilities.

  Raises:
    OSError: when any step fails (the run then reports "setup: ...").
  """
  import ctypes  # pylint: disable=g-import-not-at-top
  libc = ctypes.CDLL(None, use_errno=True)

  def call(name, *args):
    if getattr(libc, name)(*args) != 0:
      err = ctypes.get_errno()
      raise OSError(err, f"{name}{args[:2]}: {os.strerror(err)}")

  def mount(src, target, fstype, flags, data=None):
    call("mount", src and src.encode(), target.encode(),
         fstype and fstype.encode(), ctypes.c_ulong(flags),
         data and data.encode())

  for point in _mount_points():
    if os.path.isdir(point) or os.path.isfile(point):
      mount(None, point, None,
            _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _kept_flags(point))
  for point in ("/tmp", "/dev/shm"):
    mount("tmpfs", point, "tmpfs", _MS_NOSUID | _MS_NODEV,
          "mode=1777,size=16m")
  os.makedirs(workdir, exist_ok=True)
  # /proc/self/cwd still names the real working directory, which the tmpfs
  # on /tmp may now hide; bind it back at its own path, read-write.
  mount("/proc/self/cwd", workdir, None, _MS_BIND)
  mount(None, workdir, None,
        _MS_REMOUNT | _MS_BIND | (_kept_flags(workdir) & ~_MS_RDONLY))
  mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
  os.chdir(workdir)
  cap = 0
  while libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
    cap += 1
  header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
  call("capset", header, (ctypes.c_uint32 * 6)())
  call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  for name in [m for m in sys.modules if m.split(".")[0] in _BLOCKED_MODULES]:
    del sys.modules[name]


def _become_child_of_init():
  """Forks; the parent stays as PID 1 of the new PID namespace and exits with
  the child's status (128 + signal number for a signal), since PID 1 ignores
  signals it has no handler for (SIGXCPU, a program's own SIGKILL)."""
  pid = os.fork()
  if pid == 0:
    return
  _, status = os.waitpid(pid, 0)
  if os.WIFSIGNALED(status):
    os._exit(128 + os.WTERMSIG(status))
  os._exit(os.waitstatus_to_exitcode(status))


# --- Audit hook -----------------------------------------------------------


def _set_limits(limits):
  """Soft = hard, except RLIMIT_CPU's hard limit is 1 s higher so that SIGXCPU
  ("cpu limit") comes before the kernel's SIGKILL."""
  for name in _LIMITS:
    value = int(limits[name])
    hard = value + 1 if name == "RLIMIT_CPU" else value
    resource.setrlimit(getattr(resource, name), (value, hard))


def _make_hook(root, me, status_fd):
  """The allow-list hook. A denied event ends the program at once (status
  "blocked: <what>", exit 1), so it cannot be caught, and everything the
  hook uses is bound here, so a program that rebinds this module's globals
  (``sys.modules['__main__']``) changes nothing."""
  realpath, fsdecode, prefix = os.path.realpath, os.fsdecode, root + os.sep
  allowed, path_events = _ALLOWED, _PATH_EVENTS
  blocked_modules = _BLOCKED_MODULES
  category, write_flags, write, exit_now = (_category, _WRITE_FLAGS, os.write,
                                            os._exit)
  streams = (sys.stdout, sys.stderr)
  path_like = (str, bytes, os.PathLike)

  def inside(path):
    path = realpath(fsdecode(path))
    return path == root or path.startswith(prefix)

  def deny(what):
    for stream in streams:
      try:
        stream.flush()
      except BaseException:  # pylint: disable=broad-except
        pass
    write(status_fd, f"blocked: {what}\n".encode())
    exit_now(1)

  def check_open(path, mode, flags):
    if isinstance(path, int):
      return  # An fd the program already holds (opened through this check).
    text = fsdecode(path)
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & write_flags)
    if writes or mode is None:  # mode None: os.open, whose fd can be a dir_fd.
      if not inside(text):
        deny("filesystem")
    elif text.startswith("/proc/") and not text.startswith(
        ("/proc/self/", "/proc/thread-self/")):
      deny("filesystem")

  def check_paths(event, args):
    paths, dir_fds, fd_ok = path_events[event]
    for i in dir_fds:
      if i < len(args) and args[i] not in (None, -1):
        deny("filesystem")
    for i in paths:
      arg = args[i]
      if isinstance(arg, int) and fd_ok:
        continue
      if not isinstance(arg, path_like) or not inside(arg):
        deny("filesystem")

  def hook(event, args):
    if event in allowed:
      if event == "import" and args[0].split(".")[0] in blocked_modules:
        deny("import " + args[0])
      return
    if event == "open":
      check_open(*args[:3])
    elif event in path_events:
      check_paths(event, args)
    elif event == "os.kill" and args[0] == me:
      return
    else:
      deny(category(event))

  return hook


def _run(program_path):
  with open(program_path, encoding="utf-8") as f:
    source = f.read()
  code = compile(source, "program.py", "exec")
  exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


def _status(error):
  if error is None:
    return "ok"
  if isinstance(error, MemoryError):
    return "memory"
  if isinstance(error, OSError) and error.errno == errno.EFBIG:
    return "output limit"  # RLIMIT_FSIZE: Python ignores SIGXFSZ.
  return "exception: " + type(error).__name__


def main():
  flags = [a for a in sys.argv[1:] if a.startswith("--")]
  program_path, status_fd, limits_json = sys.argv[1 + len(flags):]
  isolate = "--isolate" in flags
  status_fd = int(status_fd)
  status = os.fdopen(status_fd, "w")
  root = os.path.realpath(os.getcwd())
  try:
    if isolate:
      _isolate(root)
      _become_child_of_init()
    _set_limits(json.loads(limits_json))
  except (OSError, ValueError) as e:
    status.write(f"setup: {e}\n")
    status.flush()
    os._exit(2)
  if "--no-audit-hook" not in flags:
    sys.addaudithook(_make_hook(root, os.getpid(), status_fd))
  # Bound before the program runs: it may rebind this module's globals.
  exit_now, status_of, streams = os._exit, _status, (sys.stdout, sys.stderr)
  error = None
  try:
    _run(program_path)
  except BaseException as e:  # pylint: disable=broad-except
    error = e
  for stream in streams:
    try:
      stream.flush()
    except BaseException as e:  # pylint: disable=broad-except
      error = error or e
  status.write(status_of(error) + "\n")
  status.flush()
  exit_now(0 if error is None else 1)


if __name__ == "__main__":
  main()
