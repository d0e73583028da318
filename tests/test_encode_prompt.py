"""``harness.models.encode_prompt``: the one prompt encoding."""

from __future__ import annotations

import pytest

from harness.models import Tokenizer, encode_prompt
from harness.testing import tokenizers

TEXT = "kato rimu sel anpor dela vequa stone biru fagon ishel ta."


@pytest.fixture(scope="module", params=[False, True], ids=["t5", "gemma"])
def tokenizer(request, tmp_path_factory):
  path = tmp_path_factory.mktemp("spm") / "spiece.model"
  return Tokenizer(tokenizers.train_tiny_sentencepiece(
      path, with_bos=request.param))


def test_untruncated_prompt_is_the_tokenizers_encoding(tokenizer):
  t5 = tokenizer.bos_id < 0
  want = tokenizer.encode(TEXT, add_bos=not t5, add_eos=t5)
  assert encode_prompt(tokenizer, TEXT, t5) == want
  assert encode_prompt(tokenizer, TEXT, t5, len(want) + 5) == want


def test_encoder_decoder_keeps_the_start_and_ends_in_eos(tokenizer):
  ids = tokenizer.encode(TEXT)
  assert len(ids) > 4
  assert encode_prompt(tokenizer, TEXT, True, 4) == ids[:3] + [
      tokenizer.eos_id]


def test_decoder_only_keeps_the_end_after_bos(tokenizer):
  ids = tokenizer.encode(TEXT)
  assert encode_prompt(tokenizer, TEXT, False, 4) == [tokenizer.bos_id] + (
      ids[-3:])
  # Shorter than the limit: every id is kept (no wrap-around slicing).
  assert encode_prompt(tokenizer, "ka.", False, 50) == (
      [tokenizer.bos_id] + tokenizer.encode("ka."))
