"""A SentencePiece vocabulary shared by all models of the default pairs.

Ids follow the T5 convention, plus a BOS piece for the decoder-only models:
pad 0 (also T5's decoder start), eos 1, unk 2, bos 3.
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID, BOS_ID = 0, 1, 2, 3


def train_vocab(texts: Sequence[str], model_path: str | os.PathLike,
                vocab_size: int = 8000) -> str:
  """Trains a unigram SentencePiece model on `texts`, deterministically.

  Args:
    texts: training sentences (here the English and German training side).
    model_path: where to write the `.model` file.
    vocab_size: number of pieces, special ids included.

  Returns:
    The path of the written `.model` file.
  """
  model_path = os.fspath(model_path)
  os.makedirs(os.path.dirname(model_path) or ".", exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
      for line in texts:
        f.write(line.strip() + "\n")
    prefix = os.path.join(tmp, "spm")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=BOS_ID,
        num_threads=1, shuffle_input_sentence=False, seed_sentencepiece_size=
        1_000_000, minloglevel=2)
    with open(prefix + ".model", "rb") as src, open(model_path, "wb") as dst:
      dst.write(src.read())
  return model_path
