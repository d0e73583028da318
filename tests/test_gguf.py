"""GGUF loading: a tiny synthetic Gemma 3 file written with the `gguf` writer.

Exercises the llama.cpp tensor-name mapping, the `1 + w` norm storage, a
quantised tensor, the metadata -> config mapping and the SentencePiece
rebuild, and the `load_pretrained` dispatch. The real Gemma 3 270M file is
tested in `test_gguf_gemma270m.py` (slow).
"""

import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

from harness.models import (AttentionType, GemmaConfig, Tokenizer,
                            load_pretrained, random_gemma, save_pretrained)
from harness.testing import tokenizers as tok_fixtures
from harness.models import gguf as hgguf
from harness.models import weights

gguf = pytest.importorskip("gguf")

L, G = AttentionType.LOCAL, AttentionType.GLOBAL
VOCAB = 400
# Six layers so that the default 5:1 pattern has a GLOBAL layer.
TINY = GemmaConfig(
    version=3, vocab_size=VOCAB, d_model=32, num_layers=6, num_heads=4,
    num_kv_heads=1, head_dim=8, d_ff=64, query_pre_attn_scalar=8.0,
    sliding_window=4, attn_logit_softcap=None, final_logit_softcap=None,
    rope_base_global=1_000_000.0, rope_base_local=10_000.0, use_qk_norm=True)
# Whitespace runs and a chat marker as user-defined pieces, as in Gemma.
USER_SYMBOLS = ("\u2581\u2581", "\u2581\u2581\u2581", "<start_of_turn>")
ARCH = "gemma3"


def _train_bpe() -> bytes:
  """A Gemma-style BPE SentencePiece model (byte fallback, no dummy prefix)."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(tok_fixtures.synthetic_lines()), model_writer=model,
      vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
      split_digits=True, add_dummy_prefix=False,
      remove_extra_whitespaces=False, normalization_rule_name="identity",
      allow_whitespace_only_pieces=True, pad_id=0, eos_id=1, bos_id=2,
      unk_id=3, user_defined_symbols=list(USER_SYMBOLS), minloglevel=2)
  return model.getvalue()


def _gguf_name(hf_name: str) -> str:
  """Inverse of `hgguf.hf_tensor_name`."""
  inverse_global = {v: k for k, v in hgguf._GLOBAL_NAMES.items()}  # pylint: disable=protected-access
  inverse_layer = {v: k for k, v in hgguf._LAYER_NAMES.items()}  # pylint: disable=protected-access
  base, _, suffix = hf_name.rpartition(".")
  if base in inverse_global:
    return f"{inverse_global[base]}.{suffix}"
  _, _, index, rest = base.split(".", 3)
  return f"blk.{index}.{inverse_layer[rest]}.{suffix}"


def write_gguf(path, model, proto: bytes, quantized=("token_embd.weight",),
               arch: str = ARCH, pieces_as_llama_cpp: bool = True) -> str:
  """Writes `model` and a SentencePiece vocabulary as llama.cpp would.

  Norm weights are stored as 1 + w; user-defined pieces have their escaped
  spaces written as spaces; the names in `quantized` are stored as Q8_0.
  """
  c = model.config
  writer = gguf.GGUFWriter(os.fspath(path), arch)
  writer.add_block_count(c.num_layers)
  writer.add_embedding_length(c.d_model)
  writer.add_feed_forward_length(c.d_ff)
  writer.add_head_count(c.num_heads)
  writer.add_head_count_kv(c.num_kv_heads)
  writer.add_key_length(c.head_dim)
  writer.add_value_length(c.head_dim)
  writer.add_layer_norm_rms_eps(c.rms_norm_eps)
  writer.add_rope_freq_base(c.rope_base_global)
  writer.add_sliding_window(c.sliding_window)
  sp = spm.SentencePieceProcessor(model_proto=proto)
  types = [5 if sp.is_unused(i) else 3 if sp.is_control(i) else
           6 if sp.is_byte(i) else 2 if sp.is_unknown(i) else 1
           for i in range(sp.get_piece_size())]
  pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
  for i, piece in enumerate(pieces):
    if piece in USER_SYMBOLS:
      types[i] = 4
      if pieces_as_llama_cpp:
        pieces[i] = piece.replace("\u2581", " ")
  writer.add_tokenizer_model("llama")
  writer.add_token_list(pieces)
  writer.add_token_scores([sp.get_score(i) for i in range(len(pieces))])
  writer.add_token_types(types)
  writer.add_bos_token_id(sp.bos_id())
  writer.add_eos_token_id(sp.eos_id())
  writer.add_unk_token_id(sp.unk_id())
  writer.add_pad_token_id(sp.pad_id())
  writer.add_add_space_prefix(False)
  for spec in weights.weight_specs(c):
    x = np.asarray(weights.get_path(model.params, spec.path), np.float32)
    x = np.ascontiguousarray(weights.to_hf(x, spec.layout))
    name = _gguf_name(spec.hf_name)
    if hgguf.is_norm(name):
      x = x + 1.0
    if name in quantized:
      q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
      writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
      writer.add_tensor(name, x)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return os.fspath(path)


@pytest.fixture(scope="module")
def proto():
  return _train_bpe()


@pytest.fixture(scope="module")
def model():
  return random_gemma(jax.random.PRNGKey(3), TINY)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, model, proto):
  return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model,
                    proto)


def test_tensor_names_round_trip():
  for spec in weights.weight_specs(TINY):
    assert hgguf.hf_tensor_name(_gguf_name(spec.hf_name)) == spec.hf_name
  with pytest.raises(KeyError, match="blk.0.attn_qkv.weight"):
    hgguf.hf_tensor_name("blk.0.attn_qkv.weight")


def test_config_and_params(gguf_file, model):
  loaded, params, tokenizer = load_pretrained(gguf_file)
  assert loaded.config == TINY
  assert loaded.config.attention_types == (L, L, L, L, L, G)
  assert loaded.tokenizer_id == tokenizer.id
  flat = jax.tree_util.tree_leaves_with_path(params)
  want = dict(jax.tree_util.tree_leaves_with_path(model.params))
  for path, x in flat:
    name = jax.tree_util.keystr(path)
    # The embedding is Q8_0 (8-bit blocks): close, not equal.
    tol = 0.02 if name == "['embed']" else 0.0
    np.testing.assert_allclose(np.asarray(x), np.asarray(want[path]),
                               atol=tol, err_msg=name)
  # Norms were stored as 1 + w and come back as w (zero at init).
  assert float(jnp.abs(params["final_norm"]).max()) < 1e-6


def test_logits_match_the_source_model(gguf_file, model):
  loaded, _, _ = load_pretrained(gguf_file)
  tokens = jnp.asarray([[2, 17, 40, 99, 5, 250, 8, 31, 77]])
  ours = loaded.forward_logits(None, tokens)
  want = model.forward_logits(None, tokens)
  # Only the embedding is quantised.
  np.testing.assert_allclose(ours, want, atol=0.05)
  assert int(jnp.sum(ours.argmax(-1) == want.argmax(-1))) >= 8


def test_tokenizer_rebuild_matches_the_original(gguf_file, proto, tmp_path):
  _, _, tokenizer = load_pretrained(gguf_file)
  original = spm.SentencePieceProcessor(model_proto=proto)
  lines = tok_fixtures.synthetic_lines(num_lines=50, seed=7) + [
      "two  spaces and   three", "<start_of_turn>user\n", "digits 12345 ü日本"]
  for line in lines:
    assert tokenizer.encode(line, add_bos=True) == original.encode(
        line, add_bos=True), line
  assert tokenizer.encode("a  b") != tokenizer.encode("a b")
  assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (2, 1, 0)
  assert tokenizer.vocab_size == VOCAB


def test_directory_dispatch_and_save(gguf_file, tmp_path):
  directory = tmp_path / "dir"
  directory.mkdir()
  os.link(gguf_file, directory / "model.gguf")
  loaded, params, tokenizer = load_pretrained(directory, dtype=jnp.bfloat16)
  assert params["embed"].dtype == jnp.bfloat16
  # A converted copy is an ordinary Hugging Face directory again.
  save_pretrained(loaded, tmp_path / "hf", tokenizer)
  again, _, tok2 = load_pretrained(tmp_path / "hf", dtype=jnp.bfloat16)
  assert again.config == loaded.config
  assert tok2.id == tokenizer.id == Tokenizer(
      tmp_path / "hf" / "tokenizer.model").id


def test_errors(gguf_file, model, proto, tmp_path):
  other = write_gguf(tmp_path / "llama.gguf", model, proto, arch="llama")
  with pytest.raises(ValueError, match=r"llama.gguf.*general.architecture"):
    load_pretrained(other)
  (tmp_path / "second.gguf").write_bytes(b"")
  with pytest.raises(ValueError, match="several GGUF files"):
    load_pretrained(tmp_path)
  with pytest.raises(FileNotFoundError, match="checkpoint directory"):
    load_pretrained(tmp_path / "nothing_here")
