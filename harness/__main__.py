"""Command line: ``python -m harness <command>``.

Commands are small functions registered in ``_COMMANDS``: ``list`` and
``report`` here (the report reads results files only, through
``harness.report`` and ``harness.results``), ``run`` and ``sweep`` from
``harness.runner.cli`` and ``finetune`` from ``harness.finetune.cli`` with
``add_command``.
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
  parser.add_argument("what", nargs="?",
                      choices=("tasks", "metrics", "methods", "experiments",
                               "all"),
                      default="all", help="what to list (default: all)")


def _list_methods() -> None:
  from harness import decoding  # pylint: disable=g-import-not-at-top
  print("methods (name  α range  options):")
  for spec in decoding.METHODS.values():
    lo, hi = spec.valid_alpha()
    options = ",".join(f"{k}={v}" for k, v in spec.defaults) or "-"
    print(f"  {spec.name:24s} [{lo:g}, {hi:g}]  {options}  {spec.description}")


def _list_experiments() -> None:
  from harness.runner import cli  # pylint: disable=g-import-not-at-top
  print("experiments (python -m harness sweep --gin_file <file>):")
  for path in cli.list_experiments():
    print(f"  {path}")


@add_command("list", "list tasks, metrics, methods and experiments",
             _configure_list)
def list_command(args: argparse.Namespace) -> int:
  """Prints tasks (with limits and metrics), metrics, methods, experiments."""
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
  if args.what in ("methods", "all"):
    _list_methods()
  if args.what in ("experiments", "all"):
    _list_experiments()
  return 0


def _configure_report(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--results", required=True,
                      help="results directory, e.g. results/smoke or "
                      "gs://bucket/results/smoke")
  parser.add_argument("--out", default=None, help="report output directory "
                      "(default: the results directory)")
  parser.add_argument("--gamma", type=int, default=None, metavar="G",
                      help="Table 2 and the figures at block size G only "
                      "(with --out; default: each setting's most common γ, "
                      "the others in the γ figure)")
  parser.add_argument("--debug", action="store_true", help="show tracebacks")


@add_command("report", "merge shards, fill relative latency, write report",
             _configure_report)
def report_command(args: argparse.Namespace) -> int:
  """Merges shard results, then writes and prints Table 2 and the figures."""
  # pylint: disable=g-import-not-at-top
  from harness import report
  from harness.edge import errors
  from harness.metrics import sandbox
  from harness.results import merge
  from harness.results import storage
  # pylint: enable=g-import-not-at-top
  try:  # An unknown scheme or a missing bucket library.
    for flag, path in (("--results", args.results), ("--out", args.out)):
      if path is not None:
        storage.check(path, flag)
  except (ValueError, ImportError) as err:
    return errors.fail_one_line(err, errors.CONFIG_ERROR_EXIT, args.debug)
  try:
    if not storage.isdir(args.results):
      raise FileNotFoundError(f"--results {args.results}: no such directory")
    manifest, filled = merge.merge(args.results)
    if manifest:
      print(f"merged shard manifests into {manifest}")
    if filled:
      print(f"filled relative latency of {len(filled)} cells")
    report.write_and_print(args.results, out_dir=args.out,
                           allow_unisolated_mbpp=sandbox.opted_in_by_env(),
                           gamma=args.gamma)
  except Exception as err:  # pylint: disable=broad-except
    return errors.fail_one_line(err, errors.CONFIG_ERROR_EXIT if isinstance(
        err, FileNotFoundError) else errors.RUN_ERROR_EXIT, args.debug)
  return 0


def _register_runner() -> None:
  from harness.runner import cli  # pylint: disable=g-import-not-at-top
  cli.register(add_command)
  from harness.finetune import cli as finetune_cli  # pylint: disable=g-import-not-at-top
  finetune_cli.register(add_command)


_register_runner()


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m harness")
  sub = parser.add_subparsers(dest="command", required=True)
  for name, (help_text, fn, configure) in _COMMANDS.items():
    command = sub.add_parser(name, help=help_text)
    configure(command)
    command.set_defaults(fn=fn)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  # Gin overrides --gin.X=Y have free-form names: set them aside for argparse.
  gin_args = [a for a in argv if a.startswith("--gin.")]
  args = build_parser().parse_args([a for a in argv if a not in gin_args])
  args.gin = gin_args
  return args.fn(args)


if __name__ == "__main__":
  sys.exit(main())
