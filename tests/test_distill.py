"""Drafter distillation: config, embedding projection, packing, loss, steps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.models import (GemmaConfig, Tokenizer, load_pretrained,
                            random_gemma, save_pretrained)
from harness.testing import tokenizers as tok_fixtures
from harness.tasks import data_root
from harness.training import distill

TEACHER = GemmaConfig(
    version=3, vocab_size=100, d_model=48, num_layers=2, num_heads=4,
    num_kv_heads=1, head_dim=12, d_ff=96, query_pre_attn_scalar=12.0,
    sliding_window=8, attn_logit_softcap=None, final_logit_softcap=None,
    rope_base_global=1_000_000.0, rope_base_local=10_000.0, use_qk_norm=True)
SEQ_LEN = 24


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  return Tokenizer(tok_fixtures.train_tiny_sentencepiece(
      tmp_path_factory.mktemp("spm") / "g.model", vocab_size=100,
      with_bos=True))


@pytest.fixture(scope="module")
def teacher(tokenizer):
  model = random_gemma(jax.random.PRNGKey(0), TEACHER,
                       tokenizer_id=tokenizer.id)
  # Sharper than random init, so there is something to learn.
  params = dict(model.params, embed=model.params["embed"] * 4.0)
  return model.replace(params=params)


@pytest.fixture(scope="module")
def rows(tokenizer):
  texts = tok_fixtures.synthetic_lines(num_lines=300, seed=1)
  return distill.pack_sequences(texts, tokenizer, SEQ_LEN, seed=0)


def test_drafter_config():
  config = distill.drafter_config(TEACHER, d_model=16, num_layers=2,
                                  num_heads=2, head_dim=8, d_ff=32)
  assert (config.vocab_size, config.rope_base_local, config.sliding_window,
          config.version) == (100, 10_000.0, 8, 3)
  assert config.num_layers == len(config.attention_types) == 2
  assert config.query_pre_attn_scalar == 8.0
  with pytest.raises(ValueError, match="d_model=512"):
    distill.drafter_config(TEACHER, d_model=512)
  with pytest.raises(ValueError, match="num_layers=6"):
    distill.drafter_config(TEACHER, num_layers=6)


def test_projected_embedding_keeps_the_top_directions():
  rng = np.random.default_rng(0)
  # Rank-3 data plus small noise in 10 dimensions.
  e = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 10))
  e += 0.01 * rng.normal(size=(500, 10))
  p = distill.projected_embedding(e, 3)
  assert p.shape == (500, 3)
  np.testing.assert_allclose(np.mean(p ** 2), np.mean(e ** 2), rtol=1e-4)
  # Pairwise inner products survive up to the global rescaling (the
  # projection drops only the noise); not so for a 1-dimensional projection.
  gram = lambda x: (x @ x.T) / np.linalg.norm(x @ x.T)
  np.testing.assert_allclose(gram(p), gram(e), atol=1e-3)
  q = distill.projected_embedding(e, 1)
  assert np.linalg.norm(gram(q) - gram(e)) > 0.1
  assert np.linalg.norm(gram(p) - gram(e)) < 1e-3


def test_pack_sequences(rows, tokenizer):
  assert rows.dtype == np.int32 and rows.shape[1] == SEQ_LEN
  assert len(rows) > 20
  assert np.all(rows[:, 0] == tokenizer.bos_id)
  assert not np.any(rows[:, 1:] == tokenizer.bos_id)
  with pytest.raises(ValueError, match="no full row"):
    distill.pack_sequences(["a b"], tokenizer, SEQ_LEN)


def test_metrics_known_values():
  logits = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 7))
  same = distill.distill_metrics(logits, logits)
  assert abs(float(same["kl"])) < 1e-6
  assert float(same["acceptance"]) == pytest.approx(1.0, abs=1e-6)
  assert float(same["top1"]) == 1.0
  # Uniform student: KL = log V - H(p).
  p = jax.nn.softmax(logits, -1)
  entropy = -jnp.sum(p * jnp.log(p), -1).mean()
  uniform = distill.distill_metrics(logits, jnp.zeros_like(logits))
  assert float(uniform["kl"]) == pytest.approx(
      float(np.log(7) - entropy), rel=1e-5)
  assert float(distill.kl_loss(logits, jnp.zeros_like(logits))) == (
      pytest.approx(float(uniform["kl"]), rel=1e-6))


@pytest.mark.slow  # default-suite budget (make test-slow); ~20 s
def test_a_few_steps_lower_the_kl(teacher, rows, tmp_path, tokenizer):
  config = distill.drafter_config(TEACHER, d_model=16, num_layers=2,
                                  num_heads=2, head_dim=8, d_ff=32)
  drafter = distill.init_drafter(teacher, config, seed=0)
  assert drafter.tokenizer_id == teacher.tokenizer_id
  assert drafter.params["embed"].shape == (100, 16)
  settings = distill.DistillConfig(steps=30, batch_size=4, peak_lr=1e-2,
                                   warmup_steps=5, eval_every=15)
  result = distill.distill(teacher, drafter, rows[8:], rows[:8], settings,
                           progress=False)
  assert result.steps_run == 30 and result.tokens_seen == 30 * 4 * SEQ_LEN
  assert result.best_step > 0
  assert result.final["kl"] < 0.8 * result.initial["kl"], (
      result.initial, result.final)
  assert result.final["acceptance"] > result.initial["acceptance"]
  # The result is an ordinary checkpoint.
  save_pretrained(result.model, tmp_path, tokenizer)
  loaded, _, _ = load_pretrained(tmp_path)
  assert loaded.tokenizer_id == teacher.tokenizer_id
  assert loaded.config == dataclasses.replace(config)


def test_cost_ratio_of_a_narrower_model(teacher, tokenizer):
  drafter = distill.init_drafter(teacher, distill.drafter_config(
      TEACHER, d_model=16, num_layers=1, num_heads=2, head_dim=8, d_ff=32))
  prompts = [tokenizer.encode(t, add_bos=True)[:6]
             for t in tok_fixtures.synthetic_lines(num_lines=3, seed=2)]
  cost = distill.cost_ratio(drafter, drafter, prompts, num_tokens=4)
  assert cost.num_prompts == 3 and cost.tokens_per_prompt == 4
  assert cost.drafter_s_per_token > 0 and cost.ratio > 0


def test_bundled_distillation_text():
  texts = distill.read_texts(data_root())
  assert set(texts) >= {"gsm8k/train.jsonl", "multi30k/train.en.gz",
                        "wmt_newstest_2008_2012_ende/newstest2010.de"}
  assert len(texts["gsm8k/train.jsonl"]) == 7473
  assert "####" in texts["gsm8k/train.jsonl"][0]
  assert not any("triviaqa" in name for name in texts)
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    distill.read_texts(data_root(), sources=(("gsm8k", "nope.txt", "text"),))


def test_subset_kl_is_the_kl_of_p_renormalised_on_s():
  key1, key2 = jax.random.split(jax.random.PRNGKey(3))
  teacher = jax.random.normal(key1, (2, 3, 9))
  ids = jnp.asarray([1, 4, 5, 8], jnp.int32)
  student_s = jax.random.normal(key2, (2, 3, 4))
  student = jnp.full((2, 3, 9), -1e9).at[..., ids].set(student_s)
  p = jax.nn.softmax(teacher, -1)
  p_s = p[..., ids] / p[..., ids].sum(-1, keepdims=True)
  q_s = jax.nn.softmax(student_s, -1)
  want = jnp.sum(p_s * jnp.log(p_s / q_s), -1).mean()
  got = distill.distill_metrics(teacher, student, ids)
  assert float(got["kl"]) == pytest.approx(float(want), rel=1e-5)
  assert float(distill.kl_loss(teacher, student, ids)) == pytest.approx(
      float(want), rel=1e-5)
  mass = p[..., ids].sum(-1).mean()
  assert float(got["support_mass"]) == pytest.approx(float(mass), rel=1e-5)
  # q = p_S reaches the largest acceptance a drafter on S can have: p(S).
  best = jnp.full((2, 3, 9), -1e9).at[..., ids].set(jnp.log(p_s))
  top = distill.distill_metrics(teacher, best, ids)
  assert float(top["acceptance"]) == pytest.approx(float(mass), rel=1e-5)
  assert float(got["acceptance"]) <= float(mass) + 1e-6


def test_a_subset_drafter_distils_saves_and_loads(teacher, rows, tmp_path,
                                                  tokenizer):
  from harness.models import subset_vocab  # pylint: disable=g-import-not-at-top
  config = distill.drafter_config(TEACHER, d_model=16, num_layers=1,
                                  num_heads=2, head_dim=8, d_ff=32)
  drafter = distill.init_drafter(teacher, config, seed=0)
  ids = subset_vocab.frequent_ids(rows[8:], 40, TEACHER.vocab_size)
  drafter = subset_vocab.restrict_output(drafter, ids)
  settings = distill.DistillConfig(steps=12, batch_size=4, peak_lr=1e-2,
                                   warmup_steps=2, eval_every=6)
  result = distill.distill(teacher, drafter, rows[8:], rows[:8], settings,
                           progress=False)
  assert result.final["kl"] < result.initial["kl"]
  assert result.final["acceptance"] <= result.final["support_mass"] + 1e-6
  kept = subset_vocab.output_ids(result.model)
  np.testing.assert_array_equal(kept, subset_vocab.output_ids(drafter))
  # The ids did not train; the head did.
  assert not np.allclose(result.model.params["head"],
                         drafter.params["head"])
  save_pretrained(result.model, tmp_path, tokenizer)
  assert (tmp_path / subset_vocab.SUBSET_FILE).exists()
  loaded, _, _ = load_pretrained(tmp_path)
  np.testing.assert_array_equal(subset_vocab.output_ids(loaded), kept)
  tokens = jnp.asarray(rows[:1, :8])
  np.testing.assert_allclose(loaded.forward_logits(None, tokens),
                             result.model.forward_logits(None, tokens),
                             rtol=1e-6, atol=1e-6)
  # Saving the full-vocabulary model over it removes the subset file.
  save_pretrained(drafter.replace(params={
      k: v for k, v in drafter.params.items()
      if k not in ("head", "head_ids")}), tmp_path, tokenizer)
  assert not (tmp_path / subset_vocab.SUBSET_FILE).exists()


def test_a_bad_subset_file_is_one_clear_error(teacher, tmp_path, tokenizer):
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  from harness.models import subset_vocab  # pylint: disable=g-import-not-at-top
  save_pretrained(teacher, tmp_path, tokenizer)
  path = tmp_path / subset_vocab.SUBSET_FILE
  safetensors.numpy.save_file(
      {"head": np.zeros((3, TEACHER.d_model), np.float32),
       "head_ids": np.asarray([5, 2, 7], np.int32)}, str(path))
  with pytest.raises(ValueError, match="head_ids must be sorted"):
    load_pretrained(tmp_path)
  safetensors.numpy.save_file(
      {"head": np.zeros((2, TEACHER.d_model), np.float32),
       "head_ids": np.asarray([2, 5, 7], np.int32)}, str(path))
  with pytest.raises(ValueError, match=r"head has shape \(2, 48\)"):
    load_pretrained(tmp_path)
