"""Parity with the transformers reference (PyTorch CPU, float32).

Tiny random `T5ForConditionalGeneration` (v1.1, untied), `Gemma2ForCausalLM`
and `Gemma3ForCausalLM` are saved as safetensors, loaded by the harness, and
their logits compared, uncached and through prefill plus cached scoring.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors import safe_open  # pylint: disable=g-import-not-at-top
from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top

from harness.models import load_pretrained, save_pretrained  # pylint: disable=g-import-not-at-top
from harness.testing import tokenizers  # pylint: disable=g-import-not-at-top

ATOL = 1e-4
VOCAB = 128


def _randomize(model, norm_offset: float) -> None:
  """Normal weights (std fan_in**-0.5); norms at norm_offset + N(0, 0.1)."""
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(norm_offset + 0.1 * torch.randn(p.shape, generator=gen))
      else:
        p.copy_(torch.randn(p.shape, generator=gen) * p.shape[-1] ** -0.5)
      del name


def _save(model, directory, tokenizer_name: str, with_bos: bool) -> dict:
  """Saves config + safetensors + tokenizer; returns the saved tensors."""
  os.makedirs(directory, exist_ok=True)
  model.config.save_pretrained(directory)
  tensors = {k: v.detach().clone().contiguous()
             for k, v in model.state_dict().items()}
  save_file(tensors, os.path.join(directory, "model.safetensors"),
            metadata={"format": "pt"})
  tokenizers.train_tiny_sentencepiece(os.path.join(directory, tokenizer_name),
                                   with_bos=with_bos)
  return tensors


@pytest.fixture(scope="module")
def hf_t5(tmp_path_factory):
  """A random untied T5 v1.1 in transformers, saved to a directory."""
  cfg = transformers.T5Config(
      vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_heads=4,
      num_layers=2, num_decoder_layers=3, feed_forward_proj="gated-gelu",
      relative_attention_num_buckets=8, relative_attention_max_distance=20,
      tie_word_embeddings=False, dropout_rate=0.0)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  # transformers 5 ties lm_head to the embedding even for v1.1: untie it.
  model.lm_head.weight = torch.nn.Parameter(torch.empty(VOCAB, 32))
  _randomize(model, norm_offset=1.0)
  directory = str(tmp_path_factory.mktemp("hf_t5"))
  tensors = _save(model, directory, "spiece.model", with_bos=False)
  del tensors
  return model, directory


def _gemma(version: int, tmp_path_factory):
  common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                num_attention_heads=4, head_dim=8, sliding_window=4,
                attn_implementation="eager")
  if version == 2:
    cfg = transformers.Gemma2Config(
        num_hidden_layers=2, num_key_value_heads=2, query_pre_attn_scalar=12,
        attn_logit_softcapping=2.0, final_logit_softcapping=5.0, **common)
    model = transformers.Gemma2ForCausalLM(cfg)
  else:
    cfg = transformers.Gemma3TextConfig(
        num_hidden_layers=3, num_key_value_heads=1, query_pre_attn_scalar=8,
        layer_types=["sliding_attention", "full_attention",
                     "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 2.0,
                               "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default",
                                  "rope_theta": 10_000.0}},
        **common)
    model = transformers.Gemma3ForCausalLM(cfg)
  model = model.eval()
  _randomize(model, norm_offset=0.0)
  directory = str(tmp_path_factory.mktemp(f"hf_gemma{version}"))
  _save(model, directory, "tokenizer.model", with_bos=True)
  return model, directory


@pytest.fixture(scope="module", params=[2, 3], ids=["gemma2", "gemma3"])
def hf_gemma(request, tmp_path_factory):
  return _gemma(request.param, tmp_path_factory)


def _torch_logits(model, **inputs) -> np.ndarray:
  with torch.no_grad():
    out = model(**{k: torch.tensor(np.asarray(v)) for k, v in inputs.items()})
  return out.logits.numpy()


@jax.jit
def _forward(model, input_ids, decoder_input_ids):
  return model.forward_logits(input_ids, decoder_input_ids)


def _cached_logits(model, prompt, prompt_len, continuation, chunks):
  """Prefill, then score `continuation` [T] in chunks of the given sizes."""
  cache = jax.jit(model.prefill, static_argnums=2)(prompt, prompt_len, 32)
  score = jax.jit(lambda m, t, c: m.score(t, c))
  out, start = [], 0
  for k in chunks:
    logits, cache = score(model, continuation[None, start:start + k], cache)
    out.append(logits)
    start += k
  return np.concatenate(out, axis=1)[0]


def test_t5_checkpoint_holds_untied_output_layer(hf_t5):
  _, directory = hf_t5
  with safe_open(os.path.join(directory, "model.safetensors"), "np") as f:
    assert {"shared.weight", "lm_head.weight"} <= set(f.keys())
    assert not np.allclose(f.get_tensor("shared.weight"),
                           f.get_tensor("lm_head.weight"))
  model, _, _ = load_pretrained(directory)
  assert not model.config.tie_embeddings and not model.config.scale_logits


def test_t5_uncached_parity(hf_t5):
  hf, directory = hf_t5
  model, _, _ = load_pretrained(directory)
  rng = np.random.default_rng(1)
  enc = rng.integers(2, VOCAB, size=(2, 13))
  dec = np.concatenate([np.zeros((2, 1), int),
                        rng.integers(2, VOCAB, size=(2, 30))], axis=1)
  want = _torch_logits(hf, input_ids=enc, decoder_input_ids=dec)
  got = _forward(model, enc, dec)
  assert np.abs(want).max() > 1.0  # a non-trivial comparison
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_t5_cached_parity_with_padded_prompt(hf_t5):
  hf, directory = hf_t5
  model, _, _ = load_pretrained(directory)
  rng = np.random.default_rng(2)
  enc = rng.integers(2, VOCAB, size=11)
  dec = np.concatenate([[0], rng.integers(2, VOCAB, size=24)])
  want = _torch_logits(hf, input_ids=enc[None], decoder_input_ids=dec[None])[0]
  prompt = np.zeros(16, np.int32)
  prompt[:11] = enc
  start, start_len = model.decoder_prompt(jnp.asarray(prompt), 11)
  np.testing.assert_array_equal(start, [0])
  assert int(start_len) == 1
  got = _cached_logits(model, jnp.asarray(prompt), jnp.int32(11),
                       jnp.asarray(dec), [1, 6, 2, 1, 6, 6, 3])
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_gemma_uncached_parity(hf_gemma):
  hf, directory = hf_gemma
  model, _, tokenizer = load_pretrained(directory)
  assert tokenizer.bos_id == 2
  ids = np.random.default_rng(3).integers(0, VOCAB, size=(2, 20))
  want = _torch_logits(hf, input_ids=ids)
  got = _forward(model, None, ids)
  assert np.abs(want).max() > 0.5
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_gemma_cached_parity(hf_gemma):
  hf, directory = hf_gemma
  model, _, _ = load_pretrained(directory)
  ids = np.random.default_rng(4).integers(0, VOCAB, size=21)
  want = _torch_logits(hf, input_ids=ids[None])[0]
  prompt = np.zeros(8, np.int32)
  prompt[:6] = ids[:6]
  # Length 5 after prefill: token 5 (the last prompt token) comes first.
  got = _cached_logits(model, jnp.asarray(prompt), jnp.int32(6),
                       jnp.asarray(ids[5:]), [1, 6, 2, 1, 6])
  np.testing.assert_allclose(got, want[5:], atol=ATOL, rtol=0)


def _check_saved_loads_in_transformers(directory, out):
  """save_pretrained writes what transformers reads, with equal logits."""
  model, _, tok = load_pretrained(directory)
  save_pretrained(model, out, tok)
  with open(os.path.join(out, "config.json")) as f:
    arch = json.load(f)["architectures"][0]
  hf = getattr(transformers, arch).from_pretrained(
      out, attn_implementation="eager").eval()
  ids = np.random.default_rng(5).integers(2, VOCAB, size=(1, 9))
  if arch.startswith("T5"):
    dec = np.concatenate([[[0]], ids[:, :5]], axis=1)
    want = _torch_logits(hf, input_ids=ids, decoder_input_ids=dec)
    # transformers keeps two different saved tensors untied.
    np.testing.assert_array_equal(hf.lm_head.weight.detach().numpy(),
                                  np.asarray(model.params["lm_head"]).T)
    got = _forward(model, ids, dec)
  else:
    want = _torch_logits(hf, input_ids=ids)
    got = _forward(model, None, ids)
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_t5_saved_by_harness_loads_in_transformers(hf_t5, tmp_path):
  _check_saved_loads_in_transformers(hf_t5[1], str(tmp_path / "t5"))


def test_gemma_saved_by_harness_loads_in_transformers(hf_gemma, tmp_path):
  _check_saved_loads_in_transformers(hf_gemma[1], str(tmp_path / "gemma"))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_buckets_match_reference(bidirectional):
  from harness.models.t5 import relative_position_bucket  # pylint: disable=g-import-not-at-top
  from transformers.models.t5 import modeling_t5  # pylint: disable=g-import-not-at-top
  rel = np.arange(-300, 301)
  want = modeling_t5.T5Attention._relative_position_bucket(  # pylint: disable=protected-access
      torch.tensor(rel), bidirectional, 32, 128).numpy()
  got = relative_position_bucket(jnp.asarray(rel), bidirectional, 32, 128)
  np.testing.assert_array_equal(got, want)
