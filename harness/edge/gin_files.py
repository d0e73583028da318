"""Gin files for every command: one search rule, errors as one line.

This is the only module of the harness that imports gin; the sweep
(``harness.runner.gin_config``) and fine-tuning (``harness.finetune.config``)
register their configurables with :func:`register` and parse with
:func:`parse`. Errors of any kind become one :class:`ConfigError` line naming
the file, line, binding and value, e.g.::

  experiments/gamma.gin:7: Experiment.gammas = [0]: gammas=(0,): must be ...

A configurable reports a bad value by raising :class:`BindingError` (the
binding it was called under and the field's complaint).

Strict mode (``parse(..., strict=True)``) also refuses what gin accepts
silently: a binding in a top-level gin file or a ``--gin`` override that
takes no effect (a macro nothing uses, a scope no call of the experiment
runs under, a binding every call takes from a more specific one); see
:func:`no_effect`. Bindings of included files are not checked (a shared
file configures more than one experiment uses), nor are a top-level file's
bindings for a scope that some reference names but the run no longer uses
(an override replaced it).

Gin files (``--gin_file`` and ``include``) are searched relative to the
working directory, then the repository root, then the repository's ``gin/``
directory: ``include 'gin/models/tiny_random_t5.gin'`` and ``--gin_file
finetune/wmt14_ende_small.gin`` work from anywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tokenize
from typing import Any, Callable, Sequence

import gin
from gin import config_parser

from harness import REPO_ROOT

_BINDINGS_FILE = "--gin"
_MACRO_REF = re.compile(r"%([\w./]+)")
_SCOPE_REF = re.compile(r"@((?:[\w.]+/)+)[\w.]+")
_REQUIRED = "%gin.REQUIRED"


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
  scope: str = dataclasses.field(default="", compare=False)
  selector: str = dataclasses.field(default="", compare=False)
  param: str = dataclasses.field(default="", compare=False)
  value: str = dataclasses.field(default="", compare=False)
  checked: bool = dataclasses.field(default=False, compare=False)

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


def _scope_refs(statement) -> set[str]:
  """Scope names a binding's value calls a configurable under
  (``@scope/Name()``: ``scope``)."""
  return {part for match in _SCOPE_REF.findall(repr(statement.value))
          for part in match.split("/") if part}


def _location(st, file: str, line: int, text: str,
              checked: bool) -> Location:
  return Location(file, line, text, st.scope or "", st.selector,
                  st.arg_name or "", repr(st.value), checked)


def _scan_file(path: str, locations: dict[str, Location], seen: set[str],
               refs: set[str], checked: bool = False) -> None:
  """Scans a gin file (``checked``: a top-level one, see ``no_effect``)."""
  resolved = resolve(path)
  if resolved in seen:
    return
  seen.add(resolved)
  statements = _statements(_read_text(resolved, path), path)
  for st in statements:
    if isinstance(st, config_parser.IncludeStatement):
      _scan_file(st.filename, locations, seen, refs)
    elif isinstance(st, config_parser.BindingStatement):
      locations[_key(st)] = _location(st, path, st.location.line_num,
                                      st.location.line_content.strip(),
                                      checked)
      refs |= _macro_refs(st) | {f"@{s}" for s in _scope_refs(st)}


def scan(gin_files: Sequence[str], bindings: Sequence[str],
         refs: set[str] | None = None) -> dict[str, Location]:
  """Binding key (``scope/Name.param`` or macro) -> where it was last set.

  Args:
    gin_files: the gin files (their bindings are ``checked``, those of the
      files they include are not).
    bindings: ``X=Y`` overrides (``checked``; an ``include`` among them is
      scanned as an included file).
    refs: if given, receives every macro (``NAME``) and scope (``@scope``)
      that any binding's value refers to, overridden ones included.

  Raises:
    ConfigError: a syntax error or a file that is not UTF-8.
  """
  locations: dict[str, Location] = {}
  seen: set[str] = set()
  refs = set() if refs is None else refs
  for path in gin_files:
    _scan_file(path, locations, seen, refs, checked=True)
  for binding in bindings:
    for st in _statements(binding, f"--gin.{binding}"):
      if isinstance(st, config_parser.IncludeStatement):
        _scan_file(st.filename, locations, seen, refs)
      elif isinstance(st, config_parser.BindingStatement):
        locations[_key(st)] = _location(st, _BINDINGS_FILE, 0, binding, True)
        refs |= _macro_refs(st) | {f"@{s}" for s in _scope_refs(st)}
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
    missing = required_macros(locations)
    if len(missing) > 1 and macro in missing:
      listed = ", ".join(f"{m} ({_file_line(locations[m])})"
                         for m in missing)
      flags = " ".join(f"--gin.{m}=..." for m in missing)
      return (f"{len(missing)} macros are %gin.REQUIRED and were not set: "
              f"{listed} (add {flags})")
    return (f"{_where(locations, macro)}: macro {macro} is %gin.REQUIRED and "
            f"was not set (add --gin.{macro}=...)")
  return (f"{_where(locations, key)}: {key} is %gin.REQUIRED and was not "
          "set")


def _file_line(loc: Location) -> str:
  return str(loc) if loc.file == _BINDINGS_FILE else f"{loc.file}:{loc.line}"


def required_macros(locations: dict[str, Location]) -> list[str]:
  """Macros left %gin.REQUIRED that a binding's final value refers to."""
  refs = set()
  for loc in locations.values():
    refs |= set(_MACRO_REF.findall(loc.value))
  return [key for key, loc in locations.items()
          if not loc.param and not loc.scope and loc.value == repr(_REQUIRED)
          and key in refs]


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
  # A configurable called with no binding at all: where it is referenced.
  callers = [k for k, loc in locations.items() if f"@{binding}(" in loc.text]
  return (f"{_where(locations, key, *callers)}: {binding}: {err.detail}"
          f"{_macro_origin(locations, key)}")


def suggest(name: str, known) -> str:
  """`` (did you mean X?)`` for the known name closest to ``name``, or
  ""."""
  close = difflib.get_close_matches(name, sorted(set(known) - {name}), n=1)
  return f" (did you mean {close[0]}?)" if close else ""


def bound_scopes(selector: str) -> list[str]:
  """Scopes that some binding of the parsed config gives ``selector``
  (``module.Name``)."""
  config = gin.config._CONFIG  # pylint: disable=protected-access
  return sorted({scope for scope, sel in config if sel == selector and scope})


# --- Bindings that take no effect -------------------------------------------


def _canonical(selector: str) -> str | None:
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  match = registry.get_match(selector)
  return match.selector if match else None


def _applied() -> tuple[set[tuple[str, str, str]], set[str]]:
  """Bindings ``(scope, selector, param)`` that supplied a value to a call
  of the last parse (gin's own lookup: the longest scope prefix wins), and
  the scope names the calls ran under."""
  config = gin.config._CONFIG  # pylint: disable=protected-access
  operative = gin.config._OPERATIVE_CONFIG  # pylint: disable=protected-access
  applied, scopes = set(), set()
  for scope, selector in operative:
    parts = scope.split("/") if scope else []
    if selector != "gin.macro":
      scopes |= set(parts)
    for param in operative[(scope, selector)]:
      for i in range(len(parts), -1, -1):
        partial = "/".join(parts[:i])
        if param in config.get((partial, selector), {}):
          applied.add((partial, selector, param))
          break
  return applied, scopes


def no_effect(locations: dict[str, Location], refs: set[str]) -> list[str]:
  """One line per checked binding that took no effect in the last parse.

  A ``--gin`` override must supply a value to some call. A binding of a
  top-level gin file must too, unless its scope is not among the scopes the
  run used but some binding's value names it (``@scope/Name()``, e.g. an
  experiment's TASKS that an override replaced); a macro of a top-level
  file must be used or referred to by some binding.

  Args:
    locations: from ``scan``.
    refs: from ``scan``: the macros and ``@scopes`` any value refers to.
  """
  applied, used_scopes = _applied()
  macros = {k for k, loc in locations.items() if not loc.param} | {
      r for r in refs if not r.startswith("@")}
  lines = []
  for key, loc in locations.items():
    if not loc.checked:
      continue
    flag = loc.file == _BINDINGS_FILE
    if not loc.param:  # A macro.
      if (key, "gin.macro", "value") in applied or (
          not flag and key in refs):
        continue
      lines.append(f"{_file_line(loc)}: macro {key} is set but nothing uses "
                   f"it{suggest(key, macros)}")
      continue
    selector = _canonical(loc.selector)
    if selector is None or (loc.scope, selector, loc.param) in applied:
      continue
    parts = loc.scope.split("/") if loc.scope else []
    unknown = [p for p in parts if p not in used_scopes]
    if unknown:
      if not flag and all(f"@{p}" in refs for p in unknown):
        continue  # Named by some value, unused after an override.
      named = sorted(used_scopes - macros)  # Not the scopes macros open.
      hint = suggest(unknown[0], named) or (
          f" (it uses {', '.join(named)})" if named else " (it uses none)")
      lines.append(f"{_file_line(loc)}: scope {unknown[0]} matches no scope "
                   f"the experiment uses{hint}")
      continue
    name = loc.selector.rsplit(".", 1)[-1]
    where = f"scope {loc.scope}" if loc.scope else "any scope"
    lines.append(f"{_file_line(loc)}: {key} applies to nothing (no call of "
                 f"{name} in {where} takes {loc.param} from it; a more "
                 "specific binding wins, or none is made)")
  return lines


# --- Entry point ------------------------------------------------------------


def parse(gin_files: Sequence[str], bindings: Sequence[str],
          configurable: str, unused: list[str] | None = None,
          strict: bool = False) -> tuple[Any, str]:
  """Parses gin files and overrides, then calls ``configurable``.

  Args:
    gin_files: gin files, later ones overriding earlier ones.
    bindings: ``X=Y`` overrides (from ``--gin.X=Y``), applied last.
    configurable: the registered configurable (``module.Name``) whose call
      gives the result.
    unused: if given (and not ``strict``), receives one line per binding
      that took no effect (``no_effect``: probably typos).
    strict: a binding that took no effect is a ``ConfigError`` (the first
      one, with how many there are).

  Returns:
    (what ``configurable`` returned, the operative gin config text).

  Raises:
    ConfigError: with a one-line message naming file, binding and value.
  """
  files = [resolve(f) for f in gin_files]
  for path in search_paths():
    gin.add_config_file_search_path(path)
  refs: set[str] = set()
  locations = scan(gin_files, bindings, refs)
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(files, list(bindings))
    value = gin.get_configurable(configurable)()
  except BindingError as err:
    raise ConfigError(_binding_error(err, locations)) from None
  except (ValueError, TypeError, KeyError, OSError) as err:
    raise ConfigError(one_line(err, locations)) from None
  if strict or unused is not None:
    lines = no_effect(locations, refs)
    if strict and lines:
      more = (f" (and {len(lines) - 1} more binding(s) with no effect)"
              if len(lines) > 1 else "")
      raise ConfigError(f"{lines[0]}{more}")
    if unused is not None:
      unused.extend(lines)
  return value, gin.operative_config_str()
