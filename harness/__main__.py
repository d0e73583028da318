"""Command line: ``python -m harness <command>``.

Commands are small functions registered in ``_COMMANDS``; other parts of the
harness add theirs (``run``, ``sweep``, ``report``) with ``add_command``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

# name -> (help, function(args) -> exit code, function(parser) adding options)
_COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int],
                           Callable[[argparse.ArgumentParser], None]]] = {}


def add_command(name: str, help_text: str,
                configure: Callable[[argparse.ArgumentParser], None] = (
                    lambda parser: None)):
  """Decorator registering ``fn(args) -> int`` as subcommand ``name``."""

  def decorator(fn: Callable[[argparse.Namespace], int]):
    _COMMANDS[name] = (help_text, fn, configure)
    return fn

  return decorator


def _configure_list(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("what", nargs="?", choices=("tasks", "metrics", "all"),
                      default="all", help="what to list (default: all)")


@add_command("list", "list tasks and metrics", _configure_list)
def list_command(args: argparse.Namespace) -> int:
  """Prints the registered tasks (with limits and metrics) and metrics."""
  if args.what in ("tasks", "all"):
    from harness import tasks  # pylint: disable=g-import-not-at-top
    print("tasks (name  shots  max_in/max_out  metrics[headline first]):")
    for spec in tasks.TASKS.values():
      print(f"  {spec.name:26s} {spec.num_shots:d}-shot "
            f"{spec.max_input_len:5d}/{spec.max_output_len:<4d} "
            f"{','.join(spec.metrics):32s} {spec.description}")
  if args.what in ("metrics", "all"):
    from harness import metrics  # pylint: disable=g-import-not-at-top
    print("metrics:")
    for spec in metrics.METRICS.values():
      print(f"  {spec.name:16s} {spec.aggregation.value:6s} {spec.description}")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m harness")
  sub = parser.add_subparsers(dest="command", required=True)
  for name, (help_text, fn, configure) in _COMMANDS.items():
    command = sub.add_parser(name, help=help_text)
    configure(command)
    command.set_defaults(fn=fn)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  return args.fn(args)


if __name__ == "__main__":
  sys.exit(main())
