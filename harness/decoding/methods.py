"""Registers every decoding method of both papers under one name each.

Families (one compiled program each, see ``program``): ``speculative``
(every rule-based speculative method, rule chosen by a traced index),
``autoregressive`` (both models), ``seq_cascade_chow`` (all confidences).
"""

from __future__ import annotations

from typing import Any

from harness.decoding import autoregressive
from harness.decoding import bild
from harness.decoding import cascade
from harness.decoding import csd
from harness.decoding import speculative
from harness.decoding import targets
from harness.decoding.registry import MethodSpec, check_int, register_method

SPECULATIVE = "speculative"

_SPECULATIVE = (
    # name, rule, description
    ("spec_decode", "verifier",
     "speculative sampling (Alg. 1), lossless; π = p"),
    ("spec_cascade_chow", "chow",
     "speculative cascade (Alg. 5), Chow rule: defer iff max q < 1 - α"),
    ("spec_cascade_diff", "diff",
     "speculative cascade (Alg. 5), Diff rule: defer iff max q < max p - α"),
    ("spec_cascade_opt", "opt",
     "speculative cascade (Alg. 5), OPT rule: max q < max p - α·D_TV(p, q)"),
    ("spec_cascade_token", "token_v3",
     "token-specific speculative cascade (Alg. 6), TokenV3 ('Token')"),
    ("spec_cascade_token_v1", "token_v1",
     "token-specific speculative cascade, TokenV1: q(v) < max p - α"),
    ("spec_cascade_token_v2", "token_v2",
     "token-specific speculative cascade, TokenV2: p(v) < max p - α"),
)

for _name, _rule, _doc in _SPECULATIVE:
  register_method(MethodSpec(
      name=_name, rule=_rule, description=_doc, fn=speculative.decode,
      family=SPECULATIVE, static_options=(),
      variant=lambda _, rule=_rule: speculative.rule_index(rule)))

register_method(MethodSpec(
    name="autoregressive", rule=None, description=(
        "one model, token by token (drafter-only / verifier-only reference)"),
    fn=autoregressive.decode, defaults=(("model", "verifier"),),
    option_choices=(("model", autoregressive.MODELS),),
    static_options=(), uses_gamma=False,
    variant=lambda o: autoregressive.MODELS.index(o["model"])))

_LOSSY_RULES = {"one": "lossy_one", "normalize": "lossy_normalize"}

register_method(MethodSpec(
    name="spec_decode_lossy", rule="lossy_one", fn=speculative.decode,
    defaults=(("beta", "one"),),
    option_choices=(("beta", tuple(_LOSSY_RULES)),),
    family=SPECULATIVE, static_options=(),
    variant=lambda o: speculative.rule_index(_LOSSY_RULES[o["beta"]]),
    description=("lossy speculative decoding: accept w.p. "
                 "min(1, p/((1-α)q)); beta=one|normalize")))

register_method(MethodSpec(
    name="bild_star", rule="bild_star", fn=speculative.decode,
    defaults=(("discrepancy", targets.Discrepancy.PROB_GAP.value),),
    option_choices=(("discrepancy", targets.DISCREPANCIES),),
    family=SPECULATIVE, static_options=(),
    variant=lambda o: speculative.rule_index(
        "bild_star", discrepancy=o["discrepancy"]),
    description="BiLD* (fixed γ): π = q if D(q, p) ≤ α else p"))


def _check_max_small_run(options: dict[str, Any], drafter) -> None:
  del drafter
  check_int("max_small_run", options["max_small_run"])


def _check_bild(options: dict[str, Any], drafter) -> None:
  _check_max_small_run(options, drafter)
  if not options["rollback_threshold"] >= 0:
    raise ValueError(f"rollback_threshold={options['rollback_threshold']!r} "
                     "must be ≥ 0")


register_method(MethodSpec(
    name="token_cascade_chow", rule="chow", fn=cascade.token_cascade,
    defaults=(("max_small_run", cascade.DEFAULT_MAX_SMALL_RUN),),
    check=_check_max_small_run, uses_gamma=False,
    description=("sequential token-level cascade (Alg. 2), Chow rule; one "
                 "verifier call per deferral")))

register_method(MethodSpec(
    name="oracle_cascade_diff", rule="diff", fn=cascade.oracle_cascade,
    uses_gamma=False,
    description=("token-level cascade with the oracle Diff rule (Alg. 3); "
                 "only deferrals are charged")))

register_method(MethodSpec(
    name="seq_cascade_chow", rule="chow", fn=cascade.seq_cascade,
    defaults=(("confidence", cascade.SeqConfidence.MEAN_MAX_PROB.value),),
    option_choices=(("confidence", cascade.CONFIDENCES),),
    static_options=(), uses_gamma=False,
    variant=lambda o: cascade.CONFIDENCES.index(o["confidence"]),
    description=("sequence-level cascade: drafter output unless its "
                 "confidence < 1 - α, else the verifier's")))

register_method(MethodSpec(
    name="bild", rule=None, alpha_range=(0.0, 1.0), fn=bild.bild,
    defaults=(("max_small_run", cascade.DEFAULT_MAX_SMALL_RUN),
              ("rollback_threshold", bild.DEFAULT_ROLLBACK_THRESHOLD)),
    check=_check_bild, uses_gamma=False,
    description=("original BiLD: fallback when max q < α (dynamic window), "
                 "rollback when -log p(y) > rollback_threshold")))


def _csd_plan(options, drafter):
  neural, _ = csd.split_drafters(drafter)
  k_matrix = options["k_matrix"] or csd.default_k_matrix(len(neural),
                                                          options["mode"])
  return csd.Plan(k_matrix=k_matrix, mag_len=options["mag_len"]), neural


def _csd_check(options, drafter):
  neural, _ = csd.split_drafters(drafter)
  if not neural:
    raise ValueError("drafter: CS Drafting needs at least one neural drafter")
  if not isinstance(options["mag_len"], int) or options["mag_len"] < 1:
    raise ValueError(f"mag_len={options['mag_len']!r} must be an int ≥ 1")
  if options["k_matrix"] is not None:
    csd.check_k_matrix(options["k_matrix"], len(neural))


def _csd_scratch(gamma, options, drafter):
  del gamma
  return _csd_plan(options, drafter)[0].scratch


for _name, _mode, _doc in (
    ("cs_drafting", csd.Mode.FULL.value,
     "CS Drafting: vertical + horizontal cascades down to Max-Gram"),
    ("cs_drafting_vertical", csd.Mode.VERTICAL.value,
     "CS Drafting ablation: vertical cascade only"),
    ("cs_drafting_horizontal", csd.Mode.HORIZONTAL.value,
     "CS Drafting ablation: horizontal cascade only")):
  register_method(MethodSpec(
      name=_name, rule="lossy_one", fn=csd.decode, multi_drafter=True,
      defaults=(("mode", _mode), ("k_matrix", None),
                ("mag_len", csd.DEFAULT_MAG_LEN)),
      option_choices=(("mode", (_mode,)),), uses_gamma=False,
      scratch=_csd_scratch, check=_csd_check,
      description=_doc + "; α sets the lenience l = 1/(1-α) between drafters"))
