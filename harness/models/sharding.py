"""Tensor-parallel placement of models on a `jax.sharding.Mesh`.

Megatron-style partitioning over the mesh axis `MODEL_AXIS`: query/key/value
projections and the MLP input projections are split over heads / hidden
units (column parallel), the attention output and MLP output projections over
their input dimension (row parallel), embeddings over the vocabulary. KV
caches are split over heads (`Transformer._constrain_kv`). Every other mesh
axis (e.g. "data") replicates. A dimension that the axis size does not divide
(e.g. Gemma 3's single KV head) is replicated instead; XLA inserts the
collectives. Example::

    mesh = jax.make_mesh((1, 8), ("data", "model"))
    verifier = shard_model(verifier, mesh)   # 27B over 8 chips
    drafter = replicate_model(drafter, mesh) # 2B copied to each chip
    decoding.decode("spec_decode", drafter, verifier, prompt, ...)
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from harness.models.base import MODEL_AXIS, Transformer

M = MODEL_AXIS
# Leaf name -> which dimension is split over the model axis (None: replicate).
# Shapes: q/k/v [D, H or N, K]; o [H, K, D]; MLP in [D, F]; MLP out [F, D];
# embed [V, D]; lm_head [D, V].
_SPLIT_DIM: dict[str, int] = {
    "q": 1, "k": 1, "v": 1, "o": 0,
    "wi_0": 1, "wi_1": 1, "wi": 1, "gate": 1, "up": 1,
    "wo": 0, "down": 0,
    "embed": 0, "lm_head": 1,
}


def _leaf_name(path) -> str:
  key = path[-1]
  return str(getattr(key, "key", getattr(key, "idx", key)))


def _spec(name: str, shape: tuple[int, ...], axis_size: int) -> PartitionSpec:
  dim = _SPLIT_DIM.get(name)
  if dim is None or len(shape) <= dim or shape[dim] % axis_size:
    return PartitionSpec()
  spec = [None] * len(shape)
  spec[dim] = M
  return PartitionSpec(*spec)


def partition_specs(params, axis_size: int):
  """A pytree of `PartitionSpec`s matching `params` (T5 or Gemma layout;
  arrays or `jax.ShapeDtypeStruct`s) for a model axis of `axis_size`."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: _spec(_leaf_name(path), x.shape, axis_size), params)


def param_partition_specs(params, mesh: Mesh):
  """`partition_specs` for `mesh`'s model axis."""
  if M not in mesh.axis_names:
    raise ValueError(f"mesh axes {mesh.axis_names} lack {M!r}")
  return partition_specs(params, mesh.shape[M])


def auto_mesh(mesh: Mesh) -> Mesh:
  """The same devices and axis names with every axis in Auto mode.

  The models rely on GSPMD propagation (Auto axes); `jax.make_mesh` defaults
  to Explicit axes, which would demand an output sharding for every einsum.
  """
  return Mesh(mesh.devices, mesh.axis_names,
              axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def shard_model(model: Transformer, mesh: Mesh) -> Transformer:
  """Places params tensor-parallel on `mesh`; its caches follow (by heads)."""
  mesh = auto_mesh(mesh)
  specs = param_partition_specs(model.params, mesh)
  params = jax.tree.map(
      lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), model.params,
      specs)
  return model.replace(params=params, mesh=mesh)


def replicate_model(model: Transformer, mesh: Mesh) -> Transformer:
  """Copies params to every device of `mesh` (a small drafter)."""
  replicated = NamedSharding(auto_mesh(mesh), PartitionSpec())

  params = jax.tree.map(lambda x: jax.device_put(x, replicated), model.params)
  return model.replace(params=params, mesh=None)
