"""Masked token-level cross-entropy with optional label smoothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array,
                  label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Summed cross-entropy over scored positions.

  Args:
    logits: [B, T, V] float logits.
    labels: [B, T] int label ids.
    mask: [B, T] float, 1 where the label counts.
    label_smoothing: mass spread uniformly over the vocabulary.

  Returns:
    (loss_sum, nll_sum): scalars summed over masked positions; `loss_sum`
    includes label smoothing (the training objective), `nll_sum` is the plain
    negative log-likelihood (what validation reports).
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  loss = nll
  if label_smoothing:
    smooth = -jnp.mean(logp, axis=-1)
    loss = (1.0 - label_smoothing) * nll + label_smoothing * smooth
  return jnp.sum(loss * mask), jnp.sum(nll * mask)
