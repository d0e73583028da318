"""Reads T5X checkpoint directories (the original T5 v1.1 release format).

A T5X checkpoint directory (e.g. `t5_1_1_small/checkpoint_1000000/`) holds
a msgpack file `checkpoint` (`flax.serialization`) of
`{"version": 3, "optimizer": {"target": params, "state": ...}}`, where each
parameter is either an inline array or a TensorStore spec (a dict with
`driver`, `kvstore`, `metadata`) naming a zarr array in a sibling directory
such as `target.encoder.layers_0.attention.query.kernel/`, its path relative
to the checkpoint directory. Only `target` (the parameters) is read; each
zarr array is read with `tensorstore` only when its tensor is asked for.

T5X's T5 parameter names (`target/encoder/layers_0/attention/query/kernel`
...) are mapped onto the Hugging Face names of
`harness.models.weights.weight_specs` and the torch layout (Dense kernels
are [in, out]: transposed; `relpos_bias/rel_embedding` is [heads, buckets]:
transposed), so the one layout table serves this format too. The
architecture is read off the shapes (T5X stores no config); the
SentencePiece model must sit beside the checkpoint as `spiece.model` (T5X
keeps it elsewhere, e.g. the public `cc_all.32000` vocabulary).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from harness.models.configs import T5Config
from harness.models.tokenizer import Tokenizer
from harness.models.weights import Checkpoint

CHECKPOINT_FILE = "checkpoint"
TOKENIZER_FILE = "spiece.model"
_ATTENTION = {"query": "q", "key": "k", "value": "v", "out": "o"}
# (T5X block name, HF sub-layer name) of each decoder / encoder sub-layer.
_ENCODER = (("pre_attention_layer_norm", "attention", "SelfAttention"),
            ("pre_mlp_layer_norm", "mlp", None))
_DECODER = (("pre_self_attention_layer_norm", "self_attention",
             "SelfAttention"),
            ("pre_cross_attention_layer_norm", "encoder_decoder_attention",
             "EncDecAttention"),
            ("pre_mlp_layer_norm", "mlp", None))


def is_t5x_checkpoint(path: str) -> bool:
  """True for a directory holding a T5X `checkpoint` file."""
  return os.path.isfile(os.path.join(path, CHECKPOINT_FILE))


def _is_spec(value: Any) -> bool:
  return isinstance(value, dict) and {"driver", "kvstore"} <= set(value)


def _flatten(tree: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
  """{"encoder/layers_0/...": leaf} of the `target` tree."""
  if isinstance(tree, dict) and not _is_spec(tree):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, prefix + (str(key),)))
    return out
  return {"/".join(prefix): tree}


def _hf_names(t5x_names: set[str]) -> dict[str, tuple[str, bool]]:
  """Hugging Face name -> (T5X name, transpose?) for every known tensor."""
  table = {"shared.weight": ("token_embedder/embedding", False),
           "lm_head.weight": ("decoder/logits_dense/kernel", True)}
  for stack, final in (("encoder", "encoder_norm"),
                       ("decoder", "decoder_norm")):
    table[f"{stack}.final_layer_norm.weight"] = (f"{stack}/{final}/scale",
                                                 False)
    table[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias."
          "weight"] = (f"{stack}/relpos_bias/rel_embedding", True)
    layers = sorted({int(m.group(1)) for n in t5x_names
                     if (m := re.match(rf"{stack}/layers_(\d+)/", n))})
    for i in layers:
      subs = _ENCODER if stack == "encoder" else _DECODER
      for j, (norm, block, hf_attention) in enumerate(subs):
        src, dst = f"{stack}/layers_{i}", f"{stack}.block.{i}.layer.{j}"
        table[f"{dst}.layer_norm.weight"] = (f"{src}/{norm}/scale", False)
        if hf_attention:
          for ours, hf in _ATTENTION.items():
            table[f"{dst}.{hf_attention}.{hf}.weight"] = (
                f"{src}/{block}/{ours}/kernel", True)
        else:
          for w in ("wi", "wi_0", "wi_1", "wo"):
            table[f"{dst}.DenseReluDense.{w}.weight"] = (
                f"{src}/mlp/{w}/kernel", True)
  return {hf: src for hf, src in table.items() if src[0] in t5x_names}


class T5XTensors:
  """The `target` tensors of a T5X checkpoint by Hugging Face name."""

  def __init__(self, directory: str):
    from flax import serialization  # pylint: disable=import-outside-toplevel
    path = os.path.join(directory, CHECKPOINT_FILE)
    with open(path, "rb") as f:
      try:
        contents = serialization.msgpack_restore(f.read())
        target = contents["optimizer"]["target"]
      except Exception as err:  # pylint: disable=broad-except
        raise ValueError(f"{path}: not a T5X checkpoint ({err!r})") from None
    self._dir = directory
    self._leaves = _flatten(target)
    self._names = _hf_names(set(self._leaves))

  def names(self) -> set[str]:
    return set(self._names)

  def t5x_shape(self, t5x_name: str) -> tuple[int, ...]:
    """A T5X tensor's shape (from its spec: nothing is read)."""
    leaf = self._leaves[t5x_name]
    if _is_spec(leaf):
      return tuple(leaf["metadata"]["shape"])
    return tuple(np.shape(leaf))

  def has(self, t5x_name: str) -> bool:
    return t5x_name in self._leaves

  def _read(self, leaf: Any) -> np.ndarray:
    if not _is_spec(leaf):
      return np.asarray(leaf)
    import tensorstore as ts  # pylint: disable=import-outside-toplevel
    spec = dict(leaf)
    kvstore = dict(spec.get("kvstore") or {})
    relative = kvstore.get("path", spec.pop("path", None))
    # Specs written on GCS name a bucket; locally the path is what counts.
    spec["kvstore"] = {"driver": "file",
                       "path": os.path.join(self._dir, relative)}
    return np.asarray(ts.open(spec, open=True).result().read().result())

  def get(self, name: str) -> np.ndarray:
    if name not in self._names:
      raise KeyError(f"T5X checkpoint {self._dir} has no tensor for "
                     f"{name!r}")
    t5x_name, transpose = self._names[name]
    x = self._read(self._leaves[t5x_name])
    return x.T if transpose else x


def _config(tensors: T5XTensors, path: str) -> T5Config:
  """The architecture, read off the tensor shapes."""
  def count(stack):
    return len({n for n in tensors.names()
                if re.match(rf"{stack}\.block\.\d+\.layer\.0\.layer_norm", n)})
  if not tensors.has("token_embedder/embedding"):
    raise KeyError(f"{path}: T5X checkpoint lacks "
                   "target/token_embedder/embedding")
  vocab, d_model = tensors.t5x_shape("token_embedder/embedding")
  heads, buckets = tensors.t5x_shape("encoder/relpos_bias/rel_embedding")
  inner = tensors.t5x_shape("encoder/layers_0/attention/query/kernel")[1]
  gated = tensors.has("encoder/layers_0/mlp/wi_0/kernel")
  d_ff = tensors.t5x_shape("encoder/layers_0/mlp/"
                           f"{'wi_0' if gated else 'wi'}/kernel")[1]
  tied = not tensors.has("decoder/logits_dense/kernel")
  return T5Config(vocab_size=vocab, d_model=d_model, d_kv=inner // heads,
                  d_ff=d_ff, num_heads=heads,
                  num_encoder_layers=count("encoder"),
                  num_decoder_layers=count("decoder"), num_buckets=buckets,
                  tie_embeddings=tied, scale_logits=tied,
                  gated_act="gelu_tanh" if gated else "relu")


def open_t5x(path: str, require_tokenizer: bool = True) -> Checkpoint:
  """Opens a T5X checkpoint directory (module docstring); reads no weight.

  Raises:
    FileNotFoundError: no `checkpoint` file, or no tokenizer when required.
    ValueError: an unreadable `checkpoint` file.
    KeyError: a T5 tensor missing from it.
  """
  if not is_t5x_checkpoint(path):
    raise FileNotFoundError(f"missing T5X {CHECKPOINT_FILE} file: {path}")
  tensors = T5XTensors(path)
  tok_file = os.path.join(path, TOKENIZER_FILE)
  tokenizer = None
  if os.path.exists(tok_file):
    tokenizer = Tokenizer(tok_file)
  elif require_tokenizer:
    raise FileNotFoundError(f"missing tokenizer: {tok_file} (T5X keeps the "
                            "SentencePiece model apart; copy it there)")
  return Checkpoint(path, _config(tensors, path), tensors, tokenizer)
