"""Renders the long Table 2 frame (:func:`table_builder.build_table2`) as text.

* :func:`format_table2_markdown` (and :func:`format_table2_text`, the same
  text for a terminal): one section per setting, all columns.
* :func:`format_table2_latex`: booktabs tables ready to paste into a paper,
  rows = methods (the paper's eight above a ``\\midrule``, others below),
  one column group per setting: (1) wall-clock with 95% CIs, (2) the
  cost-model variant, (3) the %-of-large-quality variants.
"""

from __future__ import annotations

import math
from typing import Callable

import pandas as pd

from harness.report import operating_points
from harness.report import table_builder

LATEX_EMPTY = "--"
WALL_TITLE = "wall-clock relative latency"
COST_TITLE = "cost-model relative latency"


def _finite(*values) -> bool:
  return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def fmt_speedup(value, low=math.nan, high=math.nan, *, latex=False) -> str:
  """'1.74×', with ' [1.61, 1.88]' when the CI is known; '–' for none."""
  if not _finite(value):
    return LATEX_EMPTY if latex else table_builder.EMPTY
  times = r"$\times$" if latex else "×"
  text = f"{value:.{table_builder.SPEEDUP_DIGITS}f}{times}"
  return text + _fmt_ci(low, high, table_builder.SPEEDUP_DIGITS, latex)


def fmt_quality(value, low=math.nan, high=math.nan, *, latex=False) -> str:
  """'27.49', with ' [27.10, 27.90]' when the CI is known; '–' for none."""
  if not _finite(value):
    return LATEX_EMPTY if latex else table_builder.EMPTY
  text = f"{value:.{table_builder.QUALITY_DIGITS}f}"
  return text + _fmt_ci(low, high, table_builder.QUALITY_DIGITS, latex)


def _fmt_ci(low, high, digits: int, latex: bool) -> str:
  if not _finite(low, high):
    return ""
  ci = f"[{low:.{digits}f}, {high:.{digits}f}]"
  return rf" {{\scriptsize {ci}}}" if latex else f" {ci}"


def _entry(row: pd.Series, key: str, *, latex=False, ci=True) -> str:
  """One formatted Table 2 entry (``key`` = a column prefix)."""
  best = key.endswith(operating_points.BEST_QUALITY)
  fmt = fmt_quality if best else fmt_speedup
  if not ci or f"{key}_low" not in row:
    return fmt(row[key], latex=latex)
  return fmt(row[key], row[f"{key}_low"], row[f"{key}_high"], latex=latex)


def setting_title(row: pd.Series) -> str:
  """'wmt — bleu (pair a->b, T=1, top-P=0.5, γ=5, max decode 80)'."""
  top_p = "none" if not _finite(row["top_p"]) else f"{row['top_p']:g}"
  gamma = "–" if not _finite(row["gamma"]) else f"{row['gamma']:g}"
  return (f"{row['task']} — {row['metric']} (pair {row['pair']}, "
          f"T={row['temperature']:g}, top-P={top_p}, γ={gamma}, "
          f"max decode {row['max_decode_len']:g})")


# Markdown columns: header -> (entry key, with CI).
MARKDOWN_COLUMNS = {
    "Speed-up at large quality (wall)": (table_builder.SPEEDUP_MAIN, True),
    "Best quality, rel. latency ≤ 1 (wall)": (
        operating_points.BEST_QUALITY, True),
    **{f"Speed-up at {f:.0%} (wall)": (operating_points.speedup_key(f), False)
       for f in table_builder.VARIANT_FRACTIONS},
    "Speed-up at large quality (cost model)": (
        "cost_" + table_builder.SPEEDUP_MAIN, False),
    "Best quality, rel. latency ≤ 1 (cost model)": (
        "cost_" + operating_points.BEST_QUALITY, False),
}


def _markdown_block(block: pd.DataFrame) -> str:
  first = block.iloc[0]
  large = fmt_quality(first["large_quality"], first["large_quality_low"],
                      first["large_quality_high"])
  lines = [f"### {setting_title(first)}", "",
           f"Large model: {large}; small model: "
           f"{fmt_quality(first['small_quality'])} at "
           f"relative latency {fmt_quality(first['small_relative_latency'])}.",
           ""]
  rows = []
  for group, part in block.groupby("group", sort=False):
    if group == table_builder.OTHER_GROUP:
      rows.append({"Method": "*other methods*"})
    for _, row in part.iterrows():
      rows.append({"Method": row["label"]} | {
          header: _entry(row, key, ci=ci)
          for header, (key, ci) in MARKDOWN_COLUMNS.items()})
  table = pd.DataFrame(rows).fillna("")
  lines.append(table.to_markdown(index=False, stralign="left"))
  return "\n".join(lines)


def format_table2_markdown(table: pd.DataFrame, notes=()) -> str:
  """Markdown: a preamble, one section per setting, then notes."""
  if table.empty:
    return "# Table 2\n\nNo method cells with references were found.\n"
  parts = ["# Table 2", "",
           "Speed-up = 1 / the smallest relative latency among α whose "
           "quality ≥ the large model's (or the stated % of it); '–' where "
           "no evaluated α reaches it. Best quality = the highest quality "
           "among α with relative latency ≤ 1. (wall) uses measured "
           "wall-clock relative latency, with 95% bootstrap intervals over "
           "examples; (cost model) uses the calibrated call-count cost "
           "model, reproducible on a noisy host.", ""]
  titles = [setting_title(row) for _, row in table.iterrows()]
  for _, block in table.groupby(titles, sort=False):
    parts.extend([_markdown_block(block), ""])
  if notes:
    parts.extend(["## Notes", ""] + [f"- {n}" for n in notes] + [""])
  return "\n".join(parts)


def format_table2_text(table: pd.DataFrame, notes=()) -> str:
  """The Markdown table, for printing to a terminal."""
  return format_table2_markdown(table, notes)


# ----------------------------------------------------------------------------
# LaTeX
# ----------------------------------------------------------------------------


def latex_escape(text: str) -> str:
  """Escapes LaTeX specials in labels and setting names."""
  for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                     ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"),
                     ("}", r"\}"), ("~", r"\textasciitilde{}"),
                     ("^", r"\^{}")):
    text = text.replace(char, repl)
  return text


def _column_labels(table: pd.DataFrame) -> dict[str, str]:
  """Setting title -> short LaTeX group label (task, plus what varies)."""
  titles = {setting_title(r): r for _, r in table.iterrows()}
  varying = [c for c in ("pair", "temperature", "top_p", "gamma",
                         "max_decode_len")
             if table[c].astype(str).nunique() > 1]
  labels = {}
  for title, row in titles.items():
    extra = ", ".join(f"{c}={row[c]:g}" if _finite(row[c]) else f"{c}={row[c]}"
                      for c in varying)
    labels[title] = latex_escape(row["task"] + (f" ({extra})" if extra else ""))
  return labels


def _wide(table: pd.DataFrame, columns: dict[str, Callable[[pd.Series], str]]
          ) -> pd.DataFrame:
  """Rows = method labels, columns = (setting label, column name)."""
  labels = _column_labels(table)
  cells: dict[tuple[str, str], dict[str, str]] = {}
  order: list[str] = []
  for _, row in table.iterrows():
    name = latex_escape(row["label"])
    if name not in order:
      order.append(name)
    group = labels[setting_title(row)]
    for column, fn in columns.items():
      cells.setdefault((group, column), {})[name] = fn(row)
  wide = pd.DataFrame(cells).reindex(order).fillna(LATEX_EMPTY)
  wide.columns = pd.MultiIndex.from_tuples(wide.columns)
  return wide


def _to_latex(wide: pd.DataFrame, first_other: str | None, caption: str,
              label: str) -> str:
  """booktabs LaTeX, with a ``\\midrule`` above the first 'other' method."""
  text = wide.to_latex(escape=False, multicolumn=True,
                       multicolumn_format="c", caption=caption, label=label,
                       position="t",
                       column_format="l" + "r" * wide.shape[1])
  if first_other is not None:
    text = text.replace(f"\n{first_other} &", f"\n\\midrule\n{first_other} &",
                        1)
  return text


def format_table2_latex(table: pd.DataFrame) -> str:
  """Three booktabs tables: wall-clock (with CIs), cost model, variants."""
  if table.empty:
    return "% Table 2: no method cells with references were found.\n"
  others = table[table["group"] == table_builder.OTHER_GROUP]["label"]
  first_other = latex_escape(others.iloc[0]) if not others.empty else None
  wall = {"Speed-up": lambda r: _entry(r, table_builder.SPEEDUP_MAIN,
                                       latex=True),
          "Best quality": lambda r: _entry(r, operating_points.BEST_QUALITY,
                                           latex=True)}
  cost = {"Speed-up": lambda r: _entry(r, "cost_" + table_builder.SPEEDUP_MAIN,
                                       latex=True),
          "Best quality": lambda r: _entry(
              r, "cost_" + operating_points.BEST_QUALITY, latex=True)}
  variants = {f"{f:.0%}".replace("%", r"\%"): (
      lambda r, f=f: _entry(r, operating_points.speedup_key(f), latex=True,
                            ci=False))
              for f in table_builder.VARIANT_FRACTIONS}
  return "\n".join([
      _to_latex(_wide(table, wall), first_other,
                "Latency reduction when matching the large model's quality "
                f"and best quality at relative latency $\\le 1$ ({WALL_TITLE}"
                "; 95\\% bootstrap intervals over examples).",
                "tab:table2-wall"),
      _to_latex(_wide(table, cost), first_other,
                "As above with the " + COST_TITLE + ".", "tab:table2-cost"),
      _to_latex(_wide(table, variants), first_other,
                "Latency reduction when matching 99/97/95/50\\% of the large "
                f"model's quality ({WALL_TITLE}).", "tab:table2-variants")])
