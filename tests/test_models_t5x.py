"""The T5X checkpoint reader on a tiny checkpoint written in T5X's layout.

The test writes, independently of the reader, exactly what T5X writes: a
msgpack `checkpoint` file `{"version": 3, "optimizer": {"target": ...,
"state": ...}}` whose parameters are TensorStore specs with relative paths,
and one zarr array per parameter under `target.<dotted path>/`, in T5X's
names and layouts (Dense kernels [in, out] with heads flattened,
`rel_embedding` [heads, buckets]). Loading it must give the same params and
logits as the same weights saved as `model.safetensors`.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.models import (T5Config, Tokenizer, load_pretrained, random_t5,
                            save_pretrained)
from harness.testing import tokenizers as tok_fixtures

ts = pytest.importorskip("tensorstore")
serialization = pytest.importorskip("flax.serialization")

CONFIG = T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_heads=4,
                  num_encoder_layers=2, num_decoder_layers=3, num_buckets=8)


def _t5x_target(params):
  """Our param tree -> T5X's `target` tree (names and layouts)."""
  def attention(p):
    d = p["q"].shape[0]
    return {"query": {"kernel": p["q"].reshape(d, -1)},
            "key": {"kernel": p["k"].reshape(d, -1)},
            "value": {"kernel": p["v"].reshape(d, -1)},
            "out": {"kernel": p["o"].reshape(-1, p["o"].shape[-1])}}

  def mlp(p):
    return {w: {"kernel": p[w]} for w in ("wi_0", "wi_1", "wo")}

  enc, dec = params["encoder"], params["decoder"]
  target = {
      "token_embedder": {"embedding": params["embed"]},
      "encoder": {"relpos_bias": {"rel_embedding": enc["rel_bias"].T},
                  "encoder_norm": {"scale": enc["final_norm"]}},
      "decoder": {"relpos_bias": {"rel_embedding": dec["rel_bias"].T},
                  "decoder_norm": {"scale": dec["final_norm"]},
                  "logits_dense": {"kernel": params["lm_head"]}},
  }
  for i, layer in enumerate(enc["layers"]):
    target["encoder"][f"layers_{i}"] = {
        "pre_attention_layer_norm": {"scale": layer["self_attn_norm"]},
        "attention": attention(layer["self_attn"]),
        "pre_mlp_layer_norm": {"scale": layer["mlp_norm"]},
        "mlp": mlp(layer["mlp"])}
  for i, layer in enumerate(dec["layers"]):
    target["decoder"][f"layers_{i}"] = {
        "pre_self_attention_layer_norm": {"scale": layer["self_attn_norm"]},
        "self_attention": attention(layer["self_attn"]),
        "pre_cross_attention_layer_norm": {"scale": layer["cross_attn_norm"]},
        "encoder_decoder_attention": attention(layer["cross_attn"]),
        "pre_mlp_layer_norm": {"scale": layer["mlp_norm"]},
        "mlp": mlp(layer["mlp"])}
  return target


def _write_t5x(target, directory, inline=()):
  """Writes `target` as T5X does; names in `inline` stay in the msgpack."""
  def write(tree, path):
    if isinstance(tree, dict):
      return {k: write(v, path + (k,)) for k, v in tree.items()}
    x = np.asarray(tree)
    name = ".".join(("target",) + path)
    if name in inline:
      return x
    spec = {"driver": "zarr",
            "kvstore": {"driver": "file", "path": name},
            "metadata": {"chunks": list(x.shape),
                         "compressor": {"id": "gzip", "level": 1},
                         "dtype": "bfloat16" if x.dtype == jnp.bfloat16
                                  else x.dtype.str,
                         "shape": list(x.shape)}}
    absolute = dict(spec, kvstore={"driver": "file",
                                   "path": os.path.join(directory, name)})
    store = ts.open(absolute, create=True, open=True).result()
    store.write(x).result()
    return spec

  os.makedirs(directory, exist_ok=True)
  state = {"step": np.int32(1000), "param_states": {}}
  contents = {"version": 3,
              "optimizer": {"target": write(target, ()), "state": state}}
  with open(os.path.join(directory, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))


def _logits(model):
  prompt = jnp.array([3, 4, 5, 6, 7, 0, 0, 0], jnp.int32)
  cache = model.prefill(prompt, jnp.int32(5), 16)
  logits, _ = model.score(jnp.array([[7, 8, 9, 10]]), cache)
  return np.asarray(logits)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_t5x_checkpoint_matches_safetensors(tmp_path, dtype):
  model = random_t5(jax.random.PRNGKey(3), CONFIG, dtype)
  tokenizer = Tokenizer(tok_fixtures.train_tiny_sentencepiece(
      tmp_path / "spm.model", vocab_size=90))
  save_pretrained(model, tmp_path / "hf", tokenizer)
  t5x_dir = tmp_path / "checkpoint_1000"
  _write_t5x(jax.tree.map(np.asarray, _t5x_target(model.params)),
             str(t5x_dir), inline={"target.encoder.encoder_norm.scale"})
  assert (t5x_dir / "target.encoder.layers_1.attention.query.kernel"
          / ".zarray").exists()
  shutil.copy(tmp_path / "hf" / "spiece.model", t5x_dir / "spiece.model")
  reference = load_pretrained(tmp_path / "hf").model
  loaded = load_pretrained(t5x_dir).model
  assert loaded.config == reference.config
  assert loaded.tokenizer_id == reference.tokenizer_id
  jax.tree.map(np.testing.assert_array_equal, loaded.params,
               reference.params)
  assert {x.dtype for x in jax.tree.leaves(loaded.params)} == {
      jnp.dtype(dtype)}
  np.testing.assert_array_equal(_logits(loaded), _logits(reference))


def test_t5x_without_tokenizer_is_one_line(tmp_path):
  model = random_t5(jax.random.PRNGKey(3), CONFIG)
  _write_t5x(jax.tree.map(np.asarray, _t5x_target(model.params)),
             str(tmp_path))
  with pytest.raises(FileNotFoundError, match="missing tokenizer.*spiece"):
    load_pretrained(tmp_path)
  loaded = load_pretrained(tmp_path, require_tokenizer=False).model
  jax.tree.map(np.testing.assert_array_equal, loaded.params, model.params)
