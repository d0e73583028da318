"""The sweep's gin configurables: gin files -> a frozen ``config.Experiment``.

Registers four configurables under the module name ``harness`` —
``ModelPair``, ``TaskRun``, ``MethodGrid`` and ``Experiment`` — each a thin
factory that hands gin's values to ``config.build`` (types coerced and
checked there) and names its gin scope when a value is bad. Searching,
parsing and one-line errors are ``harness.edge.gin_files``'.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import gin

from harness.edge import gin_files
from harness.runner import config as cfg

GIN_MODULE = "harness"
CONFIGURABLES = {"ModelPair": cfg.ModelPair, "TaskRun": cfg.TaskRun,
                 "MethodGrid": cfg.MethodGrid, "Experiment": cfg.Experiment}
ConfigError = gin_files.ConfigError


def _factory(name: str, cls: type):
  """A gin-registrable function with ``cls``'s signature calling build."""

  def make(**kwargs):
    scope = gin.current_scope_str()
    prefix = f"{scope}/" if scope else ""
    missing = [p.name for p in inspect.signature(cls).parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in kwargs]
    if missing:
      raise gin_files.BindingError(f"{prefix}{name}", _missing(
          name, scope, missing))
    try:
      return cfg.build(cls, kwargs)
    except cfg.FieldError as err:
      raise gin_files.BindingError(
          f"{prefix}{name}.{err.field}",
          f"{err.field}={err.value!r}: {err.reason}") from None

  make.__signature__ = inspect.signature(cls)
  make.__name__ = make.__qualname__ = name
  make.__doc__ = cls.__doc__
  return make


def _missing(name: str, scope: str, params: list[str]) -> str:
  """What a call of ``scope/name`` with no binding for ``params`` says."""
  prefix = f"{scope}/" if scope else ""
  text = (f"no binding sets {', '.join(params)} (e.g. "
          f"{prefix}{name}.{params[0]} = ...)")
  last = scope.rsplit("/", 1)[-1]
  scopes = gin_files.bound_scopes(f"{GIN_MODULE}.{name}")
  if scope and last not in scopes:
    text += (f"; no binding has scope {last}"
             f"{gin_files.suggest(last, scopes)}")
  return text


def _register() -> None:
  for name, cls in CONFIGURABLES.items():
    gin_files.register(_factory(name, cls), name, GIN_MODULE)


def parse(gin_file_paths: Sequence[str], bindings: Sequence[str] = (),
          unused: list[str] | None = None, strict: bool = False
          ) -> tuple[cfg.Experiment, str]:
  """Gin files and ``X=Y`` overrides -> (Experiment, operative gin text).

  ``unused`` receives one line per binding that took no effect (a macro
  nothing uses, a scope no call runs under, ...); ``strict`` makes the
  first of them a ``ConfigError`` (``gin_files.no_effect``).

  Raises:
    ConfigError: with a one-line message naming file, binding and value.
  """
  _register()
  return gin_files.parse(gin_file_paths, bindings,
                         f"{GIN_MODULE}.Experiment", unused, strict)
