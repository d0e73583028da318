"""One fixed visual identity per decoding method, shared by every figure.

Each method gets a colour, a marker and the paper's label, so a method looks
the same in the main trade-off curves and in every appendix figure. Methods
the map does not know get a grey style labelled with their registry name.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Style:
  """How one method is drawn.

  Attributes:
    label: Label in legends and tables (the paper's name).
    color: Matplotlib colour.
    marker: Matplotlib marker.
    linestyle: Matplotlib line style.
    filled: Whether markers are filled (hollow otherwise).
  """
  label: str
  color: str
  marker: str
  linestyle: str = "-"
  filled: bool = True


# The paper's four proposed methods use saturated colours, baselines the rest
# of the tab10/tab20 palette; markers are all distinct.
STYLES: dict[str, Style] = {
    "seq_cascade_chow": Style("SeqCascade [Chow]", "#7f7f7f", "v"),
    "token_cascade_chow": Style("TokenCascade [Chow]", "#8c564b", "^"),
    "spec_decode_lossy": Style("SpecDecode [Lossy]", "#1f77b4", "o"),
    "bild_star": Style("BiLD*", "#9467bd", "D"),
    "bild": Style("BiLD", "#c5b0d5", "d", "--"),
    "spec_cascade_chow": Style("SpecCascade [Chow]", "#ff7f0e", "<"),
    "spec_cascade_diff": Style("SpecCascade [Diff]", "#2ca02c", ">"),
    "spec_cascade_opt": Style("SpecCascade [OPT]", "#17becf", "p"),
    "spec_cascade_token": Style("SpecCascade [Token]", "#d62728", "*"),
    "spec_cascade_token_v1": Style("TokenV1", "#e377c2", "h"),
    "spec_cascade_token_v2": Style("TokenV2", "#bcbd22", "H"),
    "spec_decode": Style("SpecDecode", "#393b79", "X"),
    "oracle_cascade_diff": Style("Oracle [Diff]", "#637939", "P"),
    "autoregressive": Style("Autoregressive", "#000000", "."),
    "cs_drafting": Style("CS Drafting", "#843c39", "8"),
    "cs_drafting_vertical": Style("CS Drafting (vertical)", "#ad494a", "1"),
    "cs_drafting_horizontal": Style("CS Drafting (horizontal)", "#e7969c",
                                    "2"),
}
# Small-only and large-only reference points.
# (The star is SpecCascade [Token]'s, so the references use squares.)
SMALL_ONLY = Style("Small only", "#000000", "s", "none", filled=False)
LARGE_ONLY = Style("Large only", "#000000", "s", "none")
UNKNOWN_COLOR = "#aaaaaa"
UNKNOWN_MARKER = "x"

# Table 2 rows, in the paper's order: four baselines, then the paper's four.
TABLE2_BASELINES = ("seq_cascade_chow", "token_cascade_chow",
                    "spec_decode_lossy", "bild_star")
TABLE2_PROPOSED = ("spec_cascade_chow", "spec_cascade_diff",
                   "spec_cascade_opt", "spec_cascade_token")
TABLE2_METHODS = TABLE2_BASELINES + TABLE2_PROPOSED
# The motivating figure (quality vs deferral rate).
DEFERRAL_METHODS = ("token_cascade_chow", "oracle_cascade_diff",
                    "spec_decode")
# The deferral-rule ablation (TokenV3 is spec_cascade_token).
RULE_ABLATION_METHODS = ("spec_cascade_chow", "spec_cascade_diff",
                         "spec_cascade_opt", "spec_cascade_token_v1",
                         "spec_cascade_token_v2", "spec_cascade_token")
BILD_METHODS = ("bild", "bild_star")
# Methods that take several drafters (CS Drafting; ``MethodSpec.multi_drafter``
# in the decoding registry, which imports JAX: the report reads this table,
# and a test checks that it lists exactly the registry's multi-drafter
# methods).
MULTI_DRAFTER_METHODS = ("cs_drafting", "cs_drafting_vertical",
                         "cs_drafting_horizontal")


def style_for(method: str) -> Style:
  """Returns the method's style, or a grey one labelled with its name."""
  return STYLES.get(method, Style(method, UNKNOWN_COLOR, UNKNOWN_MARKER, ":"))


def label_for(method: str) -> str:
  """Returns the method's label (the paper's name when known)."""
  return style_for(method).label


def method_order(methods) -> list[str]:
  """Sorts methods: Table 2 order first, then the style map, then by name."""
  known = list(TABLE2_METHODS) + [m for m in STYLES if m not in TABLE2_METHODS]
  rank = {m: i for i, m in enumerate(known)}
  return sorted(set(methods), key=lambda m: (rank.get(m, len(rank)), m))
