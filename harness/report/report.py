"""``write_report``: results files in, Table 2 and figures out.

Reads only ``results/**`` (never runs a model): loads and merges the cells,
fills null relative latencies from per-example times, bootstraps confidence
intervals, extracts Table 2 and draws every figure the results support.

Results and the output directory may be on a bucket (``gs://``,
``harness.results.storage``): the results are read from a temporary local
copy, and the outputs written to a temporary directory, then uploaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sys
import tempfile
from typing import Callable, Iterator, Sequence, TextIO

import pandas as pd

from harness.report import analysis
from harness.report import plots
from harness.report import bootstrap as bootstrap_lib
from harness.report import csd
from harness.report import figures
from harness.report import load
from harness.report import render
from harness.report import table_builder
from harness.results import storage
from harness.results.latency import PAIRED

# The report's two sentences on the paired protocol (docs/timing.md).
PAIRED_NOTE = (
    "Wall-clock latency is paired: each timed decode ran right beside a "
    "decode of the large model on the same example and key, in alternating "
    "order, so load drift between cells cancels. Relative latency is the "
    "geometric mean of the per-example ratios, with a bootstrap interval "
    "over examples.")
TABLE_STEM = "table2"

POINTS_FILE = "points.csv"
# Columns of points.csv: everything needed to re-plot a curve.
POINT_COLUMNS = (
    "cell_id", "task", "pair", "temperature", "top_p", "max_decode_len",
    "gamma", "method", "role", "alpha", "headline_metric", "quality",
    "quality_low", "quality_high", "relative_latency", "latency_low",
    "latency_high", "cost_relative_latency", "rejection_rate",
    "deferral_rate", "acceptance_rate", "drafter_support_mass",
    "mean_accepted_length", "predicted_speedup", "measured_speedup", "setting", "large_cell_id",
    "small_cell_id")
# Figure file stem -> function(cells) returning a Figure or None.
FIGURES: dict[str, Callable[[pd.DataFrame], object]] = {
    "curves": plots.plot_curves,
    "curves_cost_model": lambda c: plots.plot_curves(
        c, figures.XAxis.COST_RELATIVE_LATENCY),
    "rejection": plots.plot_rejection,
    "deferral": plots.plot_deferral,
    "temperature": lambda c: plots.plot_sweep(
        c, plots.SweepParam.TEMPERATURE),
    "top_p": lambda c: plots.plot_sweep(c, plots.SweepParam.TOP_P),
    "gamma": lambda c: plots.plot_sweep(c, plots.SweepParam.GAMMA),
    "rule_ablation": plots.plot_rule_ablation,
    "bild": plots.plot_bild,
    "speedup": plots.plot_speedup,
}


def cpu_threads_note(cells: pd.DataFrame) -> str | None:
  """One sentence on XLA:CPU's pool size for results timed on a CPU."""
  if "platform" not in cells or "xla_cpu_threads" not in cells:
    return None
  on_cpu = cells[cells["platform"] == "cpu"]
  if on_cpu.empty:
    return None
  sizes = sorted(set(int(n) for n in on_cpu["xla_cpu_threads"]))
  names = ["one per CPU" if n == 0 else str(n) for n in sizes]
  if len(sizes) > 1:
    return ("Warning: these CPU results were timed with different XLA:CPU "
            f"thread counts ({', '.join(names)}; --cpu_threads): their "
            "relative latencies are not comparable with one another.")
  return (f"XLA:CPU threads per program: {names[0]} (--cpu_threads; "
          "relative latencies depend on it, docs/timing.md).")


@dataclasses.dataclass(frozen=True, eq=False)
class Report:
  """Everything a report is made of.

  Attributes:
    cells: Cells with filled relative latencies and CI columns.
    table: The long Table 2 (:func:`table_builder.build_table2`).
    bootstrap: What the bootstrap did.
  """
  cells: pd.DataFrame
  table: pd.DataFrame
  bootstrap: analysis.BootstrapReport

  def notes(self) -> list[str]:
    """Footnotes: the bootstrap, the timing protocol, warnings (no wall
    times, so that re-rendering the same results gives the same bytes)."""
    b = self.bootstrap
    head = (f"Bootstrap: {b.num_resamples} resamples of examples per task "
            f"(shared by all cells of a task), 95% percentile intervals; "
            f"{b.num_cells} cells with quality intervals.")
    notes = [head]
    if ("latency_protocol" in self.cells
        and (self.cells["latency_protocol"] == PAIRED).any()):
      notes.append(PAIRED_NOTE)
    threads = cpu_threads_note(self.cells)
    if threads:
      notes.append(threads)
    return notes + floor_notes(self.table) + list(b.notes)


def floor_notes(table: pd.DataFrame) -> list[str]:
  """A note per setting whose large model scored the metric's floor on every
  example (quality and interval 0): every method matches that quality, so
  its speed-up entries measure no trade-off."""
  if table.empty:
    return []
  notes = []
  settings = table.drop_duplicates(
      [*load.SETTING_COLUMNS, "gamma"])
  for _, row in settings.iterrows():
    if (row["large_quality"] == 0 and row["large_quality_high"] == 0
        and table_builder.higher_is_better(row["metric"])):
      where = ", ".join(f"{name}={row[column]:g}" for name, column in (
          ("T", "temperature"), ("top-P", "top_p"), ("γ", "gamma"))
                        if not pd.isna(row[column]))
      notes.append(
          f"{row['task']} ({where}): the large model scores 0 {row['metric']} "
          "on every example, so any method matches its quality; the "
          "speed-up entries there measure no quality trade-off.")
  return notes


def only_gamma(cells: pd.DataFrame, gamma: int) -> pd.DataFrame:
  """The cells of block size ``gamma`` and every cell without one
  (references, sequence-level cascades); ValueError if no cell has it."""
  if not (cells["gamma"] == gamma).any():
    have = sorted(int(g) for g in cells["gamma"].dropna().unique())
    raise ValueError(f"--gamma {gamma}: no cell has this block size "
                     f"(the results have {have or 'none'})")
  return cells[cells["gamma"].isna() | (cells["gamma"] == gamma)]


def build_report(results, *, bootstrap: int = bootstrap_lib.DEFAULT_RESAMPLES,
                 seed: int = 0, allow_unisolated_mbpp: bool = False,
                 gamma: int | None = None) -> Report:
  """Loads results and computes the cells' intervals and Table 2
  (``allow_unisolated_mbpp``: MBPP's sandbox opt-in, for pass@1's;
  ``gamma``: only that block size, else each setting's most common)."""
  remote = [results] if isinstance(results, (str, os.PathLike)) else results
  if any(storage.is_remote(r) for r in remote):
    with _local_results(results) as local:
      return build_report(local, bootstrap=bootstrap, seed=seed,
                          allow_unisolated_mbpp=allow_unisolated_mbpp,
                          gamma=gamma)
  loaded = load.load_results(results)
  cells = loaded.cells if gamma is None else only_gamma(loaded.cells, gamma)
  cells = analysis.fill_relative_latency(cells, loaded.examples)
  cells, info = analysis.add_intervals(cells, loaded.examples,
                                       num_resamples=bootstrap, seed=seed,
                                       allow_unisolated=allow_unisolated_mbpp)
  return Report(cells=cells, table=table_builder.build_table2(cells),
                bootstrap=info)


def default_out_dir(results) -> "pathlib.Path | str":
  """The results dir itself, or the common parent of several (a bucket
  path stays a string)."""
  if isinstance(results, (str, os.PathLike)):
    return (os.fspath(results) if storage.is_remote(results)
            else pathlib.Path(results))
  if any(storage.is_remote(r) for r in results):
    raise ValueError("several results directories on a bucket: give the "
                     "report's output directory")
  return pathlib.Path(os.path.commonpath([os.path.abspath(r)
                                          for r in results]))


def save_figure(fig, out_dir: pathlib.Path, stem: str) -> list[str]:
  """Writes ``<stem>.png`` (dpi ≥ 200) and ``<stem>.pdf``."""
  paths = []
  for fmt in figures.FIGURE_FORMATS:
    path = out_dir / f"{stem}.{fmt}"
    # "tight" grows the canvas to whatever the legend needs: nothing clipped.
    # No creation date in the PDF: a re-render is byte-identical.
    fig.savefig(path, dpi=figures.PNG_DPI, bbox_inches="tight",
                metadata={"CreationDate": None} if fmt == "pdf" else None)
    paths.append(str(path))
  return paths


def _write_tables(report: Report, out_dir: pathlib.Path) -> list[str]:
  notes = report.notes()
  texts = {f"{TABLE_STEM}.md": render.format_table2_markdown(report.table,
                                                             notes),
           f"{TABLE_STEM}.tex": render.format_table2_latex(report.table)}
  paths = []
  for name, text in texts.items():
    (out_dir / name).write_text(text)
    paths.append(str(out_dir / name))
  report.table.to_csv(out_dir / f"{TABLE_STEM}.csv", index=False)
  report.cells[list(POINT_COLUMNS)].to_csv(out_dir / POINTS_FILE, index=False)
  return paths + [str(out_dir / f"{TABLE_STEM}.csv"),
                  str(out_dir / POINTS_FILE)]


def write_report(results: "str | os.PathLike | Sequence[str | os.PathLike]",
                 out_dir: "str | os.PathLike | None" = None, *,
                 bootstrap: int = bootstrap_lib.DEFAULT_RESAMPLES,
                 seed: int = 0) -> list[str]:
  """Writes Table 2 (md, csv, tex), points.csv and every supported figure.

  Args:
    results: A results directory, a parent of several, or a list (shards).
    out_dir: Where to write; default: the results dir (or common parent).
    bootstrap: Resamples of examples for the CIs (0 = no intervals).
    seed: Bootstrap seed.

  Returns:
    The paths written.

  Raises:
    load.ResultsError: a malformed or conflicting results file (one line
      naming the file and field).
  """
  out = out_dir if out_dir is not None else default_out_dir(results)
  with _local_results(results) as local, _local_out(out) as (here, publish):
    report = build_report(local, bootstrap=bootstrap, seed=seed)
    return publish(write_outputs(report, here) + csd.write_csd_report(
        _roots(local), pathlib.Path(here)))


def _roots(results) -> list[pathlib.Path]:
  if isinstance(results, (str, os.PathLike)):
    return [pathlib.Path(results)]
  return [pathlib.Path(r) for r in results]


@contextlib.contextmanager
def _local_results(results) -> Iterator:
  """``results`` with each bucket directory replaced by a local copy."""
  if isinstance(results, (str, os.PathLike)):
    if not storage.is_remote(results):
      yield results
      return
    with storage.local_copy(results) as local:
      yield local
    return
  with contextlib.ExitStack() as stack:
    yield [stack.enter_context(storage.local_copy(r))
           if storage.is_remote(r) else r for r in results]


@contextlib.contextmanager
def _local_out(out_dir) -> Iterator[tuple]:
  """(a local directory to write into, publish(paths) -> the paths as
  written): ``out_dir`` itself, or for a bucket a temporary directory whose
  files ``publish`` uploads to it."""
  if not storage.is_remote(out_dir):
    yield out_dir, lambda paths: paths
    return
  with tempfile.TemporaryDirectory(prefix="harness-report-") as here:

    def publish(paths: list[str]) -> list[str]:
      written = storage.upload(here, os.fspath(out_dir))
      return [written.get(p, p) for p in paths]

    yield here, publish


def write_outputs(report: Report, out_dir: "str | os.PathLike") -> list[str]:
  """Writes a built :class:`Report`'s tables and figures into ``out_dir``."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = _write_tables(report, out)
  for stem, plot in FIGURES.items():
    fig = plot(report.cells)
    if fig is not None:
      paths.extend(save_figure(fig, out, stem))
  return paths


def write_and_print(results, out_dir=None, *,
                    bootstrap: int = bootstrap_lib.DEFAULT_RESAMPLES,
                    seed: int = 0, stream: TextIO | None = None,
                    allow_unisolated_mbpp: bool = False,
                    gamma: int | None = None) -> list[str]:
  """:func:`write_report`, then prints Table 2 and the paths written.

  For ``python -m harness report`` and ``make reproduce-table2``
  (``gamma``: the report of that block size only, ``report --gamma``).
  """
  stream = stream or sys.stdout
  out = out_dir if out_dir is not None else default_out_dir(results)
  with _local_results(results) as local, _local_out(out) as (here, publish):
    report = build_report(local, bootstrap=bootstrap, seed=seed,
                          allow_unisolated_mbpp=allow_unisolated_mbpp,
                          gamma=gamma)
    paths = write_outputs(report, here)
    paths += csd.write_csd_report(_roots(local), pathlib.Path(here))
    paths = publish(paths)
  print(render.format_table2_text(report.table, report.notes()), file=stream)
  print("Wrote:", *paths, sep="\n  ", file=stream)
  return paths
