"""One cell, start to finish: the one home of a cell's execution.

:func:`open_session` loads a model pair (and, under the unpaired latency
protocol, calibrates its cost model once); :func:`run_cell` decodes, times,
scores and writes one cell into the session's results store. The runner
(``runner.py``, the local executor) and the Ray executor (``ray_worker.py``)
only decide which cells run where; they call these two functions.

Decoding and timing (``docs/timing.md``):

1. Warm-up: one untimed-for-latency call per prompt bucket (the compiled
   program depends on the bucket, γ, the length limit and the method
   options, never on α, T or top-P); its wall time is the cell's
   ``compile_s``.
2. Trial 1: every example once, batch size 1, timed around
   ``jax.block_until_ready``.
3. Trials 2…num_trials: the first ``num_latency_examples`` examples again,
   with the same per-example key ``fold_in(key(seed), index)``; outputs must
   equal trial 1's (``NondeterminismError`` otherwise).

Paired protocol (``latency.PAIRED``): every timed decode of the latency
subset, in every trial, is accompanied by a decode of the verifier-only
reference (``cells.reference_for``) on the same example and key, right
before or after it: the reference goes first when (position in the subset +
trial) is even, so the order alternates per example and per trial (AB, BA,
…; in trial 2 BA, AB, …). Both times go into the record (``times_s``,
``ref_times_s``). Examples outside the subset are decoded once, unpaired.

The timed span is one call of the callable ``program_for`` returns (the key
and the prompt are prepared before the clock starts); it includes
``decode``'s argument checks and prompt padding on the host (tens of
microseconds), not tokenization or detokenization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np

from harness import decoding
from harness import models
from harness import tasks
from harness.edge import provenance as provenance_lib
from harness.results import latency as latency_lib
from harness.results import schema
from harness.results import store as store_lib
from harness.runner import calibration as cal
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import pairs
from harness.runner import progress as progress_lib
from harness.runner import summary as summary_lib

# The clock around every timed call (a test substitutes a fake one).
clock: Callable[[], float] = time.perf_counter
# A cell's timed callable: call(prompt [P] int32, rng key) -> DecodeOutput.
TimedCall = Callable[[np.ndarray, jax.Array], decoding.DecodeOutput]


class NondeterminismError(RuntimeError):
  """A repeated trial produced different tokens or counters."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  """An example with its prompt ids.

  Attributes:
    index: position in the sampled example list (seeds its PRNG key).
    example: the task example.
    prompt: [P] int32 prompt ids.
  """
  index: int
  example: tasks.Example
  prompt: np.ndarray


@dataclasses.dataclass
class Decoded:
  """One example's outputs (host values) and its wall times per trial.

  Attributes:
    tokens: generated ids.
    stats: decoding counters.
    times_s: wall seconds per trial.
    ref_times_s: paired protocol: the reference's wall seconds per trial
      (None when unpaired or outside the latency subset).
    ref_first: per trial, whether the reference ran first.
    ref_stats: the reference decode's counters (for its cost-model time).
    ref_tokens: the reference decode's ids (checked across trials).
  """
  tokens: list[int]
  stats: dict[str, Any]
  times_s: list[float]
  ref_times_s: list[float] | None = None
  ref_first: list[bool] = dataclasses.field(default_factory=list)
  ref_stats: dict[str, Any] | None = None
  ref_tokens: list[int] | None = None


def prepare_examples(task_run: cfg.TaskRun, seed: int,
                     loaded: pairs.LoadedPair) -> list[Prepared]:
  """Loads the task's sampled examples and encodes their prompts."""
  spec = tasks.get_task(task_run.task)
  examples = tasks.load_examples(
      task_run.task, num_examples=task_run.num_examples, seed=seed,
      source=task_run.source.value, data_dir=task_run.data_dir)
  return [Prepared(i, ex, np.asarray(
      models.encode_prompt(loaded.tokenizer, ex.inputs, loaded.encoder_decoder,
                           spec.max_input_len), np.int32))
          for i, ex in enumerate(examples)]


def example_key(seed: int, index: int) -> jax.Array:
  """The PRNG key of example ``index``: independent of what ran before."""
  return jax.random.fold_in(jax.random.key(seed), index)


_STOPS: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, ...], ...]] = {}


def stop_sequences(task: str, loaded: pairs.LoadedPair
                   ) -> tuple[tuple[int, ...], ...]:
  """The token sequences that end a decode of ``task`` (its stop strings,
  ``tasks.stop_strings``, spelled in the pair's vocabulary; cached)."""
  strings = tasks.stop_strings(task)
  if not strings:
    return ()
  key = (loaded.tokenizer.id, strings)
  if key not in _STOPS:
    _STOPS[key] = models.stop_token_sequences(loaded.tokenizer, strings)
  return _STOPS[key]


def program_for(cell: cells_lib.Cell, loaded: pairs.LoadedPair) -> TimedCall:
  """The callable a cell's timed span invokes: ``program(prompt, rng)``.

  This is the one place that decides what is timed. Everything static (the
  method, models, γ, length limit, options, α, T, top-P) is bound here, so
  the timed span is this single call: a compiled ``decoding.Program`` per
  prompt bucket (``TaskRun.bucket``; ``decoding.compile``, checked and
  compiled on the bucket's first call, the untimed warm-up), called with the
  cell's α, T and top-P (checked by the program on each call).
  """
  drafter = loaded.drafter_for(cell.method)
  options = dict(cell.options)
  gamma = cell.gamma or 1
  alpha = 0.0 if cell.alpha is None else cell.alpha
  stops = stop_sequences(cell.task, loaded)
  by_bucket: dict[int, decoding.Program] = {}

  def compiled(prompt: np.ndarray) -> decoding.Program:
    bucket = cell.task_run.bucket(prompt.size)
    if bucket not in by_bucket:  # first call per bucket: the warm-up
      by_bucket[bucket] = decoding.compile(
          cell.method, drafter, loaded.verifier, prompt_bucket=bucket,
          gamma=gamma, max_decode_len=cell.max_decode_len,
          stop_sequences=stops, **options)
    return by_bucket[bucket]

  def program(prompt: np.ndarray, rng: jax.Array) -> decoding.DecodeOutput:
    return compiled(prompt)(prompt, alpha=alpha,
                            temperature=cell.temperature, top_p=cell.top_p,
                            rng=rng)

  return program


def timed_decode(program: TimedCall, cell: cells_lib.Cell, item: Prepared
                 ) -> tuple[list[int], dict[str, Any], float]:
  """Decodes one example; returns (tokens, stats, seconds) on the host."""
  rng = example_key(cell.seed, item.index)
  prompt = item.prompt
  start = clock()
  out = jax.block_until_ready(program(prompt, rng))
  seconds = clock() - start
  out = jax.device_get(out)
  n = int(out.num_tokens)
  stats = {k: np.asarray(v).tolist() for k, v in out.stats.items()}
  return np.asarray(out.tokens)[:n].tolist(), stats, seconds


def warm_up(program: TimedCall, cell: cells_lib.Cell,
            prepared: list[Prepared]) -> float:
  """Runs one example per prompt bucket; returns the total seconds."""
  firsts: dict[int, Prepared] = {}
  for item in prepared:
    firsts.setdefault(cell.task_run.bucket(item.prompt.size), item)
  return sum(timed_decode(program, cell, item)[2]
             for item in firsts.values())


def is_paired(cell: cells_lib.Cell, protocol: str) -> bool:
  """Whether the cell's timed decodes are paired with reference decodes."""
  return (is_paired_protocol(protocol)
          and cell.role is not schema.Role.REFERENCE_LARGE)


def median_prompt(prepared: list[Prepared], num_timed: int) -> Prepared:
  """The latency subset's example of median prompt length."""
  timed = sorted(prepared[:num_timed], key=lambda p: p.prompt.size)
  return timed[(len(timed) - 1) // 2]


@dataclasses.dataclass
class Timer:
  """Times a cell's decodes, paired with its reference's when asked.

  Attributes:
    cell: the cell.
    program: its timed callable.
    reference: the reference cell and its callable (paired), or None.
  """
  cell: cells_lib.Cell
  program: TimedCall
  reference: tuple[cells_lib.Cell, TimedCall] | None = None

  def first(self, item: Prepared, slot: int | None) -> Decoded:
    """Trial 1 of an example; ``slot`` = position in the latency subset."""
    if self.reference is None or slot is None:
      tokens, stats, seconds = timed_decode(self.program, self.cell, item)
      return Decoded(tokens, stats, [seconds])
    decoded = Decoded([], {}, [], ref_times_s=[])
    self._paired(item, slot, 0, decoded)
    return decoded

  def again(self, item: Prepared, slot: int, trial: int,
            first: Decoded) -> None:
    """A repeated trial: checks outputs, appends the times to ``first``."""
    if self.reference is None:
      tokens, stats, seconds = timed_decode(self.program, self.cell, item)
      _check_same(self.cell, item, first, tokens, stats)
      first.times_s.append(seconds)
    else:
      self._paired(item, slot, trial, first)

  def _paired(self, item: Prepared, slot: int, trial: int,
              decoded: Decoded) -> None:
    ref_cell, ref_program = self.reference
    ref_first = (slot + trial) % 2 == 0  # AB, BA, ...; flipped each trial.
    if ref_first:
      ref = timed_decode(ref_program, ref_cell, item)
      own = timed_decode(self.program, self.cell, item)
    else:
      own = timed_decode(self.program, self.cell, item)
      ref = timed_decode(ref_program, ref_cell, item)
    if trial == 0:
      decoded.tokens, decoded.stats = own[0], own[1]
      decoded.ref_tokens, decoded.ref_stats = ref[0], ref[1]
    else:
      _check_same(self.cell, item, decoded, own[0], own[1])
      _check_same(ref_cell, item, Decoded(decoded.ref_tokens,
                                          decoded.ref_stats, []),
                  ref[0], ref[1])
    decoded.times_s.append(own[2])
    decoded.ref_times_s.append(ref[2])
    decoded.ref_first.append(ref_first)


def cell_timer(cell: cells_lib.Cell, loaded: pairs.LoadedPair,
               prepared: list[Prepared], protocol: str
               ) -> tuple[Timer, dict[str, float]]:
  """The cell's timer and its warm-up seconds (own, and the reference's
  when ``is_paired``: the one place a cell's pairing is decided; the timer's
  ``reference`` says it afterwards)."""
  program = program_for(cell, loaded)
  warmup = {"compile_s": warm_up(program, cell, prepared)}
  if not is_paired(cell, protocol):
    return Timer(cell, program), warmup
  ref_cell = cells_lib.reference_for(cell)
  ref_program = program_for(ref_cell, loaded)
  warmup["reference_warmup_s"] = warm_up(ref_program, ref_cell, prepared)
  return Timer(cell, program, (ref_cell, ref_program)), warmup


def run_trials(timer: Timer, prepared: list[Prepared],
               on_example: Callable[[], None] = lambda: None
               ) -> list[Decoded]:
  """Trial 1 on every example, then the extra trials on the latency subset."""
  cell = timer.cell
  num_timed = cell.task_run.latency_examples
  results = []
  for slot, item in enumerate(prepared):
    results.append(timer.first(item, slot if slot < num_timed else None))
    on_example()
  for trial in range(1, cell.num_trials):
    for slot, item in enumerate(prepared[:num_timed]):
      timer.again(item, slot, trial, results[slot])
      on_example()
  return results


def _check_same(cell, item, first: Decoded, tokens, stats) -> None:
  if tokens != first.tokens or stats != first.stats:
    raise NondeterminismError(
        f"cell {cell.cell_id}: example {item.example.id} decoded differently "
        "in a repeated trial with the same key")


def num_decodes(cell: cells_lib.Cell) -> int:
  """Timed decodes of a cell: every example once plus the extra trials.

  (Progress counts these; the paired protocol adds as many reference
  decodes as the latency subset has timed decodes.)
  """
  run = cell.task_run
  return run.num_examples + (cell.num_trials - 1) * run.latency_examples


def sha256(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _extra(example: tasks.Example) -> dict[str, Any] | None:
  extra = dict(example.extra)
  size = len(json.dumps(extra, default=str))
  return extra if size <= schema.MAX_EXTRA_BYTES else None


def to_record(cell: cells_lib.Cell, loaded: pairs.LoadedPair, item: Prepared,
              decoded: Decoded,
              calibration: schema.Calibration) -> schema.ExampleRecord:
  """The per-example JSONL record of one decoded example."""
  text = loaded.tokenizer.decode(decoded.tokens)
  record = schema.ExampleRecord(
      cell_id=cell.cell_id, example_id=item.example.id, index=item.index,
      prompt_sha256=sha256(item.example.inputs),
      target_sha256=sha256("\n".join(item.example.targets)),
      num_prompt_tokens=int(item.prompt.size),
      prediction=tasks.postprocess(cell.task, text),
      targets=list(item.example.targets), tokens=decoded.tokens,
      num_tokens=len(decoded.tokens), times_s=decoded.times_s,
      stats=decoded.stats,
      modeled_s=cal.modeled_seconds(decoded.stats, calibration))
  if decoded.ref_times_s is not None:
    record["ref_times_s"] = decoded.ref_times_s
    record["ref_first"] = decoded.ref_first
    record["ref_modeled_s"] = cal.modeled_seconds(decoded.ref_stats,
                                                  calibration)
  extra = _extra(item.example)
  if extra is not None:
    record["extra"] = extra
  return record


# --- The cell ---------------------------------------------------------------


def is_paired_protocol(protocol: str) -> bool:
  """Whether ``protocol`` is the paired one (the one test of it per run)."""
  return protocol == latency_lib.PAIRED


@dataclasses.dataclass
class Session:
  """What every cell of one model pair shares.

  Attributes:
    experiment: the experiment.
    store: where cells are written.
    loaded: the loaded model pair.
    calibration: the cost-model constants in use (the pair's start-of-run
      ones when unpaired; the latest cell's own when paired).
    provenance: the run's provenance (each cell adds its host state).
    progress: progress display (``progress.Progress`` or a silent one).
    allow_unisolated_mbpp: MBPP's opt-in to the audit hook as the only
      sandbox layer (``--allow_unisolated_mbpp``).
    examples: prepared examples per task run (cache).
  """
  experiment: cfg.Experiment
  store: store_lib.ResultsStore
  loaded: pairs.LoadedPair
  calibration: schema.Calibration | None
  provenance: schema.Provenance
  progress: progress_lib.Progress
  allow_unisolated_mbpp: bool = False
  examples: dict[cfg.TaskRun, list[Prepared]] = dataclasses.field(
      default_factory=dict)

  @property
  def paired(self) -> bool:
    """The experiment's latency protocol is the paired one."""
    return is_paired_protocol(self.experiment.latency_protocol)


def open_session(exp: cfg.Experiment, pair: cfg.ModelPair,
                 store: store_lib.ResultsStore,
                 provenance: schema.Provenance,
                 progress: progress_lib.Progress,
                 allow_unisolated_mbpp: bool = False) -> Session:
  """Loads ``pair``; calibrates its cost model now (unpaired protocol: a
  paired cell calibrates in its own window, :func:`run_cell`)."""
  with tempfile.TemporaryDirectory(prefix="harness-pair-") as work_dir:
    loaded = pairs.load_pair(pair, work_dir)
  session = Session(exp, store, loaded, None, provenance, progress,
                    allow_unisolated_mbpp)
  if not session.paired:
    session.calibration = cal.calibrate(
        loaded.drafter, loaded.verifier, cal.widths_for(exp.gammas),
        exp.calibration_calls, pair.name)
  return session


def _examples(session: Session, cell: cells_lib.Cell) -> list[Prepared]:
  run = cell.task_run
  if run not in session.examples:
    session.examples[run] = prepare_examples(run, cell.seed, session.loaded)
  return session.examples[run]


def _calibrate(session: Session, cell: cells_lib.Cell,
               prepared: list[Prepared]) -> schema.Calibration:
  """The cell's cost-model constants: measured now (paired protocol), at
  the task's median prompt length, or the pair's start-of-run ones."""
  if not session.paired:
    return session.calibration
  exp = session.experiment
  item = median_prompt(prepared, cell.task_run.latency_examples)
  session.calibration = cal.calibrate(
      session.loaded.drafter, session.loaded.verifier,
      cal.widths_for(exp.gammas), exp.calibration_calls, cell.pair.name,
      prompt=item.prompt, max_decode_len=cell.max_decode_len,
      bucket=cell.task_run.bucket(item.prompt.size))
  return session.calibration


def _reference_records(session: Session, timer: Timer
                       ) -> list[schema.ExampleRecord] | None:
  """Unpaired: the reference_large cell's records when done (else None);
  paired: None (the records carry their own reference times)."""
  if timer.reference is not None:
    return None
  reference_id = cells_lib.reference_for(timer.cell).cell_id
  if not session.store.is_done(reference_id):
    return None
  return session.store.read_records(reference_id)


def _drift(session: Session, timer: Timer,
           records: list[schema.ExampleRecord]) -> dict[str, Any]:
  """Paired protocol: where the reference stood (beside the cell, or the
  reference cell's own times)."""
  if not session.paired:
    return {}
  key = latency_lib.REF_TIMES if timer.reference else latency_lib.TIMES
  return summary_lib.reference_drift(
      records, timer.cell.task_run.latency_examples, key)


def run_cell(session: Session, cell: cells_lib.Cell) -> schema.CellSummary:
  """Decodes, times, scores and writes one cell; returns its summary."""
  prepared = _examples(session, cell)
  host_before = provenance_lib.host_state()
  session.progress.start_cell(cell.cell_id, num_decodes(cell))
  timer, warmup = cell_timer(cell, session.loaded, prepared,
                             session.experiment.latency_protocol)
  calibration = _calibrate(session, cell, prepared)
  decoded = run_trials(timer, prepared, session.progress.example_done)
  records = [to_record(cell, session.loaded, item, result, calibration)
             for item, result in zip(prepared, decoded)]
  digest = session.store.write_records(cell.cell_id, records)
  extra = {"protocol": session.experiment.latency_protocol,
           "reference_warmup_s": warmup.get("reference_warmup_s"),
           **_drift(session, timer, records)}
  provenance = dict(session.provenance, host={
      "before": host_before, "after": provenance_lib.host_state()})
  summary = summary_lib.summarize(
      session.experiment.name, cell, records, warmup["compile_s"],
      calibration, _reference_records(session, timer), provenance, extra,
      allow_unisolated=session.allow_unisolated_mbpp)
  summary["records"] = digest
  session.store.write_summary(summary)
  session.progress.cell_done(summary)
  return summary
