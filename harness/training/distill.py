"""Distilling a small Gemma drafter from a Gemma verifier's distributions.

The drafter is an ordinary `harness.models.Gemma` (so it decodes, saves and
loads like any checkpoint) with the verifier's vocabulary and tokenizer, a
narrow residual stream (d_model <= 256) and 2-4 layers. With a 262k
vocabulary the tied output layer dominates a small model's cost, so the
drafter's width sets its cost; its embedding starts as the projection of the
verifier's embedding table onto its top principal directions.

Training minimises KL(verifier || drafter) of the next-token distributions
at temperature 1 on packed real text (every position of every sequence),
with AdamW, warm-up and a cosine schedule over a step or time budget.

A drafter may score a subset S of the vocabulary only (`DrafterShape.
vocab_subset`: the most frequent tokens of the training text, plus EOS and
the suites' stop-string pieces; `harness.models.subset_vocab`). Its q is 0
outside S, so KL(p || q) is infinite; it is trained on KL(p_S || q) with
p_S = p restricted to S and renormalised. That is the right target: the
T = 1 acceptance sum_v min(p, q) is at most p(S), and q = p_S reaches it
(min(p, p / p(S)) = p on S). The mass outside S is the verifier's alone:
speculative decoding's residual carries it, exactly. The metrics report
p(S) (`support_mass`) beside the acceptance.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import sys
import time
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from harness import tasks
from harness.decoding import decode
from harness.models import Gemma, GemmaConfig, Tokenizer, random_gemma
from harness.models import subset_vocab
from harness.training import train as train_lib

# --- drafter architecture ------------------------------------------------------
MAX_DRAFTER_WIDTH = 256


def drafter_config(verifier: GemmaConfig, d_model: int = 256,
                   num_layers: int = 2, num_heads: int = 4,
                   head_dim: int = 64, d_ff: int = 1024) -> GemmaConfig:
  """A small Gemma 3 config sharing the verifier's vocabulary and positions.

  Every LOCAL/GLOBAL choice follows Gemma 3's pattern (all LOCAL below six
  layers), with the verifier's window, RoPE bases and special ids.

  Raises:
    ValueError: d_model above `MAX_DRAFTER_WIDTH` or not 2-4 layers.
  """
  if d_model > MAX_DRAFTER_WIDTH:
    raise ValueError(f"drafter d_model={d_model} exceeds {MAX_DRAFTER_WIDTH}")
  if not 1 <= num_layers <= 4:
    raise ValueError(f"drafter num_layers={num_layers} is not in 1..4")
  return dataclasses.replace(
      verifier, d_model=d_model, num_layers=num_layers, num_heads=num_heads,
      num_kv_heads=1, head_dim=head_dim, d_ff=d_ff,
      query_pre_attn_scalar=float(head_dim), attention_types=())


def projected_embedding(verifier_embed: np.ndarray, width: int) -> np.ndarray:
  """The verifier's embedding [V, D] projected on its top `width` directions.

  Args:
    verifier_embed: [V, D] embedding table.
    width: target width d <= D.

  Returns:
    [V, d] float32: `E @ U[:, :d]` with U the eigenvectors of E^T E by
    decreasing eigenvalue (uncentred PCA), rescaled so that the mean squared
    entry matches the verifier's (the `sqrt(d)` input scaling then keeps
    embeddings at the verifier's per-coordinate scale).
  """
  e = np.asarray(verifier_embed, np.float32)
  gram = e.T.astype(np.float64) @ e.astype(np.float64)
  _, vectors = np.linalg.eigh(gram)
  basis = vectors[:, ::-1][:, :width].astype(np.float32)
  projected = e @ basis
  scale = np.sqrt(np.mean(e ** 2) / np.mean(projected ** 2))
  return (projected * scale).astype(np.float32)


def init_drafter(verifier: Gemma, config: GemmaConfig, seed: int = 0) -> Gemma:
  """A random drafter whose embedding is the verifier's, projected."""
  drafter = random_gemma(jax.random.PRNGKey(seed), config,
                         tokenizer_id=verifier.tokenizer_id)
  params = dict(drafter.params)
  params["embed"] = jnp.asarray(projected_embedding(
      np.asarray(verifier.params["embed"]), config.d_model))
  return drafter.replace(params=params)


# --- data --------------------------------------------------------------------
# (folder, file, kind) of the bundled training-side text; "jsonl:<field>"
# reads one field per line, "text" reads lines. Evaluated splits are left
# out (TriviaQA's only file is its evaluation file; NQ uses EfficientQA, its
# shot pool, not the evaluated dev set).
DISTILL_SOURCES = (
    ("gsm8k", "train.jsonl", "jsonl:question+answer"),
    ("nq_open", "NQ-open.efficientqa.test.1.1.jsonl", "jsonl:question"),
    ("multi30k", "train.en.gz", "text"),
    *((("wmt_newstest_2008_2012_ende", f"newstest{y}.{lang}", "text")
       for y in range(2008, 2013) for lang in ("en", "de"))),
)


def _read_source(root: str, folder: str, file: str, kind: str) -> list[str]:
  path = os.path.join(root, folder, file)
  if not os.path.exists(path):
    raise FileNotFoundError(f"missing distillation text: {path}")
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    rows = [line.rstrip("\n") for line in f if line.strip()]
  if kind == "text":
    return rows
  fields = kind.removeprefix("jsonl:").split("+")
  return ["\n".join(str(json.loads(r)[k]) for k in fields) for r in rows]


def read_texts(root: str, sources=DISTILL_SOURCES) -> dict[str, list[str]]:
  """Source name -> its text lines (documents), from the bundled data."""
  return {f"{folder}/{file}": _read_source(root, folder, file, kind)
          for folder, file, kind in sources}


def pack_sequences(texts: Sequence[str], tokenizer: Tokenizer, seq_len: int,
                   seed: int = 0) -> np.ndarray:
  """Packs shuffled documents into [N, seq_len] int32 rows starting with BOS.

  Documents are joined by a newline, as in few-shot prompts; a document that
  does not fit ends the row (its rest is dropped), so rows hold whole lines
  where possible. Rows shorter than `seq_len` are dropped.
  """
  order = np.random.default_rng(seed).permutation(len(texts))
  newline = tokenizer.encode("\n")
  rows, row = [], [tokenizer.bos_id]
  for i in order:
    ids = tokenizer.encode(texts[i]) + newline
    room = seq_len - len(row)
    row += ids[:room]
    if len(row) == seq_len:
      rows.append(row)
      row = [tokenizer.bos_id]
  if not rows:
    raise ValueError(f"no full row of {seq_len} tokens in {len(texts)} texts")
  return np.asarray(rows, np.int32)


def interleave(sources: dict[str, list[str]], seed: int = 0) -> list[str]:
  """All documents of all sources, shuffled together."""
  docs = [d for texts in sources.values() for d in texts]
  order = np.random.default_rng(seed).permutation(len(docs))
  return [docs[i] for i in order]


# --- losses and metrics ------------------------------------------------------
def distill_metrics(teacher_logits: jax.Array, student_logits: jax.Array,
                    ids: jax.Array | None = None) -> dict[str, jax.Array]:
  """Mean per-position divergence measures of two [B, T, V] logit arrays.

  Args:
    teacher_logits: the verifier's logits.
    student_logits: the drafter's (NEG_INF outside its subset, if any).
    ids: the drafter's output subset S (sorted full-vocabulary ids), or
      None for a full-vocabulary drafter.

  Returns:
    kl: KL(teacher || student) in nats; with a subset, KL(p_S || q) (the
      module docstring).
    acceptance: sum_v min(p, q), the probability that speculative sampling
      at T = 1 accepts a drafted token.
    top1: fraction of positions where the two argmaxes agree (the greedy
      acceptance rate).
    support_mass: p(S), the verifier's mass on the subset (1 without one).
  """
  log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  p = jnp.exp(log_p)
  acceptance = jnp.sum(jnp.minimum(p, jnp.exp(log_q)), axis=-1)
  top1 = teacher_logits.argmax(-1) == student_logits.argmax(-1)
  if ids is None:
    kl = jnp.sum(p * (log_p - log_q), axis=-1)
    mass = jnp.ones_like(acceptance)
  else:
    kl = _subset_kl(teacher_logits, student_logits, ids)
    mass = jnp.sum(p[..., ids], axis=-1)
  return {"kl": kl.mean(), "acceptance": acceptance.mean(),
          "top1": top1.mean(dtype=jnp.float32),
          "support_mass": mass.mean()}


def _subset_kl(teacher_logits: jax.Array, student_logits: jax.Array,
               ids: jax.Array) -> jax.Array:
  """Per-position KL(p_S || q_S) over the subset's logits [..., |S|]."""
  log_p = jax.nn.log_softmax(
      teacher_logits[..., ids].astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(
      student_logits[..., ids].astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def kl_loss(teacher_logits: jax.Array, student_logits: jax.Array,
            ids: jax.Array | None = None) -> jax.Array:
  """Mean KL(teacher || student) over positions of [B, T, V] logits;
  with an output subset `ids`, KL(p_S || q) (module docstring)."""
  if ids is not None:
    return jnp.mean(_subset_kl(teacher_logits, student_logits, ids))
  log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))


# --- training ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DistillConfig(train_lib.BudgetSchedule):
  """Optimisation settings of `distill`.

  Training runs for `steps` steps or `time_limit_s` seconds, whichever ends
  first; the cosine schedule follows the larger of the two progress
  fractions, so it completes within a time budget on a shared CPU.

  Attributes:
    steps: maximum optimiser steps.
    batch_size: sequences per step.
    peak_lr: AdamW learning rate after warm-up.
    warmup_steps: linear warm-up steps.
    final_lr_fraction: the cosine ends at `peak_lr` times this.
    weight_decay: decoupled weight decay of weight matrices.
    clip_norm: global gradient-norm clipping.
    eval_every: steps between validation evaluations.
    time_limit_s: wall-clock budget in seconds; None: steps only.
    seed: shuffling seed.
  """
  steps: int = 1000
  batch_size: int = 4
  peak_lr: float = 3e-3
  warmup_steps: int = 10
  final_lr_fraction: float = 0.05
  weight_decay: float = 0.01
  clip_norm: float = 1.0
  eval_every: int = 50
  time_limit_s: float | None = None
  seed: int = 0



@dataclasses.dataclass(frozen=True)
class DistillResult:
  """What `distill` returns.

  Attributes:
    model: the drafter with the best validation-KL parameters.
    best_step: the step of those parameters (0 = the initial drafter).
    initial: validation metrics of the initial drafter.
    final: validation metrics of the returned drafter.
    steps_run: optimiser steps taken.
    train_seconds: wall-clock time of the loop, evaluations included.
    tokens_seen: training positions processed.
    history: (step, running train KL, validation metrics) per evaluation.
  """
  model: Gemma
  best_step: int
  initial: dict[str, float]
  final: dict[str, float]
  steps_run: int
  train_seconds: float
  tokens_seen: int
  history: tuple[tuple[int, float, dict[str, float]], ...]


def _optimizer(config: DistillConfig) -> optax.GradientTransformation:
  def chain(learning_rate):
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(learning_rate, b1=0.9, b2=0.98, eps=1e-8,
                    weight_decay=config.weight_decay,
                    mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)))
  return optax.inject_hyperparams(chain)(learning_rate=0.0)


def make_distill_step(verifier: Gemma, drafter: Gemma,
                      optimizer: optax.GradientTransformation) -> Callable:
  """Jitted (params, opt_state, tokens [B, T], lr) -> (params, state, kl)."""

  ids = _ids(drafter)

  def loss_fn(params, teacher_logits, tokens):
    student = drafter.replace(params=_full(params, ids)).forward_logits(
        None, tokens)
    return kl_loss(teacher_logits, student, ids)

  @jax.jit
  def step(params, opt_state, tokens, learning_rate):
    teacher = jax.lax.stop_gradient(verifier.forward_logits(None, tokens))
    opt_state.hyperparams["learning_rate"] = learning_rate
    loss, grads = jax.value_and_grad(loss_fn)(params, teacher, tokens)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def make_eval_step(verifier: Gemma, drafter: Gemma) -> Callable:
  """Jitted (params, tokens [B, T]) -> `distill_metrics` of the drafter."""
  ids = _ids(drafter)

  @jax.jit
  def step(params, tokens):
    teacher = verifier.forward_logits(None, tokens)
    student = drafter.replace(params=_full(params, ids)).forward_logits(
        None, tokens)
    return distill_metrics(teacher, student, ids)

  return step


def _ids(drafter: Gemma) -> jax.Array | None:
  """The drafter's output subset as a constant of the compiled steps."""
  ids = subset_vocab.output_ids(drafter)
  return None if ids is None else jnp.asarray(ids, jnp.int32)


def trainable(params: dict) -> dict:
  """The parameters that train: all but an output subset's ids."""
  return {k: v for k, v in params.items() if k != "head_ids"}


def _full(params: dict, ids: jax.Array | None) -> dict:
  return params if ids is None else {**params, "head_ids": ids}


def evaluate(eval_step: Callable, params, tokens: np.ndarray,
             batch_size: int) -> dict[str, float]:
  """Mean metrics over [N, T] rows (full batches only; N >= batch_size)."""
  totals, count = {}, 0
  for start in range(0, len(tokens) - batch_size + 1, batch_size):
    out = eval_step(params, jnp.asarray(tokens[start:start + batch_size]))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += 1
  if not count:
    raise ValueError(f"{len(tokens)} validation rows < batch {batch_size}")
  return {k: v / count for k, v in totals.items()}


def _batches(tokens: np.ndarray, batch_size: int,
             seed: int) -> Iterator[np.ndarray]:
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(len(tokens))
    for start in range(0, len(order) - batch_size + 1, batch_size):
      yield tokens[order[start:start + batch_size]]


def distill(verifier: Gemma, drafter: Gemma, train_tokens: np.ndarray,
            val_tokens: np.ndarray, config: DistillConfig,
            progress: bool = True, desc: str = "distill") -> DistillResult:
  """Trains `drafter` to match `verifier`'s next-token distributions.

  Args:
    verifier: the teacher (frozen).
    drafter: the student; its params are the starting point.
    train_tokens: [N, T] int32 packed training rows.
    val_tokens: [M, T] int32 validation rows (M >= batch_size).
    config: optimisation settings.
    progress: a tqdm bar on stderr with the running KL.
    desc: bar and log label.

  Returns:
    A `DistillResult` (the best validated parameters).
  """
  optimizer = _optimizer(config)
  step_fn = make_distill_step(verifier, drafter, optimizer)
  eval_fn = make_eval_step(verifier, drafter)
  params = trainable(drafter.params)
  opt_state = optimizer.init(params)
  initial = evaluate(eval_fn, params, val_tokens, config.batch_size)
  best = (initial["kl"], 0, jax.device_get(params), initial)
  history = [(0, math.nan, initial)]
  batches = _batches(train_tokens, config.batch_size, config.seed)
  running, tokens_seen, step = None, 0, 0
  start = time.monotonic()
  bar = tqdm.trange(config.steps, desc=desc, disable=not progress,
                    file=sys.stderr, mininterval=10.0, ncols=100)
  for step in range(1, config.steps + 1):
    batch = next(batches)
    lr = config.learning_rate(
        step, config.progress(step - 1, time.monotonic() - start))
    params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(batch),
                                      jnp.asarray(lr, jnp.float32))
    loss = float(loss)
    if not math.isfinite(loss):
      raise FloatingPointError(f"{desc}: KL is {loss} at step {step}")
    tokens_seen += batch.size
    running = loss if running is None else 0.95 * running + 0.05 * loss
    bar.update(1)
    bar.set_postfix(kl=f"{running:.3f}", refresh=False)
    done = config.progress(step, time.monotonic() - start) >= 1.0
    if step % config.eval_every == 0 or done:
      val = evaluate(eval_fn, params, val_tokens, config.batch_size)
      history.append((step, running, val))
      if val["kl"] < best[0]:
        best = (val["kl"], step, jax.device_get(params), val)
      bar.write(f"{desc} step {step}: train KL {running:.3f}, val KL "
                f"{val['kl']:.3f}, acceptance {val['acceptance']:.3f}, top-1 "
                f"{val['top1']:.3f} ({time.monotonic() - start:.0f} s)")
    if done:
      break
  bar.close()
  return DistillResult(
      model=drafter.replace(params=_full(jax.tree.map(jnp.asarray, best[2]),
                                         _ids(drafter))),
      best_step=best[1], initial=initial, final=best[3], steps_run=step,
      train_seconds=time.monotonic() - start, tokens_seen=tokens_seen,
      history=tuple(history))


# --- cost --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CostRatio:
  """Per-token greedy decode time of drafter and verifier.

  Attributes:
    drafter_s_per_token: median over prompts of seconds per generated token.
    verifier_s_per_token: the same for the verifier.
    ratio: drafter / verifier.
    num_prompts: prompts timed.
    tokens_per_prompt: generated tokens per prompt.
  """
  drafter_s_per_token: float
  verifier_s_per_token: float
  ratio: float
  num_prompts: int
  tokens_per_prompt: int


def _seconds_per_token(model, prompts: Sequence[Sequence[int]],
                       num_tokens: int) -> float:
  """Median per-token time of `decode("autoregressive")` (after a warm-up)."""

  def run(prompt):
    out = decode("autoregressive", model, model, jnp.asarray(prompt),
                 gamma=1, temperature=0.0, max_decode_len=num_tokens,
                 rng=jax.random.PRNGKey(0))
    jax.block_until_ready(out.tokens)
    return int(out.num_tokens)

  run(prompts[0])
  times = []
  for prompt in prompts:
    start = time.perf_counter()
    emitted = run(prompt)
    times.append((time.perf_counter() - start) / max(emitted, 1))
  return float(np.median(times))


def cost_ratio(drafter: Gemma, verifier: Gemma,
               prompts: Sequence[Sequence[int]],
               num_tokens: int = 32) -> CostRatio:
  """Drafter/verifier per-token decode time with the harness's `decode`.

  Prompts should share one length (one compiled program per model); each
  model greedily decodes `num_tokens` tokens (fewer if it emits EOS) per
  prompt, one compile warm-up first.
  """
  d = _seconds_per_token(drafter, prompts, num_tokens)
  v = _seconds_per_token(verifier, prompts, num_tokens)
  return CostRatio(d, v, d / v, len(prompts), num_tokens)


# --- end to end ----------------------------------------------------------------
REPORT_FILE = "DISTILL.json"


@dataclasses.dataclass(frozen=True)
class DrafterShape:
  """The drafter's architecture knobs (see `drafter_config`).

  The defaults (d_model 192, 4 layers) keep the measured per-token decode
  time near 0.2 of Gemma 3 270M's: the tied 262k-row output layer costs
  V * d_model multiply-adds per token, the layers little.
  """
  d_model: int = 192
  num_layers: int = 4
  num_heads: int = 3
  head_dim: int = 64
  d_ff: int = 768
  # Output vocabulary: 0 = the verifier's whole vocabulary, else the
  # `vocab_subset` most frequent tokens of the training text (+ EOS and the
  # suites' stop-string pieces).
  vocab_subset: int = 0


def stop_piece_ids(tokenizer: Tokenizer) -> list[int]:
  """Token ids of every Gemma suite's stop strings (tokenised alone)."""
  ids = set()
  for name in tasks.TASKS:
    if name.startswith("gemma_"):
      for stop in tasks.stop_strings(name):
        ids.update(tokenizer.encode(stop))
  return sorted(ids)


def run(verifier: Gemma, tokenizer: Tokenizer, data_dir: str, out_dir: str,
        shape: DrafterShape, config: DistillConfig, seq_len: int = 256,
        num_val_rows: int = 32, cost_prompts: int = 8,
        cost_tokens: int = 32, progress: bool = True) -> dict:
  """Distils a drafter on the bundled text, saves it and reports.

  Writes `out_dir` as a Hugging-Face-format checkpoint with the verifier's
  tokenizer, plus `DISTILL.json` (settings, data, metrics, cost ratio).

  Returns:
    The report written to `DISTILL.json`.
  """
  # Imported here: harness.models.loading imports nothing from training.
  from harness.models import save_pretrained  # pylint: disable=import-outside-toplevel
  texts = read_texts(data_dir)
  rows = pack_sequences(interleave(texts, config.seed), tokenizer, seq_len,
                        config.seed)
  val, train = rows[:num_val_rows], rows[num_val_rows:]
  arch = {k: v for k, v in dataclasses.asdict(shape).items()
          if k != "vocab_subset"}
  drafter = init_drafter(verifier, drafter_config(verifier.config, **arch),
                         config.seed)
  subset = None
  if shape.vocab_subset:
    # From the training rows only (never the validation rows or the
    # evaluated examples); EOS and every suite's stop-string pieces stay.
    subset = subset_vocab.frequent_ids(
        train, shape.vocab_subset, verifier.vocab_size,
        keep=stop_piece_ids(tokenizer))
    drafter = subset_vocab.restrict_output(drafter, subset)
  result = distill(verifier, drafter, train, val, config, progress=progress)
  save_pretrained(result.model, out_dir, tokenizer)
  prompts = [r[:seq_len // 2].tolist() for r in val[:cost_prompts]]
  cost = cost_ratio(result.model, verifier, prompts, cost_tokens)
  report = {
      "shape": dataclasses.asdict(shape), "config": dataclasses.asdict(config),
      "seq_len": seq_len, "sources": {k: len(v) for k, v in texts.items()},
      "train_rows": len(train), "val_rows": len(val),
      "tokens_seen": result.tokens_seen, "steps_run": result.steps_run,
      "train_seconds": result.train_seconds, "best_step": result.best_step,
      "initial": result.initial, "final": result.final,
      "history": [{"step": s, "train_kl": t, **v}
                  for s, t, v in result.history],
      "cost": dataclasses.asdict(cost),
      "vocab_subset_size": None if subset is None else int(
          subset_vocab.output_ids(result.model).size),
      "drafter_params": int(sum(x.size for x in
                                jax.tree.leaves(result.model.params))),
  }
  with open(os.path.join(out_dir, REPORT_FILE), "w") as f:
    json.dump(report, f, indent=2, allow_nan=True)
  return report
