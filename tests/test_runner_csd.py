"""Runner support for CS Drafting: drafter levels and Max-Gram's table."""

import numpy as np

from harness.decoding import maxgram
from harness.runner import pairs


class _Verifier:
  vocab_size = 128


def _pair(tmp_path, table):
  tok = pairs.train_tokenizer(str(tmp_path / "spm.model"), with_bos=False)
  return pairs.LoadedPair(drafter="small", verifier=_Verifier(),
                          tokenizer=tok, encoder_decoder=True,
                          extra_drafters=("smaller",), bigram_table=table)


def test_drafter_for_cs_drafting_has_every_level(tmp_path):
  loaded = _pair(tmp_path, str(tmp_path / "bigram.npy"))
  assert loaded.drafter_for("spec_decode") == "small"
  levels = loaded.drafter_for("cs_drafting_vertical")
  assert levels[:2] == ("small", "smaller")
  assert isinstance(levels[2], maxgram.MaxGram)


def test_bigram_table_built_once_and_saved(tmp_path):
  path = tmp_path / "sub" / "bigram.npy"
  loaded = _pair(tmp_path, str(path))
  table = np.asarray(loaded.maxgram.next_token)
  assert path.exists() and table.shape == (128,)
  # Real text: the table is not the identity everywhere.
  assert np.sum(table != np.arange(128)) > 10
  again = pairs.load_or_build_maxgram(str(path), loaded.tokenizer, 128)
  np.testing.assert_array_equal(again.next_token, table)
