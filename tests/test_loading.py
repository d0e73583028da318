"""load_pretrained / save_pretrained round trips, sharded indexes and errors."""

import dataclasses
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from harness.models import (Tokenizer, check_same_tokenizer,
                            check_same_vocabulary, load_pretrained,
                            open_checkpoint, random_gemma, random_t5,
                            save_pretrained)
from harness.models import configs
from harness.testing import tokenizers as tok_fixtures
from harness.runner import config as cfg
from harness.runner import pairs


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
  return tok_fixtures.train_tiny_sentencepiece(
      tmp_path_factory.mktemp("spm") / "t5.model")


@pytest.fixture(scope="module", params=["t5", "gemma3"])
def saved(request, tmp_path_factory, spm_file):
  """(model, directory) of a random tiny model saved with a tokenizer."""
  key = jax.random.PRNGKey(1)
  model = (random_t5(key, configs.TINY_T5) if request.param == "t5"
           else random_gemma(key, configs.TINY_GEMMA3))
  directory = tmp_path_factory.mktemp(request.param)
  save_pretrained(model, directory, Tokenizer(spm_file))
  return model, str(directory)


def _assert_same_params(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_round_trip(saved):
  model, directory = saved
  loaded, params, tokenizer = load_pretrained(directory)
  assert loaded.params is params
  assert loaded.config == model.config
  _assert_same_params(params, model.params)
  assert loaded.tokenizer_id == tokenizer.id
  assert tokenizer.id.startswith("spm-sha256:")


def test_bfloat16(saved):
  _, directory = saved
  model, params, _ = load_pretrained(directory, dtype=jnp.bfloat16)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("bfloat16")}
  save_pretrained(model, directory + "_bf16")
  again, _, _ = load_pretrained(directory + "_bf16", dtype=jnp.bfloat16,
                                require_tokenizer=False)
  _assert_same_params(again.params, params)


def test_sharded_index(saved, tmp_path):
  model, directory = saved
  tensors = safetensors.numpy.load_file(
      os.path.join(directory, "model.safetensors"))
  names = sorted(tensors)
  weight_map = {}
  for i, part in enumerate((names[::2], names[1::2])):
    file = f"model-{i + 1:05d}-of-00002.safetensors"
    safetensors.numpy.save_file({n: tensors[n] for n in part},
                                str(tmp_path / file))
    weight_map.update({n: file for n in part})
  with open(tmp_path / "model.safetensors.index.json", "w") as f:
    json.dump({"metadata": {}, "weight_map": weight_map}, f)
  for name in ("config.json", "spiece.model", "tokenizer.model"):
    if os.path.exists(os.path.join(directory, name)):
      with open(os.path.join(directory, name), "rb") as src:
        (tmp_path / name).write_bytes(src.read())
  loaded, _, _ = load_pretrained(tmp_path)
  _assert_same_params(loaded.params, model.params)


def _copy(directory, tmp_path, skip=()):
  for name in os.listdir(directory):
    if name not in skip:
      with open(os.path.join(directory, name), "rb") as src:
        (tmp_path / name).write_bytes(src.read())
  return tmp_path


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors",
                                     "tokenizer"])
def test_missing_file_errors(saved, tmp_path, missing):
  _, directory = saved
  skip = ({"spiece.model", "tokenizer.model"} if missing == "tokenizer"
          else {missing})
  _copy(directory, tmp_path, skip)
  with pytest.raises(FileNotFoundError, match="missing"):
    load_pretrained(tmp_path)
  with pytest.raises(FileNotFoundError, match="directory"):
    load_pretrained(tmp_path / "nowhere")


def test_unknown_architecture(saved, tmp_path):
  _, directory = saved
  _copy(directory, tmp_path)
  cfg = json.loads((tmp_path / "config.json").read_text())
  cfg["model_type"] = "llama"
  (tmp_path / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="unknown architecture 'llama'"):
    load_pretrained(tmp_path)


def test_wrong_shape_names_the_tensor(saved, tmp_path):
  _, directory = saved
  _copy(directory, tmp_path)
  file = str(tmp_path / "model.safetensors")
  tensors = safetensors.numpy.load_file(file)
  name = sorted(n for n in tensors if n.endswith("v.weight")
                or n.endswith("v_proj.weight"))[0]
  tensors[name] = tensors[name][:-1]
  safetensors.numpy.save_file(tensors, file)
  with pytest.raises(ValueError, match=re.escape(f"tensor {name} has shape")):
    load_pretrained(tmp_path)
  del tensors[name]
  safetensors.numpy.save_file(tensors, file)
  with pytest.raises(KeyError, match=re.escape(name)):
    load_pretrained(tmp_path)


def test_tokenizer_wrapper(spm_file):
  tok = Tokenizer(spm_file)
  assert (tok.pad_id, tok.eos_id, tok.bos_id) == (0, 1, -1)
  text = tok_fixtures.synthetic_lines(3, seed=5)[0]
  ids = tok.encode(text)
  assert ids and all(3 <= i < tok.vocab_size for i in ids)
  assert tok.decode(ids) == text
  assert tok.encode(text, add_eos=True)[-1] == tok.eos_id
  assert tok.decode(ids + [tok.vocab_size + 5]) == text  # padded vocab ids


def test_tokenizer_mismatch_is_rejected(saved, spm_file, tmp_path):
  model, directory = saved
  loaded, _, tok = load_pretrained(directory)
  check_same_tokenizer(loaded, loaded)
  other = Tokenizer(tok_fixtures.train_tiny_sentencepiece(
      tmp_path / "other.model", vocab_size=90, seed=1))
  assert other.id != tok.id
  with pytest.raises(ValueError, match="tokenizers differ"):
    check_same_tokenizer(loaded, loaded.replace(tokenizer_id=other.id))
  decoding = pytest.importorskip("harness.decoding")
  with pytest.raises(ValueError, match="tokenizer"):
    decoding.decode("spec_decode", loaded.replace(tokenizer_id=other.id),
                    loaded, np.array([3, 4, 5]), temperature=0.0)
  del model, spm_file


# --- other weight formats ---------------------------------------------------
def _logits(model):
  """[1, 4, V] logits of a fixed prompt and continuation."""
  prompt = jnp.array([3, 4, 5, 6, 7, 0, 0, 0], jnp.int32)
  cache = model.prefill(prompt, jnp.int32(5), 16)
  logits, _ = model.score(jnp.array([[7, 8, 9, 10]]), cache)
  return np.asarray(logits)


def _rewrite(directory, tmp_path, write):
  """A copy of `directory` whose model.safetensors is replaced by `write`'s
  files (given the tensors in the torch layout and the target folder)."""
  _copy(directory, tmp_path, skip={"model.safetensors"})
  write(safetensors.numpy.load_file(
      os.path.join(directory, "model.safetensors")), tmp_path)
  return tmp_path


def _write_torch(tensors, folder, shards=1):
  torch = pytest.importorskip("torch")
  names = sorted(tensors)
  if shards == 1:
    torch.save({n: torch.from_numpy(tensors[n]) for n in names},
               folder / "pytorch_model.bin")
    return
  weight_map = {}
  for i in range(shards):
    file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
    part = names[i::shards]
    torch.save({n: torch.from_numpy(tensors[n]) for n in part}, folder / file)
    weight_map.update({n: file for n in part})
  (folder / "pytorch_model.bin.index.json").write_text(
      json.dumps({"metadata": {}, "weight_map": weight_map}))


def _write_flax(tensors, folder):
  """The Hugging Face Flax layout: Dense `kernel` [in, out], `embedding`
  tables, norm `weight`s, nested by the dotted name."""
  serialization = pytest.importorskip("flax.serialization")
  tree = {}
  for name, x in tensors.items():
    *path, _ = name.split(".")
    if any(k in name for k in ("shared", "embed_tokens",
                               "relative_attention_bias")):
      leaf, value = "embedding", x
    elif x.ndim == 2:
      leaf, value = "kernel", np.ascontiguousarray(x.T)
    else:
      leaf, value = "weight", x
    node = tree
    for key in path:
      node = node.setdefault(key, {})
    node[leaf] = value
  (folder / "flax_model.msgpack").write_bytes(
      serialization.msgpack_serialize(tree))


@pytest.mark.parametrize("fmt", ["torch", "torch_index", "flax",
                                 "safetensors_index"])
def test_formats_give_the_same_logits(saved, tmp_path, fmt):
  model, directory = saved
  writers = {
      "torch": _write_torch,
      "torch_index": lambda t, f: _write_torch(t, f, shards=3),
      "flax": _write_flax,
  }
  if fmt == "safetensors_index":
    save_pretrained(model, tmp_path, max_shard_bytes=4096)
    assert not (tmp_path / "model.safetensors").exists()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 2
    folder = tmp_path
  else:
    folder = _rewrite(directory, tmp_path, writers[fmt])
  for name in ("spiece.model", "tokenizer.model"):
    if os.path.exists(os.path.join(directory, name)):
      (folder / name).write_bytes(open(os.path.join(directory, name),
                                       "rb").read())
  reference = load_pretrained(directory).model
  loaded = load_pretrained(folder).model
  assert loaded.config == reference.config
  _assert_same_params(loaded.params, reference.params)
  np.testing.assert_array_equal(_logits(loaded), _logits(reference))


def test_torch_bfloat16_keeps_dtype(saved, tmp_path):
  torch = pytest.importorskip("torch")
  _, directory = saved
  reference = load_pretrained(directory, dtype=jnp.bfloat16).model

  def write(tensors, folder):
    torch.save({n: torch.from_numpy(x).bfloat16()
                for n, x in tensors.items()}, folder / "pytorch_model.bin")
  folder = _rewrite(directory, tmp_path, write)
  loaded = load_pretrained(folder).model  # dtype None: the stored bfloat16
  assert {x.dtype for x in jax.tree.leaves(loaded.params)} == {
      jnp.dtype("bfloat16")}
  _assert_same_params(loaded.params, reference.params)


def test_torch_missing_is_one_line(saved, tmp_path, monkeypatch):
  _, directory = saved
  folder = _rewrite(directory, tmp_path, _write_torch)
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
  with pytest.raises(ImportError, match="pytorch_model.bin needs torch"):
    load_pretrained(folder)


def test_no_weights_names_every_format(saved, tmp_path):
  _, directory = saved
  _copy(directory, tmp_path, skip={"model.safetensors"})
  with pytest.raises(FileNotFoundError,
                     match="pytorch_model.bin.*flax_model.msgpack"):
    load_pretrained(tmp_path)


def test_vocabulary_mismatch_names_both(saved, tmp_path):
  model, directory = saved
  loaded = load_pretrained(directory).model
  check_same_vocabulary(loaded, loaded, "a", "b")
  cfg = dataclasses.replace(loaded.config, vocab_size=loaded.vocab_size + 4)
  other = type(loaded)(cfg, loaded.params, loaded.tokenizer_id)
  with pytest.raises(ValueError) as err:
    check_same_vocabulary(open_checkpoint(directory), other, "small/",
                          "large/")
  message = str(err.value)
  assert "\n" not in message
  assert "small/" in message and "large/" in message
  assert f"vocab_size {loaded.vocab_size} vs {loaded.vocab_size + 4}" in (
      message)
  del model


def test_pair_checks_vocabulary_before_reading_weights(saved, tmp_path):
  model, directory = saved
  pair = cfg.ModelPair(name="p", drafter=directory, verifier=directory)
  assert pair.model_parallel == "auto"
  loaded = pairs.load_pair(pair, str(tmp_path / "work"))
  _assert_same_params(loaded.verifier.params, model.params)
  assert loaded.verifier.mesh is None  # auto: one device holds it
  # A drafter with another vocabulary whose index lists a missing shard: the
  # vocabulary check comes before any weight is read, naming both.
  other = tmp_path / "other"
  bigger = dataclasses.replace(model.config,
                               vocab_size=model.config.vocab_size + 4)
  build = random_t5 if "t5" in directory else random_gemma
  save_pretrained(build(jax.random.PRNGKey(2), bigger), other,
                  load_pretrained(directory).tokenizer)
  names = safetensors.numpy.load_file(other / "model.safetensors")
  (other / "model.safetensors").unlink()
  (other / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {n: "absent.safetensors" for n in names}}))
  with pytest.raises(ValueError, match=re.escape(
      f"drafter {other} and verifier {directory} do not share a vocabulary")):
    pairs.load_pair(dataclasses.replace(pair, drafter=str(other)),
                    str(tmp_path / "work"))
