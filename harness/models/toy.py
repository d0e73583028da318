"""Toy models whose distributions are known in closed form.

:class:`BigramLM` is the workhorse of the exactness tests: the next token's
logits depend only on the current last token, so the probability of any
continuation can be enumerated exactly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class _BigramCache:
  """Cache of a bigram model: only the length is state.

  Attributes:
    length: scalar int32, number of decoder tokens written.
  """
  length: jax.Array


jax.tree_util.register_dataclass(
    _BigramCache, data_fields=["length"], meta_fields=[])


@jax.tree_util.register_pytree_node_class
class BigramLM:
  """A bigram language model: ``logits(next | prev) = logits[prev % R]``.

  Args:
    logits: [R, V] float array (usually R = V); row ``u % R`` holds the
      next-token logits after u. R < V keeps a model of a large vocabulary
      small (the loop-cost benchmarks' null models).
    eos_id: end-of-sequence id.
    name: vocabulary identifier used to check drafter/verifier compatibility.
  """

  def __init__(self, logits, eos_id: int, name: str = "toy"):
    self.logits = logits
    self._eos_id = int(eos_id)
    self._name = name

  # --- pytree -------------------------------------------------------------
  def tree_flatten(self):
    return (self.logits,), (self._eos_id, self._name)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    obj.logits, = children
    obj._eos_id, obj._name = aux
    return obj

  # --- protocol -----------------------------------------------------------
  @property
  def vocab_size(self) -> int:
    return int(np.shape(self.logits)[-1])

  @property
  def eos_id(self) -> int:
    return self._eos_id

  @property
  def tokenizer_id(self) -> str:
    return f"{self._name}:{self.vocab_size}"

  def decoder_prompt(self, prompt, prompt_len):
    return prompt, prompt_len

  def prefill(self, prompt, prompt_len, cache_size):
    del prompt, cache_size
    return _BigramCache(length=jnp.asarray(prompt_len, jnp.int32) - 1)

  def score(self, tokens, cache):
    rows = np.shape(self.logits)[0]
    logits = jnp.asarray(self.logits, jnp.float32)[tokens % rows]  # [B, K, V]
    return logits, _BigramCache(cache.length + tokens.shape[-1])

  def rollback(self, cache, length):
    return _BigramCache(jnp.asarray(length, jnp.int32))

  def cache_length(self, cache):
    return cache.length

  # --- exact reference ------------------------------------------------------
  def next_token_logits(self, prev: int) -> np.ndarray:
    """Host-side logits after token ``prev`` (for enumeration in tests)."""
    return np.asarray(self.logits, np.float64)[prev % np.shape(self.logits)[0]]


def random_bigram(key: jax.Array, vocab_size: int, eos_id: int = 0,
                  scale: float = 1.5, name: str = "toy") -> BigramLM:
  """A bigram model with i.i.d. normal logits times ``scale``."""
  logits = scale * jax.random.normal(key, (vocab_size, vocab_size))
  return BigramLM(logits, eos_id=eos_id, name=name)


def null_bigram(key: jax.Array, vocab_size: int, eos_id: int,
                rows: int = 512) -> BigramLM:
  """A model that costs (almost) nothing and never ends: random logits
  over ``vocab_size`` tokens in a table of ``rows`` rows (``min(rows,
  vocab_size)``; a [V, V] table at a 262k vocabulary fits nowhere), EOS
  masked out, so every decode runs to its maximum length. The loop-cost
  measurements' model (``harness.runner.loop_overhead``,
  ``benchmarks.loop_cost``)."""
  logits = 1.5 * jax.random.normal(key, (min(rows, vocab_size), vocab_size))
  return BigramLM(logits.at[:, eos_id].set(-1e9), eos_id)
