"""Side by side with Hugging Face transformers on identical weights.

Loads the same HF-format directories with ``T5ForConditionalGeneration``
(PyTorch CPU), checks that the logits agree with ours on one input, then
times greedy ``generate()`` and assisted ``generate(assistant_model=...)``
with a constant γ draft tokens per round (the assistant's adaptive
confidence threshold and schedule switched off) on the same prompts and
``max_new_tokens``, batch size 1.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

# Logits of ours and transformers may differ by float32 rounding only.
LOGIT_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Identity:
  """Token-for-token comparison of two sets of outputs.

  Attributes:
    identical: every prompt's output is the same id sequence.
    num_prompts: prompts compared.
    mismatches: indices of prompts whose outputs differ.
    first_mismatch: (prompt, ours, theirs) of the first difference, or None.
  """
  identical: bool
  num_prompts: int
  mismatches: tuple[int, ...]
  first_mismatch: tuple | None = None


def compare_outputs(ours, theirs) -> Identity:
  """Compares id sequences prompt by prompt (lengths included).

  Raises:
    ValueError: different numbers of prompts.
  """
  if len(ours) != len(theirs):
    raise ValueError(f"{len(ours)} outputs vs {len(theirs)}")
  bad = tuple(i for i, (a, b) in enumerate(zip(ours, theirs))
              if tuple(int(t) for t in a) != tuple(int(t) for t in b))
  first = (bad[0], tuple(ours[bad[0]]), tuple(theirs[bad[0]])) if bad else None
  return Identity(not bad, len(ours), bad, first)


@dataclasses.dataclass(frozen=True)
class HFRun:
  """One timed transformers pass.

  Attributes:
    seconds: wall time of each timed pass over all prompts.
    tokens: generated ids per prompt (decoder start token removed).
  """
  seconds: tuple[float, ...]
  tokens: tuple[tuple[int, ...], ...]

  @property
  def seconds_per_token(self) -> float:
    return min(self.seconds) / max(
        sum(len(t) for t in self.tokens), 1)


def load(directory: str, threads: int):
  """A T5ForConditionalGeneration in eval mode with ``threads`` threads."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(threads)
  model = transformers.T5ForConditionalGeneration.from_pretrained(
      directory, dtype=torch.float32)
  return model.eval()


def max_logit_difference(hf_model, jax_model, prompt: np.ndarray,
                         decoder_ids: np.ndarray) -> float:
  """Max |logit difference| of the uncached forward passes on one input."""
  import torch  # pylint: disable=import-outside-toplevel
  prompt = np.asarray(prompt, np.int32)
  decoder_ids = np.asarray(decoder_ids, np.int32)
  with torch.no_grad():
    theirs = hf_model(
        input_ids=torch.as_tensor(prompt[None], dtype=torch.long),
        decoder_input_ids=torch.as_tensor(decoder_ids[None],
                                          dtype=torch.long)).logits.numpy()
  forward = jax.jit(lambda m, x, y: m.forward_logits(x, y))
  ours = np.asarray(forward(jax_model, prompt[None], decoder_ids[None]))
  return float(np.max(np.abs(ours - theirs)))


def _generate(model, prompt: np.ndarray, max_new_tokens: int,
              assistant=None) -> tuple[int, ...]:
  import torch  # pylint: disable=import-outside-toplevel
  ids = torch.as_tensor(prompt[None], dtype=torch.long)
  with torch.no_grad():
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        assistant_model=assistant)
  return tuple(int(t) for t in out[0, 1:])  # drop the decoder start token


def configure_assistant(assistant, gamma: int) -> None:
  """Exactly γ draft tokens per round, every round."""
  cfg = assistant.generation_config
  cfg.num_assistant_tokens = gamma
  cfg.num_assistant_tokens_schedule = "constant"
  cfg.assistant_confidence_threshold = 0.0


def time_generate(model, prompts, max_new_tokens: int, repeats: int,
                  assistant=None) -> HFRun:
  """One warm-up generate, then ``repeats`` timed passes over the prompts."""
  _generate(model, prompts[0], max_new_tokens, assistant)
  seconds, tokens = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    tokens = tuple(_generate(model, p, max_new_tokens, assistant)
                   for p in prompts)
    seconds.append(time.perf_counter() - start)
  return HFRun(tuple(seconds), tokens)
