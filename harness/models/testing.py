"""Tiny configs and a tiny SentencePiece vocabulary, for tests and benchmarks.

Nothing here reads data files: the tokenizer is trained on synthetic text.
"""

from __future__ import annotations

import io
import os

import numpy as np
import sentencepiece as spm

from harness.models.configs import AttentionType, GemmaConfig, T5Config

L, G = AttentionType.LOCAL, AttentionType.GLOBAL

# Tiny models used by the unit tests (vocabulary 128, a few thousand params).
TINY_T5 = T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                   num_encoder_layers=2, num_decoder_layers=2)
TINY_GEMMA2 = GemmaConfig(
    version=2, vocab_size=128, d_model=32, num_layers=2, num_heads=4,
    num_kv_heads=2, head_dim=8, d_ff=64, query_pre_attn_scalar=12.0,
    sliding_window=4, attn_logit_softcap=2.0, final_logit_softcap=5.0)
TINY_GEMMA3 = GemmaConfig(
    version=3, vocab_size=128, d_model=32, num_layers=3, num_heads=4,
    num_kv_heads=1, head_dim=8, d_ff=64, query_pre_attn_scalar=8.0,
    sliding_window=4, attention_types=(L, G, L), attn_logit_softcap=None,
    final_logit_softcap=None, rope_base_global=1_000_000.0,
    rope_base_local=10_000.0, rope_scale_global=2.0, use_qk_norm=True)

# The sizes of the embedded default (CPU-friendly drafter/verifier pairs).
SMALL_T5 = T5Config(vocab_size=6000, d_model=128, d_kv=32, d_ff=512,
                    num_heads=4, num_encoder_layers=2, num_decoder_layers=2)
LARGE_T5 = T5Config(vocab_size=6000, d_model=288, d_kv=48, d_ff=1152,
                    num_heads=6, num_encoder_layers=4, num_decoder_layers=4)
SMALL_GEMMA = GemmaConfig(
    version=2, vocab_size=6000, d_model=128, num_layers=2, num_heads=4,
    num_kv_heads=2, head_dim=32, d_ff=512, query_pre_attn_scalar=32.0,
    sliding_window=64)
LARGE_GEMMA = GemmaConfig(
    version=2, vocab_size=6000, d_model=288, num_layers=6, num_heads=6,
    num_kv_heads=2, head_dim=48, d_ff=1152, query_pre_attn_scalar=48.0,
    sliding_window=64)

_SYLLABLES = ("ka", "to", "ri", "mu", "sel", "an", "por", "de", "lin", "ve",
              "qua", "sto", "ne", "bi", "ru", "fa", "gon", "ish", "el", "ta")


def synthetic_lines(num_lines: int = 400, seed: int = 0) -> list[str]:
  """Random sentences over a fixed set of made-up words."""
  rng = np.random.default_rng(seed)
  words = ["".join(rng.choice(_SYLLABLES, size=rng.integers(1, 4)))
           for _ in range(300)]
  return [" ".join(rng.choice(words, size=rng.integers(4, 14))) + "."
          for _ in range(num_lines)]


def train_tiny_sentencepiece(path: str | os.PathLike, vocab_size: int = 100,
                             with_bos: bool = False, seed: int = 0) -> str:
  """Trains a tiny unigram SentencePiece model on synthetic text.

  Ids: pad 0, eos 1, then (with_bos, Gemma style) bos 2, unk 3; otherwise
  (T5 style) unk 2 and no BOS.

  Returns:
    `path`, now holding the `.model` file.
  """
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(synthetic_lines(seed=seed)), model_writer=model,
      vocab_size=vocab_size, model_type="unigram", pad_id=0, eos_id=1,
      bos_id=2 if with_bos else -1, unk_id=3 if with_bos else 2,
      hard_vocab_limit=False, minloglevel=2)
  with open(path, "wb") as f:
    f.write(model.getvalue())
  return os.fspath(path)
