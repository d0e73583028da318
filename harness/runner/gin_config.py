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
    try:
      return cfg.build(cls, kwargs)
    except cfg.FieldError as err:
      prefix = f"{scope}/" if scope else ""
      raise gin_files.BindingError(
          f"{prefix}{name}.{err.field}",
          f"{err.field}={err.value!r}: {err.reason}") from None

  make.__signature__ = inspect.signature(cls)
  make.__name__ = make.__qualname__ = name
  make.__doc__ = cls.__doc__
  return make


def _register() -> None:
  for name, cls in CONFIGURABLES.items():
    gin_files.register(_factory(name, cls), name, GIN_MODULE)


def parse(gin_file_paths: Sequence[str], bindings: Sequence[str] = (),
          unused: list[str] | None = None) -> tuple[cfg.Experiment, str]:
  """Gin files and ``X=Y`` overrides -> (Experiment, operative gin text).

  ``unused`` receives overrides of macros no gin file defines or uses.

  Raises:
    ConfigError: with a one-line message naming file, binding and value.
  """
  _register()
  return gin_files.parse(gin_file_paths, bindings,
                         f"{GIN_MODULE}.Experiment", unused)
