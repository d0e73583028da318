"""Reports from results files alone: Table 2 and the trade-off figures.

Reads only ``results/**`` (manifest, per-cell summaries, per-example
records); never runs a model. Entry points:

* :func:`write_report` — writes ``table2.{md,csv,tex}``, ``points.csv``,
  ``curves.{png,pdf}`` and the appendix figures the results support.
* :func:`write_and_print` — the same, then prints Table 2 and the paths
  (for ``python -m harness report`` / ``make reproduce-table2``).
* :func:`build_report` — the same data in memory (cells, Table 2).
* :func:`format_table2_text` — Table 2 for a terminal.
* :func:`load_results` — the cells and examples DataFrames.

See ``docs/reports.md``.
"""

from harness.report.load import ResultsError, Role, load_results
from harness.report.operating_points import (Pick, best_within_latency,
                                             extract_entries, fastest_matching)
from harness.report.render import (format_table2_latex,
                                   format_table2_markdown, format_table2_text)
from harness.report.report import (Report, build_report, write_and_print,
                                   write_report)

__all__ = ["Pick", "Report", "ResultsError", "Role", "best_within_latency",
           "build_report", "extract_entries", "fastest_matching",
           "format_table2_latex", "format_table2_markdown",
           "format_table2_text", "load_results", "write_and_print",
           "write_report"]
