"""The fine-tuning loop: T5 v1.1 trained as t5x trains it, on a device mesh.

One optimiser step (:func:`make_train_step`): ``accumulate_steps``
microbatches, each a forward/backward pass of `T5.train_logits` with dropout
(key = fold_in(fold_in(seed, step), microbatch): a resumed run draws the same
masks) and bfloat16 activations over float32 parameters; the summed token
cross-entropy (plus t5x's z-loss) of all microbatches is divided by the
step's number of target tokens, so accumulation gives the gradient of the
whole batch; then Adafactor (`optax.adafactor` with t5x's settings: factored
second moments, decay rate 0.8, update clipping 1.0, no momentum, updates
scaled by the parameter scale, no weight decay) at a constant learning rate
(fine-tuning) or T5's inverse square root (pre-training).

Parallelism: a ``("data", "model")`` mesh. Parameters are split over
"model" with `harness.models.sharding`'s Megatron layout (replicated over
"data"); each microbatch's rows are split over "data"; XLA inserts the
gradient all-reduce. On several hosts, each host reads its own shard of the
input pipeline and contributes its rows to the global batch.

:func:`train` runs the loop: resume from the newest checkpoint of the
workdir, log every step (``train_log.jsonl``: step, loss, learning rate,
tokens, tokens/s, seconds, MFU) with a tqdm bar, checkpoint every N steps
(and every S seconds), validate every M steps (``eval_log.jsonl``: loss,
greedy-decoding BLEU / ROUGE-2), stop at ``max_steps`` or ``time_limit_s``,
evaluate the test split and export a Hugging Face folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from harness.finetune import mfu
from harness.finetune.checkpoint import Checkpoints
from harness.finetune.config import FinetuneConfig
from harness.models import configs as model_configs
from harness.models.base import DATA_AXIS, MODEL_AXIS
from harness.models.sharding import auto_mesh, param_partition_specs
from harness.models.t5 import T5, init_t5_params
from harness.models.tokenizer import Tokenizer

TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"
PROVENANCE = "provenance.json"
FEATURES = ("encoder_input_tokens", "decoder_input_tokens",
            "decoder_target_tokens", "decoder_loss_weights")
Batch = dict[str, np.ndarray]


# --- optimiser ----------------------------------------------------------------
def learning_rate_schedule(cfg: FinetuneConfig) -> Callable[[Any], Any]:
  """Step (0-based count of updates) -> learning rate."""
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.learning_rate)

  def rsqrt(count):
    step = jnp.maximum(jnp.asarray(count, jnp.float32) + cfg.schedule_offset,
                       cfg.warmup_steps)
    return cfg.learning_rate / jnp.sqrt(step)

  return rsqrt


def make_optimizer(cfg: FinetuneConfig) -> optax.GradientTransformation:
  """Adafactor with t5x's T5 settings (module docstring)."""
  return optax.adafactor(
      learning_rate=learning_rate_schedule(cfg), min_dim_size_to_factor=128,
      decay_rate=cfg.decay_rate, decay_offset=0,
      multiply_by_parameter_scale=True,
      clipping_threshold=cfg.clipping_threshold, momentum=None,
      weight_decay_rate=None, eps=1e-30, factored=True)


# --- mesh and placement -------------------------------------------------------
def make_mesh(model_parallel: int, device_list=None) -> Mesh:
  """A ("data", "model") mesh over all devices, "model" of the given size."""
  device_list = jax.devices() if device_list is None else device_list
  n = len(device_list)
  if n % model_parallel:
    raise ValueError(f"model_parallel={model_parallel}: does not divide the "
                     f"{n} devices")
  mesh = jax.make_mesh((n // model_parallel, model_parallel),
                       (DATA_AXIS, MODEL_AXIS), devices=device_list)
  return auto_mesh(mesh)


def param_shardings(params, mesh: Mesh):
  """NamedShardings of the params: Megatron split over "model"."""
  specs = param_partition_specs(params, mesh)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """[accumulate, rows, length] arrays: rows split over "data"."""
  return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def global_batch(local: Batch, mesh: Mesh) -> dict[str, jax.Array]:
  """This host's [A, rows/hosts, L] arrays -> global arrays on the mesh."""
  sharding = batch_sharding(mesh)
  hosts = jax.process_count()
  out = {}
  for name, x in local.items():
    shape = (x.shape[0], x.shape[1] * hosts, *x.shape[2:])
    out[name] = jax.make_array_from_process_local_data(sharding, x, shape)
  return out


# --- model --------------------------------------------------------------------
@dataclasses.dataclass
class Initial:
  """The model to train, its tokenizer and where they came from."""
  model: T5
  tokenizer: Tokenizer | None
  vocab_path: str | None
  source: str


def _random_config(cfg: FinetuneConfig, vocab_size: int | None
                   ) -> model_configs.T5Config:
  if cfg.model_size == "tiny":
    base = model_configs.TINY_T5
  elif cfg.model_size in model_configs.T5_SIZES:
    base = model_configs.T5_SIZES[cfg.model_size][0]
  else:
    raise ValueError(f"model_size={cfg.model_size!r}: not a T5 size; known: "
                     f"tiny, {', '.join(model_configs.T5_SIZES)}")
  size = cfg.vocab_size or vocab_size
  return dataclasses.replace(base, vocab_size=size) if size else base


def init_model(cfg: FinetuneConfig, mesh: Mesh) -> Initial:
  """Loads `init_checkpoint` onto the mesh, or random weights of the size."""
  dtype = jnp.dtype(cfg.param_dtype)
  if cfg.init_checkpoint:
    from harness.models import loading  # pylint: disable=g-import-not-at-top
    loaded = loading.load_pretrained(cfg.init_checkpoint, dtype=dtype,
                                     mesh=mesh,
                                     require_tokenizer=cfg.vocab_path is None)
    model = loaded.model
    if not isinstance(model, T5):
      raise ValueError(f"init_checkpoint={cfg.init_checkpoint!r}: not a T5 "
                       "model")
    vocab_path = cfg.vocab_path or os.path.join(
        os.path.expanduser(cfg.init_checkpoint), "spiece.model")
    tokenizer = loaded.tokenizer or Tokenizer(vocab_path)
    shardings = param_shardings(model.params, mesh)
    params = jax.tree.map(jax.device_put, model.params, shardings)
    return Initial(model.replace(params=params, mesh=None), tokenizer,
                   vocab_path, os.path.abspath(os.path.expanduser(
                       cfg.init_checkpoint)))
  tokenizer = Tokenizer(cfg.vocab_path) if cfg.vocab_path else None
  vocab = None
  if tokenizer is not None:
    vocab = -(-(tokenizer.vocab_size + cfg.extra_ids) // 128) * 128
  config = _random_config(cfg, vocab)
  shapes = jax.eval_shape(
      lambda: init_t5_params(jax.random.PRNGKey(cfg.seed), config, dtype))
  init = jax.jit(
      lambda: init_t5_params(jax.random.PRNGKey(cfg.seed), config, dtype),
      out_shardings=param_shardings(shapes, mesh))
  tok_id = f"spm:{os.path.basename(cfg.vocab_path)}" if cfg.vocab_path else ""
  return Initial(T5(config, init(), tok_id), tokenizer, cfg.vocab_path,
                 f"random:{cfg.model_size}:seed{cfg.seed}")


# --- loss and step ------------------------------------------------------------
def token_losses(logits: jax.Array, targets: jax.Array, z_loss: float):
  """Per-token (cross-entropy, cross-entropy + z_loss·logZ²), float32."""
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  gold = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  ce = log_z - gold
  return ce, ce + z_loss * jnp.square(log_z)


def _micro_loss(params, model: T5, batch, rng, cfg: FinetuneConfig,
                train: bool):
  """Summed loss of one microbatch, and (summed CE, target tokens)."""
  m = model.replace(params=params)
  features = {k: v for k, v in batch.items()}
  use_dropout = train and cfg.dropout_rate > 0
  logits = m.train_logits(
      features, dropout_rate=cfg.dropout_rate if use_dropout else 0.0,
      rng=rng if use_dropout else None,
      activation_dtype=jnp.dtype(cfg.activation_dtype))
  weights = batch["decoder_loss_weights"].astype(jnp.float32)
  ce, total = token_losses(logits, batch["decoder_target_tokens"], cfg.z_loss)
  return jnp.sum(total * weights), (jnp.sum(ce * weights), jnp.sum(weights))


def make_train_step(cfg: FinetuneConfig, model: T5,
                    tx: optax.GradientTransformation, state_shardings,
                    mesh: Mesh):
  """A jitted ``(state, batch[A, rows, L]) -> (state, metrics)``.

  `state` is {"step", "params", "opt_state"}; it is donated, and keeps the
  placement `state_shardings` (one compilation for the whole run).
  """
  base_key = jax.random.PRNGKey(cfg.seed)
  schedule = learning_rate_schedule(cfg)
  skeleton = model.replace(params=None)

  def step_fn(state, batch):
    params = state["params"]
    step_key = jax.random.fold_in(base_key, state["step"])
    grad_fn = jax.value_and_grad(
        functools.partial(_micro_loss, model=skeleton, cfg=cfg, train=True),
        has_aux=True)

    def micro(carry, xs):
      index, mb = xs
      (loss, (ce, weight)), grads = grad_fn(
          params, batch=mb, rng=jax.random.fold_in(step_key, index))
      g, l, c, w = carry
      return (jax.tree.map(jnp.add, g, grads), l + loss, c + ce,
              w + weight), None

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    init = (zeros, jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))
    num = batch["decoder_target_tokens"].shape[0]
    (grads, loss, ce, weight), _ = jax.lax.scan(
        micro, init, (jnp.arange(num), batch))
    denom = jnp.maximum(weight, 1.0)
    grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grads,
                         params)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_state = {"step": state["step"] + 1,
                 "params": optax.apply_updates(params, updates),
                 "opt_state": opt_state}
    metrics = {"loss": loss / denom, "cross_entropy": ce / denom,
               "target_tokens": weight,
               "learning_rate": schedule(state["step"]),
               "grad_norm": optax.global_norm(grads)}
    return new_state, metrics

  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.jit(step_fn, donate_argnums=(0,),
                 in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=(state_shardings, replicated))


def make_eval_step(cfg: FinetuneConfig, model: T5):
  """A jitted ``(params, batch[1, rows, L]) -> (summed CE, target tokens)``.
  """
  skeleton = model.replace(params=None)

  def eval_fn(params, batch):
    mb = {k: v[0] for k, v in batch.items()}
    _, (ce, weight) = _micro_loss(params, skeleton, mb, None, cfg,
                                  train=False)
    return ce, weight

  return jax.jit(eval_fn)


def init_state(params, tx: optax.GradientTransformation, mesh: Mesh
               ) -> dict:
  """{"step": 0, "params", "opt_state"}: the optimiser state is placed by
  XLA from the params' placement (factored statistics follow their rows or
  columns), the step counter replicated."""
  replicated = NamedSharding(mesh, PartitionSpec())
  opt_state = jax.tree.map(
      lambda x: x if isinstance(x.sharding, NamedSharding) else (
          jax.device_put(x, replicated)), jax.jit(tx.init)(params))
  step = jax.device_put(jnp.zeros((), jnp.int32), replicated)
  return {"step": step, "params": params, "opt_state": opt_state}


def shardings_of(tree):
  """The placement of each array of a pytree."""
  return jax.tree.map(lambda x: x.sharding, tree)


# --- data ---------------------------------------------------------------------
def synthetic_batches(cfg: FinetuneConfig, vocab_size: int, split: str,
                      batch_size: int, start_batch: int = 0,
                      shard_index: int = 0, num_shards: int = 1
                      ) -> Iterator[Batch]:
  """Random copy-task rows (targets = inputs), unpacked, deterministic per
  (seed, split, batch index, shard): a stand-in for text when measuring
  speed or testing the loop. Row lengths vary; 0 pads, 1 ends."""
  del num_shards  # the shard index alone separates the hosts' streams
  split_id = {"train": 0, "validation": 1, "test": 2}.get(split, 3)
  length = min(cfg.inputs_length, cfg.targets_length)
  index = start_batch
  while True:
    rng = np.random.default_rng([cfg.seed, split_id, index, shard_index])
    enc = np.zeros((batch_size, cfg.inputs_length), np.int32)
    tgt = np.zeros((batch_size, cfg.targets_length), np.int32)
    for row in range(batch_size):
      n = int(rng.integers(max(1, length // 2), length))
      tokens = rng.integers(2, vocab_size, size=n - 1).astype(np.int32)
      enc[row, :n] = np.append(tokens, 1)
      tgt[row, :n] = np.append(tokens, 1)
    dec_in = np.zeros_like(tgt)
    dec_in[:, 1:] = tgt[:, :-1]
    yield {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
           "decoder_target_tokens": tgt,
           "decoder_loss_weights": (tgt != 0).astype(np.int32)}
    index += 1


def register_tasks(cfg: FinetuneConfig, vocab_path: str | None) -> None:
  """Registers the seqio tasks of `harness.finetune.data` for the vocab."""
  if cfg.task == "synthetic":
    return
  from harness.finetune import data  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if cfg.prefix is not None:
    kwargs["prefixes"] = {cfg.task: cfg.prefix}
  data.register_finetune_tasks(vocab_path, data_dir=cfg.data_dir,
                               extra_ids=cfg.extra_ids, **kwargs)


def batches(cfg: FinetuneConfig, vocab_path: str | None, vocab_size: int,
            split: str, *, train: bool, start_batch: int = 0,
            iterator_state: str | None = None) -> Iterator[Batch]:
  """This host's microbatches (rows = microbatch / hosts) of a split.

  Text tasks give a `harness.finetune.data.InputIterator` (its state can be
  saved; `iterator_state` is restored when it matches `start_batch`); the
  synthetic task indexes its batches, so starts anywhere at once."""
  hosts, host = jax.process_count(), jax.process_index()
  rows = cfg.microbatch_size // hosts
  if rows * hosts != cfg.microbatch_size:
    raise ValueError(f"batch_size={cfg.batch_size}: microbatch "
                     f"{cfg.microbatch_size} is not a multiple of the "
                     f"{hosts} hosts")
  if cfg.task == "synthetic":
    return synthetic_batches(cfg, vocab_size, split, rows, start_batch,
                             host, hosts)
  from harness.finetune import data  # pylint: disable=g-import-not-at-top
  return iter(data.make_dataset(
      cfg.task, split, vocab_path=vocab_path,
      lengths={"inputs": cfg.inputs_length, "targets": cfg.targets_length},
      batch_size=rows, pack=cfg.pack, seed=cfg.seed,
      shuffle=cfg.shuffle and train, repeat=train, shard_index=host,
      num_shards=hosts, start_batch=start_batch, data_dir=cfg.data_dir,
      iterator_state=iterator_state))


def _stack(iterator: Iterator[Batch], num: int) -> Batch | None:
  rows = []
  for _ in range(num):
    try:
      rows.append(next(iterator))
    except StopIteration:
      return None
  return {k: np.stack([np.asarray(r[k], np.int32) for r in rows])
          for k in rows[0] if k in FEATURES or k.endswith(
              ("segment_ids", "positions"))}


def text_examples(cfg: FinetuneConfig, vocab_path: str | None, split: str,
                  num: int) -> list[tuple[str, list[str]]]:
  """The first `num` (input text with its prefix, [reference]) pairs of a
  split, read from the seqio task's pretokenized features (none for the
  synthetic and the span-corruption tasks)."""
  if cfg.task == "synthetic" or num == 0 or "span" in cfg.task:
    return []
  from harness import extras  # pylint: disable=g-import-not-at-top
  seqio = extras.require("seqio", f"fine-tuning task {cfg.task!r}")
  task = seqio.get_mixture_or_task(cfg.task)
  ds = task.get_dataset(
      {"inputs": cfg.inputs_length, "targets": cfg.targets_length},
      split=split, shuffle=False, use_cached=False, seed=cfg.seed)
  out = []
  for ex in ds.take(num).as_numpy_iterator():
    out.append((ex["inputs_pretokenized"].decode("utf-8"),
                [ex["targets_pretokenized"].decode("utf-8")]))
  return out


# --- evaluation ---------------------------------------------------------------
def validation_loss(cfg: FinetuneConfig, eval_step, params, mesh: Mesh,
                    vocab_path, vocab_size: int) -> float | None:
  """Token-mean cross-entropy over `eval_batches` of the eval split."""
  if not cfg.eval_batches or cfg.eval_split is None:
    return None
  it = batches(cfg, vocab_path, vocab_size, cfg.eval_split, train=False)
  ce_sum, tokens = 0.0, 0.0
  for _ in range(cfg.eval_batches):
    local = _stack(it, 1)
    if local is None:
      break
    ce, w = eval_step(params, global_batch(local, mesh))
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
    examples = text_examples(cfg, run.vocab_path, split, num)
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
  it = batches(cfg, run.vocab_path, run.vocab_size, cfg.train_split,
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
    local = _stack(it, cfg.accumulate_steps)
    if local is None:
      loop.reason = "data exhausted"
      break
    tokens = int(sum(np.count_nonzero(local[k]) for k in (
        "encoder_input_tokens", "decoder_target_tokens")))
    t0 = time.perf_counter()
    loop.state, metrics = step_fn(loop.state, global_batch(local, run.mesh))
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
  mesh = make_mesh(cfg.model_parallel)
  initial = init_model(cfg, mesh)
  register_tasks(cfg, initial.vocab_path)
  tx = make_optimizer(cfg)
  state = init_state(initial.model.params, tx, mesh)
  run = _Run(cfg, workdir, mesh, initial,
             Checkpoints(os.path.join(workdir, "checkpoints"),
                         cfg.keep_checkpoints),
             _Log(os.path.join(workdir, TRAIN_LOG)),
             _Log(os.path.join(workdir, EVAL_LOG)), log,
             fingerprint=_config_fingerprint(cfg))
  state_shardings = shardings_of(state)
  state, start = _resume(run, state)
  write_provenance(workdir, cfg, gin_text, initial, mesh)
  step_fn = make_train_step(cfg, initial.model, tx, state_shardings, mesh)
  run.eval_step = make_eval_step(cfg, initial.model)
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
