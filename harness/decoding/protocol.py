"""The decoding protocol: the only thing decoding knows about a model.

A model that decoding can drive is a *pytree*: its leaves are the parameters
(traced by ``jax.jit``), its auxiliary data is the static configuration
(hashable). Decoding passes the model object itself through ``jit``, so one
compiled program serves every set of weights of the same architecture, and a
sweep over weights or decoding hyper-parameters never recompiles.

Token sequences seen by the protocol are *decoder* sequences. For a
decoder-only model the decoder sequence starts with the prompt; for an
encoder-decoder model the prompt is encoded once and the decoder sequence
starts with the decoder start token(s) given by :meth:`decoder_prompt`.

Cache invariant used by every decoding loop (batch size 1, a scalar length):

* ``cache_length(cache) == n`` means decoder tokens ``x[0] … x[n-1]`` have
  been written to the cache, at positions ``0 … n-1``.
* :meth:`score` writes ``K`` tokens at positions ``n … n+K-1`` and returns the
  next-token logits after each of them (row ``i`` predicts ``x[n+i+1]``).
  Attention over the cache is limited to positions ``< n`` plus the causal
  block, so anything stored beyond the length (stale or padding writes) is
  never seen.
* :meth:`rollback` sets the length to an earlier value: an index update,
  never a copy.

Example (decoder-only, prompt ``[a, b, c]``)::

    cache = model.prefill(prompt_padded, prompt_len=3, cache_size=32)
    # length 2: a, b written; c is "pending" (not yet fed)
    logits, cache = model.score(jnp.array([[c]]), cache)
    # logits[0, 0] is p(· | a b c); length 3
    logits, cache = model.score(jnp.array([[d, e, f]]), cache)  # verify 3
    cache = model.rollback(cache, 4)  # keep a b c d; e, f are forgotten
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

Cache = Any  # a pytree; every implementation documents its fields.


@runtime_checkable
class DecodingModel(Protocol):
  """What decoding needs from a model (see the module docstring)."""

  @property
  def vocab_size(self) -> int:
    """Number of output logits per position."""

  @property
  def eos_id(self) -> int:
    """End-of-sequence token id."""

  @property
  def tokenizer_id(self) -> str:
    """A string identifying the vocabulary; drafter and verifier must agree."""

  def decoder_prompt(
      self, prompt: jax.Array, prompt_len: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    """Returns the start of the decoder sequence.

    Args:
      prompt: [P] int32, padded prompt.
      prompt_len: scalar int32, number of real prompt tokens (≥ 1).

    Returns:
      (tokens [P0] int32, length scalar int32). P0 must depend only on P.
    """

  def prefill(
      self, prompt: jax.Array, prompt_len: jax.Array, cache_size: int
  ) -> Cache:
    """Builds a cache holding all decoder-prompt tokens but the last.

    Args:
      prompt: [P] int32, padded prompt (encoder input for encoder-decoders).
      prompt_len: scalar int32, number of real prompt tokens.
      cache_size: static maximum number of decoder positions.

    Returns:
      A cache whose length is ``decoder_prompt(...)[1] - 1``.
    """

  def score(
      self, tokens: jax.Array, cache: Cache
  ) -> tuple[jax.Array, Cache]:
    """Writes tokens [B, K] at the cache length; returns logits [B, K, V]."""

  def rollback(self, cache: Cache, length: jax.Array) -> Cache:
    """Sets the cache length (scalar int32) without touching its contents."""

  def cache_length(self, cache: Cache) -> jax.Array:
    """The current cache length (scalar int32)."""
