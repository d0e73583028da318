"""Tiny SentencePiece vocabularies trained on synthetic text.

Nothing here reads data files: the text is made up from a fixed syllable set.
"""

from __future__ import annotations

import os

import numpy as np

from harness.runner import pairs

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
  (T5 style) unk 2 and no BOS (``pairs.train_sentencepiece``).

  Returns:
    `path`, now holding the `.model` file.
  """
  pairs.train_sentencepiece(synthetic_lines(seed=seed), path, vocab_size,
                            with_bos)
  return os.fspath(path)
