"""Exit codes and the one-line error printer of every command.

A command prints ``error: <first line>`` on stderr (the traceback with
``--debug``) and exits ``CONFIG_ERROR_EXIT`` for a configuration problem,
``RUN_ERROR_EXIT`` for anything else, or ``DRY_RUN_PROBLEMS_EXIT`` when a
dry run found problems.
"""

from __future__ import annotations

import sys
import traceback

RUN_ERROR_EXIT = 1
CONFIG_ERROR_EXIT = 2
DRY_RUN_PROBLEMS_EXIT = 3


def first_line(err: BaseException) -> str:
  """The first line of an exception's message (its type name if empty)."""
  # A KeyError's str() is the repr of its key: print the message itself.
  text = str(err.args[0]) if isinstance(err, KeyError) and err.args else (
      str(err))
  return text.strip().splitlines()[0] if text.strip() else (
      type(err).__name__)


def fail_one_line(err: BaseException, code: int, debug: bool) -> int:
  """Prints ``error: <first line>`` (or the traceback with ``debug``);
  returns ``code``."""
  if debug:
    traceback.print_exception(err)
  else:
    print(f"error: {first_line(err)}", file=sys.stderr)
  return code


def gin_overrides(values: list[str]) -> list[str]:
  """``--gin.X=Y`` arguments -> gin binding strings ``X=Y``."""
  return [v.removeprefix("--gin.") for v in values]
