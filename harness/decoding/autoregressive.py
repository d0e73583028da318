"""Autoregressive decoding with one model (the drafter-only and
verifier-only reference points), also used inside the sequence cascade."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from harness.decoding import sampling
from harness.decoding import state as st
from harness.decoding.protocol import Cache, DecodingModel

AR_STATS = ("iterations", "steps", "sum_max_prob_milli", "sum_logprob_milli",
            "min_max_prob_milli")
# Confidence sums are kept as integers in thousandths so that every counter
# in the loop state is int32; 1e-3 resolution is ample for a threshold.
MILLI = 1000.0


@flax.struct.dataclass
class ARState:
  """Loop state of autoregressive decoding.

  Attributes:
    seq: the decoder sequence.
    cache: the model cache; its length is seq.length - 1 (last token pending).
    rng: PRNG key, split every step.
    stats: counters (``AR_STATS``).
  """
  seq: st.Sequence
  cache: Cache
  rng: jax.Array
  stats: dict


def init(model: DecodingModel, prompt: jax.Array, prompt_len: jax.Array,
         size: int, rng: jax.Array,
         stop_sequences: st.StopSequences = ()) -> ARState:
  """Prefills the model and returns the initial loop state."""
  start, start_len = model.decoder_prompt(prompt, prompt_len)
  seq = st.new_sequence(start, start_len, size, stop_sequences)
  cache = model.prefill(prompt, prompt_len, size)
  stats = st.zero_stats(AR_STATS)
  stats["min_max_prob_milli"] = jnp.asarray(int(MILLI), jnp.int32)
  return ARState(seq=seq, cache=cache, rng=rng, stats=stats)


def step(model: DecodingModel, knobs: st.Knobs, max_decode_len: int,
         s: ARState) -> ARState:
  """Scores the pending token, samples the next one and appends it."""
  rng, key = jax.random.split(s.rng)
  logits, cache = model.score(s.seq.last(1)[None], s.cache)
  probs, raw = sampling.process_logits(logits[0, 0], knobs.temperature,
                                       knobs.top_p)
  token = sampling.sample(key, probs)
  seq, n = st.emit(s.seq, token[None], 1, model.eos_id, max_decode_len)
  max_prob = jnp.max(raw)
  logprob = jnp.log(jnp.maximum(raw[token], sampling.MIN_PROB))
  stats = st.add_stats(
      s.stats, iterations=1, steps=1,
      sum_max_prob_milli=jnp.round(MILLI * max_prob) * n,
      sum_logprob_milli=jnp.round(MILLI * logprob) * n)
  stats["min_max_prob_milli"] = jnp.minimum(
      stats["min_max_prob_milli"], jnp.round(MILLI * max_prob).astype(jnp.int32))
  return ARState(seq=seq, cache=cache, rng=rng, stats=stats)


def run(model: DecodingModel, prompt: jax.Array, prompt_len: jax.Array,
        knobs: st.Knobs, rng: jax.Array, *, max_decode_len: int, size: int,
        stop_sequences: st.StopSequences = ()) -> ARState:
  """Decodes until EOS or ``max_decode_len`` tokens; returns the final state."""
  s = init(model, prompt, prompt_len, size, rng, stop_sequences)
  return jax.lax.while_loop(
      lambda s: ~s.seq.done,
      lambda s: step(model, knobs, max_decode_len, s), s)


# Variants of the autoregressive family (the traced ``variant`` index).
MODELS = ("verifier", "drafter")


def decode(drafter: DecodingModel, verifier: DecodingModel,
           prompt: jax.Array, prompt_len: jax.Array, knobs: st.Knobs,
           variant: jax.Array, rng: jax.Array, *, gamma: int,
           max_decode_len: int, size: int,
           stop_sequences: st.StopSequences = ()) -> st.DecodeOutput:
  """Method ``autoregressive``: one model, chosen by ``variant``.

  ``variant`` indexes ``MODELS`` (traced: one program serves both reference
  points; only the chosen model runs). Other arguments as in
  ``speculative.decode``; γ is unused.
  """
  del gamma

  def branch(name):
    def run_one(_):
      chosen = verifier if name == "verifier" else drafter
      s = run(chosen, prompt, prompt_len, knobs, rng,
              max_decode_len=max_decode_len, size=size,
              stop_sequences=stop_sequences)
      n = s.stats["steps"]
      if name == "verifier":
        stats = {"verifier_calls": n, "verifier_positions": n,
                 "emitted_verifier": s.seq.generated}
      else:
        stats = {"drafter_steps": n, "emitted_drafter": s.seq.generated}
      stats["iterations"] = s.stats["iterations"]
      return st.output(s.seq, stats, max_decode_len)
    return run_one

  return jax.lax.switch(variant, [branch(m) for m in MODELS], None)
