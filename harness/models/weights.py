"""Tensor tables and parameter loading shared by every checkpoint format.

One table per architecture (:func:`weight_specs`) maps each Hugging Face
tensor name to a path in our param tree and a layout conversion; loading and
saving read it, whatever the file format (safetensors, `pytorch_model.bin`,
`flax_model.msgpack`, GGUF), so they cannot drift apart.

:func:`load_params` fills a param tree tensor by tensor from a
:class:`TensorSource`: it reads one tensor on the host, converts its layout,
places it straight into its target sharding (each device receives only its
slice) and drops the host copy before reading the next. Host memory peaks at
about the largest tensor and a device never holds more than its share of the
tensors placed so far.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Any, Callable, NamedTuple, Protocol

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from harness.models.configs import GemmaConfig, T5Config
from harness.models.gemma import Gemma, init_gemma_params
from harness.models import subset_vocab
from harness.models.sharding import auto_mesh, param_partition_specs
from harness.models.t5 import T5, init_t5_params
from harness.models.tokenizer import Tokenizer


class Layout(enum.StrEnum):
  """How a torch tensor maps to ours (torch `Linear.weight` is [out, in])."""
  COPY = "copy"  # same shape
  TRANSPOSE = "transpose"  # [out, in] <-> [in, out]
  SPLIT_OUT = "split_out"  # [H*K, D] <-> [D, H, K] (q, k, v projections)
  SPLIT_IN = "split_in"  # [D, H*K] <-> [H, K, D] (output projection)


@dataclasses.dataclass(frozen=True)
class WeightSpec:
  """One checkpoint tensor.

  Attributes:
    hf_name: tensor name in the safetensors files.
    path: keys (str) and list indices (int) into our param tree.
    layout: conversion between the two layouts.
  """
  hf_name: str
  path: tuple[str | int, ...]
  layout: Layout


# --- layouts ------------------------------------------------------------------
def to_ours(x: np.ndarray, layout: Layout,
            shape: tuple[int, ...]) -> np.ndarray:
  """Converts a torch-layout array to our layout of the given shape."""
  if layout == Layout.COPY:
    return x
  # SPLIT_OUT: [H*K, D] -> [D, H*K] -> [D, H, K];
  # SPLIT_IN: [D, H*K] -> [H*K, D] -> [H, K, D];
  # TRANSPOSE: [out, in] -> [in, out]
  return x.T.reshape(shape)


def to_hf(x: np.ndarray, layout: Layout) -> np.ndarray:
  """Converts one of our arrays to the torch layout."""
  if layout == Layout.COPY:
    return x
  if layout == Layout.SPLIT_OUT:
    # [D, H, K] -> [D, H*K] -> [H*K, D]
    return x.reshape(x.shape[0], -1).T
  if layout == Layout.SPLIT_IN:
    # [H, K, D] -> [H*K, D] -> [D, H*K]
    return x.reshape(-1, x.shape[-1]).T
  return x.T


def hf_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
  """The torch-layout shape of one of our shapes."""
  if layout == Layout.COPY:
    return shape
  if layout == Layout.SPLIT_OUT:
    return (shape[1] * shape[2], shape[0])
  if layout == Layout.SPLIT_IN:
    return (shape[2], shape[0] * shape[1])
  return shape[::-1]


# --- name tables --------------------------------------------------------------
def _t5_attention(prefix: str, path: tuple, name: str) -> list[WeightSpec]:
  return [WeightSpec(f"{prefix}.{name}.{w}.weight", path + (w,),
                     Layout.SPLIT_IN if w == "o" else Layout.SPLIT_OUT)
          for w in ("q", "k", "v", "o")]


def _t5_mlp(prefix: str, path: tuple, c: T5Config) -> list[WeightSpec]:
  names = ("wi_0", "wi_1", "wo") if c.gated_act == "gelu_tanh" else ("wi", "wo")
  return [WeightSpec(f"{prefix}.DenseReluDense.{w}.weight", path + (w,),
                     Layout.TRANSPOSE) for w in names]


def _t5_stack(stack: str, c: T5Config, num_layers: int) -> list[WeightSpec]:
  """Specs of the encoder or decoder stack."""
  specs = [
      WeightSpec(f"{stack}.block.0.layer.0.SelfAttention."
                 "relative_attention_bias.weight", (stack, "rel_bias"),
                 Layout.COPY),
      WeightSpec(f"{stack}.final_layer_norm.weight", (stack, "final_norm"),
                 Layout.COPY),
  ]
  for i in range(num_layers):
    blk, path = f"{stack}.block.{i}", (stack, "layers", i)
    specs.append(WeightSpec(f"{blk}.layer.0.layer_norm.weight",
                            path + ("self_attn_norm",), Layout.COPY))
    specs += _t5_attention(f"{blk}.layer.0", path + ("self_attn",),
                           "SelfAttention")
    mlp_index = 1
    if stack == "decoder":
      specs.append(WeightSpec(f"{blk}.layer.1.layer_norm.weight",
                              path + ("cross_attn_norm",), Layout.COPY))
      specs += _t5_attention(f"{blk}.layer.1", path + ("cross_attn",),
                             "EncDecAttention")
      mlp_index = 2
    specs.append(WeightSpec(f"{blk}.layer.{mlp_index}.layer_norm.weight",
                            path + ("mlp_norm",), Layout.COPY))
    specs += _t5_mlp(f"{blk}.layer.{mlp_index}", path + ("mlp",), c)
  return specs


def _t5_specs(c: T5Config) -> list[WeightSpec]:
  specs = [WeightSpec("shared.weight", ("embed",), Layout.COPY)]
  if not c.tie_embeddings:
    specs.append(WeightSpec("lm_head.weight", ("lm_head",), Layout.TRANSPOSE))
  return (specs + _t5_stack("encoder", c, c.num_encoder_layers)
          + _t5_stack("decoder", c, c.num_decoder_layers))


def _gemma_layer(i: int, c: GemmaConfig) -> list[WeightSpec]:
  pre, path = f"model.layers.{i}", ("layers", i)
  norms = {"input_layernorm": "pre_attn_norm",
           "post_attention_layernorm": "post_attn_norm",
           "pre_feedforward_layernorm": "pre_mlp_norm",
           "post_feedforward_layernorm": "post_mlp_norm"}
  specs = [WeightSpec(f"{pre}.{hf}.weight", path + (ours,), Layout.COPY)
           for hf, ours in norms.items()]
  for w in ("q", "k", "v", "o"):
    specs.append(WeightSpec(f"{pre}.self_attn.{w}_proj.weight",
                            path + ("attn", w),
                            Layout.SPLIT_IN if w == "o" else Layout.SPLIT_OUT))
  if c.use_qk_norm:
    for w in ("q_norm", "k_norm"):
      specs.append(WeightSpec(f"{pre}.self_attn.{w}.weight",
                              path + ("attn", w), Layout.COPY))
  for w in ("gate", "up", "down"):
    specs.append(WeightSpec(f"{pre}.mlp.{w}_proj.weight", path + ("mlp", w),
                            Layout.TRANSPOSE))
  return specs


def _gemma_specs(c: GemmaConfig) -> list[WeightSpec]:
  specs = [WeightSpec("model.embed_tokens.weight", ("embed",), Layout.COPY),
           WeightSpec("model.norm.weight", ("final_norm",), Layout.COPY)]
  for i in range(c.num_layers):
    specs += _gemma_layer(i, c)
  return specs


def weight_specs(config: T5Config | GemmaConfig) -> list[WeightSpec]:
  """Every checkpoint tensor of an architecture."""
  if isinstance(config, T5Config):
    return _t5_specs(config)
  return _gemma_specs(config)


# --- param trees --------------------------------------------------------------
def get_path(tree, path: tuple):
  """The leaf of a nested dict/list at `path` (keys and list indices)."""
  for key in path:
    tree = tree[key]
  return tree


def set_path(tree, path: tuple, value) -> None:
  """Sets the leaf of a nested dict/list at `path`."""
  for key in path[:-1]:
    tree = tree[key]
  tree[path[-1]] = value


def param_shapes(config: T5Config | GemmaConfig, dtype=np.float32) -> Any:
  """The param tree of `config` as `jax.ShapeDtypeStruct`s (nothing built)."""
  init = init_t5_params if isinstance(config, T5Config) else init_gemma_params
  return jax.eval_shape(lambda: init(jax.random.PRNGKey(0), config, dtype))


class TensorSource(Protocol):
  """Checkpoint tensors by Hugging Face name, read one at a time."""

  def names(self) -> set[str]:
    """Every tensor name the checkpoint holds."""

  def get(self, name: str) -> np.ndarray:
    """One tensor in the torch layout and its stored dtype.

    Raises:
      KeyError: naming the tensor and the checkpoint, if absent.
    """


# Called after each tensor is placed: (Hugging Face name, the placed array).
TensorHook = Callable[[str, jax.Array], None]


def _place(x: np.ndarray, sharding: jax.sharding.Sharding | None) -> jax.Array:
  """One host array -> device(s); each device receives only its slice."""
  if sharding is None:
    return jax.device_put(x)
  return jax.make_array_from_callback(
      x.shape, sharding, lambda index: np.ascontiguousarray(x[index]))


def load_params(tensors: TensorSource, config: T5Config | GemmaConfig,
                dtype=None, shardings: Any = None,
                on_tensor: TensorHook | None = None) -> Any:
  """Fills a param tree of `config`'s shapes from checkpoint tensors.

  Args:
    tensors: where the tensors come from.
    config: the architecture (fixes every shape).
    dtype: parameter dtype; None keeps each tensor's stored dtype (the cast,
      if any, is done on the host one tensor at a time).
    shardings: None (the default device), or a pytree of
      `jax.sharding.Sharding`s matching the param tree: each tensor goes
      straight into its sharding.
    on_tensor: optional hook called after each tensor is placed (used by
      tests to record per-device memory during a load).

  Returns:
    The param tree (nested dicts and lists of `jax.Array`s).

  Raises:
    ValueError: a tensor of the wrong shape (naming it).
    KeyError: a tensor missing from the checkpoint.
  """
  shapes = param_shapes(config)
  params = jax.tree.map(lambda _: None, shapes)
  for spec in weight_specs(config):
    shape = tuple(get_path(shapes, spec.path).shape)
    x = tensors.get(spec.hf_name)
    want = hf_shape(shape, spec.layout)
    if tuple(x.shape) != want:
      raise ValueError(f"tensor {spec.hf_name} has shape {tuple(x.shape)}, "
                       f"expected {want}")
    x = to_ours(x, spec.layout, shape)
    if dtype is not None:
      x = x.astype(dtype, copy=False)
    sharding = None if shardings is None else get_path(shardings, spec.path)
    array = _place(x, sharding)
    del x  # the host copy goes before the next tensor is read
    set_path(params, spec.path, array)
    if on_tensor is not None:
      on_tensor(spec.hf_name, array)
  return params


def device_bytes(arrays=None) -> dict[Any, int]:
  """Bytes held per device by `arrays` (default: every live jax array).

  Counted from each array's addressable shards, so a sharded array counts
  only its slice on each device; a buffer seen through several arrays (a
  global array and its per-device pieces) counts once.
  """
  arrays = jax.live_arrays() if arrays is None else arrays
  held: dict[Any, int] = {}
  seen: set[tuple[Any, int]] = set()
  for array in arrays:
    for shard in array.addressable_shards:
      buffer = (shard.device, shard.data.unsafe_buffer_pointer())
      if buffer not in seen:
        seen.add(buffer)
        held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
  return held


# --- checkpoints --------------------------------------------------------------
class Pretrained(NamedTuple):
  """What `load_pretrained` returns.

  Attributes:
    model: the model (a pytree that already carries `params`).
    params: the same param tree as `model.params`, for convenience.
    tokenizer: the SentencePiece tokenizer, or None if not required and
      absent.
  """
  model: T5 | Gemma
  params: Any
  tokenizer: Tokenizer | None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """An opened checkpoint, before any weight is read.

  Attributes:
    path: where it was read from (for messages).
    config: the architecture.
    tensors: its tensors, read on demand.
    tokenizer: the SentencePiece tokenizer, or None when absent.
  """
  path: str
  config: T5Config | GemmaConfig
  tensors: TensorSource
  tokenizer: Tokenizer | None

  @property
  def vocab_size(self) -> int:
    return self.config.vocab_size

  @property
  def tokenizer_id(self) -> str:
    return self.tokenizer.id if self.tokenizer else "untokenized"


def target_shardings(config: T5Config | GemmaConfig, mesh: Mesh,
                     replicate: bool = False) -> Any:
  """A pytree of `NamedSharding`s: tensor-parallel (`harness.models.sharding`)
  over `mesh`'s model axis, or every param replicated."""
  mesh = auto_mesh(mesh)
  shapes = param_shapes(config)
  if replicate:
    return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), shapes)
  return jax.tree.map(lambda s: NamedSharding(mesh, s),
                      param_partition_specs(shapes, mesh))


def load_checkpoint(checkpoint: Checkpoint, dtype=None,
                    mesh: Mesh | None = None, replicate: bool = False,
                    on_tensor: TensorHook | None = None) -> Pretrained:
  """Reads an opened checkpoint's weights into a model (see `load_params`).

  Args:
    checkpoint: the opened checkpoint.
    dtype: parameter dtype; None keeps the stored dtype.
    mesh: None: the default device. Else each tensor goes straight into its
      place on `mesh`: split over the model axis (the model then carries the
      mesh, as `sharding.shard_model` would give), or, with `replicate`,
      copied to every device (as `sharding.replicate_model`).
    replicate: see `mesh`.
    on_tensor: see `load_params`.
  """
  shardings = None
  if mesh is not None:
    shardings = target_shardings(checkpoint.config, mesh, replicate)
  params = load_params(checkpoint.tensors, checkpoint.config, dtype,
                       shardings, on_tensor)
  cls = T5 if isinstance(checkpoint.config, T5Config) else Gemma
  model_mesh = auto_mesh(mesh) if mesh is not None and not replicate else None
  model = cls(checkpoint.config, params, checkpoint.tokenizer_id,
              mesh=model_mesh)
  subset_file = os.path.join(os.fspath(checkpoint.path),
                             subset_vocab.SUBSET_FILE)
  if os.path.isfile(subset_file):  # a drafter with an output subset
    if mesh is not None and mesh.size > 1:
      raise ValueError(f"{subset_file}: a drafter whose output is a "
                       "vocabulary subset runs on one device, not a mesh of "
                       f"{mesh.size}")
    model = subset_vocab.load_output(model, subset_file)
    params = model.params
  return Pretrained(model, params, checkpoint.tokenizer)
