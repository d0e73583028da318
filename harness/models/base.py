"""What T5 and Gemma share: the pytree plumbing and the cache length.

A model object holds `params` (a nested dict of arrays: the pytree leaves) and
static auxiliary data (the frozen config, the tokenizer id and an optional
device mesh). It implements :class:`harness.decoding.protocol.DecodingModel`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

Params = dict[str, Any]

# Name of the mesh axis that tensor-parallel weights and caches are split on.
MODEL_AXIS = "model"
# Name of the mesh axis that batches are split on (weights replicate on it).
DATA_AXIS = "data"


class Transformer:
  """Base class: pytree of params with a static config.

  Args:
    config: a frozen config dataclass (static).
    params: nested dict of arrays (see the subclass for the layout).
    tokenizer_id: vocabulary identifier; drafter and verifier must agree.
    mesh: optional `jax.sharding.Mesh`; when set, caches built by `prefill`
      are constrained to the tensor-parallel layout of `cache_partition_spec`.
  """

  def __init__(self, config, params: Params, tokenizer_id: str = "",
               mesh: jax.sharding.Mesh | None = None):
    self.config = config
    self.params = params
    self._tokenizer_id = tokenizer_id or f"random:{config.vocab_size}"
    self.mesh = mesh

  # --- pytree -------------------------------------------------------------
  def tree_flatten(self):
    return (self.params,), (self.config, self._tokenizer_id, self.mesh)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    obj.params, = children
    obj.config, obj._tokenizer_id, obj.mesh = aux
    return obj

  def replace(self, **changes) -> "Transformer":
    """A copy with some of params / tokenizer_id / mesh replaced."""
    kw = dict(config=self.config, params=self.params,
              tokenizer_id=self._tokenizer_id, mesh=self.mesh)
    kw.update(changes)
    return type(self)(**kw)

  # --- protocol -----------------------------------------------------------
  @property
  def vocab_size(self) -> int:
    return self.config.vocab_size

  @property
  def eos_id(self) -> int:
    return self.config.eos_id

  @property
  def tokenizer_id(self) -> str:
    return self._tokenizer_id

  def rollback(self, cache, length):
    return cache.replace(length=jnp.asarray(length, jnp.int32))

  def cache_length(self, cache):
    return cache.length

  # --- helpers ------------------------------------------------------------
  @property
  def _fast_matmul(self) -> bool:
    """Small weight products may use `cpu_matmul`'s kernel (no mesh)."""
    return self.mesh is None

  @property
  def dtype(self):
    """The dtype of the embedding (and of every other weight)."""
    return self.params["embed"].dtype

  def _constrain_kv(self, kv: jax.Array, heads_axis: int) -> jax.Array:
    """Splits a KV array over heads on the mesh, when a mesh is set."""
    if self.mesh is None:
      return kv
    size = self.mesh.shape[MODEL_AXIS]
    spec = [None] * kv.ndim
    if kv.shape[heads_axis] % size == 0:
      spec[heads_axis] = MODEL_AXIS
    sharding = jax.sharding.NamedSharding(self.mesh, PartitionSpec(*spec))
    return jax.lax.with_sharding_constraint(kv, sharding)


def as_batch(prompt: jax.Array) -> jax.Array:
  """[P] or [B, P] int tokens -> [B, P] int32."""
  prompt = jnp.asarray(prompt, jnp.int32)
  return prompt[None] if prompt.ndim == 1 else prompt


def dense_init(key: jax.Array, shape: tuple[int, ...], fan_in: int,
               dtype) -> jax.Array:
  """Normal init with standard deviation fan_in ** -0.5."""
  return (jax.random.normal(key, shape, jnp.float32)
          * fan_in ** -0.5).astype(dtype)
