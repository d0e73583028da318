"""A thin SentencePiece tokenizer wrapper with a vocabulary fingerprint."""

from __future__ import annotations

import hashlib
import os
from typing import Sequence

import sentencepiece as spm


class Tokenizer:
  """SentencePiece tokenizer identified by the sha256 of its model file.

  Args:
    model_file: path of a SentencePiece `.model` file.

  Attributes:
    id: "spm-sha256:<hex>"; two tokenizers with the same id map text to the
      same ids (drafter and verifier must agree on it).
  """

  def __init__(self, model_file: str | os.PathLike):
    with open(model_file, "rb") as f:
      self._proto = f.read()
    self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
    self.id = "spm-sha256:" + hashlib.sha256(self._proto).hexdigest()

  @property
  def serialized(self) -> bytes:
    """The model file's bytes (to save it next to a checkpoint)."""
    return self._proto

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id()

  @property
  def bos_id(self) -> int:
    """-1 when the vocabulary has no BOS token (T5)."""
    return self._sp.bos_id()

  def encode(self, text: str, add_bos: bool = False,
             add_eos: bool = False) -> list[int]:
    """Text -> ids, optionally with BOS first and/or EOS last."""
    return self._sp.encode(text, add_bos=add_bos, add_eos=add_eos)

  def decode(self, ids) -> str:
    """Ids -> text; ids beyond the SentencePiece vocabulary are dropped.

    (Model vocabularies are often padded past the tokenizer's, e.g. T5's
    32128 logits for a 32000-piece vocabulary.)
    """
    ids = [int(i) for i in ids if 0 <= int(i) < self.vocab_size]
    return self._sp.decode(ids)


def stop_token_sequences(tokenizer: Tokenizer, strings: Sequence[str]
                         ) -> tuple[tuple[int, ...], ...]:
  """Token sequences whose text contains one of ``strings``.

  For the decoding loops' stop check: a decode may stop once its generated
  tokens end with one of these, because its text then contains the stop
  string and a cut at the string's first occurrence needs nothing after.
  Candidates are the string's own encoding, its encoding after a word (no
  leading word-boundary piece), and every single token whose text contains
  it (e.g. the pieces "\\n\\n" or ".\\n" for a newline). A candidate is
  kept only if its decoded text really contains the string, so a stop never
  fires early; a spelling not listed only makes the decode run longer.
  """
  out: list[tuple[int, ...]] = []
  for text in strings:
    plain = tokenizer.encode(text)
    head = tokenizer.encode("a")
    joined = tokenizer.encode("a" + text)
    cands = [tuple(plain)]
    if joined[:len(head)] == head:
      cands.append(tuple(joined[len(head):]))
    cands += [(i,) for i in range(tokenizer.vocab_size)
              if text in tokenizer.decode([i])]
    for cand in cands:
      if cand and cand not in out and text in tokenizer.decode(list(cand)):
        out.append(cand)
  return tuple(out)


def encode_prompt(tokenizer: Tokenizer, text: str, encoder_decoder: bool,
                  max_input_len: int | None = None) -> list[int]:
  """Prompt text -> the [P] ids given to the model; the one encoding of
  prompts (runner, training, benchmarks).

  * encoder-decoder (T5): ``ids[:max_input_len - 1] + [EOS]`` (T5
    convention: the encoder input ends in EOS; the decoder starts from its
    start token).
  * decoder-only (Gemma): ``[BOS] + ids[-(max_input_len - 1):]``: a too-long
    few-shot prompt loses its *oldest* text, keeping the question.

  Args:
    tokenizer: the pair's tokenizer.
    text: the prompt text (a task's ``inputs``).
    encoder_decoder: True for T5, False for Gemma.
    max_input_len: the most ids returned (EOS / BOS included); None keeps
      every id.

  Returns:
    The ids, e.g. T5 with max_input_len 4: "a b c d" -> [a, b, c, EOS].
  """
  ids = tokenizer.encode(text)
  keep = len(ids) if max_input_len is None else max_input_len - 1
  if encoder_decoder:
    return ids[:keep] + [tokenizer.eos_id]
  return [tokenizer.bos_id] + ids[max(len(ids) - keep, 0):]


def check_same_tokenizer(drafter, verifier) -> None:
  """Raises ValueError if two models (or tokenizers) differ in vocabulary."""
  a = getattr(drafter, "tokenizer_id", getattr(drafter, "id", None))
  b = getattr(verifier, "tokenizer_id", getattr(verifier, "id", None))
  if a != b:
    raise ValueError(
        f"drafter and verifier tokenizers differ: {a!r} vs {b!r}")


def check_same_vocabulary(drafter, verifier, drafter_name: str = "drafter",
                          verifier_name: str = "verifier") -> None:
  """Raises ValueError, in one line naming both, unless two models (or
  opened checkpoints) agree on vocabulary size and tokenizer identity."""
  a = (drafter.vocab_size, drafter.tokenizer_id)
  b = (verifier.vocab_size, verifier.tokenizer_id)
  if a != b:
    raise ValueError(
        f"drafter {drafter_name} and verifier {verifier_name} do not share a "
        f"vocabulary: vocab_size {a[0]} vs {b[0]}, tokenizer {a[1]} vs {b[1]}")
