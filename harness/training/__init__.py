"""Training of the embedded default model pairs on Multi30k EN→DE.

The small in-process trainer (AdamW, one host) behind ``checkpoints/``; the
paper-scale, t5x-style stack (Adafactor, seqio, orbax, gin, ``python -m
harness finetune``) is ``harness.finetune``.

Public API:
  train_vocab: a shared EN+DE SentencePiece vocabulary.
  T5_PRESETS, GEMMA_PRESETS: the small and large model sizes of each pair.
  TrainConfig, train_model: the training loop (bucketed batches, AdamW,
    checkpoint selection on validation loss, a progress bar).
  train_pair: trains both sizes of one architecture and writes checkpoints.
  evaluate_bleu, decode_cost: greedy BLEU and per-token decode time of a
    saved checkpoint, through the harness's own `decode`.
"""

from harness.training.data import (Batch, GEMMA_PROMPT, gemma_prompt,
                                   make_batches, prompt_ids, read_pairs)
from harness.training.evaluate import (DecodeCost, EvalResult, decode_cost,
                                       evaluate_bleu, translate)
from harness.training.losses import cross_entropy
from harness.training.presets import GEMMA_PRESETS, T5_PRESETS, make_config
from harness.training.train import TrainConfig, TrainResult, train_model
from harness.training.pair import train_pair
from harness.training.vocab import train_vocab
