"""Reads ``results/**`` into two pandas DataFrames: cells and examples.

The runner writes, per experiment::

  results/<experiment>/manifest.json
  results/<experiment>/cells/<cell_id>.json   # summary; exists = complete
  results/<experiment>/cells/<cell_id>.jsonl  # per-example records

:func:`load_results` accepts one directory or several (shards of one sweep, or
a parent of several experiments), finds every ``cells/*.json`` below them and
merges cells by ``cell_id``: duplicates with identical configs are kept once,
conflicting ones raise naming both files. Every field the report needs is
validated; a bad field raises :class:`ResultsError` with a one-line message
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from harness.results import latency as latency_lib
from harness.results.schema import CELLS_DIR
from harness.results.schema import MANIFEST_FILE
from harness.results.schema import RECORDS_SUFFIX
from harness.results.schema import Role
from harness.results.schema import SUMMARY_SUFFIX

PathLike = "str | pathlib.Path"
# Columns that identify the setting a reference (large/small-only) cell
# stands for: a method cell is compared with the references of its setting.
SETTING_COLUMNS = ("task", "pair", "temperature", "top_p", "max_decode_len")
# Summary stats copied into cell columns (any may be null).
STAT_COLUMNS = ("acceptance_rate", "mean_accepted_length", "rejection_rate",
                "deferral_rate", "predicted_speedup", "measured_speedup",
                "drafter_support_mass")


class ResultsError(ValueError):
  """A results file is missing, malformed or conflicts with another."""


@dataclasses.dataclass(frozen=True)
class Results:
  """Loaded results.

  Attributes:
    cells: One row per cell (see :func:`summary_row` for the columns), plus
      ``setting`` (the reference-matching key), ``large_cell_id`` and
      ``small_cell_id`` (the references of that setting, or None).
    examples: One row per example record: ``cell_id``, ``example_id``,
      ``index``, ``prediction``, ``targets`` (tuple of str), ``extra``,
      ``time_s`` (mean over trials, NaN outside the timed subset),
      ``ref_time_s`` (paired protocol: the reference's mean over trials,
      measured beside it; NaN otherwise), ``stats``.
    manifests: Parsed ``manifest.json`` files, keyed by their path.
  """
  cells: pd.DataFrame
  examples: pd.DataFrame
  manifests: dict[str, dict[str, Any]]


# ----------------------------------------------------------------------------
# Field validation
# ----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def get_field(obj: dict[str, Any], dotted: str, where: str, *,
              kind: str, nullable: bool = False, default: Any = None) -> Any:
  """Returns ``obj[a][b]`` for ``dotted='a.b'``, checking its type.

  Args:
    obj: Parsed JSON object.
    dotted: Field path, e.g. ``"cell.task"``.
    where: File (and line) named in errors.
    kind: One of ``"str"``, ``"number"``, ``"dict"``, ``"list"``.
    nullable: Whether null (or a missing key) is allowed; returns ``default``.
    default: Returned for null or missing when ``nullable``.

  Raises:
    ResultsError: one line naming ``where`` and ``dotted``.
  """
  value: Any = obj
  for key in dotted.split("."):
    value = value.get(key) if isinstance(value, dict) else None
  if value is None:
    if nullable:
      return default
    raise ResultsError(f"{where}: field {dotted!r} is missing or null")
  checks = {"str": lambda v: isinstance(v, str), "number": _is_number,
            "dict": lambda v: isinstance(v, dict),
            "list": lambda v: isinstance(v, list)}
  if not checks[kind](value):
    raise ResultsError(f"{where}: field {dotted!r} must be a {kind}, got "
                       f"{type(value).__name__}")
  return value


def _number(obj, dotted, where) -> float:
  """A nullable number as float (NaN for null)."""
  value = get_field(obj, dotted, where, kind="number", nullable=True)
  return math.nan if value is None else float(value)


def _read_json(path: pathlib.Path) -> Any:
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ResultsError(f"{path}: not valid JSON ({e.msg} at line "
                       f"{e.lineno})") from None


# ----------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------


def _cell_config(summary: dict[str, Any], where: str) -> dict[str, Any]:
  """The validated ``cell`` block of a summary."""
  get_field(summary, "cell", where, kind="dict")
  config = {name: get_field(summary, f"cell.{name}", where, kind="str")
            for name in ("task", "method", "role")}
  roles = {r.value for r in Role}
  if config["role"] not in roles:
    raise ResultsError(f"{where}: field 'cell.role' must be one of "
                       f"{sorted(roles)}, got {config['role']!r}")
  for name in ("alpha", "gamma", "temperature", "top_p", "max_decode_len",
               "seed", "num_examples", "num_trials"):
    config[name] = _number(summary, f"cell.{name}", where)
  for name in ("drafter", "verifier", "pair"):
    config[name] = get_field(summary, f"cell.{name}", where, kind="str",
                             nullable=True, default="")
  if not config["pair"]:
    config["pair"] = f"{config['drafter']}->{config['verifier']}"
  options = get_field(summary, "cell.method_options", where, kind="dict",
                      nullable=True, default={})
  config["method_options"] = json.dumps(options, sort_keys=True)
  return config


def summary_row(summary: Any, path: pathlib.Path) -> dict[str, Any]:
  """Validates one per-cell summary and flattens it into a row.

  Args:
    summary: The parsed ``cells/<cell_id>.json``.
    path: Its path (named in errors).

  Returns:
    A dict with the ``cell`` fields, ``cell_id``, ``experiment``,
    ``headline_metric``, ``quality`` (the headline value, NaN if null),
    ``qualities`` (all metrics), ``mean_s``, ``relative_latency``,
    ``latency_protocol`` ("paired" or "unpaired"), ``platform`` and
    ``xla_cpu_threads`` (the provenance's device; 0 = XLA's default pool),
    ``cost_relative_latency``, the :data:`STAT_COLUMNS`, ``summary_path``
    and ``config_json`` (for duplicate detection).
  """
  where = str(path)
  if not isinstance(summary, dict):
    raise ResultsError(f"{where}: the summary must be a JSON object")
  cell_id = get_field(summary, "cell_id", where, kind="str")
  if cell_id != path.stem:
    raise ResultsError(f"{where}: field 'cell_id' is {cell_id!r} but the "
                       f"file is named {path.name!r}")
  row = {"cell_id": cell_id, **_cell_config(summary, where)}
  row["experiment"] = get_field(summary, "experiment", where, kind="str",
                                nullable=True, default="")
  headline = get_field(summary, "headline_metric", where, kind="str")
  qualities = get_field(summary, "quality", where, kind="dict")
  if headline not in qualities:
    raise ResultsError(f"{where}: field 'quality.{headline}' (the "
                       f"headline_metric) is missing")
  row.update(headline_metric=headline, qualities=qualities,
             quality=_number(summary, f"quality.{headline}", where))
  row["mean_s"] = _number(summary, "latency.mean_s", where)
  row["num_timed_examples"] = _number(summary, "latency.num_timed_examples",
                                      where)
  row["relative_latency"] = _number(summary, "relative_latency", where)
  row["latency_protocol"] = get_field(
      summary, "latency.protocol", where, kind="str", nullable=True,
      default=latency_lib.UNPAIRED)
  row["platform"] = get_field(summary, "provenance.device.platform", where,
                              kind="str", nullable=True, default="")
  threads = get_field(summary, "provenance.device.xla_cpu_threads", where,
                      kind="number", nullable=True)
  row["xla_cpu_threads"] = 0 if threads is None else int(threads)
  row["cost_relative_latency"] = _number(
      summary, "cost_model.relative_latency", where)
  for name in STAT_COLUMNS:
    row[name] = _number(summary, f"stats.{name}", where)
  row["summary_path"] = where
  row["config_json"] = json.dumps(summary["cell"], sort_keys=True)
  return row


def find_summaries(roots: Sequence[pathlib.Path]) -> list[pathlib.Path]:
  """All ``cells/*.json`` files below the given directories."""
  found = []
  for root in roots:
    if not root.is_dir():
      raise ResultsError(f"{root}: not a results directory")
    here = sorted(p for p in root.rglob(f"*{SUMMARY_SUFFIX}")
                  if p.parent.name == CELLS_DIR)
    if not here:
      raise ResultsError(f"{root}: no {CELLS_DIR}/*{SUMMARY_SUFFIX} cell "
                         f"summaries found")
    found.extend(here)
  return found


def merge_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
  """Keeps one row per cell_id; raises if two files disagree on a config."""
  kept: dict[str, dict[str, Any]] = {}
  for row in rows:
    first = kept.setdefault(row["cell_id"], row)
    if first is not row and first["config_json"] != row["config_json"]:
      raise ResultsError(
          f"cell {row['cell_id']!r} has conflicting configs in "
          f"{first['summary_path']} and {row['summary_path']}")
  return list(kept.values())


# ----------------------------------------------------------------------------
# Per-example records
# ----------------------------------------------------------------------------


def _targets(record: dict[str, Any], where: str) -> tuple[str, ...]:
  targets = get_field(record, "targets", where, kind="list")
  if not all(isinstance(t, str) for t in targets):
    raise ResultsError(f"{where}: field 'targets' must be a list of strings")
  return tuple(targets)


def _mean_time(record: dict[str, Any], where: str,
               field: str = latency_lib.TIMES) -> float:
  """Mean of ``record[field]`` over trials; NaN outside the timed subset."""
  times = get_field(record, field, where, kind="list", nullable=True,
                    default=[])
  if not all(_is_number(t) for t in times):
    raise ResultsError(f"{where}: field {field!r} must be a list of numbers")
  return float(np.mean(times)) if times else math.nan


def example_row(record: Any, where: str) -> dict[str, Any]:
  """Validates one per-example record and flattens it into a row."""
  if not isinstance(record, dict):
    raise ResultsError(f"{where}: a record must be a JSON object")
  example_id = record.get("example_id")
  if not isinstance(example_id, (str, int)) or isinstance(example_id, bool):
    raise ResultsError(f"{where}: field 'example_id' is missing or not a "
                       f"string/integer")
  return {
      "cell_id": get_field(record, "cell_id", where, kind="str"),
      "example_id": str(example_id),
      "index": _number(record, "index", where),
      "prediction": get_field(record, "prediction", where, kind="str"),
      "targets": _targets(record, where),
      "extra": get_field(record, "extra", where, kind="dict", nullable=True),
      "time_s": _mean_time(record, where),
      "ref_time_s": _mean_time(record, where, latency_lib.REF_TIMES),
      "stats": get_field(record, "stats", where, kind="dict", nullable=True,
                         default={}),
  }


def read_records(path: pathlib.Path, cell_id: str,
                 num_timed: float = math.inf) -> list[dict[str, Any]]:
  """Reads ``cells/<cell_id>.jsonl``; an absent file gives no records.

  Only the first ``num_timed`` records (the latency subset, whose times the
  summary's ``latency.mean_s`` averages) keep their ``time_s``; later ones
  were timed once, outside the protocol, and get NaN, so that bootstrap
  intervals of relative latency resample the same examples as the point
  estimate. NaN (a summary without the field) keeps every time.
  """
  if not path.exists():
    return []
  rows = []
  for lineno, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    where = f"{path}:{lineno}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ResultsError(f"{where}: not valid JSON ({e.msg})") from None
    row = example_row(record, where)
    if len(rows) >= num_timed:
      row["time_s"] = row["ref_time_s"] = math.nan
    if row["cell_id"] != cell_id:
      raise ResultsError(f"{where}: field 'cell_id' is {row['cell_id']!r}, "
                         f"expected {cell_id!r}")
    rows.append(row)
  return rows


# ----------------------------------------------------------------------------
# References and the public loader
# ----------------------------------------------------------------------------


def setting_key(row: pd.Series | dict[str, Any]) -> str:
  """The reference-matching key of a cell: task, pair, T, top-P, max length."""
  return "|".join(repr(row[c]) for c in SETTING_COLUMNS)


def attach_references(cells: pd.DataFrame) -> pd.DataFrame:
  """Adds ``setting``, ``large_cell_id`` and ``small_cell_id`` columns.

  Raises:
    ResultsError: if one setting has two reference cells of the same role.
  """
  cells = cells.copy()
  cells["setting"] = [setting_key(r) for _, r in cells.iterrows()]
  for role, column in ((Role.REFERENCE_LARGE, "large_cell_id"),
                       (Role.REFERENCE_SMALL, "small_cell_id")):
    refs = cells[cells["role"] == role.value]
    dupes = refs[refs.duplicated("setting", keep=False)]
    if not dupes.empty:
      raise ResultsError(
          f"two {role.value} cells for one setting: "
          f"{' and '.join(dupes['summary_path'].iloc[:2])}")
    by_setting = dict(zip(refs["setting"], refs["cell_id"]))
    cells[column] = cells["setting"].map(by_setting)
  return cells


def load_results(results: "PathLike | Sequence[PathLike]") -> Results:
  """Loads one or several results directories (merged by ``cell_id``).

  Args:
    results: A results directory (an experiment, or a parent of several), or
      a list of them (shards of one sweep).

  Returns:
    The :class:`Results`.

  Raises:
    ResultsError: one line naming the file and field at fault.
  """
  roots = ([results] if isinstance(results, (str, pathlib.Path))
           else list(results))
  roots = [pathlib.Path(r) for r in roots]
  rows = merge_rows(summary_row(_read_json(p), p)
                    for p in find_summaries(roots))
  cells = attach_references(pd.DataFrame(rows))
  records = []
  for row in rows:
    path = pathlib.Path(row["summary_path"]).with_suffix(RECORDS_SUFFIX)
    records.extend(read_records(path, row["cell_id"],
                               row["num_timed_examples"]))
  examples = pd.DataFrame(records, columns=[
      "cell_id", "example_id", "index", "prediction", "targets", "extra",
      "time_s", "ref_time_s", "stats"])
  manifests = {}
  for root in roots:
    for path in sorted(root.rglob(MANIFEST_FILE)):
      manifests[str(path)] = _read_json(path)
  return Results(cells=cells, examples=examples, manifests=manifests)
