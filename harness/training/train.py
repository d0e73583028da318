"""The training loop: teacher forcing, AdamW, validation-loss selection.

One jitted step per batch shape (the length buckets of `data.make_batches`),
the model passed as a pytree so that only its parameters are traced.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax
import tqdm

from harness.models import GemmaConfig, T5Config, random_gemma, random_t5
from harness.training import data as data_lib
from harness.training.losses import cross_entropy


class BudgetSchedule:
  """Warm-up then cosine decay over a step-or-time budget.

  Mixed into config dataclasses with fields ``steps``, ``time_limit_s``,
  ``warmup_steps``, ``peak_lr`` and ``final_lr_fraction``.
  """

  def progress(self, step: int, elapsed_s: float) -> float:
    """Fraction of the budget used after `step` steps and `elapsed_s`."""
    frac = step / self.steps
    if self.time_limit_s:
      frac = max(frac, elapsed_s / self.time_limit_s)
    return min(frac, 1.0)

  def learning_rate(self, step: int, progress: float) -> float:
    """Warm-up times cosine decay over progress."""
    warm = min(1.0, step / max(self.warmup_steps, 1))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    floor = self.final_lr_fraction
    return self.peak_lr * warm * (floor + (1.0 - floor) * cosine)


@dataclasses.dataclass(frozen=True)
class TrainConfig(BudgetSchedule):
  """Optimisation settings.

  Training runs for `steps` steps or `time_limit_s` seconds, whichever ends
  first. The learning rate warms up linearly over `warmup_steps`, then
  follows a cosine from `peak_lr` down to `peak_lr * final_lr_fraction` as
  the *progress* goes from 0 to 1, where progress is the larger of the step
  fraction and the time fraction; on a shared CPU the schedule thus always
  completes within the time budget.

  Attributes:
    steps: maximum optimiser steps.
    tokens_per_batch: decoder token slots per batch (batch size times the
      bucketed target length).
    peak_lr: AdamW learning rate after warm-up.
    warmup_steps: linear warm-up steps.
    final_lr_fraction: the cosine ends at `peak_lr` times this.
    weight_decay: decoupled AdamW weight decay (weight matrices only).
    label_smoothing: training-loss label smoothing.
    clip_norm: global gradient-norm clipping.
    eval_every: steps between validation evaluations (and selection).
    time_limit_s: wall-clock budget of the loop in seconds; None: steps only.
    seed: initialisation and shuffling seed.
    scale_query_steps: scale T5 query-weight steps by d_kv ** -0.5 (see
      `query_step_scales`).
  """
  steps: int = 3000
  tokens_per_batch: int = 1024
  peak_lr: float = 2e-3
  warmup_steps: int = 200
  final_lr_fraction: float = 0.02
  weight_decay: float = 0.01
  label_smoothing: float = 0.1
  clip_norm: float = 1.0
  eval_every: int = 200
  time_limit_s: float | None = None
  seed: int = 0
  scale_query_steps: bool = True



@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What `train_model` returns.

  Attributes:
    model: the model with the selected (lowest validation loss) parameters.
    best_step: the step of the selected parameters.
    best_val_loss: their validation loss (nats per target token, no smoothing).
    steps_run: optimiser steps actually taken.
    train_seconds: wall-clock time of the loop, evaluations included.
    history: (step, train loss, validation loss) at every evaluation.
  """
  model: object
  best_step: int
  best_val_loss: float
  steps_run: int
  train_seconds: float
  history: tuple[tuple[int, float, float], ...]


def init_model(config: T5Config | GemmaConfig, seed: int,
               tokenizer_id: str = ""):
  """A randomly initialised T5 or Gemma model (float32)."""
  key = jax.random.key(seed)
  if isinstance(config, T5Config):
    return random_t5(key, config, tokenizer_id=tokenizer_id)
  return random_gemma(key, config, tokenizer_id=tokenizer_id)


def batch_logits(model, batch: data_lib.Batch) -> jax.Array:
  """Teacher-forced logits [B, T, V] of a batch (T5 or Gemma)."""
  if batch.inputs is None:
    return model.forward_logits(None, batch.decoder_inputs)
  return model.forward_logits(batch.inputs, batch.decoder_inputs,
                              attention_mask=batch.input_mask)


def _decay_mask(params):
  """True for weight matrices (decayed), False for norms and 1-D params."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def query_step_scales(model) -> dict:
  """Per-parameter multipliers of the AdamW step (a tree like the params).

  T5 has no 1/sqrt(d_kv) attention scaling: it is folded into the query
  initialisation (std (d_model * d_kv) ** -0.5). Adam's steps do not scale
  with a weight's size, so its T5 query weights would move sqrt(d_kv) times
  faster, relative to their size, than in a transformer with explicit
  scaling; their steps are scaled by d_kv ** -0.5 to undo that. Every other
  weight (and every Gemma weight) gets 1.
  """
  scale = (model.config.d_kv ** -0.5
           if isinstance(model.config, T5Config) else 1.0)

  def leaf_scale(path, _):
    key = getattr(path[-1], "key", None)
    return scale if key == "q" else 1.0

  return jax.tree_util.tree_map_with_path(leaf_scale, model.params)


def _scale_per_leaf(scales) -> optax.GradientTransformation:
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * s, updates, scales), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def make_optimizer(config: TrainConfig,
                   step_scales=None) -> optax.GradientTransformation:
  """Gradient clipping, AdamW, then optional per-parameter step scales.

  The learning rate is a hyper-parameter set every step (see
  `TrainConfig.learning_rate`).
  """

  def chain(learning_rate):
    parts = [optax.clip_by_global_norm(config.clip_norm),
             optax.adamw(learning_rate, b1=0.9, b2=0.98, eps=1e-9,
                         weight_decay=config.weight_decay, mask=_decay_mask)]
    if step_scales is not None:
      parts.append(_scale_per_leaf(step_scales))
    return optax.chain(*parts)

  return optax.inject_hyperparams(chain)(learning_rate=0.0)


def make_train_step(model, optimizer, label_smoothing: float) -> Callable:
  """A jitted (params, opt_state, batch, lr) -> (params, opt_state, loss)."""

  def loss_fn(params, batch):
    logits = batch_logits(model.replace(params=params), batch)
    loss_sum, _ = cross_entropy(logits, batch.labels, batch.loss_mask,
                                label_smoothing)
    return loss_sum / jnp.maximum(batch.loss_mask.sum(), 1.0)

  @jax.jit
  def step(params, opt_state, batch, learning_rate):
    opt_state.hyperparams["learning_rate"] = learning_rate
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def make_eval_step(model) -> Callable:
  """A jitted (params, batch) -> (nll sum, scored tokens) step."""

  @jax.jit
  def step(params, batch):
    logits = batch_logits(model.replace(params=params), batch)
    _, nll = cross_entropy(logits, batch.labels, batch.loss_mask)
    return nll, batch.loss_mask.sum()

  return step


def validation_loss(eval_step: Callable, params,
                    batches: list[data_lib.Batch]) -> float:
  """Mean negative log-likelihood per target token over `batches`."""
  total, count = 0.0, 0.0
  for batch in batches:
    nll, n = eval_step(params, _to_device(batch))
    total += float(nll)
    count += float(n)
  return total / max(count, 1.0)


def _to_device(batch: data_lib.Batch) -> data_lib.Batch:
  return jax.tree.map(jnp.asarray, batch)


def train_model(model, train_data: data_lib.Encoded,
                val_data: data_lib.Encoded, config: TrainConfig,
                desc: str = "train", progress: bool = True) -> TrainResult:
  """Trains `model` from its current parameters; keeps the best validated.

  Args:
    model: a T5 or Gemma model (its params are the starting point).
    train_data: tokenized training examples.
    val_data: tokenized validation examples (selection and reporting).
    config: optimisation settings.
    desc: progress-bar label.
    progress: show a tqdm progress bar (on stderr) with the running loss.

  Returns:
    A `TrainResult`.
  """
  optimizer = make_optimizer(
      config, query_step_scales(model) if config.scale_query_steps else None)
  train_step = make_train_step(model, optimizer, config.label_smoothing)
  eval_step = make_eval_step(model)
  val_batches = data_lib.make_batches(val_data, config.tokens_per_batch,
                                      shuffle=False)
  params = model.params
  opt_state = optimizer.init(params)
  batches = data_lib.epochs(train_data, config.tokens_per_batch, config.seed)
  best = (math.inf, 0, jax.device_get(params))
  history = []
  running, tokens = None, 0
  start = time.monotonic()
  bar = tqdm.trange(config.steps, desc=desc, disable=not progress,
                    file=sys.stderr, mininterval=10.0, dynamic_ncols=False,
                    ncols=100)
  step = 0
  for step in range(1, config.steps + 1):
    batch = next(batches)
    tokens += batch.num_targets
    lr = config.learning_rate(
        step, config.progress(step - 1, time.monotonic() - start))
    params, opt_state, loss = train_step(params, opt_state,
                                         _to_device(batch),
                                         jnp.asarray(lr, jnp.float32))
    loss = float(loss)
    if not math.isfinite(loss):
      raise FloatingPointError(f"{desc}: training loss is {loss} at step "
                               f"{step}")
    running = loss if running is None else 0.98 * running + 0.02 * loss
    elapsed = time.monotonic() - start
    bar.update(1)
    bar.set_postfix(loss=f"{running:.3f}", tok_s=f"{tokens / elapsed:.0f}",
                    refresh=False)
    done = config.progress(step, elapsed) >= 1.0
    if step % config.eval_every == 0 or done:
      val = validation_loss(eval_step, params, val_batches)
      history.append((step, running, val))
      if val < best[0]:
        best = (val, step, jax.device_get(params))
      bar.write(f"{desc} step {step}: train loss {running:.3f}, "
                f"val loss {val:.3f} (best {best[0]:.3f} @ {best[1]}), "
                f"{tokens / (time.monotonic() - start):.0f} target tok/s")
    if done:
      break
  bar.close()
  best_params = jax.tree.map(jnp.asarray, best[2])
  return TrainResult(model=model.replace(params=best_params),
                     best_step=best[1], best_val_loss=best[0],
                     steps_run=step,
                     train_seconds=time.monotonic() - start,
                     history=tuple(history))
