"""The fine-tuning loop: T5 v1.1 trained as t5x trains it, on a device mesh.

The steps it runs (the model, Adafactor, the mesh and the jitted train and
eval steps) are `harness.finetune.steps`; its input batches,
`harness.finetune.inputs`.

:func:`train` runs the loop: resume from the newest checkpoint of the
workdir, log every step (``train_log.jsonl``: step, loss, learning rate,
tokens, tokens/s, seconds, MFU) with a tqdm bar, checkpoint every N steps
(and every S seconds), validate every M steps (``eval_log.jsonl``: loss,
greedy-decoding BLEU / ROUGE-2), stop at ``max_steps`` or ``time_limit_s``,
evaluate the test split and export a Hugging Face folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from harness.finetune import inputs
from harness.finetune import mfu
from harness.finetune import steps
from harness.finetune.checkpoint import Checkpoints
from harness.finetune.config import FinetuneConfig
from harness.finetune.steps import Initial
from harness.models.t5 import T5

TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"
PROVENANCE = "provenance.json"


# --- evaluation ---------------------------------------------------------------
def validation_loss(cfg: FinetuneConfig, eval_step, params, mesh: Mesh,
                    vocab_path, vocab_size: int) -> float | None:
  """Token-mean cross-entropy over `eval_batches` of the eval split."""
  if not cfg.eval_batches or cfg.eval_split is None:
    return None
  it = inputs.batches(cfg, vocab_path, vocab_size, cfg.eval_split, train=False)
  ce_sum, tokens = 0.0, 0.0
  for _ in range(cfg.eval_batches):
    local = inputs.stack(it, 1)
    if local is None:
      break
    ce, w = eval_step(params, steps.global_batch(local, mesh))
    ce_sum, tokens = ce_sum + float(ce), tokens + float(w)
  return ce_sum / tokens if tokens else None


def decode_metrics(cfg: FinetuneConfig, model: T5, tokenizer, examples
                   ) -> dict:
  """Greedy-decoding metrics (BLEU for translation, else ROUGE-2)."""
  if not examples or tokenizer is None:
    return {}
  from harness.finetune import validate  # pylint: disable=g-import-not-at-top
  metrics = ("bleu",) if "wmt" in cfg.task or "newstest" in cfg.task else (
      ("rouge2",))
  host_params = _gather(model.params)
  result = validate.greedy_eval(
      model.replace(params=host_params, mesh=None), tokenizer, examples,
      metrics=metrics, max_input_len=cfg.inputs_length,
      max_decode_len=cfg.decode_length, prefix="")
  return result


def _gather(tree):
  """A pytree of global arrays -> numpy on this host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


# --- logs ---------------------------------------------------------------------
def _read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def truncate_log(path: str, last_step: int) -> None:
  """Keeps only the records of steps <= last_step (resume after a kill)."""
  if not os.path.exists(path):
    return
  kept = [r for r in _read_jsonl(path) if r.get("step", 0) <= last_step]
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for r in kept:
      f.write(json.dumps(r) + "\n")
  os.replace(tmp, path)


class _Log:
  """Appends JSON lines (process 0 only), flushed per record."""

  def __init__(self, path: str):
    self.path = path
    self.enabled = jax.process_index() == 0

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()


def write_provenance(workdir: str, cfg: FinetuneConfig, gin_text: str,
                     initial: Initial, mesh: Mesh) -> None:
  """provenance.json: config, gin text, commit, versions, device, mesh."""
  if jax.process_index() != 0:
    return
  from harness.edge import provenance  # pylint: disable=g-import-not-at-top
  commit, dirty = provenance.git_state()
  record = {
      "created": provenance.now_iso(), "git_commit": commit,
      "git_dirty": dirty, "versions": provenance.versions(),
      "device": {**provenance.device_info(), "chip": mfu.chip_name(),
                 "processes": jax.process_count()},
      "mesh": dict(mesh.shape), "init": initial.source,
      "model_config": dataclasses.asdict(initial.model.config),
      "config": dataclasses.asdict(cfg), "gin_config": gin_text,
  }
  path = os.path.join(workdir, PROVENANCE)
  history = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    history = old.pop("previous", []) + [old]
  record["previous"] = history
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  os.replace(path + ".tmp", path)


# --- the loop -----------------------------------------------------------------
def _config_fingerprint(cfg: FinetuneConfig) -> dict:
  """Fields a resumed run must share with the checkpoint's run."""
  keys = ("task", "inputs_length", "targets_length", "pack", "batch_size",
          "accumulate_steps", "seed", "model_parallel", "train_steps")
  return {k: getattr(cfg, k) for k in keys if k != "model_parallel"}


def _progress(total: int, initial: int, enabled: bool):
  if not enabled or jax.process_index() != 0:
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, initial=initial, unit="step",
                   dynamic_ncols=True)


@dataclasses.dataclass
class _Run:
  """What the steps of one `train` invocation share."""
  cfg: FinetuneConfig
  workdir: str
  mesh: Mesh | None
  initial: Initial
  ckpts: Checkpoints
  train_log: _Log
  eval_log: _Log
  log: Callable[[str], None]
  eval_step: Callable | None = None
  fingerprint: dict = dataclasses.field(default_factory=dict)
  summary: dict = dataclasses.field(default_factory=dict)

  @property
  def vocab_path(self) -> str | None:
    return self.initial.vocab_path

  @property
  def vocab_size(self) -> int:
    return self.initial.model.config.vocab_size


def _resume(run: _Run, state) -> tuple[Any, int]:
  """Restores the newest checkpoint, if any: (state, its step or 0).

  Raises:
    ValueError: the checkpoints were written with another configuration.
  """
  start = run.ckpts.latest_step()
  if start is None:
    return state, 0
  state, meta = run.ckpts.restore(start, state)
  old = meta.get("fingerprint", {})
  changed = {k: (old.get(k), v) for k, v in run.fingerprint.items()
             if k in old and old[k] != v}
  if changed:
    field, (was, now) = next(iter(changed.items()))
    raise ValueError(f"{field}={now!r}: the checkpoints in {run.workdir} were "
                     f"written with {field}={was!r}; use a new --workdir")
  run.log(f"resumed from step {start} ({run.ckpts.directory})")
  if run.train_log.enabled:
    truncate_log(run.train_log.path, start)
    truncate_log(run.eval_log.path, start)
  return state, start


def _evaluate(run: _Run, when: str, step: int, params, split: str | None,
              num: int) -> dict[str, Any]:
  """Validation loss and/or greedy decoding metrics, logged and kept."""
  cfg = run.cfg
  record: dict[str, Any] = {"step": step, "when": when, "split": split}
  if when == "validation":
    record["loss"] = validation_loss(cfg, run.eval_step, params, run.mesh,
                                     run.vocab_path, run.vocab_size)
  if split is not None and num:
    examples = inputs.text_examples(cfg, run.vocab_path, split, num)
    result = decode_metrics(cfg, run.initial.model.replace(params=params),
                            run.initial.tokenizer, examples)
    predictions = result.pop("predictions", None)
    record.update(result)
    if predictions is not None and jax.process_index() == 0:
      path = os.path.join(run.workdir, f"predictions_{when}_{step}.json")
      with open(path, "w", encoding="utf-8") as f:
        json.dump({"examples": [e[0] for e in examples],
                   "predictions": predictions}, f, ensure_ascii=False)
  run.eval_log.write(record)
  run.summary["evaluations"].append(record)
  shown = {k: v for k, v in record.items() if isinstance(v, (int, float))}
  run.log(f"eval {when} step {step}: {json.dumps(shown)}")
  return record


def _open_input(run: _Run, start: int):
  """The training batches, positioned after step `start`."""
  cfg = run.cfg
  it = inputs.batches(cfg, run.vocab_path, run.vocab_size, cfg.train_split,
               train=True, start_batch=start * cfg.accumulate_steps,
               iterator_state=run.ckpts.iterator_dir(start) if start else None)
  if start:
    how = getattr(it, "resume", "indexed (synthetic data)")
    run.log(f"input pipeline at batch {start * cfg.accumulate_steps}: {how}"
            + (" from its saved iterator state" if how == "restored" else ""))
  return it


class _Saver:
  """Saves checkpoints with the input iterator's state while that works."""

  def __init__(self, run: _Run, it):
    self.run, self.it = run, it
    self.saving_iterator = hasattr(it, "save")

  def __call__(self, step: int, state) -> None:
    run = self.run
    run.ckpts.save(step, state, {
        "step": step, "fingerprint": run.fingerprint,
        "data_batches": step * run.cfg.accumulate_steps})
    if self.saving_iterator:
      try:
        self.it.save(run.ckpts.iterator_dir(step))
      except Exception as err:  # pylint: disable=broad-except
        self.saving_iterator = False
        run.log(f"input iterator state not saved "
                f"({str(err).splitlines()[0]}); a resume will replay the "
                "input pipeline")


def _step_record(step: int, metrics, tokens: int, seconds: float,
                 utilisation: float | None) -> dict[str, Any]:
  """One line of the training log."""
  return {"step": step, "loss": float(metrics["loss"]),
          "cross_entropy": float(metrics["cross_entropy"]),
          "learning_rate": float(metrics["learning_rate"]),
          "grad_norm": float(metrics["grad_norm"]),
          "target_tokens": int(metrics["target_tokens"]),
          "tokens": tokens, "seconds": round(seconds, 6),
          "tokens_per_s": tokens / seconds,
          "mfu": utilisation if utilisation is not None else "unknown"}


def _show(bar, cfg: FinetuneConfig, step: int, record: dict,
          utilisation: float | None) -> None:
  if bar is None:
    return
  bar.update(1)
  if step % cfg.log_every_steps == 0 or step == cfg.last_step:
    bar.set_postfix(loss=f"{record['loss']:.4f}",
                    tok_s=f"{record['tokens_per_s']:.0f}",
                    mfu=(f"{utilisation:.1%}" if utilisation is not None
                         else "unknown"))


def _checkpoint_due(cfg: FinetuneConfig, step: int, since_save_s: float,
                    out_of_time: bool) -> bool:
  return (step % cfg.checkpoint_every_steps == 0 or step == cfg.last_step
          or out_of_time or (cfg.checkpoint_every_s is not None
                             and since_save_s >= cfg.checkpoint_every_s))


@dataclasses.dataclass
class _Loop:
  """Where the training loop stopped, and its timed tokens and seconds."""
  state: Any
  step: int
  reason: str
  timed_tokens: int = 0
  timed_seconds: float = 0.0


def _train_loop(run: _Run, state, step_fn, it, start: int, flops: float,
                peak: float | None, progress: bool,
                kill_at_step: int | None) -> _Loop:
  """Steps until the last step, the time limit or the end of the data."""
  cfg = run.cfg
  save = _Saver(run, it)
  bar = _progress(cfg.last_step, start, progress)
  began = last_save = time.monotonic()
  loop = _Loop(state, start, "max_steps" if cfg.last_step < cfg.train_steps
               else "train_steps")
  while loop.step < cfg.last_step:
    local = inputs.stack(it, cfg.accumulate_steps)
    if local is None:
      loop.reason = "data exhausted"
      break
    tokens = int(sum(np.count_nonzero(local[k]) for k in (
        "encoder_input_tokens", "decoder_target_tokens")))
    t0 = time.perf_counter()
    loop.state, metrics = step_fn(loop.state,
                                  steps.global_batch(local, run.mesh))
    metrics = jax.device_get(metrics)
    seconds = time.perf_counter() - t0
    loop.step += 1
    step = loop.step
    tokens *= jax.process_count()
    if step > start + 1:  # the first step of an invocation compiles
      loop.timed_tokens += tokens
      loop.timed_seconds += seconds
    utilisation = mfu.utilisation(flops, seconds, peak)
    record = _step_record(step, metrics, tokens, seconds, utilisation)
    run.train_log.write(record)
    if not math.isfinite(record["loss"]):
      raise FloatingPointError(f"step {step}: loss is {record['loss']}")
    _show(bar, cfg, step, record, utilisation)
    now = time.monotonic()
    out_of_time = (cfg.time_limit_s is not None
                   and now - began >= cfg.time_limit_s)
    if _checkpoint_due(cfg, step, now - last_save, out_of_time):
      save(step, loop.state)
      last_save = time.monotonic()
    if cfg.eval_every_steps and step % cfg.eval_every_steps == 0 and (
        step < cfg.last_step):
      _evaluate(run, "validation", step, loop.state["params"],
                cfg.eval_split, cfg.eval_examples)
    if kill_at_step is not None and step == kill_at_step:
      os.kill(os.getpid(), signal.SIGKILL)
    if out_of_time:
      loop.reason = f"time_limit_s={cfg.time_limit_s:g}"
      break
  if bar is not None:
    bar.close()
  if loop.step > start and run.ckpts.latest_step() != loop.step:
    save(loop.step, loop.state)
  run.ckpts.close()
  return loop


def _finish(run: _Run, loop: _Loop, start: int, flops: float,
            peak: float | None) -> dict:
  """Logs the stop, runs the final evaluations and the export, writes
  summary.json; returns the summary."""
  cfg, step, summary = run.cfg, loop.step, run.summary
  summary.update(
      end_step=step, stop_reason=loop.reason,
      tokens_per_s=(loop.timed_tokens / loop.timed_seconds
                    if loop.timed_seconds else None),
      flops_per_step=flops, peak_flops=peak,
      mfu=(mfu.utilisation(flops * (step - start - 1), loop.timed_seconds,
                           peak) if loop.timed_seconds else None))
  run.log(f"stopped at step {step} ({loop.reason}); tokens/s "
          f"{summary['tokens_per_s'] or float('nan'):.1f}; MFU "
          f"{summary['mfu'] if summary['mfu'] is not None else 'unknown'}")
  params = loop.state["params"]
  if cfg.eval_split and step > start:
    _evaluate(run, "validation", step, params, cfg.eval_split,
              cfg.eval_examples)
  if cfg.test_split:
    _evaluate(run, "after", step, params, cfg.test_split, cfg.test_examples)
  if cfg.export_dir and step > start:
    summary["export"] = export(cfg, run.workdir, run.initial, params, step)
  if jax.process_index() == 0:
    with open(os.path.join(run.workdir, "summary.json"), "w",
              encoding="utf-8") as f:
      json.dump(summary, f, indent=2, default=str)
  return summary


def train(cfg: FinetuneConfig, workdir: str, gin_text: str = "", *,
          progress: bool = True, kill_at_step: int | None = None,
          log: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) the fine-tuning of `cfg` in `workdir`.

  Set-up, resume (`_resume`), an optional evaluation before training, the
  loop (`_train_loop`: steps, logs, checkpoints, periodic validation), then
  the final evaluations and the export (`_finish`).

  Args:
    cfg: the run's configuration.
    workdir: checkpoints, logs, provenance and the export go here; a run
      whose workdir holds checkpoints resumes from the newest.
    gin_text: the operative gin config (recorded in provenance.json).
    progress: show a tqdm bar.
    kill_at_step: testing aid: SIGKILL this process right after logging
      (and checkpointing) this step.
    log: where one-line messages go.

  Returns:
    A summary: first/last step, final losses, tokens/s, evaluations, export.
  """
  os.makedirs(workdir, exist_ok=True)
  mesh = steps.make_mesh(cfg.model_parallel)
  initial = steps.init_model(cfg, mesh)
  inputs.register_tasks(cfg, initial.vocab_path)
  tx = steps.make_optimizer(cfg)
  state = steps.init_state(initial.model.params, tx, mesh)
  run = _Run(cfg, workdir, mesh, initial,
             Checkpoints(os.path.join(workdir, "checkpoints"),
                         cfg.keep_checkpoints),
             _Log(os.path.join(workdir, TRAIN_LOG)),
             _Log(os.path.join(workdir, EVAL_LOG)), log,
             fingerprint=_config_fingerprint(cfg))
  state_shardings = steps.shardings_of(state)
  state, start = _resume(run, state)
  write_provenance(workdir, cfg, gin_text, initial, mesh)
  step_fn = steps.make_train_step(cfg, initial.model, tx, state_shardings, mesh)
  run.eval_step = steps.make_eval_step(cfg, initial.model)
  run.summary = {"start_step": start, "evaluations": []}
  if cfg.eval_before and start == 0 and cfg.test_split:
    _evaluate(run, "before", 0, state["params"], cfg.test_split,
              cfg.test_examples)
  flops = mfu.step_flops(initial.model.config, cfg.batch_size,
                         cfg.inputs_length, cfg.targets_length)
  peak = mfu.peak_flops()
  it = _open_input(run, start)
  loop = _train_loop(run, state, step_fn, it, start, flops, peak, progress,
                     kill_at_step)
  return _finish(run, loop, start, flops, peak)


def export(cfg: FinetuneConfig, workdir: str, initial: Initial, params,
           step: int) -> str:
  """Writes the Hugging Face folder (every process calls it: the sharded
  weights are gathered; process 0 writes); returns its path."""
  from harness.finetune import export as export_lib  # pylint: disable=g-import-not-at-top
  out_dir = os.path.join(workdir, cfg.export_dir)
  export_lib.export_hf(
      params, initial.model.config, initial.vocab_path, out_dir,
      dtype=cfg.param_dtype,
      extra_card={"init": initial.source, "task": cfg.task, "step": step,
                  "train_steps": cfg.train_steps,
                  "batch_size": cfg.batch_size,
                  "inputs_length": cfg.inputs_length,
                  "targets_length": cfg.targets_length})
  return out_dir
