"""Exports trained T5 parameters as a Hugging Face folder, atomically.

The folder is what `harness.models.load_pretrained` (and transformers'
`T5ForConditionalGeneration`) reads: config.json, model.safetensors and
spiece.model, written by `harness.models.save_pretrained`, plus MODEL_CARD.md
and training_provenance.json describing the run. Everything is written into
a temporary sibling directory first and renamed into place, so a reader
sees either the previous export or the new one, never a half-written mix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from harness.models import T5, T5Config, Tokenizer, save_pretrained
from harness.models.t5 import init_t5_params

CARD_FILE = "MODEL_CARD.md"
PROVENANCE_FILE = "training_provenance.json"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _check_params(params, config: T5Config) -> None:
  """Raises ValueError unless params has the layout and shapes of config."""
  want = jax.eval_shape(lambda: init_t5_params(jax.random.PRNGKey(0), config))
  want_leaves, want_tree = jax.tree_util.tree_flatten_with_path(want)
  got_leaves, got_tree = jax.tree_util.tree_flatten_with_path(params)
  if want_tree != got_tree:
    raise ValueError(f"params: tree does not match the T5 layout of {config}")
  for (path, w), (_, g) in zip(want_leaves, got_leaves):
    if tuple(g.shape) != tuple(w.shape):
      raise ValueError(f"params{jax.tree_util.keystr(path)}: shape "
                       f"{tuple(g.shape)}, expected {tuple(w.shape)}")


def _to_host(x, dtype) -> np.ndarray:
  """A (possibly multi-host sharded) array as one numpy array of dtype."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x).astype(dtype)


def _card(name: str, config: T5Config, dtype: str, num_params: int,
          extra: Mapping[str, Any]) -> str:
  c = config
  lines = [
      f"# {name}", "",
      "T5 v1.1 weights exported by `harness.finetune.export` as a Hugging "
      "Face folder (`harness.models.load_pretrained` and transformers' "
      "`T5ForConditionalGeneration` read it).", "",
      "## Model",
      f"- d_model {c.d_model}, {c.num_encoder_layers} encoder + "
      f"{c.num_decoder_layers} decoder layers, {c.num_heads} heads x d_kv "
      f"{c.d_kv}, d_ff {c.d_ff}, vocabulary {c.vocab_size}.",
      f"- {num_params:,} parameters, stored in {dtype}.", ""]
  if extra:
    lines += ["## Training"]
    for key, value in extra.items():
      if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, default=str)
      lines.append(f"- {key}: {value}")
    lines.append("")
  lines.append(f"Full record: `{PROVENANCE_FILE}`.")
  return "\n".join(lines) + "\n"


def _replace_dir(new: str, out_dir: str) -> None:
  """Renames directory `new` to `out_dir`, replacing an existing one whole."""
  if not os.path.lexists(out_dir):
    os.rename(new, out_dir)
    return
  if not os.path.isdir(out_dir) or os.path.islink(out_dir):
    raise ValueError(f"out_dir: {out_dir} exists and is not a directory")
  parent, base = os.path.split(out_dir)
  old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
  os.rename(out_dir, old)  # onto the empty directory
  try:
    os.rename(new, out_dir)
  except BaseException:
    os.rename(old, out_dir)
    raise
  shutil.rmtree(old, ignore_errors=True)


def export_hf(params, config: T5Config, tokenizer_file: str | os.PathLike,
              out_dir: str | os.PathLike, *, dtype: str = "float32",
              extra_card: Mapping[str, Any] | None = None) -> str:
  """Writes params as a Hugging Face T5 folder, atomically.

  Multi-host: every process must call it (sharded arrays are gathered);
  only process 0 writes.

  Args:
    params: T5 params in `harness.models.t5`'s layout (any dtype, possibly
      sharded over a mesh).
    config: their architecture.
    tokenizer_file: the SentencePiece model, copied as spiece.model.
    out_dir: the export directory; an existing one is replaced whole.
    dtype: "float32" or "bfloat16", the stored weights' dtype.
    extra_card: JSON-able facts about the run (task, steps, metrics, ...)
      listed in MODEL_CARD.md and stored in training_provenance.json.

  Returns:
    out_dir.

  Raises:
    ValueError: an unknown dtype, params not matching config, a tokenizer
      larger than the vocabulary, or out_dir a non-directory.
    FileNotFoundError: a missing tokenizer file.
  """
  if dtype not in DTYPES:
    raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")
  tokenizer_file = os.fspath(tokenizer_file)
  if not os.path.isfile(tokenizer_file):
    raise FileNotFoundError(f"tokenizer_file: {tokenizer_file} not found")
  tokenizer = Tokenizer(tokenizer_file)
  if tokenizer.vocab_size > config.vocab_size:
    raise ValueError(
        f"tokenizer_file: {tokenizer_file} has {tokenizer.vocab_size} pieces, "
        f"more than the model's vocab_size {config.vocab_size}")
  _check_params(params, config)
  host = jax.tree.map(lambda x: _to_host(x, DTYPES[dtype]), params)
  out_dir = os.path.abspath(os.fspath(out_dir))
  if jax.process_index() != 0:
    return out_dir
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(host))
  extra = dict(extra_card or {})
  parent, base = os.path.split(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
  try:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the export
    save_pretrained(T5(config, host, tokenizer.id), tmp, tokenizer)
    with open(os.path.join(tmp, CARD_FILE), "w") as f:
      f.write(_card(base, config, dtype, num_params, extra))
    with open(os.path.join(tmp, PROVENANCE_FILE), "w") as f:
      json.dump({"config": dataclasses.asdict(config), "dtype": dtype,
                 "num_parameters": num_params, "tokenizer": tokenizer.id,
                 "training": extra}, f, indent=2, sort_keys=True,
                default=str)
    for name in os.listdir(tmp):  # some writers create files 0600
      os.chmod(os.path.join(tmp, name), 0o666 & ~umask)
    _replace_dir(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir
