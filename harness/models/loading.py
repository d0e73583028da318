"""Reads and writes Hugging-Face-format checkpoint directories.

A directory holds `config.json`, the SentencePiece model (`spiece.model` for
T5, `tokenizer.model` for Gemma) and the weights in one of the forms Hugging
Face publishes, tried in this order:

* `model.safetensors.index.json` and the safetensors shards it lists;
* `model.safetensors`;
* `pytorch_model.bin.index.json` and its shards, or `pytorch_model.bin`
  (read through torch, memory-mapped, when torch is installed);
* `flax_model.msgpack` (`flax.serialization`; the format has no index, so
  the file is read whole).

A `.gguf` file (or a directory holding one) is read by
`harness.models.gguf`, a T5X checkpoint directory (a `checkpoint` msgpack
file and TensorStore arrays) by `harness.models.t5x`. Supported
`model_type`s: "t5" (v1.1 gated-GELU, or v1.0 ReLU), "gemma2",
"gemma3_text". Tensor names and layouts come from the
one table of `harness.models.weights`, for every format.

Weights go straight to their target devices, tensor by tensor
(`weights.load_params`): pass a mesh to `load_pretrained` and no device ever
holds more than its share.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import safetensors
import safetensors.numpy

from harness.models import gguf, subset_vocab, t5x
from harness.models.configs import AttentionType, GemmaConfig, T5Config
from harness.models.gemma import Gemma
from harness.models.t5 import T5
from harness.models.tokenizer import Tokenizer
from harness.models.weights import (Checkpoint, Pretrained, TensorHook,
                                    get_path, load_checkpoint, to_hf,
                                    weight_specs)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
FLAX_FILE = "flax_model.msgpack"
TOKENIZER_FILES = {"t5": "spiece.model", "gemma": "tokenizer.model"}
GEMMA_TYPES = {"gemma2": 2, "gemma3_text": 3}


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


def config_from_hf(cfg: dict, tensor_names: set[str] | None = None
                   ) -> T5Config | GemmaConfig:
  """The architecture of a Hugging Face `config.json` (no weight read).

  Args:
    cfg: the parsed `config.json`.
    tensor_names: the checkpoint's tensor names (for T5, an
      `lm_head.weight` means untied embeddings); None when they are not
      read: untied, as in T5 v1.1.

  Raises:
    ValueError: a `model_type` other than t5, gemma2, gemma3_text, or an
      unsupported T5 activation.
    KeyError: a required field is missing.
  """
  model_type = cfg.get("model_type")
  if model_type == "t5":
    names = {"lm_head.weight"} if tensor_names is None else tensor_names
    return _t5_config(cfg, names)
  if model_type in GEMMA_TYPES:
    return _gemma_config(cfg, GEMMA_TYPES[model_type])
  raise ValueError(f"unknown architecture {model_type!r}; supported: t5, "
                   f"{', '.join(GEMMA_TYPES)}")


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


# --- tensor sources ---------------------------------------------------------
def _require(path: str, what: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f"missing {what}: {path}")
  return path


class _ShardedFiles:
  """Tensors spread over files: a weight map (name -> file) and an opener.

  Files are opened on first use; each subclass reads one tensor at a time.
  """

  def __init__(self, directory: str, weight_map: dict[str, str]):
    self._dir = directory
    self._map = weight_map
    self._open: dict[str, Any] = {}

  def names(self) -> set[str]:
    return set(self._map)

  def _file(self, name: str):
    if name not in self._map:
      raise KeyError(f"checkpoint {self._dir} has no tensor {name!r}")
    file = self._map[name]
    if file not in self._open:
      self._open[file] = self._open_file(
          _require(os.path.join(self._dir, file), "weights shard"))
    return self._open[file]

  def _open_file(self, path: str):
    raise NotImplementedError


class SafetensorsTensors(_ShardedFiles):
  """`model.safetensors`, or the shards of `model.safetensors.index.json`."""

  def __init__(self, directory: str, index: str | None):
    if index is None:
      with _safe_open(os.path.join(directory, WEIGHTS_FILE)) as f:
        weight_map = {k: WEIGHTS_FILE for k in f.keys()}
    else:
      weight_map = _weight_map(os.path.join(directory, index))
    super().__init__(directory, weight_map)

  def _open_file(self, path: str):
    return _safe_open(path)

  def get(self, name: str) -> np.ndarray:
    return self._file(name).get_tensor(name)


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(f"reading {TORCH_FILE} needs torch (pip install torch), "
                      "or convert the checkpoint to safetensors") from None
  return torch


class TorchTensors(_ShardedFiles):
  """`pytorch_model.bin`, or the shards of `pytorch_model.bin.index.json`.

  Each file is memory-mapped (`torch.load(mmap=True)`), so a tensor's bytes
  are read only when it is converted.
  """

  def __init__(self, directory: str, index: str | None):
    self._torch = _import_torch()
    if index is not None:
      super().__init__(directory, _weight_map(os.path.join(directory, index)))
      return
    state = self._open_file(os.path.join(directory, TORCH_FILE))
    super().__init__(directory, {k: TORCH_FILE for k in state})
    self._open[TORCH_FILE] = state

  def _open_file(self, path: str):
    try:
      return self._torch.load(path, map_location="cpu", mmap=True,
                              weights_only=True)
    except Exception as err:  # pylint: disable=broad-except
      raise ValueError(f"{path}: unreadable torch checkpoint ({err})") from None

  def get(self, name: str) -> np.ndarray:
    tensor = self._file(name)[name].detach()
    if tensor.dtype == self._torch.bfloat16:
      # numpy has no bfloat16; reinterpret the bits as ml_dtypes' bfloat16.
      return tensor.view(self._torch.int16).numpy().view(jnp.bfloat16)
    return tensor.numpy()


class FlaxTensors:
  """`flax_model.msgpack` (the Hugging Face Flax format).

  Flax names a Dense weight `kernel` ([in, out], the transpose of torch's
  `weight`), an embedding table `embedding` and a norm scale `weight`; this
  maps them back to the torch names and layout of `weights.weight_specs`.
  The msgpack format has no index, so the whole file is read at once.
  """

  def __init__(self, file: str):
    from flax import serialization  # pylint: disable=import-outside-toplevel
    with open(file, "rb") as f:
      try:
        tree = serialization.msgpack_restore(f.read())
      except Exception as err:  # pylint: disable=broad-except
        raise ValueError(f"{file}: unreadable Flax msgpack ({err})") from None
    self._file = file
    self._tensors: dict[str, tuple[np.ndarray, bool]] = {}
    self._collect(tree, ())

  def _collect(self, tree, path: tuple[str, ...]) -> None:
    if isinstance(tree, dict):
      for key, value in tree.items():
        self._collect(value, path + (str(key),))
      return
    *prefix, leaf = path
    name = ".".join(prefix + ["weight"])
    self._tensors[name] = (np.asarray(tree), leaf == "kernel")

  def names(self) -> set[str]:
    return set(self._tensors)

  def get(self, name: str) -> np.ndarray:
    if name not in self._tensors:
      raise KeyError(f"checkpoint {self._file} has no tensor {name!r}")
    x, kernel = self._tensors[name]
    return x.T if kernel else x


def _weight_map(index_file: str) -> dict[str, str]:
  weight_map = _read_json(index_file).get("weight_map")
  if not isinstance(weight_map, dict):
    raise ValueError(f"{index_file}: no 'weight_map' object")
  return weight_map


def tensor_source(directory: str):
  """The weights of a Hugging Face directory (module docstring's order).

  Raises:
    FileNotFoundError: none of the known weight files is present.
  """
  def has(name):
    return os.path.exists(os.path.join(directory, name))
  if has(WEIGHTS_INDEX_FILE):
    return SafetensorsTensors(directory, WEIGHTS_INDEX_FILE)
  if has(WEIGHTS_FILE):
    return SafetensorsTensors(directory, None)
  if has(TORCH_INDEX_FILE):
    return TorchTensors(directory, TORCH_INDEX_FILE)
  if has(TORCH_FILE):
    return TorchTensors(directory, None)
  if has(FLAX_FILE):
    return FlaxTensors(os.path.join(directory, FLAX_FILE))
  raise FileNotFoundError(
      f"missing weights ({WEIGHTS_FILE}, {WEIGHTS_INDEX_FILE}, {TORCH_FILE}, "
      f"{TORCH_INDEX_FILE} or {FLAX_FILE}): {directory}")


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


# --- loading ------------------------------------------------------------------
def open_checkpoint(path: str | os.PathLike,
                    require_tokenizer: bool = True) -> Checkpoint:
  """Opens a checkpoint (config, tokenizer, tensor index) without reading
  any weight; `weights.load_checkpoint` reads them.

  Args:
    path: a Hugging Face directory, a GGUF file or a directory holding
      one, or a T5X checkpoint directory; a leading ~ is expanded.
    require_tokenizer: raise if the SentencePiece file is missing.

  Raises:
    FileNotFoundError: a missing directory, config, weights or tokenizer.
    ValueError: an unknown architecture.
  """
  path = os.path.expanduser(os.fspath(path))
  if not os.path.exists(os.path.join(path, CONFIG_FILE)):
    if gguf.find_gguf(path) is not None:
      return gguf.open_gguf(path)
    if t5x.is_t5x_checkpoint(path):
      return t5x.open_t5x(path, require_tokenizer)
  cfg = _read_config(path)
  model_type = cfg.get("model_type")
  if model_type not in ("t5", *GEMMA_TYPES):
    raise ValueError(f"unknown architecture {model_type!r} in {path}/"
                     f"{CONFIG_FILE}; supported: t5, gemma2, gemma3_text")
  tensors = tensor_source(path)
  config = config_from_hf(cfg, tensors.names())
  family = "t5" if model_type == "t5" else "gemma"
  tok_file = os.path.join(path, TOKENIZER_FILES[family])
  tokenizer = None
  if require_tokenizer or os.path.exists(tok_file):
    tokenizer = Tokenizer(_require(tok_file, "tokenizer"))
  return Checkpoint(path, config, tensors, tokenizer)


def load_pretrained(path: str | os.PathLike, dtype=None,
                    require_tokenizer: bool = True, *,
                    mesh: Mesh | None = None, replicate: bool = False,
                    on_tensor: TensorHook | None = None) -> Pretrained:
  """Loads a T5 v1.1 / Gemma 2 / Gemma 3 checkpoint (module docstring).

  Args:
    path: the checkpoint directory (or GGUF file); a leading ~ is expanded.
    dtype: parameter dtype (e.g. jnp.bfloat16); None keeps the stored dtype
      (float32 for GGUF, whose weights are dequantised).
    require_tokenizer: raise if the SentencePiece file is missing (else the
      tokenizer is None and the model's tokenizer id is "untokenized").
    mesh: load each tensor straight onto this mesh: split over its model
      axis (the model carries the mesh), or copied to every device with
      `replicate`. None: the default device.
    replicate: see `mesh`.
    on_tensor: called after each tensor is placed (`weights.load_params`).

  Returns:
    `Pretrained(model, params, tokenizer)`; `model.params is params`.

  Raises:
    FileNotFoundError: a missing directory, config, weights or tokenizer.
    ValueError: an unknown architecture or a tensor of the wrong shape.
    KeyError: a tensor missing from the checkpoint.
  """
  return load_checkpoint(open_checkpoint(path, require_tokenizer), dtype,
                         mesh, replicate, on_tensor)


def save_pretrained(model: T5 | Gemma, path: str | os.PathLike,
                    tokenizer: Tokenizer | None = None,
                    max_shard_bytes: int | None = None) -> None:
  """Writes `model` as a Hugging-Face-format directory `load_pretrained` reads.

  Weights are saved in their current dtype; transformers can load the result
  too (T5ForConditionalGeneration, Gemma2ForCausalLM, Gemma3ForCausalLM).

  Args:
    model: the model.
    path: the directory (created if needed).
    tokenizer: saved beside the weights when given.
    max_shard_bytes: None: one `model.safetensors`. Else shards of at most
      this many bytes (a larger tensor gets a shard of its own) named
      `model-0000i-of-0000n.safetensors`, listed by
      `model.safetensors.index.json`, as transformers writes them.
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
          np.asarray(get_path(model.params, spec.path)), spec.layout))
      for spec in weight_specs(model.config)}
  if max_shard_bytes is None:
    safetensors.numpy.save_file(tensors, os.path.join(path, WEIGHTS_FILE),
                                metadata={"format": "pt"})
  else:
    _save_shards(tensors, path, max_shard_bytes)
  if tokenizer is not None:
    name = TOKENIZER_FILES["t5" if is_t5 else "gemma"]
    with open(os.path.join(path, name), "wb") as f:
      f.write(tokenizer.serialized)
  subset_file = os.path.join(path, subset_vocab.SUBSET_FILE)
  if subset_vocab.save_output(model, path) is None and os.path.exists(
      subset_file):
    os.remove(subset_file)  # a full-vocabulary model over an old subset one


def _save_shards(tensors: dict[str, np.ndarray], path: str,
                 max_shard_bytes: int) -> None:
  """Greedy shards of at most `max_shard_bytes`, plus their index."""
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name, x in tensors.items():
    if shards[-1] and size + x.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = x
    size += x.nbytes
  weight_map = {}
  for i, shard in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    safetensors.numpy.save_file(shard, os.path.join(path, file),
                                metadata={"format": "pt"})
    weight_map.update({name: file for name in shard})
  total = sum(x.nbytes for x in tensors.values())
  with open(os.path.join(path, WEIGHTS_INDEX_FILE), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              f, indent=2)
