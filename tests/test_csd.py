"""CS Drafting: Max-Gram, lossless review (greedy and sampling), k-matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import decoding
from harness.decoding import csd, maxgram
from harness.models.toy import BigramLM
from harness.testing import bigram as tu

METHODS = ["cs_drafting", "cs_drafting_vertical", "cs_drafting_horizontal"]


def _propose(prompt, buf, pos, count, table=None, prompt_len=None):
  prompt_len = len(prompt) if prompt_len is None else prompt_len
  prompt = jnp.asarray(prompt, jnp.int32)
  buf = jnp.asarray(buf + [0] * 8, jnp.int32)
  mag = maxgram.MaxGram(jnp.asarray(table if table is not None
                                    else np.arange(10), jnp.int32))
  return np.asarray(maxgram.propose(mag, prompt, prompt_len, buf, pos,
                                    count)).tolist()


def test_maxgram_copies_longest_suffix_match_from_prompt():
  # Suffix [3, 9] occurs in the prompt followed by 4, 5.
  assert _propose([7, 3, 9, 4, 5], [1, 3, 9], 3, 2) == [4, 5]
  # The longest match wins over an earlier shorter one: [8, 3] -> 6.
  assert _propose([3, 1, 8, 3, 6], [2, 8, 3], 3, 1) == [6]


def test_maxgram_matches_generated_text():
  # No match in the prompt; the text repeats itself: [5, 6] -> 7.
  assert _propose([0, 0], [5, 6, 7, 5, 6], 5, 1) == [7]


def test_maxgram_falls_back_to_bigram_table():
  table = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
  # Token 9 never occurred before: table[9] = 0, table[0] = 1, ...
  assert _propose([1, 2], [3, 9], 2, 3, table) == [0, 1, 2]
  # A match whose continuation runs into padding is topped up from the
  # table (the corpus is prompt ⊕ buffer, as in the official code, so a
  # continuation may otherwise run on into the buffer).
  assert _propose([4, 8, 0, 0], [4], 1, 3, table, prompt_len=2) == [8, 9, 0]
  assert _propose([4, 8], [4], 1, 3, table) == [8, 4, 5]


def test_build_bigram_table():
  mag = maxgram.build_bigram_table([[1, 2, 1, 2, 1, 3], [0, 4]], 6)
  np.testing.assert_array_equal(mag.next_token, [4, 2, 1, 3, 4, 5])


def test_bigram_table_roundtrip(tmp_path):
  mag = maxgram.build_bigram_table([[1, 2, 3]], 5)
  mag.save(tmp_path / "t.npy")
  np.testing.assert_array_equal(maxgram.MaxGram.load(tmp_path / "t.npy")
                                .next_token, mag.next_token)


def test_default_k_matrices():
  assert csd.default_k_matrix(2, csd.Mode.FULL) == ((5, 14, 10), (0, 1, 10),
                                                    (0, 0, 10))
  assert csd.default_k_matrix(1, csd.Mode.VERTICAL) == ((5, 0), (0, 10))
  assert csd.default_k_matrix(1, csd.Mode.HORIZONTAL) == ((5, 10), (0, 0))
  plan = csd.Plan(k_matrix=((5, 10), (0, 10)), mag_len=10)
  # Static (conservative) bounds: a loop "while n < c: n += step" ends with
  # n ≤ c - 1 + step. Level 1: MaG, c = 10, step 10 -> 19. Level 0: level 1
  # with c = 5, step ≤ 19 + 1 -> 24; then MaG with c = 15 -> 24.
  assert plan.bounds == (24, 19)


PROMPTS = [np.array([1]), np.array([2, 3, 1, 4, 2, 3]), np.array([4, 0, 4])]


GREEDY_CASES = [(m, lv, a) for m in METHODS for lv in (1, 2)
                for a in (0.0, 0.6)]
FAST_GREEDY = {("cs_drafting", 2, 0.6), ("cs_drafting_vertical", 1, 0.0),
               ("cs_drafting_horizontal", 2, 0.0)}


@pytest.mark.parametrize("method,levels,alpha", [
    c if c in FAST_GREEDY else pytest.param(*c, marks=pytest.mark.slow)
    for c in GREEDY_CASES])
def test_greedy_equals_target_greedy(method, levels, alpha):
  drafter, verifier = tu.pair(2)
  drafters = (drafter, tu.bigram(77))[:levels]
  for prompt in PROMPTS:
    ref = decoding.decode("autoregressive", drafter, verifier, prompt,
                          temperature=0.0, max_decode_len=30)
    out = decoding.decode(method, drafters, verifier, prompt, alpha=alpha,
                          temperature=0.0, max_decode_len=30)
    np.testing.assert_array_equal(out.tokens, ref.tokens)


def test_identical_drafter_is_mostly_accepted():
  _, verifier = tu.pair(3)
  same = BigramLM(verifier.logits, tu.EOS)
  out = decoding.decode("cs_drafting", same, verifier, PROMPTS[1],
                        temperature=0.0, max_decode_len=40)
  s = {k: np.asarray(v) for k, v in out.stats.items()}
  assert s["drafts_accepted"] >= s["num_tokens"] - s["verifier_calls"]
  assert s["verifier_calls"] < s["num_tokens"] / 4
  np.testing.assert_array_equal(s["level_calls"][0], s["verifier_calls"])
  assert s["num_tokens"] == (s["emitted_drafts"] + s["emitted_corrections"]
                             + s["emitted_bonus"])


@pytest.mark.parametrize("method", [
    "cs_drafting_horizontal",
    pytest.param("cs_drafting", marks=pytest.mark.slow),
    pytest.param("cs_drafting_vertical", marks=pytest.mark.slow)])
def test_sampling_preserves_target_distribution(method):
  drafter, verifier = tu.pair(4)
  drafters = (drafter, tu.bigram(78))
  prompt = np.array([2, 3])
  keys = jax.random.split(jax.random.key(9), 20_000)
  out = decoding.decode_many(method, drafters, verifier, prompt, keys,
                             alpha=0.5, temperature=1.0, max_decode_len=3,
                             k_matrix=((2, 3, 2), (0, 1, 2), (0, 0, 2))
                             if method == "cs_drafting" else None,
                             mag_len=2)
  table = tu.target_table(drafter, verifier, "verifier", 0.0, 1.0, 1.0)
  expected = tu.exact_distribution(table, int(prompt[-1]), 3)
  pval = tu.chi_square_p(tu.empirical(out.tokens, 3), expected)
  assert pval > tu.P_VALUE_FLOOR, (method, pval)


def test_bad_k_matrix():
  drafter, verifier = tu.pair(0)
  with pytest.raises(ValueError, match="k_matrix"):
    decoding.decode("cs_drafting", drafter, verifier, PROMPTS[0],
                    k_matrix=((5, 10),))
  with pytest.raises(ValueError, match="k_matrix"):
    decoding.decode("cs_drafting", drafter, verifier, PROMPTS[0],
                    k_matrix=((5, 10), (3, 10)))


def test_other_methods_reject_several_drafters():
  drafter, verifier = tu.pair(0)
  with pytest.raises(ValueError, match="drafter"):
    decoding.decode("spec_decode", (drafter, drafter), verifier, PROMPTS[0])
