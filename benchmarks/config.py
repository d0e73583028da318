"""Configuration of one benchmark run."""

from __future__ import annotations

import dataclasses

# The committed default pair (trained on Multi30k by harness/training).
DRAFTER_CHECKPOINT = "checkpoints/multi30k_t5/small"
VERIFIER_CHECKPOINT = "checkpoints/multi30k_t5/large"
# The speculative methods whose efficiency is measured.
SPEC_METHODS = ("spec_decode", "spec_cascade_token")
# Lenience of the token cascade in the efficiency runs (α ∈ [0, 1]).
TOKEN_CASCADE_ALPHA = 0.3
# The α grid of the compile-count sweep.
SWEEP_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """What one benchmark run measures, and how long it takes.

  Attributes:
    drafter_dir: HF-format drafter checkpoint directory.
    verifier_dir: HF-format verifier checkpoint directory.
    task: task whose test sentences are the prompts.
    num_prompts: number of prompts (sampled with seed 0).
    max_decode_len: generation limit of every run (ours and HF).
    gammas: block sizes γ of the efficiency runs.
    hf_gamma: γ of the assisted-generation comparison.
    repeats: timed repetitions of every measurement (the best is reported).
    step_calls: calls per isolated-step measurement (fori_loop length).
    hf: run the Hugging Face side-by-side.
    threads: XLA:CPU threads of our side (set before JAX starts).
    hf_threads: torch intra-op threads (equal to `threads` from the CLI).
    hf_only: only the Hugging Face comparison (hf_threads<N>.json).
    hf_repeats: timed repetitions of each HF pass.
    rss_gin_file: experiment whose reduced run gives the peak RSS (None or
      missing: skipped).
    rss_overrides: ``--gin.`` overrides that make that run small.
    out_dir: where bench.json and bench.md are written.
  """
  drafter_dir: str = DRAFTER_CHECKPOINT
  verifier_dir: str = VERIFIER_CHECKPOINT
  task: str = "multi30k_ende"
  num_prompts: int = 32
  max_decode_len: int = 64
  gammas: tuple[int, ...] = (3, 5, 7)
  hf_gamma: int = 5
  repeats: int = 5
  step_calls: int = 200
  hf: bool = True
  threads: int = 1
  hf_threads: int = 1
  hf_only: bool = False
  hf_repeats: int = 2
  rss_gin_file: str | None = "experiments/default.gin"
  rss_overrides: tuple[str, ...] = (
      "multi30k_ende/TaskRun.num_examples=8", "NUM_LATENCY_EXAMPLES=4",
      "NUM_TRIALS=1", "CALIBRATION_CALLS=5")
  out_dir: str = "results/bench"
