"""Few-shot stop strings: the post-processing cut and its token spellings.

The decoding loops may stop as soon as the generated tokens spell a stop
string; that must never change what the task's metrics score.
"""

import io

import numpy as np
import pytest
import sentencepiece as spm

from harness import models
from harness import tasks
from harness.tasks import prompts
from harness.tasks.spec import PromptFormat

_WORDS = ("the answer is", "paris", "def f(x):", "return x", "Question:",
          "[DONE]", "forty two", "Berlin.", "ja")


def _newline_tokenizer(tmp_path) -> models.Tokenizer:
  """A tiny SentencePiece that keeps newlines (like Gemma's vocabulary)."""
  rng = np.random.default_rng(0)
  lines = ["\n".join(" ".join(rng.choice(_WORDS, size=3)) for _ in range(3))
           for _ in range(300)]
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=buf, vocab_size=120,
      model_type="unigram", pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      user_defined_symbols=["\n", "\n\n"], normalization_rule_name="identity",
      remove_extra_whitespaces=False, hard_vocab_limit=False, num_threads=1,
      minloglevel=2)
  path = tmp_path / "nl.model"
  path.write_bytes(buf.getvalue())
  return models.Tokenizer(str(path))


@pytest.mark.parametrize("fmt", [PromptFormat.FEWSHOT_TRANSLATE,
                                 PromptFormat.CLOSED_BOOK_QA,
                                 PromptFormat.READING_QA,
                                 PromptFormat.GSM8K_COT, PromptFormat.MBPP])
def test_cutting_after_a_stop_string_never_changes_the_score(fmt):
  rng = np.random.default_rng(1)
  pieces = list(_WORDS) + ["\n", " ", "\n\n", "unanswerable", "\nQuestion:"]
  stops = prompts.stop_strings(fmt)
  assert stops
  for _ in range(300):
    text = "".join(rng.choice(pieces, size=rng.integers(1, 12)))
    full = prompts.postprocess(fmt, text)
    for stop in stops:
      at = text.find(stop)
      if at >= 0:  # what a decode that stopped right after it would see
        cut = text[:at + len(stop)]
        assert prompts.postprocess(fmt, cut) == full, (text, cut)


def test_stop_strings_per_task():
  assert tasks.stop_strings("gemma_triviaqa") == ("\n",)
  assert tasks.stop_strings("gemma_gsm8k_8shot") == ("\nQuestion:",)
  assert tasks.stop_strings("gemma_mbpp_3shot") == ("[DONE]",)
  assert tasks.stop_strings("multi30k_ende") == ()
  assert tasks.stop_strings("gemma_cnn_dailymail") == ()


def test_postprocess_cuts_at_the_first_stop_before_stripping():
  fmt = PromptFormat.CLOSED_BOOK_QA
  assert prompts.postprocess(fmt, " Paris\nQ: next") == "Paris"
  assert prompts.postprocess(fmt, "\nParis") == ""  # lm-eval's `until`
  assert prompts.postprocess(PromptFormat.GSM8K_COT,
                             " 3 + 4 = 7.\nQuestion: x") == "3 + 4 = 7."
  assert prompts.postprocess(PromptFormat.MBPP,
                             "def f():\n  return 1\n[DONE]\nmore") == (
                                 "def f():\n  return 1")


def test_stop_token_sequences_spell_the_string(tmp_path):
  tok = _newline_tokenizer(tmp_path)
  for text in ("\n", "\nQuestion:", "[DONE]"):
    seqs = models.stop_token_sequences(tok, [text])
    assert seqs, text
    for seq in seqs:  # never a sequence whose text lacks the string
      assert text in tok.decode(list(seq)), (text, seq)
  newline = models.stop_token_sequences(tok, ["\n"])
  # Both the "\n" piece and the "\n\n" piece end an answer.
  assert (tok.encode("\n")[-1],) in newline
  assert len([s for s in newline if len(s) == 1]) >= 2
  # In running text the first newline's token is among them.
  ids = tok.encode("the answer is paris\nQuestion: ja")
  ends = [i for i in range(1, len(ids) + 1)
          if any(tuple(ids[i - len(s):i]) == s for s in newline)]
  assert ends and "\n" in tok.decode(ids[:ends[0]])
  assert "\n" not in tok.decode(ids[:ends[0] - 1])


def test_a_vocabulary_without_the_string_gives_no_stops():
  tok = models.Tokenizer("checkpoints/multi30k_spm.model")
  assert models.stop_token_sequences(tok, ["\n"]) == ()
