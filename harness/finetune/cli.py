"""``python -m harness finetune``: fine-tune or continue pre-training T5.

  python -m harness finetune --gin_file finetune/wmt14_ende_small.gin \\
      --workdir /ckpt/wmt_small [--gin.FinetuneConfig.train_steps=1000]
  python -m harness finetune --gin_file ... --workdir ... --distributed

A workdir holding checkpoints is resumed from its newest one; it is a local
(or shared-filesystem) path: a bucket or unknown scheme is refused in one
line before anything runs. Errors print
one line (``error: …``) and exit 2 (configuration) or 1 (anything else);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os

from harness.edge.errors import CONFIG_ERROR_EXIT, RUN_ERROR_EXIT
from harness.edge.errors import fail_one_line, gin_overrides


def configure(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--gin_file", action="append", required=True,
                      help="gin file, e.g. finetune/wmt14_ende_small.gin "
                      "(searched in the working directory, the repository "
                      "root and its gin/; repeatable, later files override)")
  parser.add_argument("--gin_binding", action="append", default=[],
                      metavar="X=Y", help="gin binding (same as --gin.X=Y)")
  parser.add_argument("--workdir", required=True,
                      help="checkpoints, logs and the export; resumed from "
                      "its newest checkpoint if it has one")
  parser.add_argument("--distributed", action="store_true",
                      help="multi-host: jax.distributed.initialize() first "
                      "(each host reads its own shard of the data)")
  parser.add_argument("--compilation_cache_dir", default=os.environ.get(
      "HARNESS_COMPILATION_CACHE"), metavar="DIR",
                      help="persistent XLA compilation cache")
  parser.add_argument("--no_progress", action="store_true",
                      help="no progress bar")
  parser.add_argument("--kill_at_step", type=int, default=None,
                      help=argparse.SUPPRESS)  # testing aid: SIGKILL itself
  parser.add_argument("--debug", action="store_true", help="show tracebacks")


def local_workdir(workdir: str) -> str:
  """The work directory as a local path (``file://`` stripped).

  Raises:
    ValueError: a bucket (``gs://``; checkpoints, logs and the export are
      written to a local or shared filesystem) or an unknown scheme.
  """
  from harness.results import storage  # pylint: disable=g-import-not-at-top
  if storage.scheme(workdir) in storage.SCHEMES:
    raise ValueError(
        f"--workdir {workdir}: fine-tuning writes its work directory on a "
        "local or shared filesystem, not a bucket (copy it there afterwards, "
        "e.g. gcloud storage rsync -r)")
  storage.check(workdir, "--workdir")
  return storage.local_path(workdir)


def finetune(args: argparse.Namespace) -> int:
  """Parses the gin config, then runs `trainer.train`."""
  # pylint: disable=g-import-not-at-top
  from harness.edge import gin_files
  from harness.finetune import config as config_lib
  # pylint: enable=g-import-not-at-top
  bindings = args.gin_binding + gin_overrides(getattr(args, "gin", []))
  try:
    cfg, text = config_lib.parse(args.gin_file, bindings)
  except (gin_files.ConfigError, ValueError) as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  try:
    workdir = local_workdir(args.workdir)
  except ValueError as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  import jax  # pylint: disable=g-import-not-at-top
  if args.distributed:
    jax.distributed.initialize()
  if args.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache_dir)
  from harness.finetune import trainer  # pylint: disable=g-import-not-at-top
  try:
    trainer.train(cfg, workdir, text, progress=not args.no_progress,
                  kill_at_step=args.kill_at_step)
  except (ValueError, FileNotFoundError, KeyError) as err:
    return fail_one_line(err, CONFIG_ERROR_EXIT, args.debug)
  except Exception as err:  # pylint: disable=broad-except
    return fail_one_line(err, RUN_ERROR_EXIT, args.debug)
  return 0


def register(add_command) -> None:
  """Registers ``finetune`` with ``harness.__main__``."""
  add_command("finetune", "fine-tune / continue pre-training T5 (gin)",
              configure)(finetune)
