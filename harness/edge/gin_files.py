"""Gin files for every command: one search rule, errors as one line.

This is the only module of the harness that imports gin; the sweep
(``harness.runner.gin_config``) and fine-tuning (``harness.finetune.config``)
register their configurables with :func:`register` and parse with
:func:`parse`. Errors of any kind become one :class:`ConfigError` line naming
the file, line, binding and value, e.g.::

  experiments/gamma.gin:7: Experiment.gammas = [0]: gammas=(0,): must be ...

A configurable reports a bad value by raising :class:`BindingError` (the
binding it was called under and the field's complaint).

Gin files (``--gin_file`` and ``include``) are searched relative to the
working directory, then the repository root, then the repository's ``gin/``
directory: ``include 'gin/models/tiny_random_t5.gin'`` and ``--gin_file
finetune/wmt14_ende_small.gin`` work from anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tokenize
from typing import Any, Callable, Sequence

import gin
from gin import config_parser

from harness import REPO_ROOT

_BINDINGS_FILE = "--gin"
_MACRO_REF = re.compile(r"%([\w./]+)")


class ConfigError(ValueError):
  """A gin configuration problem, as one line naming file and binding."""


class BindingError(Exception):
  """Raised by a configurable: ``binding`` (``scope/Name.field``) is bad.

  ``detail`` is the complaint, e.g. ``gammas=(0,): must be positive``.
  """

  def __init__(self, binding: str, detail: str):
    super().__init__(binding)
    self.binding, self.detail = binding, detail


@dataclasses.dataclass(frozen=True)
class Location:
  """Where a binding was set: a file and line, or a --gin override."""
  file: str
  line: int
  text: str

  def __str__(self) -> str:
    if self.file == _BINDINGS_FILE:
      return f"--gin.{self.text}"
    return f"{self.file}:{self.line}"


def register(fn: Callable, name: str, module: str) -> None:
  """Registers ``fn`` as gin configurable ``module.name`` (once)."""
  try:
    gin.get_configurable(f"{module}.{name}")
    return
  except ValueError:
    pass
  with gin.unlock_config():  # a finished parse leaves the config locked
    gin.external_configurable(fn, name=name, module=module)


def search_paths() -> list[str]:
  """Where gin files are looked for: cwd, repository root, its gin/."""
  return ["", REPO_ROOT, os.path.join(REPO_ROOT, "gin")]


def resolve(path: str) -> str:
  """A gin file path as gin will find it; ConfigError if it does not exist."""
  for root in search_paths():
    candidate = os.path.join(root, path)
    if os.path.exists(candidate):
      return candidate
  raise ConfigError(f"{path}: gin file not found (searched the working "
                    f"directory, {REPO_ROOT} and its gin/)")


# --- Locating bindings ------------------------------------------------------


class _Delegate(config_parser.ParserDelegate):
  """Parses values without resolving references (for scanning only)."""

  def configurable_reference(self, scoped_name, evaluate):
    return f"@{scoped_name}{'()' if evaluate else ''}"

  def macro(self, name):
    return f"%{name}"


def _statements(source, where: str) -> list[Any]:
  try:
    return list(config_parser.ConfigParser(source, _Delegate()))
  except tokenize.TokenError as err:
    line = err.args[1][0] if len(err.args) > 1 else "?"
    raise ConfigError(f"{where}:{line}: gin syntax error: {err.args[0]}") \
        from None
  except SyntaxError as err:
    msg = re.sub(r"\s*\(line \d+\)$", "", err.msg or str(err))
    raise ConfigError(f"{where}:{err.lineno}: gin syntax error: {msg}") \
        from None


def _key(statement) -> str:
  selector = f"{statement.scope}/{statement.selector}" if statement.scope \
      else statement.selector
  return f"{selector}.{statement.arg_name}" if statement.arg_name else selector


def _read_text(resolved: str, path: str) -> str:
  try:
    with open(resolved, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as err:
    raise ConfigError(f"{path}: not UTF-8 text (byte "
                      f"{err.object[err.start]:#04x} at offset {err.start})"
                      ) from None


def _macro_refs(statement) -> set[str]:
  """Macro names a binding's value refers to (``%NAME``)."""
  return set(_MACRO_REF.findall(repr(statement.value)))


def _scan_file(path: str, locations: dict[str, Location], seen: set[str],
               refs: set[str]) -> None:
  resolved = resolve(path)
  if resolved in seen:
    return
  seen.add(resolved)
  statements = _statements(_read_text(resolved, path), path)
  for st in statements:
    if isinstance(st, config_parser.IncludeStatement):
      _scan_file(st.filename, locations, seen, refs)
    elif isinstance(st, config_parser.BindingStatement):
      locations[_key(st)] = Location(path, st.location.line_num,
                                     st.location.line_content.strip())
      refs |= _macro_refs(st)


def _is_unused_macro(st, file_keys: set[str], refs: set[str]) -> bool:
  return not st.arg_name and _key(st) not in file_keys and (
      st.selector not in refs)


def scan(gin_files: Sequence[str], bindings: Sequence[str],
         unused: list[str] | None = None) -> dict[str, Location]:
  """Binding key (``scope/Name.param`` or macro) -> where it was last set.

  Args:
    gin_files: the gin files.
    bindings: ``X=Y`` overrides.
    unused: if given, receives the overrides that set a macro no gin file
      defines or uses (gin accepts them as new macros, so a typo such as
      ``SEEED=1`` would silently change nothing).

  Raises:
    ConfigError: a syntax error or a file that is not UTF-8.
  """
  locations: dict[str, Location] = {}
  seen: set[str] = set()
  refs: set[str] = set()
  for path in gin_files:
    _scan_file(path, locations, seen, refs)
  file_keys = set(locations)
  statements = [(binding, st) for binding in bindings
                for st in _statements(binding, f"--gin.{binding}")
                if isinstance(st, config_parser.BindingStatement)]
  for _, st in statements:
    refs |= _macro_refs(st)
  for binding, st in statements:
    if unused is not None and _is_unused_macro(st, file_keys, refs):
      unused.append(binding)
    locations[_key(st)] = Location(_BINDINGS_FILE, 0, binding)
  return locations


# --- Turning gin errors into one line ---------------------------------------


def _where(locations: dict[str, Location], *keys: str) -> str:
  for key in keys:
    if key in locations:
      loc = locations[key]
      return f"{loc}: {loc.text}" if loc.file != _BINDINGS_FILE else str(loc)
  return "(no file)"


def _gin_location(message: str) -> str | None:
  match = re.search(r'In file "([^"]+)", line (\d+)\n\s*(.*)', message)
  if match:
    return f"{match.group(1)}:{match.group(2)}: {match.group(3).strip()}"
  match = re.search(r"In bindings string line \d+\n\s*(.*)", message)
  return f"--gin.{match.group(1).strip()}" if match else None


def _required(message: str, locations) -> str | None:
  match = re.match(r"(\S+) set to `%gin.REQUIRED` but not subsequently "
                   r"overridden", message)
  if not match:
    return None
  key = match.group(1)
  macro = key.removesuffix("/macro.value")
  if macro != key:
    return (f"{_where(locations, macro)}: macro {macro} is %gin.REQUIRED and "
            f"was not set (add --gin.{macro}=...)")
  return (f"{_where(locations, key)}: {key} is %gin.REQUIRED and was not "
          "set")


def _undefined_macro(message: str, locations) -> str | None:
  match = re.match(r"No bindings specified for '(\S+)/gin.macro'", message)
  if not match:
    return None
  macro = match.group(1)
  users = [k for k, loc in locations.items() if f"%{macro}" in loc.text]
  return (f"{_where(locations, *users)}: macro {macro} is used but never "
          "defined")


def one_line(err: Exception, locations: dict[str, Location]) -> str:
  """A gin exception as one line naming the file and binding."""
  message = str(err)
  first = message.strip().splitlines()[0] if message.strip() else repr(err)
  for special in (_required, _undefined_macro):
    line = special(first, locations)
    if line:
      return line
  where = _gin_location(message)
  return f"{where}: {first}" if where else first


def _macro_origin(locations, key: str) -> str:
  """Where the macro a binding refers to was set, e.g. " (GAMMAS: f:3)"."""
  loc = locations.get(key)
  match = re.search(r"=\s*%([\w./]+)\s*$", loc.text) if loc else None
  if not match or match.group(1) not in locations:
    return ""
  macro = match.group(1)
  return f" (macro {macro} set at {_where(locations, macro)})"


def _binding_error(err: BindingError, locations) -> str:
  binding = err.binding
  unscoped = binding.split("/", 1)[-1]
  key = binding if binding in locations else unscoped
  return (f"{_where(locations, key)}: {binding}: {err.detail}"
          f"{_macro_origin(locations, key)}")


# --- Entry point ------------------------------------------------------------


def parse(gin_files: Sequence[str], bindings: Sequence[str],
          configurable: str, unused: list[str] | None = None
          ) -> tuple[Any, str]:
  """Parses gin files and overrides, then calls ``configurable``.

  Args:
    gin_files: gin files, later ones overriding earlier ones.
    bindings: ``X=Y`` overrides (from ``--gin.X=Y``), applied last.
    configurable: the registered configurable (``module.Name``) whose call
      gives the result.
    unused: if given, receives the overrides of macros that no gin file
      defines or uses (probably typos; see ``scan``).

  Returns:
    (what ``configurable`` returned, the operative gin config text).

  Raises:
    ConfigError: with a one-line message naming file, binding and value.
  """
  files = [resolve(f) for f in gin_files]
  for path in search_paths():
    gin.add_config_file_search_path(path)
  locations = scan(gin_files, bindings, unused)
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(files, list(bindings))
    value = gin.get_configurable(configurable)()
  except BindingError as err:
    raise ConfigError(_binding_error(err, locations)) from None
  except (ValueError, TypeError, KeyError, OSError) as err:
    raise ConfigError(one_line(err, locations)) from None
  return value, gin.operative_config_str()
