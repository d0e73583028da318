"""The bad-input corpus: every case runs through the command line.

Each case is one ``python -m harness ...`` invocation on a broken gin file,
checkpoint directory, data directory (``$HARNESS_DATA_DIR``) or argument. It
passes when the command exits non-zero with exactly one ``error:`` line that
names the cause (every ``expect`` substring, case-insensitive), prints no
traceback, and leaves no cell summary behind. One case per category is run
again with ``--debug``, which must show the traceback. Checkpoint and data
cases also record the exception type the library raises
(``harness.models.load_pretrained`` / ``harness.tasks.load_examples``).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib
import shutil
from typing import Callable

from tools.faults import common

# (drafter size, verifier size) of the checkpoint pair the cases break.
CKPT_SIZES = ("tiny_t5", "tiny_t5_large")
XSUM_FILE = ("xsum", "test_1000.jsonl")
MULTI30K_VAL = ("multi30k", "val.de.gz")
XSUM_GIN = "gin/tasks/xsum.gin"
XSUM_TASK = ("--gin.TASKS=[@xsum/TaskRun()]",
             "--gin.xsum/TaskRun.num_examples=2")
LIBRARY_CHECKPOINT_ERRORS = ("FileNotFoundError", "ValueError", "KeyError")


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input.

  Attributes:
    name: short id.
    category: gin, checkpoint, data or cli.
    args: command-line arguments; ``{work}`` is replaced by the case's
      directory, ``{ckpt}`` by the good checkpoint pair's directory.
    expect: substrings the error line must contain (case-insensitive).
    setup: optional function(case_dir, ckpt_dir) preparing files; returns
      extra environment variables.
    sweep: whether ``args`` are a sweep's (the tiny sweep's arguments and a
      private RESULTS_DIR are added).
    warning: the input is legal but suspicious: the command must succeed
      (run with --dry_run) and print one ``warning:`` line naming the cause.
  """
  name: str
  category: str
  args: tuple[str, ...]
  expect: tuple[str, ...]
  setup: Callable[[pathlib.Path, pathlib.Path], dict[str, str]] | None = None
  sweep: bool = True
  warning: bool = False


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What one case did.

  Attributes:
    name: case id.
    category: its category.
    exit_code: the command's exit status.
    error_line: its single error line ("" if none or several).
    one_line: exactly one error line and nothing else on stderr.
    traceback: a traceback was printed.
    names_cause: the error line contains every expected substring.
    summaries_left: cell summaries written (a failed run must leave none).
    library_error: exception type raised by the library call, if checked.
    debug_traceback: with --debug a traceback appears (None: not run).
  """
  name: str
  category: str
  exit_code: int
  error_line: str
  one_line: bool
  traceback: bool
  names_cause: bool
  summaries_left: int
  library_error: str | None = None
  debug_traceback: bool | None = None
  warning: bool = False

  @property
  def passed(self) -> bool:
    failed_as_expected = (self.exit_code == 0) if self.warning else (
        self.exit_code not in (0, None))
    return (failed_as_expected and self.one_line
            and not self.traceback and self.names_cause
            and not self.summaries_left and self.debug_traceback is not False)


# --- File builders ------------------------------------------------------------


def _write(path: pathlib.Path, text: str | bytes) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(text, bytes):
    path.write_bytes(text)
  else:
    path.write_text(text, encoding="utf-8")
  return path


def _gin(text: str) -> Callable:
  def setup(case_dir: pathlib.Path, ckpt: pathlib.Path) -> dict[str, str]:
    del ckpt
    _write(case_dir / "bad.gin", text)
    return {}
  return setup


def _copy_ckpt(edit: Callable[[pathlib.Path], None], which: str = "drafter"
               ) -> Callable:
  """Copies the good pair to the case dir, then edits one model."""
  def setup(case_dir: pathlib.Path, ckpt: pathlib.Path) -> dict[str, str]:
    shutil.copytree(ckpt, case_dir / "ckpt")
    edit(case_dir / "ckpt" / which)
    return {}
  return setup


def _data_dir(edit: Callable[[pathlib.Path], None]) -> Callable:
  """A $HARNESS_DATA_DIR linking the bundled data, one file edited."""
  def setup(case_dir: pathlib.Path, ckpt: pathlib.Path) -> dict[str, str]:
    del ckpt
    root = case_dir / "data"
    for dataset in sorted(common.REPO.joinpath("data").iterdir()):
      if dataset.is_dir():
        (root / dataset.name).mkdir(parents=True)
        for f in dataset.iterdir():
          (root / dataset.name / f.name).symlink_to(f)
    edit(root)
    return {"HARNESS_DATA_DIR": str(root)}
  return setup


def _replace_file(parts: tuple[str, ...], content: bytes | None):
  """An edit replacing a data file (None deletes it)."""
  def edit(root: pathlib.Path) -> None:
    path = root.joinpath(*parts)
    path.unlink()
    if content is not None:
      path.write_bytes(content)
  return edit


def _xsum_lines(*objs) -> bytes:
  return "".join(json.dumps(o) + "\n" for o in objs).encode()


_XSUM_OK = {"id": 1, "document": "A short article.", "summary": "Short."}


def _rewrite_tensors(change: Callable[[dict], dict]):
  def edit(model_dir: pathlib.Path) -> None:
    import safetensors.numpy  # pylint: disable=g-import-not-at-top
    path = model_dir / "model.safetensors"
    tensors = change(dict(safetensors.numpy.load_file(str(path))))
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
  return edit


def _drop_tensor(tensors: dict) -> dict:
  name = sorted(tensors)[0]
  del tensors[name]
  return tensors


def _reshape_tensor(tensors: dict) -> dict:
  name = sorted(tensors)[0]
  tensors[name] = tensors[name][..., :-1].copy()
  return tensors


def _corrupt_header(model_dir: pathlib.Path) -> None:
  path = model_dir / "model.safetensors"
  data = bytearray(path.read_bytes())
  data[:8] = (1 << 40).to_bytes(8, "little")
  path.write_bytes(bytes(data))


def _truncate(model_dir: pathlib.Path) -> None:
  path = model_dir / "model.safetensors"
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _other_tokenizer(model_dir: pathlib.Path) -> None:
  from harness.testing import tokenizers  # pylint: disable=g-import-not-at-top
  tokenizers.train_tiny_sentencepiece(model_dir / "spiece.model", seed=1)


def _delete(name: str):
  return lambda model_dir: (model_dir / name).unlink()


def _write_config(change: Callable[[dict], dict | str]):
  def edit(model_dir: pathlib.Path) -> None:
    path = model_dir / "config.json"
    new = change(json.loads(path.read_text()))
    path.write_text(new if isinstance(new, str) else json.dumps(new))
  return edit


def _truncated_gzip(root: pathlib.Path) -> None:
  path = root.joinpath(*MULTI30K_VAL)
  data = path.read_bytes()
  path.unlink()
  path.write_bytes(data[:len(data) // 2])


def _short_parallel(root: pathlib.Path) -> None:
  path = root.joinpath(*MULTI30K_VAL)
  with gzip.open(path, "rt", encoding="utf-8") as f:
    lines = f.read().splitlines()[:-5]
  path.unlink()
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


# --- The corpus ---------------------------------------------------------------

_CKPT = ("--gin.ModelPair.kind='checkpoint'",
         "--gin.ModelPair.drafter='{work}/ckpt/drafter'",
         "--gin.ModelPair.verifier='{work}/ckpt/verifier'")
_BENCH_ONLY = ("include 'gin/runs/benchmark.gin'\n"
               "include 'gin/models/tiny_random_t5.gin'\n")


def corpus() -> list[Case]:
  """Every bad-input case (≥ 30), in category order."""
  g, smoke = "gin", common.SMOKE_GIN
  cases = [
      Case("gin syntax error", g, ("--gin_file", "{work}/bad.gin"),
           ("bad.gin", "syntax"),
           _gin(f"include '{smoke}'\nExperiment.seed = (1,\n")),
      Case("gin unknown configurable", g, ("--gin_file", "{work}/bad.gin"),
           ("NoSuchThing",),
           _gin(f"include '{smoke}'\nNoSuchThing.x = 1\n")),
      Case("gin unknown parameter", g, ("--gin_file", "{work}/bad.gin"),
           ("bogus",), _gin(f"include '{smoke}'\nExperiment.bogus = 1\n")),
      Case("gin missing REQUIRED macro", g, ("--gin_file", "{work}/bad.gin"),
           ("EXPERIMENT_NAME", "REQUIRED"),
           _gin(_BENCH_ONLY + "TASKS = []\nMETHODS = []\n")),
      Case("gin undefined macro", g, ("--gin_file", "{work}/bad.gin"),
           ("NO_SUCH_MACRO",),
           _gin(f"include '{smoke}'\nExperiment.seed = %NO_SUCH_MACRO\n")),
      Case("gin missing include", g, ("--gin_file", "{work}/bad.gin"),
           ("gin/nope.gin",), _gin("include 'gin/nope.gin'\n")),
      Case("gin file not found", g, ("--gin_file", "{work}/nope.gin"),
           ("nope.gin", "not found")),
      Case("gin wrong type (string for int)", g,
           ("--gin_file", smoke, "--gin.NUM_TRIALS='three'"),
           ("num_trials",)),
      Case("gin wrong type (int for list)", g,
           ("--gin_file", smoke, "--gin.GAMMAS='x'"), ("gammas",)),
      Case("gin zero examples", g,
           ("--gin_file", smoke, "--gin.multi30k_ende/TaskRun.num_examples=0"),
           ("num_examples",)),
      Case("gin unknown task", g,
           ("--gin_file", smoke, "--gin.multi30k_ende/TaskRun.task='nope'"),
           ("task", "nope")),
      Case("gin override of an unknown macro (typo)", g,
           ("--gin_file", smoke, "--gin.SEEED=1", "--dry_run"),
           ("SEEED", "did you mean SEED")),
      Case("gin override of a misspelt scope", g,
           ("--gin_file", smoke,
            "--gin.spec_cascade_tokn/MethodGrid.alphas=[0.0]", "--dry_run"),
           ("spec_cascade_tokn", "did you mean spec_cascade_token")),
      Case("gin non-UTF-8 file", g, ("--gin_file", "{work}/bad.gin"),
           ("bad.gin",),
           lambda d, c: (_write(d / "bad.gin", b"EXPERIMENT_NAME = '\xff'\n"),
                         {})[1]),
  ]
  k = "checkpoint"
  ckpt = ("--gin_file", smoke) + _CKPT
  cases += [
      Case("checkpoint directory missing", k, ckpt,
           ("2 problems before the first cell", "drafter",
            "no such directory"),
           lambda d, c: {}),
      Case("checkpoint config.json missing", k, ckpt, ("config.json",),
           _copy_ckpt(_delete("config.json"))),
      Case("checkpoint config.json invalid JSON", k, ckpt, ("config.json",),
           _copy_ckpt(_write_config(lambda cfg: "{\"model_type\": "))),
      Case("checkpoint unknown architecture", k, ckpt, ("architecture",),
           _copy_ckpt(_write_config(lambda cfg: {**cfg, "model_type": "rnn"}))),
      Case("checkpoint weights missing", k, ckpt, ("model.safetensors",),
           _copy_ckpt(_delete("model.safetensors"))),
      Case("checkpoint missing tensor", k, ckpt, ("tensor",),
           _copy_ckpt(_rewrite_tensors(_drop_tensor))),
      Case("checkpoint wrong tensor shape", k, ckpt, ("shape",),
           _copy_ckpt(_rewrite_tensors(_reshape_tensor))),
      Case("checkpoint corrupt safetensors header", k, ckpt,
           ("model.safetensors",), _copy_ckpt(_corrupt_header)),
      Case("checkpoint truncated safetensors", k, ckpt,
           ("model.safetensors",), _copy_ckpt(_truncate, "verifier")),
      Case("checkpoint tokenizer missing", k, ckpt, ("tokenizer",),
           _copy_ckpt(_delete("spiece.model"))),
      Case("checkpoint drafter/verifier tokenizer mismatch", k, ckpt,
           ("tokenizer", "differ"), _copy_ckpt(_other_tokenizer)),
  ]
  d = "data"
  xsum = ("--gin_file", smoke, "--gin_file", XSUM_GIN) + XSUM_TASK
  val = ("--gin_file", smoke)
  cases += [
      Case("data malformed JSONL", d, xsum, ("test_1000.jsonl:2", "JSON"),
           _data_dir(_replace_file(XSUM_FILE, _xsum_lines(_XSUM_OK)
                                   + b"{\"id\": \"2\", \n"))),
      Case("data missing field", d, xsum, ("test_1000.jsonl:1", "summary"),
           _data_dir(_replace_file(XSUM_FILE, _xsum_lines(
               {"id": 1, "document": "An article."})))),
      Case("data wrong field type", d, xsum, ("test_1000.jsonl:1", "document"),
           _data_dir(_replace_file(XSUM_FILE, _xsum_lines(
               {**_XSUM_OK, "document": 7})))),
      Case("data empty file", d, xsum, ("test_1000.jsonl",),
           _data_dir(_replace_file(XSUM_FILE, b""))),
      Case("data non-UTF-8 bytes", d, xsum, ("test_1000.jsonl", "UTF-8"),
           _data_dir(_replace_file(XSUM_FILE, _xsum_lines(_XSUM_OK)
                                   + b"{\"id\": \"\xff\xfe\"}\n"))),
      Case("data file missing", d, xsum, ("test_1000.jsonl", "missing"),
           _data_dir(_replace_file(XSUM_FILE, None))),
      Case("data truncated gzip", d, val, ("val.de.gz",),
           _data_dir(_truncated_gzip)),
      Case("data parallel files differ in length", d, val, ("val.de.gz",),
           _data_dir(_short_parallel)),
  ]
  c = "cli"
  cases += [
      Case("cli unknown method", c,
           ("--gin_file", smoke,
            "--gin.spec_decode_lossy/MethodGrid.method='nope'"),
           ("method", "nope")),
      Case("cli bad shard spec (i ≥ N)", c,
           ("--gin_file", smoke, "--shard", "3/2"), ("shard", "3/2")),
      Case("cli bad shard spec (not i/N)", c,
           ("--gin_file", smoke, "--shard", "x"), ("shard",)),
      Case("cli alpha out of range", c,
           ("--gin_file", smoke,
            "--gin.spec_decode_lossy/MethodGrid.alphas=[2.0]"),
           ("alpha", "range")),
      Case("cli negative temperature", c,
           ("--gin_file", smoke, "--gin.TEMPERATURES=[-1.0]"),
           ("temperature",)),
      Case("cli top-P out of range", c,
           ("--gin_file", smoke, "--gin.TOP_PS=[0.0]"), ("top_p",)),
      Case("cli gamma 0", c, ("--gin_file", smoke, "--gin.GAMMAS=[0]"),
           ("gamma",)),
      Case("cli unknown option", c, ("--gin_file", smoke, "--bogus"),
           ("--bogus",)),
      Case("cli unknown command", c, ("frobnicate",), ("frobnicate",),
           sweep=False),
      Case("cli report on a missing directory", c,
           ("report", "--results", "{work}/nowhere"), ("nowhere",),
           sweep=False),
  ]
  return cases


DEBUG_CASES = ("gin syntax error", "checkpoint missing tensor",
               "data malformed JSONL", "cli bad shard spec (i ≥ N)")


# --- Running ------------------------------------------------------------------


def build_checkpoints(dest: pathlib.Path) -> pathlib.Path:
  """A good tiny T5 pair (drafter/, verifier/) sharing one tokenizer."""
  import jax  # pylint: disable=g-import-not-at-top
  from harness import models  # pylint: disable=g-import-not-at-top
  from harness.runner import pairs  # pylint: disable=g-import-not-at-top
  dest.mkdir(parents=True, exist_ok=True)
  tok = pairs.train_tokenizer(str(dest / "spiece.model"), with_bos=False)
  keys = jax.random.split(jax.random.key(0))
  for name, size, key in zip(("drafter", "verifier"), CKPT_SIZES, keys):
    model = models.random_t5(key, pairs.size_config(size),
                             tokenizer_id=tok.id)
    models.save_pretrained(model, dest / name, tok)
  return dest


def _argv(case: Case, case_dir: pathlib.Path, ckpt: pathlib.Path) -> list[str]:
  args = [a.replace("{work}", str(case_dir)).replace("{ckpt}", str(ckpt))
          for a in case.args]
  if case.sweep:
    gin_files, rest = _split_gin_files(args)
    return ["sweep", "--no_progress", *gin_files, *common.TINY_SWEEP,
            f"--gin.RESULTS_DIR='{case_dir / 'results'}'", *rest]
  return args


def _split_gin_files(args: list[str]) -> tuple[list[str], list[str]]:
  """(--gin_file pairs, the other arguments): the case's come last."""
  files, rest, i = [], [], 0
  while i < len(args):
    if args[i] == "--gin_file":
      files += args[i:i + 2]
      i += 2
    else:
      rest.append(args[i])
      i += 1
  return files, rest


def _library_error(case: Case, case_dir: pathlib.Path,
                   env: dict[str, str]) -> str | None:
  """The exception type the library raises for this case (in-process)."""
  if case.category == "checkpoint":
    from harness import models  # pylint: disable=g-import-not-at-top
    drafter = (case_dir / "ckpt" / "drafter")
    verifier = (case_dir / "ckpt" / "verifier")
    try:
      a = models.load_pretrained(drafter)
      b = models.load_pretrained(verifier)
      models.check_same_tokenizer(a.model, b.model)
    except Exception as err:  # pylint: disable=broad-except
      return type(err).__name__
    return None
  if case.category == "data":
    from harness import tasks  # pylint: disable=g-import-not-at-top
    old = os.environ.get("HARNESS_DATA_DIR")
    os.environ["HARNESS_DATA_DIR"] = env["HARNESS_DATA_DIR"]
    task = "xsum" if "xsum" in " ".join(case.args) else "multi30k_ende"
    try:
      tasks.load_examples(task, num_examples=2, seed=0, source="offline")
    except Exception as err:  # pylint: disable=broad-except
      return type(err).__name__
    finally:
      if old is None:
        os.environ.pop("HARNESS_DATA_DIR")
      else:
        os.environ["HARNESS_DATA_DIR"] = old
    return None
  return None


def run_case(case: Case, work: pathlib.Path, ckpt: pathlib.Path,
             ctx: common.Context) -> Outcome:
  """Runs one case (and its --debug rerun when in ``DEBUG_CASES``)."""
  case_dir = work / case.name.replace(" ", "_").replace("/", "_")
  shutil.rmtree(case_dir, ignore_errors=True)
  case_dir.mkdir(parents=True)
  extra = case.setup(case_dir, ckpt) if case.setup else {}
  env = ctx.env(**extra)
  argv = _argv(case, case_dir, ckpt)
  check = common.check_error(common.run(ctx, argv, env), case.warning)
  debug = None
  if case.name in DEBUG_CASES:
    debug = common.check_error(common.run(ctx, argv + ["--debug"], env)
                               ).traceback
  summaries = len(list((case_dir / "results").rglob("cells/*.json")))
  line = check.error_line.lower()
  names = bool(line) and all(e.lower() in line for e in case.expect)
  return Outcome(case.name, case.category, check.exit_code, check.error_line,
                 check.one_line, check.traceback, names, summaries,
                 _library_error(case, case_dir, extra), debug, case.warning)


def run_corpus(work: pathlib.Path, ctx: common.Context, log=print,
               only: str | None = None) -> list[Outcome]:
  """Runs every case (or those whose name contains ``only``)."""
  ckpt = build_checkpoints(work / "good_pair")
  outcomes = []
  for case in corpus():
    if only and only not in case.name:
      continue
    outcome = run_case(case, work, ckpt, ctx)
    outcomes.append(outcome)
    log(f"bad input: {'ok  ' if outcome.passed else 'FAIL'} {case.name}: "
        f"exit {outcome.exit_code}: {outcome.error_line[:150]}")
  return outcomes
