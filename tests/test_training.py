"""Training library: data pipeline, schedule, and a few steps lower the loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.models import GemmaConfig, T5Config, Tokenizer
from harness.training import data, losses, train, vocab

NUM_PAIRS = 64
VOCAB_SIZE = 1000


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  pairs = data.read_pairs("train", 2000)
  path = tmp_path_factory.mktemp("spm") / "tiny.model"
  vocab.train_vocab([s for s, _ in pairs] + [t for _, t in pairs], path,
                    VOCAB_SIZE)
  return Tokenizer(path)


@pytest.fixture(scope="module")
def pairs():
  return data.read_pairs("train", NUM_PAIRS)


def one_bucket_slice(tokenizer, arch):
  """NUM_PAIRS training pairs whose batches all have one shape (one compile).
  """
  candidates = data.read_pairs("train", 2000)
  encoded = data.encode_pairs(candidates, tokenizer, arch)
  lengths = encoded.lengths()[1]
  common = np.bincount(lengths).argmax()
  chosen = [p for p, n in zip(candidates, lengths) if n == common]
  return data.encode_pairs(chosen[:NUM_PAIRS], tokenizer, arch)


def test_vocab_special_ids(tokenizer):
  assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.bos_id) == (
      vocab.PAD_ID, vocab.EOS_ID, vocab.BOS_ID)
  assert tokenizer.vocab_size == VOCAB_SIZE


def test_prompt_ids_match_the_task_format(tokenizer):
  src = "A dog runs."
  assert data.prompt_ids(tokenizer, src, "t5") == (
      tokenizer.encode(src) + [tokenizer.eos_id])
  gemma = data.prompt_ids(tokenizer, src, "gemma")
  assert gemma[0] == tokenizer.bos_id
  assert tokenizer.decode(gemma[1:]) == "English: A dog runs. German:"
  with pytest.raises(ValueError, match="unknown architecture"):
    data.prompt_ids(tokenizer, src, "bert")


def test_t5_batches_shift_and_mask(tokenizer, pairs):
  encoded = data.encode_pairs(pairs, tokenizer, "t5")
  batches = data.make_batches(encoded, 256, shuffle=False)
  assert sum(int(b.loss_mask.sum()) for b in batches) == sum(
      len(t) for t in encoded.targets)
  for b in batches:
    assert b.inputs.shape[1] == b.labels.shape[1] in data.BUCKETS
    np.testing.assert_array_equal(b.decoder_inputs[:, 0], 0)
    np.testing.assert_array_equal(b.decoder_inputs[:, 1:], b.labels[:, :-1])
    # Every scored row ends with EOS; padding is never scored.
    last = b.loss_mask.sum(1).astype(int) - 1
    rows = np.flatnonzero(last >= 0)
    assert (b.labels[rows, last[rows]] == tokenizer.eos_id).all()
    for i in rows:
      assert (b.labels[i, last[i] + 1:] == 0).all()


def test_gemma_batches_score_only_the_target(tokenizer, pairs):
  encoded = data.encode_pairs(pairs[:1], tokenizer, "gemma")
  (b,) = data.make_batches(encoded, 64, shuffle=False)
  prompt, target = encoded.sources[0], encoded.targets[0]
  row = b.loss_mask[0]
  # Labels at scored positions are exactly the target tokens (EOS last).
  assert b.labels[0][row == 1].tolist() == list(target)
  assert int(row.sum()) == len(target)
  assert b.decoder_inputs[0][:len(prompt)].tolist() == list(prompt)
  assert b.inputs is None


def test_cross_entropy_smoothing_and_mask():
  logits = jnp.array([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
  labels = jnp.array([[0, 1]])
  mask = jnp.array([[1.0, 0.0]])
  loss, nll = losses.cross_entropy(logits, labels, mask, 0.1)
  logp = jax.nn.log_softmax(logits[0, 0])
  np.testing.assert_allclose(nll, -logp[0], rtol=1e-6)
  np.testing.assert_allclose(loss, 0.9 * -logp[0] - 0.1 * logp.mean(),
                             rtol=1e-6)


def test_learning_rate_schedule():
  cfg = train.TrainConfig(steps=100, peak_lr=1e-3, warmup_steps=10,
                          final_lr_fraction=0.1, time_limit_s=50.0)
  assert cfg.learning_rate(5, 0.0) == pytest.approx(5e-4)
  assert cfg.learning_rate(10, 0.0) == pytest.approx(1e-3)
  assert cfg.learning_rate(100, 1.0) == pytest.approx(1e-4)
  # Progress is the larger of the step and the time fraction.
  assert cfg.progress(10, 25.0) == pytest.approx(0.5)
  assert cfg.progress(90, 1.0) == pytest.approx(0.9)
  assert cfg.progress(1, 80.0) == 1.0


def _tiny_config(arch, vocab_size):
  if arch == "t5":
    return T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64,
                    num_heads=2, num_encoder_layers=1, num_decoder_layers=1)
  return GemmaConfig(version=2, vocab_size=vocab_size, d_model=32,
                     num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16,
                     d_ff=64, query_pre_attn_scalar=16.0, sliding_window=64,
                     bos_id=vocab.BOS_ID)


@pytest.mark.parametrize("arch", ["t5", "gemma"])
def test_a_few_steps_lower_the_loss(tokenizer, arch):
  encoded = one_bucket_slice(tokenizer, arch)
  model = train.init_model(_tiny_config(arch, tokenizer.vocab_size), 0,
                           tokenizer.id)
  eval_step = train.make_eval_step(model)
  batches = data.make_batches(encoded, 512, shuffle=False)
  assert len({b.labels.shape for b in batches}) == 1
  before = train.validation_loss(eval_step, model.params, batches)
  cfg = train.TrainConfig(steps=30, tokens_per_batch=512, peak_lr=1e-2,
                          warmup_steps=3, eval_every=15, label_smoothing=0.0)
  result = train.train_model(model, encoded, encoded, cfg, progress=False)
  after = train.validation_loss(eval_step, result.model.params, batches)
  assert math.isfinite(after)
  assert after < before - 1.0, (before, after)
  assert result.best_val_loss == pytest.approx(after, rel=1e-5)
  assert result.steps_run == 30
  assert [h[0] for h in result.history] == [15, 30]


def test_time_limit_stops_training(tokenizer):
  encoded = one_bucket_slice(tokenizer, "t5")
  model = train.init_model(_tiny_config("t5", tokenizer.vocab_size), 0)
  cfg = train.TrainConfig(steps=10_000, tokens_per_batch=512,
                          time_limit_s=1e-6, eval_every=1000)
  result = train.train_model(model, encoded, encoded, cfg, progress=False)
  assert result.steps_run == 1
  assert result.best_step == 1


@pytest.mark.slow  # default-suite budget (make test-slow); ~15 s
def test_t5_query_steps_are_scaled(tokenizer):
  t5 = train.init_model(_tiny_config("t5", tokenizer.vocab_size), 0)
  scales = train.query_step_scales(t5)
  layer = scales["decoder"]["layers"][0]
  assert layer["self_attn"]["q"] == pytest.approx(8 ** -0.5)
  assert layer["cross_attn"]["q"] == pytest.approx(8 ** -0.5)
  assert layer["self_attn"]["k"] == 1.0 and scales["embed"] == 1.0
  gemma = train.init_model(_tiny_config("gemma", tokenizer.vocab_size), 0)
  assert set(jax.tree.leaves(train.query_step_scales(gemma))) == {1.0}
  # The scale multiplies the AdamW step of exactly those weights.
  cfg = train.TrainConfig(weight_decay=0.0)
  grads = jax.tree.map(jnp.ones_like, t5.params)
  for step_scales, expect in ((None, 1.0), (scales, 8 ** -0.5)):
    opt = train.make_optimizer(cfg, step_scales)
    state = opt.init(t5.params)
    state.hyperparams["learning_rate"] = jnp.asarray(1e-3)
    updates, _ = opt.update(grads, state, t5.params)
    q_step = updates["encoder"]["layers"][0]["self_attn"]["q"]
    np.testing.assert_allclose(q_step, -1e-3 * expect, rtol=1e-3)
