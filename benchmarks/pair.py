"""The model pair and the prompts of a benchmark run."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from harness import decoding
from harness import tasks
from harness.models import Tokenizer, encode_prompt, random_t5
from harness.models import save_pretrained
from harness.runner import config as run_config
from harness.runner import pairs
from harness.training.presets import make_config


@dataclasses.dataclass(frozen=True)
class Pair:
  """A drafter/verifier pair loaded from HF-format directories.

  Attributes:
    drafter: small model (pytree).
    verifier: large model (pytree).
    drafter_dir: its checkpoint directory (for transformers).
    verifier_dir: likewise.
    tokenizer: the shared tokenizer.
  """
  drafter: object
  verifier: object
  drafter_dir: str
  verifier_dir: str
  tokenizer: Tokenizer


@dataclasses.dataclass(frozen=True)
class Prompts:
  """Encoder prompts padded to ONE bucket, so each method compiles once.

  Attributes:
    padded: [N, B] int32, B = ``decoding.prompt_bucket`` of the longest.
    lengths: [N] int32 real lengths (EOS included).
  """
  padded: np.ndarray
  lengths: np.ndarray

  def __len__(self) -> int:
    return len(self.lengths)

  @property
  def bucket(self) -> int:
    return self.padded.shape[1]

  def ids(self, i: int) -> np.ndarray:
    """The unpadded prompt i."""
    return self.padded[i, :self.lengths[i]]


def load_pair(drafter_dir: str, verifier_dir: str,
              dtype: str = "float32") -> Pair:
  """Loads both checkpoints exactly as a sweep does.

  Through the sweep's own loader (`runner.pairs.load_pair`, one chip, the
  pair's configured dtype: float32 by default, as `ModelPair.dtype`), so
  the bench times the models the sweeps run, whatever dtype the checkpoint
  stores; the loader checks that both share a vocabulary.
  """
  pair = run_config.ModelPair(
      name="bench", drafter=os.fspath(drafter_dir),
      verifier=os.fspath(verifier_dir), dtype=run_config.DType(dtype),
      model_parallel=1)
  loaded = pairs.load_pair(pair, work_dir=os.fspath(verifier_dir))
  return Pair(loaded.drafter, loaded.verifier, os.fspath(drafter_dir),
              os.fspath(verifier_dir), loaded.tokenizer)


def pad_prompts(prompts: list[np.ndarray]) -> Prompts:
  """Pads 1-D id arrays to the bucket of the longest one."""
  lengths = np.asarray([len(p) for p in prompts], np.int32)
  padded = np.zeros((len(prompts), decoding.prompt_bucket(int(lengths.max()))),
                    np.int32)
  for i, p in enumerate(prompts):
    padded[i, :len(p)] = p
  return Prompts(padded, lengths)


def task_prompts(tokenizer: Tokenizer, task: str, num: int,
                 max_len: int) -> Prompts:
  """The first ``num`` test examples of ``task`` (seed 0), EOS appended.

  Prompts longer than ``max_len`` tokens are cut (keeping the EOS).
  """
  examples = tasks.load_examples(task, split="test", num_examples=num, seed=0)
  return pad_prompts([np.asarray(encode_prompt(tokenizer, ex.inputs, True,
                                               max_len), np.int32)
                      for ex in examples])


def save_random_pair(directory: str, tokenizer_file: str, vocab_size: int,
                     seed: int = 0) -> tuple[str, str]:
  """Saves a random T5 pair of the default preset sizes (for development).

  Args:
    directory: parent directory; ``small`` and ``large`` are created in it.
    tokenizer_file: SentencePiece model saved next to both.
    vocab_size: model vocabulary (≥ the tokenizer's).
    seed: PRNG seed of the weights.

  Returns:
    (drafter_dir, verifier_dir).
  """
  tokenizer = Tokenizer(tokenizer_file)
  keys = jax.random.split(jax.random.key(seed))
  dirs = []
  for key, size in zip(keys, ("small", "large")):
    model = random_t5(key, make_config("t5", size, vocab_size),
                      tokenizer_id=tokenizer.id)
    path = os.path.join(directory, size)
    save_pretrained(model, path, tokenizer)
    dirs.append(path)
  return dirs[0], dirs[1]
