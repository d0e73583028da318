"""Command line: ``run`` and ``sweep`` (``python -m harness``).

``register(add_command)`` is called by ``harness/__main__.py``. Everything
heavy (jax, gin, models) is imported inside the commands, so ``list`` and
``--help`` stay fast. Errors print one line (``error: …``) and exit 2
(config) or 1 (anything else); ``--debug`` shows the traceback instead.
Gin is strict (a binding that takes no effect exits 2; ``--gin_lenient``
makes it a warning), and a real run runs every check of the dry run before
its first cell (``_gate``).

  python -m harness sweep --gin_file experiments/smoke.gin
  python -m harness sweep --gin_file experiments/table2_t5.gin \\
      --gin.WMT_DRAFTER='"/ckpt/wmt_small"' ... --shard 0/4
  python -m harness run --gin_file experiments/smoke.gin --only '*a0.5*'

(``report`` is in ``harness/__main__.py``: it needs no runner.)
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
from typing import Callable

from harness import REPO_ROOT
from harness.edge.errors import CONFIG_ERROR_EXIT, RUN_ERROR_EXIT
from harness.edge.errors import fail_one_line, gin_overrides

EXPERIMENTS_GLOB = os.path.join("experiments", "*.gin")


def _configure_run(parser: argparse.ArgumentParser, sweep: bool) -> None:
  parser.add_argument("--gin_file", action="append", required=True,
                      help="gin file (repeatable; later files override)")
  parser.add_argument("--gin_binding", action="append", default=[],
                      metavar="X=Y", help="gin binding (same as --gin.X=Y)")
  parser.add_argument("--gin_lenient", action="store_true",
                      help="accept gin bindings that take no effect (a "
                      "macro nothing uses, a scope the experiment does not "
                      "use, a binding a more specific one overrides) with "
                      "a warning; without it each is an error (exit 2)")
  parser.add_argument("--dry_run", action="store_true",
                      help="check data, checkpoints, vocabularies, memory "
                      "and devices; print the cells and estimated time; "
                      "exit 3 listing every problem (loads no weights)")
  parser.add_argument("--simulate_devices", default=None, metavar="TOPOLOGY",
                      help="dry run against a topology instead of this "
                      "machine's devices: v4-8, v4-16, v5e-8, v5p-8, "
                      "8xH100, 4xA100, 1xH200, cpu; a cluster of N such "
                      "hosts as Nx<topology>, e.g. 8xv4-8")
  parser.add_argument("--only", action="append", default=[],
                      metavar="GLOB", help="run only cells whose id matches "
                      "(their reference cells come along)")
  if sweep:
    parser.add_argument("--shard", default="0/1", metavar="i/N",
                        help="run shard i of N: units of work (a cell, or a "
                        "whole group under the unpaired protocol) balanced "
                        "by estimated time (default 0/1)")
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host: jax.distributed.initialize(), "
                        "shard = process index/count, results under "
                        "RESULTS_DIR/hosts/host-i-of-N (also "
                        "HARNESS_DISTRIBUTED=1); then `gather`")
    _configure_executor(parser)
  parser.add_argument("--compilation_cache_dir", default=os.environ.get(
      "HARNESS_COMPILATION_CACHE"), metavar="DIR",
                      help="persistent XLA compilation cache: a repeated run "
                      "loads its programs instead of compiling them (also "
                      "HARNESS_COMPILATION_CACHE; off by default)")
  parser.add_argument("--cpu_threads", default=None, metavar="N",
                      help="XLA:CPU threads per program: 'auto' (default; 1 "
                      "on a CPU-only host, so that relative latencies do not "
                      "depend on how many cores are free), 0 = one per CPU, "
                      "or N (also HARNESS_CPU_THREADS)")
  parser.add_argument("--allow_unisolated_mbpp", action="store_true",
                      help="run MBPP's generated code even where no "
                      "kernel-enforced sandbox works (audit hook only; "
                      "unsafe; same as HARNESS_SANDBOX_ALLOW_AUDIT_HOOK_ONLY"
                      "=1)")
  parser.add_argument("--no_progress", action="store_true",
                      help="no progress bars (cell lines still printed)")
  parser.add_argument("--debug", action="store_true",
                      help="show tracebacks")


def _configure_executor(parser: argparse.ArgumentParser) -> None:
  """``sweep``'s executor flags (``harness.runner.ray_executor``)."""
  parser.add_argument("--executor", choices=("local", "ray"),
                      default="local", help="where units of work run: this "
                      "process (default) or a Ray cluster (the `ray` extra; "
                      "docs/running.md)")
  parser.add_argument("--ray_address", default=None, metavar="ADDR",
                      help="the Ray cluster: auto (default) or HOST:PORT")
  parser.add_argument("--unit_cells", type=int, default=1, metavar="N",
                      help="cells per unit of work under the paired "
                      "protocol (default 1)")
  parser.add_argument("--unit_attempts", type=int, default=3, metavar="N",
                      help="--executor ray: attempts per unit before it is "
                      "reported as failed (default 3)")


def _executor_options(args: argparse.Namespace) -> dict:
  """RunOptions' executor fields from the command line (one-line error if
  ``--executor ray`` lacks Ray or a count is below 1)."""
  executor = getattr(args, "executor", "local")
  if executor == "ray":
    from harness import extras  # pylint: disable=g-import-not-at-top
    extras.require("ray", "--executor ray")
  for name in ("unit_cells", "unit_attempts"):
    if getattr(args, name, 1) < 1:
      raise ValueError(f"--{name} {getattr(args, name)}: need at least 1")
  return {"executor": executor,
          "ray_address": getattr(args, "ray_address", None),
          "unit_cells": getattr(args, "unit_cells", 1),
          "unit_attempts": getattr(args, "unit_attempts", 3),
          "cpu_threads": getattr(args, "cpu_threads", None),
          "compilation_cache_dir": getattr(args, "compilation_cache_dir",
                                           None)}


def _run(args: argparse.Namespace) -> int:
  from harness.runner import cells  # pylint: disable=g-import-not-at-top
  from harness.runner import gin_config  # pylint: disable=g-import-not-at-top
  from harness.runner import runner  # pylint: disable=g-import-not-at-top
  from harness.edge import cpu_threads  # pylint: disable=g-import-not-at-top
  bindings = args.gin_binding + gin_overrides(getattr(args, "gin", []))
  try:
    value = getattr(args, "cpu_threads", None)
    if args.dry_run:
      cpu_threads.resolve(value)  # checked; a dry run loads no program
    else:
      cpu_threads.apply(value)
  except (ValueError, RuntimeError) as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  try:
    shard = cells.Shard.parse(getattr(args, "shard", "0/1"))
    executor = _executor_options(args)
    unused = []
    exp, text = gin_config.parse(
        args.gin_file, bindings, unused,
        strict=not getattr(args, "gin_lenient", False))
  except (gin_config.ConfigError, ValueError, ImportError) as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  from harness.results import storage  # pylint: disable=g-import-not-at-top
  try:  # An unknown scheme or a missing bucket library: before anything.
    storage.check(exp.results_dir, "RESULTS_DIR")
  except (ValueError, ImportError) as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  for line in unused:
    print(f"warning: {line} (accepted: --gin_lenient)", file=sys.stderr)
  from harness.runner import multihost  # pylint: disable=g-import-not-at-top
  if multihost.wants_distributed(getattr(args, "distributed", False)):
    shard = multihost.host_shard()
    exp = dataclasses.replace(exp, results_dir=multihost.host_results_dir(
        exp.results_dir, shard))
    print(f"host {shard.index} of {shard.count}: results in "
          f"{exp.results_dir}", file=sys.stderr)
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  unisolated = (getattr(args, "allow_unisolated_mbpp", False)
                or sandbox.opted_in_by_env())
  if getattr(args, "compilation_cache_dir", None):
    from harness import decoding  # pylint: disable=g-import-not-at-top
    decoding.enable_compilation_cache(args.compilation_cache_dir)
  options = runner.RunOptions(shard=shard, only=tuple(args.only),
                              progress=not args.no_progress, gin_config=text,
                              allow_unisolated_mbpp=unisolated, **executor)
  try:
    if args.dry_run:
      return _dry_run(exp, options, getattr(args, "simulate_devices", None),
                      args.debug)
    exp = _gate(exp, unisolated)
    runner.run_experiment(exp, options)
  except cells.EmptyShardError as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  except Exception as err:  # pylint: disable=broad-except
    return fail_one_line(err, RUN_ERROR_EXIT, args.debug)
  return 0


def _dry_run(exp, options, simulate: str | None, debug: bool) -> int:
  """``--dry_run``: every check of ``harness.runner.preflight``, one listing."""
  from harness.runner import topologies  # pylint: disable=g-import-not-at-top
  from harness.runner import preflight  # pylint: disable=g-import-not-at-top
  from harness.runner import runner  # pylint: disable=g-import-not-at-top
  from harness.results import store  # pylint: disable=g-import-not-at-top
  try:
    topo = topologies.parse(simulate) if simulate else topologies.detect()
  except ValueError as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, debug)
  results = store.ResultsStore(exp.results_dir, exp.name)
  try:  # One listing (a bucket: one request, not one per cell).
    done = results.done_cells()
  except Exception:  # pylint: disable=broad-except
    done = set()  # Unreadable: the results check lists it as a problem.
  return preflight.dry_run(exp, lambda e: runner.plan(e, options), topo,
                           done.__contains__, results.dir, sys.stdout,
                           options.allow_unisolated_mbpp)


class GateRefused(RuntimeError):
  """The checks before the first cell found problems (``problems``: every
  (kind, line)), all in one line: the problem, or how many and each."""

  def __init__(self, problems: list[tuple[str, str]]):
    listed = "; ".join(f"{kind}: {line}" for kind, line in problems)
    super().__init__(listed if len(problems) == 1 else (
        f"{len(problems)} problems before the first cell (nothing was "
        f"run): {listed}"))
    self.problems = problems


def _gate(exp, allow_unisolated: bool = False, topo=None):
  """Before the first cell, every check of the dry run
  (``preflight.check``: data, sample sizes, checkpoints, vocabularies,
  results directory, devices and per-chip memory on this machine's
  devices, the MBPP sandbox), all problems at once (``GateRefused``);
  returns the experiment after its sample policy."""
  from harness.runner import preflight  # pylint: disable=g-import-not-at-top
  from harness.runner import topologies  # pylint: disable=g-import-not-at-top
  from harness.models import layout  # pylint: disable=g-import-not-at-top
  found, _ = preflight.check(exp, topo or topologies.detect(),
                             allow_unisolated)
  for line in found.warnings:
    print(f"warning: {line}", file=sys.stderr)
  if found.problems:
    raise GateRefused(found.problems)
  layout.record(found.placements)  # loading and provenance read it
  return found.experiment


def _configure_gather(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("hosts", nargs="+",
                      help="each host's results/<experiment> directory")
  parser.add_argument("--into", required=True,
                      help="merged results/<experiment> directory")
  parser.add_argument("--debug", action="store_true")


def _gather(args: argparse.Namespace) -> int:
  from harness.runner import multihost  # pylint: disable=g-import-not-at-top
  from harness.results import storage  # pylint: disable=g-import-not-at-top
  try:
    for path in [*args.hosts, args.into]:
      storage.check(path, "directory")
  except (ValueError, ImportError) as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  try:
    copied, filled = multihost.gather(args.hosts, args.into)
  except (OSError, ValueError) as err:
    return fail_one_line(err, RUN_ERROR_EXIT, args.debug)
  print(f"gathered {copied} files from {len(args.hosts)} hosts into "
        f"{args.into}; filled relative latency of {len(filled)} cells")
  return 0


def list_experiments() -> list[str]:
  """Shipped experiment files (relative to the repository root)."""
  return sorted(os.path.relpath(p, REPO_ROOT)
                for p in glob.glob(os.path.join(REPO_ROOT, EXPERIMENTS_GLOB)))


def register(add_command: Callable) -> None:
  """Adds ``run`` and ``sweep`` to the harness command line."""
  add_command("run", "run selected cells of an experiment (no sharding)",
              lambda p: _configure_run(p, sweep=False))(_run)
  add_command("sweep", "run every cell of an experiment (shardable)",
              lambda p: _configure_run(p, sweep=True))(_run)
  add_command("gather", "copy hosts' results into one directory and merge",
              _configure_gather)(_gather)
