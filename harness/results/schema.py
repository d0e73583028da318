"""The results schema: what the runner writes and reports read.

Layout of one experiment's results (``results/<experiment>/``)::

  manifest.json            # ``Manifest``: name, gin text, provenance, cells,
                           #   calibration (sharded runs write
                           #   ``manifests/shard-<i>-of-<N>.json`` instead;
                           #   ``python -m harness report`` merges them).
  cells/<cell_id>.jsonl    # ``ExampleRecord`` per line, one per example.
  cells/<cell_id>.json     # ``CellSummary``, written atomically *after* the
                           #   .jsonl is complete: its existence = cell done.

Every file is written atomically (temporary file in the same directory,
fsync, ``os.replace``). JSON numbers follow Python's ``json`` module: α of the
OPT rule may be ``Infinity`` / ``-Infinity``; undefined values are ``null``
(never NaN).

Definitions (all counters summed over the examples of a cell, trial 1; the
counters themselves are documented in ``harness.decoding.STAT_DOCS``):

* ``acceptance_rate`` = drafts_accepted / drafts_evaluated. Null when no draft
  reached an accept/reject test (autoregressive, sequential cascades).
* ``mean_accepted_length`` = num_tokens / verifier_calls: tokens emitted per
  verifier call (accepted drafts plus the correction or bonus token; the "τ"
  of the speculative decoding literature). Null when drafts_evaluated = 0.
* ``acceptance_per_position[j]`` = accepted_per_position[j] /
  evaluated_per_position[j] for draft position j < γ (null entries where
  nothing was evaluated; the list is null for methods without positions).
* ``rejection_rate`` = rejections / verifier_calls: the fraction of
  verification rounds that ended in a rejection. Null when
  drafts_evaluated = 0.
* ``deferral_rate`` = deferrals / num_tokens: positions deferred to the
  verifier per generated token (the x axis of the paper's motivating
  figure). Null for autoregressive cells.
* ``predicted_speedup`` (Leviathan et al. 2023, Thm 3.8):
  (1 − a^{γ+1}) / ((1 − a)(γ c + 1)) with a = acceptance_rate and
  c = c_q / c_p(γ + 1) the calibrated drafter-to-verifier cost ratio
  (a = 1 uses the limit (γ + 1) / (γ c + 1)). Null without an acceptance rate.
* ``measured_speedup`` = 1 / relative_latency.

Latency (the paper's timing protocol,
docs/algorithms.md#experimental-protocol): batch size 1, one example per
timed call, ``jax.block_until_ready`` around it, compilation excluded by a
warm-up call per compiled program (its time is ``compile_s``). Trial 1
times every example; trials 2…num_trials re-run the first
``num_latency_examples`` examples with the same per-example PRNG key
(outputs asserted identical).
``latency.mean_s`` is the mean over the timed examples of their mean over
trials. Under the ``paired`` protocol each timed decode of a cell is
accompanied by a decode of the verifier-only reference on the same example
and key, right before or after it (the order alternates per example and
trial), stored in the record's ``ref_times_s``; ``relative_latency`` is the
geometric mean over timed examples of the per-example ratio. Under the
``unpaired`` protocol (files written before the paired one) it is
``latency.mean_s`` divided by the same quantity of the ``reference_large``
cell with the same task, pair, T, top-P and max_decode_len.
``harness.results.latency`` holds the one definition.

Cost model (docs/algorithms.md#cost-model): modeled time of an example =
drafter_steps · c_q + verifier_calls · c_p(w̄), with w̄ = verifier_positions /
verifier_calls the mean call width and c_p linearly interpolated between the
calibrated widths (clamped at the ends). This ignores prefill and the
per-call width variation within an example; it is hardware-independent
given (c_q, c_p), which are measured (median of timed jitted ``score`` calls
after warm-up) just before the cell they price, at the task's prompt length
(paired protocol), or once at the start of the run on an 8-token prompt
(unpaired), and recorded in the summary. The paired protocol also prices the
reference decodes with the cell's constants (``ref_modeled_s``), so the
cost-model ratio uses one calibration.

Integrity: each summary records its ``.jsonl``'s line count and sha256
(``records``); resume and merge verify them (``store.check_cell``).

"""

from __future__ import annotations

import enum
from typing import Any, NotRequired, Optional, TypedDict

SCHEMA_VERSION = 1

MANIFEST_FILE = "manifest.json"
SHARD_MANIFEST_DIR = "manifests"
CELLS_DIR = "cells"
RECORDS_SUFFIX = ".jsonl"
SUMMARY_SUFFIX = ".json"


class Role(enum.StrEnum):
  """Why a cell is in the sweep."""
  METHOD = "method"  # A method at one (α, γ, T, top-P).
  REFERENCE_LARGE = "reference_large"  # Verifier-only autoregressive.
  REFERENCE_SMALL = "reference_small"  # Drafter-only autoregressive.


class CellConfig(TypedDict):
  """Everything that determines a cell's outputs (hashed into its id).

  Attributes:
    task: task name (``harness.tasks.TASKS``).
    method: decoding method (``harness.decoding.METHODS``).
    alpha: lenience α (null for reference cells).
    gamma: block size γ (null for reference cells).
    temperature: sampling temperature T (0 = greedy).
    top_p: nucleus mass P (1 = no truncation).
    max_decode_len: generation limit in tokens.
    method_options: static method options, defaults filled in.
    drafter: drafter checkpoint path or random size name.
    verifier: verifier checkpoint path or random size name.
    pair: model pair name (gin/models/<pair>.gin).
    seed: example sampling and per-example PRNG seed.
    num_examples: examples decoded (quality sample).
    num_latency_examples: the first this-many examples are timed in every
      trial (the latency subset).
    num_trials: timing trials over the latency subset.
    role: a ``Role`` value.
    prompt_bucket: the task's fixed prompt length (present only when the
      task run sets one; latency depends on it, outputs do not).
  """
  task: str
  method: str
  alpha: Optional[float]
  gamma: Optional[int]
  temperature: float
  top_p: float
  max_decode_len: int
  method_options: dict[str, Any]
  drafter: str
  verifier: str
  pair: str
  seed: int
  num_examples: int
  num_latency_examples: int
  num_trials: int
  role: str
  prompt_bucket: NotRequired[int]


class ExampleRecord(TypedDict):
  """One line of ``cells/<cell_id>.jsonl``.

  Attributes:
    cell_id: the cell.
    example_id: the dataset's example id.
    index: position in the sampled example list (the PRNG key is
      ``fold_in(key(seed), index)``).
    prompt_sha256: sha256 of the input text (UTF-8), few-shot prompt included.
    target_sha256: sha256 of the references joined by "\\n".
    num_prompt_tokens: prompt length in tokens after truncation.
    prediction: decoded, post-processed output text.
    targets: reference strings (for bootstrap CIs of corpus metrics).
    extra: the task's example extra (e.g. MBPP tests); omitted when larger
      than ``MAX_EXTRA_BYTES`` serialized.
    tokens: generated ids (EOS included, no padding).
    num_tokens: len(tokens).
    times_s: wall time in seconds per trial (length num_trials for the latency
      subset, 1 otherwise).
    stats: decoding counters (``harness.decoding.STAT_DOCS``); per-position
      counters are lists of length γ.
    modeled_s: cost-model time of this example (module docstring).
    ref_times_s: paired protocol, timed examples only: the reference's wall
      time per trial, measured beside ``times_s[k]``.
    ref_first: paired protocol: per trial, whether the reference ran first.
    ref_modeled_s: paired protocol: the reference decode's cost-model time
      under this cell's calibration.
  """
  cell_id: str
  example_id: str
  index: int
  prompt_sha256: str
  target_sha256: str
  num_prompt_tokens: int
  prediction: str
  targets: list[str]
  extra: dict[str, Any]
  tokens: list[int]
  num_tokens: int
  times_s: list[float]
  stats: dict[str, Any]
  modeled_s: float
  ref_times_s: NotRequired[list[float]]
  ref_first: NotRequired[list[bool]]
  ref_modeled_s: NotRequired[float]


MAX_EXTRA_BYTES = 65536


class Latency(TypedDict):
  """Measured wall-clock latency of a cell.

  Attributes:
    mean_s: mean over the latency subset of each example's mean over trials.
    per_trial_mean_s: [num_trials] mean over the latency subset per trial.
    compile_s: wall time of the warm-up calls (compile + one execution; about
      one execution when an earlier cell already compiled the program).
    num_timed_examples: size of the latency subset.
    protocol: "paired" or "unpaired" (absent in files written before the
      paired protocol: unpaired).
    reference_mean_s: paired: mean over the latency subset of the
      reference's times measured in this cell's window (else null).
    reference_first_s: paired: the reference's mean time over the first
      trial's first half of the latency subset (drift, with
      ``reference_last_s``; else null).
    reference_last_s: paired: the same over the last trial's second half.
    reference_warmup_s: paired: wall time of the reference's warm-up calls.
  """
  mean_s: float
  per_trial_mean_s: list[float]
  compile_s: float
  num_timed_examples: int
  protocol: NotRequired[str]
  reference_mean_s: NotRequired[Optional[float]]
  reference_first_s: NotRequired[Optional[float]]
  reference_last_s: NotRequired[Optional[float]]
  reference_warmup_s: NotRequired[Optional[float]]


class CostModel(TypedDict):
  """Hardware-independent latency (module docstring).

  Attributes:
    c_q: seconds per drafter call on one token.
    c_p: seconds per verifier call by width, keys are widths as strings.
    latency: mean modeled seconds over the latency subset.
    relative_latency: latency / the reference_large cell's (null until known).
    prompt_len: the prompt length the constants were measured at (absent:
      the 8-token calibration prompt of the unpaired protocol).
  """
  c_q: float
  c_p: dict[str, float]
  latency: float
  relative_latency: Optional[float]
  prompt_len: NotRequired[int]


class CellStats(TypedDict):
  """Acceptance and deferral statistics (definitions: module docstring).

  Attributes:
    num_tokens: total tokens emitted over all examples.
    mean_num_tokens: num_tokens / num_examples.
    acceptance_rate: drafts_accepted / drafts_evaluated, or null.
    mean_accepted_length: num_tokens / verifier_calls, or null.
    acceptance_per_position: [γ] per-position rates, or null.
    rejection_rate: rejections / verifier_calls, or null.
    deferral_rate: deferrals / num_tokens, or null.
    predicted_speedup: Leviathan's formula, or null.
    measured_speedup: 1 / relative_latency, or null.
    drafter_support_mass: the verifier's mean T = 1 mass on the drafter's
      support at the evaluated drafts (p(S) of a subset-vocabulary drafter;
      ~1 for a full one), or null (no such counter: not the speculative
      loop, or a file written before it existed).
    totals: every scalar counter summed over examples; per-position counters
      summed element-wise.
  """
  num_tokens: int
  mean_num_tokens: float
  acceptance_rate: Optional[float]
  mean_accepted_length: Optional[float]
  acceptance_per_position: Optional[list[Optional[float]]]
  rejection_rate: Optional[float]
  deferral_rate: Optional[float]
  predicted_speedup: Optional[float]
  measured_speedup: Optional[float]
  drafter_support_mass: NotRequired[Optional[float]]
  totals: dict[str, Any]


class Provenance(TypedDict):
  """Where and how a file was produced.

  Attributes:
    git_commit: HEAD of the harness checkout (null outside git).
    git_dirty: uncommitted changes in the checkout.
    versions: package versions (jax, jaxlib, flax, numpy, sacrebleu,
      rouge_score, seqio, gin-config, harness), null when not installed.
    device: {"platform", "device_kind", "num_devices"}.
    seeds: {"seed": experiment seed, "model_seed": random-model seed}.
    gin_config: the operative gin config text.
    created: ISO-8601 UTC time.
    task_version: ``harness.tasks.TASK_VERSION``.
    schema_version: ``SCHEMA_VERSION``.
    host: in a cell summary, the host's state around the cell:
      ``{"before": HostState, "after": HostState}`` (``provenance.host_state``:
      load average, CPU frequency where the OS exposes it).
    sandbox: the MBPP sandbox launcher of this host: {"launcher",
      "isolation", "python"} (``harness.metrics.sandbox.provenance``).
  """
  git_commit: Optional[str]
  git_dirty: Optional[bool]
  versions: dict[str, Optional[str]]
  device: dict[str, Any]
  seeds: dict[str, int]
  gin_config: str
  created: str
  task_version: int
  schema_version: int
  host: NotRequired[dict[str, Any]]
  sandbox: NotRequired[dict[str, str]]


class CellSummary(TypedDict):
  """``cells/<cell_id>.json``: one finished cell.

  Attributes:
    cell_id: the cell (file name without suffix).
    experiment: experiment name.
    cell: the ``CellConfig``.
    quality: {metric: value on a 0–100 scale, or null}.
    headline_metric: the task's first metric (the paper's number).
    quality_note: null, or why quality is null (e.g. no references offline).
    latency: measured ``Latency``.
    relative_latency: latency.mean_s / reference_large's, or null when that
      reference is not in this results directory yet (reports then compute
      it from the per-example files).
    cost_model: the ``CostModel`` numbers.
    stats: ``CellStats``.
    provenance: ``Provenance`` (with ``host``).
    records: {"count": lines, "sha256": hex digest} of ``cells/<id>.jsonl``
      as written (absent in older files, which are then not verified).
  """
  cell_id: str
  experiment: str
  cell: CellConfig
  quality: dict[str, Optional[float]]
  headline_metric: str
  quality_note: Optional[str]
  latency: Latency
  relative_latency: Optional[float]
  cost_model: CostModel
  stats: CellStats
  provenance: Provenance
  records: NotRequired[dict[str, Any]]


class Calibration(TypedDict):
  """Cost-model constants measured at the start of a run.

  Attributes:
    c_q: seconds per drafter ``score`` call on 1 token (median).
    c_p: {width: seconds per verifier ``score`` call on that many tokens}.
    num_calls: timed calls per measurement (after warm-up).
    pair: the model pair.
    prompt_len: prompt length of the measurement (absent: 8 tokens).
  """
  c_q: float
  c_p: dict[str, float]
  num_calls: int
  pair: str
  prompt_len: NotRequired[int]


class Manifest(TypedDict):
  """``manifest.json``: the experiment as a whole.

  Attributes:
    experiment: name.
    schema_version: ``SCHEMA_VERSION``.
    cell_ids: every cell of the sweep, in run order (reference cells first
      within each group), also after a run restricted by ``--only``; in a
      shard manifest, the shard's cells only.
    sweep_cell_ids: in a shard manifest, every cell of the sweep in run
      order (the merge's order; shards deal units of single cells).
    shard: {"index": i, "count": N} (0, 1 when unsharded).
    calibration: ``Calibration`` of the last pair calibrated in the latest
      session (each summary carries the constants it was modeled with).
    calibrations: {pair name: ``Calibration``}, each from the latest
      session that calibrated that pair.
    provenance: ``Provenance``.
    latency_protocol: "paired" or "unpaired" (absent: unpaired).
    drift: {group label: {"start_s", "end_s", "ratio"}}: the reference's mean
      time at the start of each (task, T, top-P) group (its own cell) and at
      its end (the last cell's paired reference times); paired only.
    compile: {"programs", "seconds", "source"}: compiled programs and total
      compile seconds of the latest session; source says whether they come
      from ``harness.decoding.compile_stats()`` or from the cells' warm-ups.
  """
  experiment: str
  schema_version: int
  cell_ids: list[str]
  sweep_cell_ids: NotRequired[list[str]]
  shard: dict[str, int]
  calibration: Optional[Calibration]
  calibrations: dict[str, Calibration]
  provenance: Provenance
  latency_protocol: NotRequired[str]
  drift: NotRequired[dict[str, dict[str, Optional[float]]]]
  compile: NotRequired[dict[str, Any]]


def reference_key(cell: CellConfig) -> tuple:
  """The key a cell shares with its reference cells.

  Task, pair, T, top-P, length limit, examples (seed, sample sizes) and
  the prompt bucket (None when the task run sets none).
  """
  return (cell["task"], cell["pair"], cell["temperature"], cell["top_p"],
          cell["max_decode_len"], cell["seed"], cell["num_examples"],
          cell["num_latency_examples"], cell.get("prompt_bucket"))
