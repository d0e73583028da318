"""Where results live: a local path, or a bucket through fsspec.

Every file the results layer, ``gather`` and ``report`` read or write goes
through these functions. A path is local unless it starts with a scheme
(``<scheme>://``):

* no scheme, or ``file://``: the local filesystem, through ``os`` exactly as
  before (an atomic write is a temporary file, fsync, then a rename);
* ``gs://`` (or ``gcs://``): Google Cloud Storage through fsspec's
  ``gcsfs`` (the ``gcs`` extra: ``pip install -e '.[gcs]'``);
* ``memory://``: fsspec's in-memory filesystem (one process; for tests).

Any other scheme is refused by :func:`check` in one line, and so is a
bucket scheme whose library is not installed (naming the extra), before a
sweep's first cell.

On a bucket a write is one object upload: the object appears whole when the
upload finishes, or not at all (no temporary name and rename: a rename
there is a copy and a delete, not atomic). A cell stays write-once: its
records object first, then its summary, which holds the records' sha256 and
line count (``ResultsStore.check_cell``), so a run killed between the two
redoes the cell, and resume and merge refuse damaged records.

Names that start with "." (temporary files) are hidden from listings unless
the pattern asks for them, as with ``glob``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import os
import posixpath
import re
import shutil
import tempfile
from typing import Any, Iterator

from harness import extras

TMP_PREFIX = ".tmp-"
# Scheme -> (fsspec library module, extra of pyproject.toml installing it).
SCHEMES = {
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "memory": ("fsspec", None),
}
LOCAL_SCHEME = "file"
# Files fetched per request when a bucket's directory is copied here.
_BATCH = 256
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class UnsupportedPathError(ValueError):
  """A path's scheme is not one this harness can read or write."""


def scheme(path: str | os.PathLike) -> str:
  """The path's scheme ("gs", "memory", "file"), or "" for a plain path."""
  match = _SCHEME.match(os.fspath(path))
  return match.group(1).lower() if match else ""


def is_remote(path: str | os.PathLike) -> bool:
  """Whether ``path`` goes through fsspec (a scheme other than file://)."""
  return scheme(path) not in ("", LOCAL_SCHEME)


def local_path(path: str | os.PathLike) -> str:
  """A local path without its ``file://`` prefix."""
  path = os.fspath(path)
  return path[len(LOCAL_SCHEME) + 3:] if scheme(path) == LOCAL_SCHEME else (
      path)


def check(path: str | os.PathLike, what: str = "results directory") -> None:
  """Raises one line when ``path`` cannot be used (nothing is touched).

  Args:
    path: a local path or ``<scheme>://…``.
    what: what the path is, for the message.

  Raises:
    UnsupportedPathError: an unknown scheme.
    harness.extras.MissingExtraError: a known scheme whose library is not
      installed (the message names the extra).
  """
  name = scheme(path)
  if not is_remote(path):
    return
  if name not in SCHEMES:
    known = ", ".join(f"{s}://" for s in SCHEMES)
    raise UnsupportedPathError(
        f"{what} {os.fspath(path)}: unknown filesystem scheme {name}:// "
        f"(use a local path, file://, or one of {known})")
  module, extra = SCHEMES[name]
  try:
    importlib.import_module("fsspec")
    importlib.import_module(module)
  except ImportError as err:
    missing = module if extra else "fsspec"
    install = f"pip install -e '.[{extra}]'" if extra else "pip install fsspec"
    raise extras.MissingExtraError(
        f"{what} {os.fspath(path)}: {name}:// needs {missing}, which is not "
        f"installed: {install}") from err


def _fs(path: str) -> tuple[Any, str]:
  """(fsspec filesystem, path without its scheme) of a remote path."""
  check(path)
  from fsspec.core import url_to_fs  # pylint: disable=g-import-not-at-top
  fs, bare = url_to_fs(path)
  return fs, bare.rstrip("/") or bare


# --- Path arithmetic ---------------------------------------------------------


def join(path: str | os.PathLike, *parts: str) -> str:
  """``os.path.join`` for local paths, "/"-joined for bucket paths."""
  path = os.fspath(path)
  return posixpath.join(path, *parts) if scheme(path) else os.path.join(
      path, *parts)


def normpath(path: str | os.PathLike) -> str:
  """``os.path.normpath`` locally; a bucket path without trailing "/"."""
  path = os.fspath(path)
  if not scheme(path):
    return os.path.normpath(path)
  head = _SCHEME.match(path).group(0)
  rest = path[len(head):]
  return head + (posixpath.normpath(rest) if rest.strip("/") else rest)


def split(path: str | os.PathLike) -> tuple[str, str]:
  """(parent, last name) of a normalised path."""
  path = normpath(path)
  if not scheme(path):
    return os.path.split(path)
  head = _SCHEME.match(path).group(0)
  parent, name = posixpath.split(path[len(head):])
  return head + parent, name


# --- Reading ----------------------------------------------------------------


def exists(path: str | os.PathLike) -> bool:
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.exists(local_path(path))
  fs, bare = _fs(path)
  return fs.exists(bare)


def isdir(path: str | os.PathLike) -> bool:
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.isdir(local_path(path))
  fs, bare = _fs(path)
  return fs.isdir(bare)


def read_bytes(path: str | os.PathLike) -> bytes:
  path = os.fspath(path)
  if not is_remote(path):
    with open(local_path(path), "rb") as f:
      return f.read()
  fs, bare = _fs(path)
  return fs.cat_file(bare)


def read_text(path: str | os.PathLike) -> str:
  return read_bytes(path).decode("utf-8")


def listdir(path: str | os.PathLike) -> list[str]:
  """Sorted names directly inside a directory ([] if it does not exist)."""
  path = os.fspath(path)
  if not is_remote(path):
    try:
      return sorted(os.listdir(local_path(path)))
    except (FileNotFoundError, NotADirectoryError):
      return []
  fs, bare = _fs(path)
  try:
    entries = fs.ls(bare, detail=False)
  except FileNotFoundError:
    return []
  names = {posixpath.basename(e.rstrip("/")) for e in entries
           if e.rstrip("/") != bare}
  return sorted(n for n in names if n)


def _matches(name: str, pattern: str) -> bool:
  if name.startswith(".") and not pattern.startswith("."):
    return False
  return fnmatch.fnmatchcase(name, pattern)


def glob(directory: str | os.PathLike, pattern: str) -> list[str]:
  """Sorted paths of ``directory``'s entries whose name matches
  ``pattern`` (``fnmatch``; hidden names only for a pattern starting with
  ".")."""
  return [join(directory, n) for n in listdir(directory)
          if _matches(n, pattern)]


def walk_files(root: str | os.PathLike) -> list[str]:
  """Sorted "/"-separated paths, relative to ``root``, of every file below
  it, skipping hidden files and directories."""
  root = os.fspath(root)
  found = []
  if not is_remote(root):
    base = local_path(root)
    for directory, dirs, files in os.walk(base):
      dirs[:] = [d for d in dirs if not d.startswith(".")]
      rel = os.path.relpath(directory, base)
      for name in files:
        if not name.startswith("."):
          found.append(name if rel == "." else posixpath.join(
              rel.replace(os.sep, "/"), name))
    return sorted(found)
  fs, bare = _fs(root)
  prefix = bare.rstrip("/") + "/"
  for path in fs.find(bare):
    rel = path[len(prefix):] if path.startswith(prefix) else None
    if rel and not any(p.startswith(".") for p in rel.split("/")):
      found.append(rel)
  return sorted(found)


# --- Writing ------------------------------------------------------------------


def makedirs(path: str | os.PathLike) -> None:
  """Creates a local directory (and its parents); a bucket needs none."""
  path = os.fspath(path)
  if not is_remote(path):
    os.makedirs(local_path(path), exist_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` whole or not at all.

  Locally: a temporary file beside it, fsync, ``os.replace``, fsync of the
  directory. On a bucket: one object upload (see the module docstring).

  Raises:
    OSError: naming ``path`` also when the failing call names no file (a
      full disk fails in write/flush); no temporary file is left.
  """
  path = os.fspath(path)
  if is_remote(path):
    fs, bare = _fs(path)
    fs.pipe_file(bare, data)
    return
  path = local_path(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as err:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(err, OSError) and err.filename is None:
      raise OSError(err.errno, f"{err.strerror}: cannot write {path}") from err
    raise
  _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def remove(path: str | os.PathLike) -> None:
  path = os.fspath(path)
  if not is_remote(path):
    os.remove(local_path(path))
    return
  fs, bare = _fs(path)
  fs.rm_file(bare)


def copy_file(source: str, dest: str) -> None:
  """Copies one file (``shutil.copy2`` when both ends are local)."""
  if not is_remote(source) and not is_remote(dest):
    os.makedirs(os.path.dirname(local_path(dest)) or ".", exist_ok=True)
    shutil.copy2(local_path(source), local_path(dest))
    return
  write_atomic(dest, read_bytes(source))


# --- Local copies for code that reads plain files -------------------------------


def _download(root: str, dest: str) -> None:
  """Copies every (non-hidden) file below bucket directory ``root`` into
  local directory ``dest``."""
  fs, bare = _fs(root)
  rels = walk_files(root)
  for start in range(0, len(rels), _BATCH):
    batch = rels[start:start + _BATCH]
    contents = fs.cat([posixpath.join(bare, r) for r in batch])
    for rel in batch:
      target = os.path.join(dest, *rel.split("/"))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with open(target, "wb") as f:
        f.write(contents[posixpath.join(bare, rel)])


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
  """A local directory with the contents of directory ``path``: the path
  itself when local, else a temporary copy (same last name; empty when
  the bucket holds nothing there), removed on exit."""
  path = os.fspath(path)
  if not is_remote(path):
    yield local_path(path)
    return
  with tempfile.TemporaryDirectory(prefix="harness-results-") as tmp:
    dest = os.path.join(tmp, split(path)[1] or "results")
    os.makedirs(dest)
    _download(normpath(path), dest)
    yield dest


def upload(local_dir: str, dest: str) -> dict[str, str]:
  """Copies every file below ``local_dir`` to directory ``dest``.

  Returns:
    {local file: the path it was written to}.
  """
  written = {}
  for rel in walk_files(local_dir):
    source = os.path.join(local_dir, *rel.split("/"))
    target = join(dest, rel)
    copy_file(source, target)
    written[source] = target
  return written
