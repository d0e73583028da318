"""Runs the fault sections and renders their table.

Each section writes ``<out>/sections/<name>.json``; ``render`` builds
``<out>/faults.md`` and ``<out>/faults.json`` from whatever sections exist,
so sections can run separately (``python -m tools.faults --sections crash``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import tempfile
from typing import Any, Callable

from tools.faults import common

SECTIONS = ("crash", "disk", "badinput", "numerics", "sandbox")
SECTION_DIR = "sections"


@dataclasses.dataclass(frozen=True)
class Options:
  """What to run.

  Attributes:
    out: output directory (``results/faults``).
    work: scratch directory (code snapshot, results of every run).
    trials: crash trials.
    seed: seed of the kill delays.
  """
  out: pathlib.Path
  work: pathlib.Path
  trials: int = 20
  seed: int = 0


def _jsonable(obj: Any) -> Any:
  """Dataclasses (with their ``passed``/``identical`` properties) -> dicts."""
  if dataclasses.is_dataclass(obj):
    out = {f.name: _jsonable(getattr(obj, f.name))
           for f in dataclasses.fields(obj)}
    for prop in ("passed", "identical"):
      if hasattr(type(obj), prop):
        out[prop] = getattr(obj, prop)
    return out
  if isinstance(obj, (list, tuple)):
    return [_jsonable(x) for x in obj]
  if isinstance(obj, dict):
    return {k: _jsonable(v) for k, v in obj.items()}
  return obj


def _context(opts: Options) -> common.Context:
  snapshot = opts.work / "code"
  if not snapshot.exists():
    common.make_snapshot(snapshot)
  cache = opts.work / "jax_cache"
  cache.mkdir(parents=True, exist_ok=True)
  return common.Context(snapshot, str(cache))


def _reference(opts: Options, ctx: common.Context):
  from tools.faults import crash  # pylint: disable=g-import-not-at-top
  ref, _ = crash.reference_run(opts.work, "reference-disk", ctx)
  return ref


def _crash(opts: Options, ctx: common.Context, log) -> Any:
  from tools.faults import crash  # pylint: disable=g-import-not-at-top
  begin = datetime.datetime.now()
  partial = lambda report: _write_section(opts, "crash", report, begin,
                                          complete=False)
  return crash.run_crash_trials(opts.work / "crash", ctx, opts.trials,
                                opts.seed, log, partial)


def _disk(opts: Options, ctx: common.Context, log) -> Any:
  from tools.faults import disk  # pylint: disable=g-import-not-at-top
  ref = _reference(opts, ctx)
  return disk.run_disk(opts.work / "disk", ctx, ref,
                       opts.work / "reference-disk" / common.EXPERIMENT, log)


def _badinput(opts: Options, ctx: common.Context, log) -> Any:
  from tools.faults import badinput  # pylint: disable=g-import-not-at-top
  return badinput.run_corpus(opts.work / "badinput", ctx, log)


def _numerics(opts: Options, ctx: common.Context, log) -> Any:
  del opts, ctx
  from tools.faults import numerics  # pylint: disable=g-import-not-at-top
  return {"rows": numerics.check_rows(),
          "decodes": numerics.check_decodes(log=log)}


def _sandbox(opts: Options, ctx: common.Context, log) -> Any:
  del opts, ctx
  from tools.faults import sandbox  # pylint: disable=g-import-not-at-top
  return sandbox.run_sandbox(log)


_RUNNERS: dict[str, Callable] = {"crash": _crash, "disk": _disk,
                                 "badinput": _badinput,
                                 "numerics": _numerics, "sandbox": _sandbox}


def machine() -> dict[str, Any]:
  """Where the figures were measured."""
  import jax  # pylint: disable=g-import-not-at-top
  return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "host": platform.node(),
          "platform": platform.platform(), "cpus": os.cpu_count(),
          "python": platform.python_version(), "jax": jax.__version__,
          "device": str(jax.devices()[0].device_kind)}


def run_sections(names: list[str], opts: Options, log=print) -> None:
  """Runs sections, writing each one's JSON as soon as it is done."""
  opts.work.mkdir(parents=True, exist_ok=True)
  ctx = _context(opts)
  section_dir = opts.out / SECTION_DIR
  section_dir.mkdir(parents=True, exist_ok=True)
  for name in names:
    begin = datetime.datetime.now()
    result = _RUNNERS[name](opts, ctx, log)
    path = _write_section(opts, name, result, begin, complete=True)
    log(f"{name}: written {path}")


def _write_section(opts: Options, name: str, result: Any,
                   begin: datetime.datetime, complete: bool) -> pathlib.Path:
  """Writes ``<out>/sections/<name>.json`` (atomically)."""
  payload = {"section": name, "machine": machine(), "complete": complete,
             "seconds": (datetime.datetime.now() - begin).total_seconds(),
             "options": {"trials": opts.trials, "seed": opts.seed},
             "result": _jsonable(result)}
  path = opts.out / SECTION_DIR / f"{name}.json"
  _atomic_write(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
  return path


def _atomic_write(path: pathlib.Path, text: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def load_sections(out: pathlib.Path) -> dict[str, dict]:
  sections = {}
  for name in SECTIONS:
    path = out / SECTION_DIR / f"{name}.json"
    if path.exists():
      sections[name] = json.loads(path.read_text(encoding="utf-8"))
  return sections


def write_table(out: pathlib.Path) -> str:
  """Renders faults.md and faults.json from the sections; returns the md."""
  from tools.faults import table  # pylint: disable=g-import-not-at-top
  sections = load_sections(out)
  text = table.render(sections)
  _atomic_write(out / "faults.md", text)
  _atomic_write(out / "faults.json", json.dumps(
      table.figures(sections), indent=2, sort_keys=True) + "\n")
  return text
