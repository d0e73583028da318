"""The ratios of the report, from counters and measured costs (pure).

Notation (docs/bench.md): per-token times are a pass's wall time divided by
the tokens it generated; t_q, t_p(K) are isolated per-call costs
(``benchmarks.costs``); α̂ = drafts_accepted / drafts_evaluated.
"""

from __future__ import annotations

import dataclasses


def predicted_speedup(alpha: float, gamma: int, c: float) -> float:
  """S(α, γ, c) = (1 - α^(γ+1)) / ((1 - α)(γc + 1)); α = 1: (γ+1)/(γc+1)."""
  if alpha >= 1.0:
    tokens = gamma + 1.0
  else:
    tokens = (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)
  return tokens / (gamma * c + 1.0)


def acceptance_rate(stats: dict[str, int]) -> float:
  """α̂: the MLE of an i.i.d. per-position acceptance probability."""
  return stats["drafts_accepted"] / max(stats["drafts_evaluated"], 1)


@dataclasses.dataclass(frozen=True)
class Costs:
  """Isolated per-call costs (seconds) at one buffer size.

  Attributes:
    drafter_step: t_q, drafter ``score`` of 1 token + logits + sample.
    drafter_first: drafter's 2-token first call of an iteration.
    verifier_step: t_p(1), verifier ``score`` of 1 token + logits + sample.
    verifier_block: t_p(γ+1), verifier ``score`` of γ+1 tokens + logits.
    drafter_prefill: drafter ``prefill`` (encoder + cross keys/values).
    verifier_prefill: verifier ``prefill``.
  """
  drafter_step: float
  drafter_first: float
  verifier_step: float
  verifier_block: float
  drafter_prefill: float
  verifier_prefill: float

  @property
  def cost_ratio(self) -> float:
    """ĉ = t_q / t_p(1)."""
    return self.drafter_step / self.verifier_step


def ar_model_seconds(stats: dict[str, int], num_prompts: int, step: float,
                     prefill: float) -> float:
  """What an autoregressive pass's model calls cost in isolation."""
  steps = stats.get("verifier_calls", 0) + stats.get("drafter_steps", 0)
  return num_prompts * prefill + steps * step


def spec_model_seconds(stats: dict[str, int], num_prompts: int, gamma: int,
                       costs: Costs) -> float:
  """Exact cost model of a speculative pass from its counters.

  Per iteration: the drafter's 2-token first call, γ - 1 one-token drafter
  steps and one verifier call on γ + 1 positions; plus the bonus drafter
  steps (drafter_steps - γ·iterations) and one prefill of each model per
  prompt. What remains of the wall time is the loop's own work: the target
  rule, GenSpecSample, emitting, counters, loop control.
  """
  iterations = stats["iterations"]
  bonus = stats["drafter_steps"] - gamma * iterations
  return (num_prompts * (costs.drafter_prefill + costs.verifier_prefill)
          + iterations * (costs.drafter_first
                          + (gamma - 1) * costs.drafter_step
                          + costs.verifier_block)
          + bonus * costs.drafter_step)


@dataclasses.dataclass(frozen=True)
class Efficiency:
  """Measured vs predicted speed-up of one (method, γ).

  Attributes:
    measured_speedup: per-token time of AR(verifier) / that of the method.
    alpha_hat: α̂ of the run.
    cost_ratio: ĉ = t_q / t_p(1).
    predicted_formula: S(α̂, γ, ĉ).
    efficiency: measured_speedup / predicted_formula.
    predicted_exact: the same speed-up from the exact cost model (isolated
      call costs × the runs' own counters, prefills included).
    efficiency_exact: measured_speedup / predicted_exact (= AR loop overhead
      / speculative loop overhead).
    tokens_per_iteration: measured; the formula's i.i.d. value is
      (1 - α̂^(γ+1)) / (1 - α̂).
    verifier_block_ratio: t_p(γ+1) / t_p(1) (the formula assumes 1).
    drafter_first_ratio: 2-token first call / t_q (the formula assumes 1).
  """
  measured_speedup: float
  alpha_hat: float
  cost_ratio: float
  predicted_formula: float
  efficiency: float
  predicted_exact: float
  efficiency_exact: float
  tokens_per_iteration: float
  verifier_block_ratio: float
  drafter_first_ratio: float


def efficiency(spec_stats: dict[str, int], spec_seconds: float,
               ar_stats: dict[str, int], ar_seconds: float, gamma: int,
               num_prompts: int, costs: Costs, ar_costs: Costs) -> Efficiency:
  """Compares one speculative pass with the AR(verifier) pass."""
  per_token_ar = ar_seconds / ar_stats["num_tokens"]
  per_token_spec = spec_seconds / spec_stats["num_tokens"]
  measured = per_token_ar / per_token_spec
  alpha = acceptance_rate(spec_stats)
  formula = predicted_speedup(alpha, gamma, costs.cost_ratio)
  exact_ar = ar_model_seconds(ar_stats, num_prompts, ar_costs.verifier_step,
                              ar_costs.verifier_prefill)
  exact_spec = spec_model_seconds(spec_stats, num_prompts, gamma, costs)
  exact = ((exact_ar / ar_stats["num_tokens"])
           / (exact_spec / spec_stats["num_tokens"]))
  return Efficiency(
      measured_speedup=measured, alpha_hat=alpha,
      cost_ratio=costs.cost_ratio, predicted_formula=formula,
      efficiency=measured / formula, predicted_exact=exact,
      efficiency_exact=measured / exact,
      tokens_per_iteration=(spec_stats["num_tokens"]
                            / max(spec_stats["iterations"], 1)),
      verifier_block_ratio=costs.verifier_block / costs.verifier_step,
      drafter_first_ratio=costs.drafter_first / costs.drafter_step)
