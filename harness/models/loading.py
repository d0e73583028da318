"""Reads and writes Hugging-Face-format checkpoint directories.

A directory holds `config.json`, the weights as `model.safetensors` or as
shards listed by `model.safetensors.index.json`, and the SentencePiece model
(`spiece.model` for T5, `tokenizer.model` for Gemma). Supported
`model_type`s: "t5" (v1.1 gated-GELU, or v1.0 ReLU), "gemma2", "gemma3_text".

One table per architecture (:func:`weight_specs`) maps each Hugging Face
tensor name to a path in our param tree and a layout conversion; loading and
saving both read it, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from harness.models.configs import AttentionType, GemmaConfig, T5Config
from harness.models.gemma import Gemma, init_gemma_params
from harness.models.t5 import T5, init_t5_params
from harness.models.tokenizer import Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILES = {"t5": "spiece.model", "gemma": "tokenizer.model"}
GEMMA_TYPES = {"gemma2": 2, "gemma3_text": 3}


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


# --- layouts ------------------------------------------------------------------
def to_ours(x: np.ndarray, layout: Layout, shape: tuple[int, ...]) -> np.ndarray:
  """Converts a torch-layout array to our layout of the given shape."""
  if layout == Layout.COPY:
    return x
  # SPLIT_OUT: [H*K, D] -> [D, H*K] -> [D, H, K];
  # SPLIT_IN: [D, H*K] -> [H*K, D] -> [H, K, D]; TRANSPOSE: [out, in] -> [in, out]
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


# --- configs ------------------------------------------------------------------
def _t5_config(cfg: dict, tensor_names: set[str]) -> T5Config:
  act = cfg.get("feed_forward_proj", "relu")
  if act not in ("gated-gelu", "relu"):
    raise ValueError(f"unsupported T5 feed_forward_proj {act!r}")
  return T5Config(
      vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], d_kv=cfg["d_kv"],
      d_ff=cfg["d_ff"], num_heads=cfg["num_heads"],
      num_encoder_layers=cfg["num_layers"],
      num_decoder_layers=cfg.get("num_decoder_layers") or cfg["num_layers"],
      num_buckets=cfg.get("relative_attention_num_buckets", 32),
      max_distance=cfg.get("relative_attention_max_distance", 128),
      layer_norm_eps=cfg.get("layer_norm_epsilon", 1e-6),
      # transformers 5 always writes tie_word_embeddings=True for T5 and
      # records the v1.0 output scaling separately.
      tie_embeddings="lm_head.weight" not in tensor_names,
      scale_logits=cfg.get("scale_decoder_outputs",
                           cfg.get("tie_word_embeddings", True)),
      gated_act="gelu_tanh" if act == "gated-gelu" else "relu",
      pad_id=cfg.get("pad_token_id", 0), eos_id=cfg.get("eos_token_id", 1))


def _rope_bases(cfg: dict) -> tuple[float, float, float]:
  """(global base, local base, global linear scale) from old or new keys."""
  rope = cfg.get("rope_parameters") or {}
  full = rope.get("full_attention", rope)
  local = rope.get("sliding_attention", {})
  base_global = full.get("rope_theta", cfg.get("rope_theta", 10_000.0))
  base_local = local.get("rope_theta",
                         cfg.get("rope_local_base_freq", base_global))
  scaling = cfg.get("rope_scaling") or full
  scale = (scaling.get("factor", 1.0)
           if scaling.get("rope_type", "default") == "linear" else 1.0)
  return float(base_global), float(base_local), float(scale)


def _gemma_config(cfg: dict, version: int) -> GemmaConfig:
  base_global, base_local, scale = _rope_bases(cfg)
  types = cfg.get("layer_types")
  eos = cfg.get("eos_token_id", 1)
  return GemmaConfig(
      version=version, vocab_size=cfg["vocab_size"],
      d_model=cfg["hidden_size"], num_layers=cfg["num_hidden_layers"],
      num_heads=cfg["num_attention_heads"],
      num_kv_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"],
      d_ff=cfg["intermediate_size"],
      query_pre_attn_scalar=float(cfg.get("query_pre_attn_scalar", 256)),
      sliding_window=cfg.get("sliding_window") or 4096,
      attention_types=tuple(AttentionType(t) for t in types) if types else (),
      attn_logit_softcap=cfg.get("attn_logit_softcapping"),
      final_logit_softcap=cfg.get("final_logit_softcapping"),
      rope_base_global=base_global, rope_base_local=base_local,
      rope_scale_global=scale, use_qk_norm=version == 3,
      rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
      pad_id=cfg.get("pad_token_id", 0),
      eos_id=eos[0] if isinstance(eos, list) else eos,
      bos_id=cfg.get("bos_token_id", 2))


def _hf_t5_config(c: T5Config) -> dict:
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": c.vocab_size, "d_model": c.d_model, "d_kv": c.d_kv,
      "d_ff": c.d_ff, "num_heads": c.num_heads,
      "num_layers": c.num_encoder_layers,
      "num_decoder_layers": c.num_decoder_layers,
      "relative_attention_num_buckets": c.num_buckets,
      "relative_attention_max_distance": c.max_distance,
      "layer_norm_epsilon": c.layer_norm_eps,
      "feed_forward_proj": ("gated-gelu" if c.gated_act == "gelu_tanh"
                            else "relu"),
      "tie_word_embeddings": c.scale_logits,
      "scale_decoder_outputs": c.scale_logits,
      "pad_token_id": c.pad_id, "eos_token_id": c.eos_id,
      "decoder_start_token_id": c.decoder_start_id, "is_encoder_decoder": True,
      "dropout_rate": 0.0,
  }


def _hf_gemma_config(c: GemmaConfig) -> dict:
  v3 = c.version == 3
  if v3:
    rope = {"full_attention": {"rope_type": "default",
                               "rope_theta": c.rope_base_global},
            "sliding_attention": {"rope_type": "default",
                                  "rope_theta": c.rope_base_local}}
    if c.rope_scale_global != 1.0:
      rope["full_attention"].update(rope_type="linear",
                                    factor=c.rope_scale_global)
  else:
    rope = {"rope_type": "default", "rope_theta": c.rope_base_global}
  return {
      "architectures": ["Gemma3ForCausalLM" if v3 else "Gemma2ForCausalLM"],
      "model_type": "gemma3_text" if v3 else "gemma2",
      "vocab_size": c.vocab_size, "hidden_size": c.d_model,
      "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
      "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim,
      "intermediate_size": c.d_ff,
      # transformers validates this field as an int.
      "query_pre_attn_scalar": (int(c.query_pre_attn_scalar)
                                if float(c.query_pre_attn_scalar).is_integer()
                                else c.query_pre_attn_scalar),
      "sliding_window": c.sliding_window,
      "layer_types": [t.value for t in c.attention_types],
      "attn_logit_softcapping": c.attn_logit_softcap,
      "final_logit_softcapping": c.final_logit_softcap,
      "rope_parameters": rope, "rms_norm_eps": c.rms_norm_eps,
      "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
      "pad_token_id": c.pad_id, "eos_token_id": c.eos_id,
      "bos_token_id": c.bos_id,
  }


# --- files --------------------------------------------------------------------
def _require(path: str, what: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f"missing {what}: {path}")
  return path


class _Tensors:
  """Lazy access to the tensors of one or more safetensors files."""

  def __init__(self, directory: str):
    index = os.path.join(directory, WEIGHTS_INDEX_FILE)
    if os.path.exists(index):
      weight_map = _read_json(index)["weight_map"]
    else:
      _require(os.path.join(directory, WEIGHTS_FILE),
               f"weights ({WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE})")
      with _safe_open(os.path.join(directory, WEIGHTS_FILE)) as f:
        weight_map = {k: WEIGHTS_FILE for k in f.keys()}
    self._dir = directory
    self._map = weight_map
    self._open = {}

  def names(self) -> set[str]:
    return set(self._map)

  def get(self, name: str) -> np.ndarray:
    if name not in self._map:
      raise KeyError(f"checkpoint {self._dir} has no tensor {name!r}")
    file = self._map[name]
    if file not in self._open:
      self._open[file] = _safe_open(
          _require(os.path.join(self._dir, file), "weights shard"))
    return self._open[file].get_tensor(name)


def _set_path(tree, path: tuple, value) -> None:
  for key in path[:-1]:
    tree = tree[key]
  tree[path[-1]] = value


def _get_path(tree, path: tuple):
  for key in path:
    tree = tree[key]
  return tree


def _load_params(tensors: _Tensors, config, dtype) -> Any:
  """Fills a param tree of `config`'s shapes from checkpoint tensors."""
  init = init_t5_params if isinstance(config, T5Config) else init_gemma_params
  shapes = jax.eval_shape(lambda: init(jax.random.PRNGKey(0), config))
  params = jax.tree.map(lambda _: None, shapes)
  for spec in weight_specs(config):
    shape = tuple(_get_path(shapes, spec.path).shape)
    x = tensors.get(spec.hf_name)
    want = hf_shape(shape, spec.layout)
    if tuple(x.shape) != want:
      raise ValueError(f"tensor {spec.hf_name} has shape {tuple(x.shape)}, "
                       f"expected {want}")
    x = to_ours(x, spec.layout, shape)
    _set_path(params, spec.path, jnp.asarray(x, dtype))
  return params


def _read_config(directory: str) -> dict:
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"missing checkpoint directory: {directory}")
  return _read_json(_require(os.path.join(directory, CONFIG_FILE),
                             CONFIG_FILE))


def _read_json(path: str) -> Any:
  """A JSON file; ValueError naming it if it is not valid JSON."""
  with open(path, "rb") as f:
    try:
      return json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
      raise ValueError(f"{path}: invalid JSON ({err})") from None


def _safe_open(path: str):
  """``safetensors.safe_open``; ValueError naming a corrupt file."""
  try:
    return safetensors.safe_open(path, "np")
  except safetensors.SafetensorError as err:
    raise ValueError(f"{path}: corrupt safetensors file ({err})") from None


def load_pretrained(path: str | os.PathLike, dtype=jnp.float32,
                    require_tokenizer: bool = True) -> Pretrained:
  """Loads a Hugging-Face-format T5 v1.1 / Gemma 2 / Gemma 3 directory.

  A `.gguf` file, or a directory without `config.json` that holds one, is
  read as a Gemma 3 GGUF file instead (`harness.models.gguf`; needs the
  optional `gguf` package).

  Args:
    path: the checkpoint directory (or GGUF file); a leading ~ is expanded.
    dtype: parameter dtype (jnp.float32 or jnp.bfloat16).
    require_tokenizer: raise if the SentencePiece file is missing (else the
      tokenizer is None and the model's tokenizer id is "untokenized").

  Returns:
    `Pretrained(model, params, tokenizer)`; `model.params is params`.

  Raises:
    FileNotFoundError: a missing directory, config, weights or tokenizer.
    ValueError: an unknown architecture or a tensor of the wrong shape.
    KeyError: a tensor missing from the checkpoint.
  """
  path = os.path.expanduser(os.fspath(path))
  if not os.path.exists(os.path.join(path, CONFIG_FILE)):
    from harness.models import gguf  # pylint: disable=import-outside-toplevel
    if gguf.find_gguf(path) is not None:
      return gguf.load_gguf(path, dtype)
  cfg = _read_config(path)
  model_type = cfg.get("model_type")
  if model_type not in ("t5", *GEMMA_TYPES):
    raise ValueError(f"unknown architecture {model_type!r} in {path}/"
                     f"{CONFIG_FILE}; supported: t5, gemma2, gemma3_text")
  tensors = _Tensors(path)
  if model_type == "t5":
    config, cls, family = _t5_config(cfg, tensors.names()), T5, "t5"
  else:
    config = _gemma_config(cfg, GEMMA_TYPES[model_type])
    cls, family = Gemma, "gemma"
  params = _load_params(tensors, config, dtype)
  tok_file = os.path.join(path, TOKENIZER_FILES[family])
  tokenizer = None
  if require_tokenizer or os.path.exists(tok_file):
    tokenizer = Tokenizer(_require(tok_file, "tokenizer"))
  model = cls(config, params, tokenizer.id if tokenizer else "untokenized")
  return Pretrained(model, params, tokenizer)


def save_pretrained(model: T5 | Gemma, path: str | os.PathLike,
                    tokenizer: Tokenizer | None = None) -> None:
  """Writes `model` as a Hugging-Face-format directory `load_pretrained` reads.

  Weights are saved in their current dtype; transformers can load the result
  too (T5ForConditionalGeneration, Gemma2ForCausalLM, Gemma3ForCausalLM).
  """
  path = os.fspath(path)
  os.makedirs(path, exist_ok=True)
  is_t5 = isinstance(model, T5)
  cfg = (_hf_t5_config if is_t5 else _hf_gemma_config)(model.config)
  cfg["dtype"] = str(jnp.dtype(model.dtype))
  with open(os.path.join(path, CONFIG_FILE), "w") as f:
    json.dump(cfg, f, indent=2)
  tensors = {
      spec.hf_name: np.ascontiguousarray(to_hf(
          np.asarray(_get_path(model.params, spec.path)), spec.layout))
      for spec in weight_specs(model.config)}
  safetensors.numpy.save_file(tensors, os.path.join(path, WEIGHTS_FILE),
                              metadata={"format": "pt"})
  if tokenizer is not None:
    name = TOKENIZER_FILES["t5" if is_t5 else "gemma"]
    with open(os.path.join(path, name), "wb") as f:
      f.write(tokenizer.serialized)
