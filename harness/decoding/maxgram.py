"""Max-Gram (MaG): the statistical bottom drafter of CS Drafting.

No neural call: MaG copies the continuation of the longest suffix of the
current text that occurred earlier, in the prompt or in the text generated
so far, and fills what is missing from a greedy bigram table (the most
likely next token after each token, counted on a corpus).

Everything here is jittable: the search runs over a fixed-size corpus array
(prompt ⊕ decoder buffer) with invalid positions set to -1.
"""

from __future__ import annotations

import os
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

# Longest suffix (in tokens) the matcher tries; longer repeats are matched on
# their last MAX_NGRAM tokens, which picks the same continuation in practice.
MAX_NGRAM = 8
_INVALID = -1


@jax.tree_util.register_pytree_node_class
class MaxGram:
  """The MaG drafter: a greedy bigram table plus suffix matching.

  Args:
    next_token: [V] int32, most likely next token after each token.
  """

  def __init__(self, next_token):
    self.next_token = next_token

  def tree_flatten(self):
    return (self.next_token,), ()

  @classmethod
  def tree_unflatten(cls, aux, children):
    del aux
    return cls(*children)

  @property
  def vocab_size(self) -> int:
    return int(np.shape(self.next_token)[0])

  @classmethod
  def identity(cls, vocab_size: int) -> "MaxGram":
    """A table that repeats the last token (used when no corpus is given)."""
    return cls(jnp.arange(vocab_size, dtype=jnp.int32))

  def save(self, path: str | os.PathLike) -> None:
    np.save(path, np.asarray(self.next_token, np.int32))

  @classmethod
  def load(cls, path: str | os.PathLike) -> "MaxGram":
    table = np.load(path)
    if table.ndim != 1 or not np.issubdtype(table.dtype, np.integer):
      raise ValueError(f"{path}: a bigram table must be a 1-D int array, got "
                       f"{table.dtype}{list(table.shape)}")
    return cls(jnp.asarray(table, jnp.int32))


def build_bigram_table(sequences: Iterable[Iterable[int]],
                       vocab_size: int) -> MaxGram:
  """Counts bigrams over token sequences; ties go to the smaller id.

  Tokens never seen as a predecessor map to themselves.
  """
  counts = np.zeros((vocab_size, vocab_size), np.int64)
  for seq in sequences:
    ids = np.asarray(list(seq), np.int64)
    if ids.size > 1:
      np.add.at(counts, (ids[:-1], ids[1:]), 1)
  table = np.argmax(counts, axis=1).astype(np.int32)
  unseen = counts.sum(axis=1) == 0
  table[unseen] = np.arange(vocab_size, dtype=np.int32)[unseen]
  return MaxGram(jnp.asarray(table))


def _longest_match(corpus: jax.Array, suffix_end: jax.Array,
                   search_end: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Earliest end position of the longest earlier occurrence of a suffix.

  Args:
    corpus: [C] int32 with -1 at invalid positions.
    suffix_end: scalar, index in corpus of the suffix's last token.
    search_end: scalar, occurrences must end before this index.

  Returns:
    (end index of the match, its length in tokens; 0 if none).
  """
  size = corpus.shape[0]
  ends = jnp.arange(size)
  alive = (ends < search_end) & (corpus == corpus[suffix_end]) & (
      corpus[suffix_end] != _INVALID)
  best_len = jnp.where(jnp.any(alive), 1, 0)
  best = jnp.argmax(alive)
  for ell in range(1, MAX_NGRAM):
    src = suffix_end - ell
    tok = corpus[jnp.maximum(src, 0)]
    prev = jnp.roll(corpus, ell)  # prev[t] = corpus[t - ell]
    alive = alive & (ends >= ell) & (prev == tok) & (src >= 0) & (
        tok != _INVALID)
    found = jnp.any(alive)
    best_len = jnp.where(found, ell + 1, best_len)
    best = jnp.where(found, jnp.argmax(alive), best)
  return best, best_len


def propose(mag: MaxGram, prompt: jax.Array, prompt_len: jax.Array,
            buf: jax.Array, pos: jax.Array, count: int) -> jax.Array:
  """Proposes ``count`` tokens to follow buf[:pos].

  The corpus is prompt[:prompt_len] ⊕ buf[:pos]; the suffix is the text
  ending at buf[pos - 1]; an occurrence must end before it. The continuation
  is copied up to the first invalid position, the rest filled greedily from
  the bigram table.

  Example: prompt [7, 3, 9, 4], buf [.., 3, 9] -> the suffix [3, 9] occurs in
  the prompt followed by 4, so the proposal starts [4, table[4], ...].

  Args:
    mag: the MaxGram drafter.
    prompt: [P] int32 padded prompt (encoder input or decoder prompt).
    prompt_len: scalar, valid prompt tokens.
    buf: [L] int32 decoder buffer.
    pos: scalar, number of valid buffer tokens (≥ 1).
    count: static number of tokens to propose.

  Returns:
    [count] int32 proposed tokens.
  """
  p_size, b_size = prompt.shape[0], buf.shape[0]
  p_part = jnp.where(jnp.arange(p_size) < prompt_len, prompt, _INVALID)
  b_part = jnp.where(jnp.arange(b_size) < pos, buf, _INVALID)
  corpus = jnp.concatenate([p_part, b_part]).astype(jnp.int32)
  suffix_end = p_size + pos - 1
  end, length = _longest_match(corpus, suffix_end, suffix_end)
  padded = jnp.concatenate([corpus, jnp.full((count,), _INVALID, jnp.int32)])
  copied = jax.lax.dynamic_slice(padded, (end + 1,), (count,))
  copied = jnp.where(length > 0, copied, _INVALID)
  # Stop copying at the first invalid token.
  ok = jnp.cumprod(copied != _INVALID).astype(bool)

  def fill(prev, item):
    tok, keep = item
    nxt = jnp.where(keep, tok, mag.next_token[prev])
    return nxt, nxt

  _, out = jax.lax.scan(fill, buf[pos - 1], (copied, ok))
  return out.astype(jnp.int32)
