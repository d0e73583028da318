"""What one fine-tuning step computes: the model, Adafactor, the mesh.

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

The loop that runs these steps is `harness.finetune.trainer`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from harness.finetune.config import FinetuneConfig
from harness.models import configs as model_configs
from harness.models.base import DATA_AXIS, MODEL_AXIS
from harness.models.sharding import auto_mesh, param_partition_specs
from harness.models.t5 import T5, init_t5_params
from harness.models.tokenizer import Tokenizer

# One host's arrays of a batch, by feature name.
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
