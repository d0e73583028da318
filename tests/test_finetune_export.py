"""finetune.export.export_hf: a Hugging Face folder, written atomically."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.finetune import export, validate
from harness.models import load_pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "checkpoints", "multi30k_t5", "small")
SPIECE = os.path.join(SMALL, "spiece.model")
SENTENCE = ("A man in an orange hat starring at something.",
            ("Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",))


@pytest.fixture(scope="module")
def small():
  return load_pretrained(SMALL, jnp.float32)


def _logits(model):
  ids = jnp.asarray([[13, 7, 250, 42, 1]], jnp.int32)
  dec = jnp.asarray([[0, 5, 9, 11]], jnp.int32)
  return np.asarray(jax.jit(model.forward_logits)(ids, dec))


def _translate(model, tokenizer):
  return validate.greedy_eval(model, tokenizer, [SENTENCE], metrics=["bleu"],
                              max_input_len=64,
                              max_decode_len=32)["predictions"]


def test_export_loads_with_the_same_logits_and_decodes(small, tmp_path):
  out = export.export_hf(small.params, small.model.config, SPIECE,
                         tmp_path / "run" / "export",
                         extra_card={"task": "newstest", "steps": 12,
                                     "bleu": {"before": 1.0, "after": 2.0}})
  loaded = load_pretrained(out)
  assert loaded.model.dtype == jnp.float32
  assert loaded.model.config == small.model.config
  assert loaded.tokenizer.id == small.tokenizer.id
  for a, b in zip(jax.tree.leaves(small.params),
                  jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(_logits(small.model), _logits(loaded.model))
  want = _translate(small.model, small.tokenizer)
  assert want[0]  # the shipped model translates it to something
  assert _translate(loaded.model, loaded.tokenizer) == want
  card = open(os.path.join(out, export.CARD_FILE)).read()
  assert "- task: newstest" in card and "2,389,376 parameters" in card
  prov = json.load(open(os.path.join(out, export.PROVENANCE_FILE)))
  assert prov["training"]["bleu"] == {"before": 1.0, "after": 2.0}
  assert prov["config"]["d_model"] == small.model.config.d_model
  assert sorted(os.listdir(tmp_path / "run")) == ["export"]
  umask = os.umask(0)
  os.umask(umask)
  # A directory as os.makedirs makes it (not tempfile's private 0700).
  assert os.stat(out).st_mode & 0o777 == 0o777 & ~umask
  # Files as open() makes them: the weights too (not a writer's 0600).
  for name in os.listdir(out):
    assert os.stat(os.path.join(out, name)).st_mode & 0o777 == (
        0o666 & ~umask), name


def test_bfloat16_export(small, tmp_path):
  out = export.export_hf(small.params, small.model.config, SPIECE,
                         tmp_path / "bf16", dtype="bfloat16")
  loaded = load_pretrained(out)
  assert loaded.model.dtype == jnp.bfloat16
  assert json.load(open(os.path.join(out, "config.json")))["dtype"] == \
      "bfloat16"
  # The shipped weights are bfloat16 values: the round trip is exact.
  for a, b in zip(jax.tree.leaves(small.params),
                  jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(np.asarray(a),
                                  np.asarray(b).astype(np.float32))


def test_failed_export_leaves_the_previous_one_whole(small, tmp_path,
                                                     monkeypatch):
  out = tmp_path / "export"
  export.export_hf(small.params, small.model.config, SPIECE, out,
                   extra_card={"version": 1})
  (out / "stale.txt").write_text("from before")
  before = {f: (out / f).read_bytes() for f in os.listdir(out)}
  real_save = export.save_pretrained

  def crash(model, path, tokenizer=None):
    real_save(model, path, tokenizer)
    with open(os.path.join(path, "model.safetensors"), "r+b") as f:
      f.truncate(100)  # half-written weights
    raise OSError("disk full")

  monkeypatch.setattr(export, "save_pretrained", crash)
  params = jax.tree.map(lambda x: x * 2, small.params)
  with pytest.raises(OSError, match="disk full"):
    export.export_hf(params, small.model.config, SPIECE, out,
                     extra_card={"version": 2})
  assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
  assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary left
  monkeypatch.setattr(export, "save_pretrained", real_save)
  export.export_hf(params, small.model.config, SPIECE, out,
                   extra_card={"version": 2})
  assert not (out / "stale.txt").exists()  # replaced whole
  assert sorted(os.listdir(tmp_path)) == ["export"]
  prov = json.load(open(out / export.PROVENANCE_FILE))
  assert prov["training"] == {"version": 2}
  loaded = load_pretrained(out)
  np.testing.assert_array_equal(np.asarray(loaded.params["embed"]),
                                2 * np.asarray(small.params["embed"]))


def test_bad_arguments_write_nothing(small, tmp_path):
  out = tmp_path / "export"
  with pytest.raises(ValueError, match="dtype='float16'"):
    export.export_hf(small.params, small.model.config, SPIECE, out,
                     dtype="float16")
  bad = jax.tree.map(lambda x: x, small.params)
  bad["decoder"]["layers"][0]["mlp"]["wo"] = jnp.zeros((3, 3))
  with pytest.raises(ValueError, match=r"\['wo'\]: shape \(3, 3\)"):
    export.export_hf(bad, small.model.config, SPIECE, out)
  with pytest.raises(FileNotFoundError, match="tokenizer_file"):
    export.export_hf(small.params, small.model.config, tmp_path / "no.model",
                     out)
  assert os.listdir(tmp_path) == []
