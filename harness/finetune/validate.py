"""Greedy decoding metrics of a model during fine-tuning.

The decodes go through the harness's own path, as a benchmark run does: the
prompt is encoded with `harness.models.encode_prompt` (T5: ids, truncated,
then EOS) and decoded by the `autoregressive` method's compiled program at
temperature 0 (batch 1). One program is compiled per prompt bucket and
reused across calls for models of the same architecture, so validating new
weights every M steps compiles nothing after the first time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from harness import decoding
from harness import metrics as metrics_lib
from harness.models import Tokenizer, encode_prompt

Example = tuple[str, Sequence[str]]


def _strip(text: str) -> str:
  return text.strip()


def greedy_eval(model, tokenizer: Tokenizer, examples: Sequence[Example], *,
                metrics: Sequence[str], max_input_len: int,
                max_decode_len: int, prefix: str = "",
                postprocess: Callable[[str], str] | None = None
                ) -> dict[str, Any]:
  """Greedy-decodes every example and scores the predictions.

  Args:
    model: a T5 model (the decoding protocol; its current weights are used).
    tokenizer: its tokenizer.
    examples: (input text, [references]) pairs.
    metrics: names registered in `harness.metrics` ("bleu" is sacrebleu's
      corpus BLEU, "rouge2" ROUGE-2 F-measure, ...).
    max_input_len: the most prompt ids, EOS included (longer inputs are
      truncated, as the harness's runner does).
    max_decode_len: the most generated tokens, EOS included.
    prefix: prepended to every input text (a task prefix such as
      "translate English to German: ").
    postprocess: decoded text -> the string scored; default: stripped.

  Returns:
    {metric: value for each metric, "num_examples": n, "num_tokens":
    generated tokens (EOS included), "decode_seconds": wall time of the
    decodes (compilation included), "predictions": [n] strings}.

  Raises:
    ValueError: no examples, an example without references, or bad lengths.
  """
  if not examples:
    raise ValueError("examples: empty; greedy_eval needs at least one")
  for name, value in (("max_input_len", max_input_len),
                      ("max_decode_len", max_decode_len)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r} must be an integer >= 1")
  references = []
  for i, (_, refs) in enumerate(examples):
    refs = (refs,) if isinstance(refs, str) else tuple(refs)
    if not refs:
      raise ValueError(f"examples[{i}]: no reference")
    if not all(isinstance(r, str) for r in refs):
      raise ValueError(f"examples[{i}]: references must be strings, got "
                       f"{refs!r:.80}")
    references.append(refs)
  postprocess = postprocess or _strip
  programs: dict[int, decoding.Program] = {}
  predictions, num_tokens = [], 0
  start = time.monotonic()
  for source, _ in examples:
    prompt = encode_prompt(tokenizer, prefix + source, True, max_input_len)
    bucket = decoding.prompt_bucket(len(prompt))
    if bucket not in programs:
      programs[bucket] = decoding.compile(
          "autoregressive", model, model, prompt_bucket=bucket, gamma=1,
          max_decode_len=max_decode_len, model="verifier")
    out = programs[bucket](np.asarray(prompt, np.int32), alpha=0.0,
                           temperature=0.0, top_p=1.0,
                           rng=jax.random.key(0))
    n = int(out.num_tokens)
    tokens = [int(t) for t in np.asarray(out.tokens)[:n]]
    num_tokens += n
    if model.eos_id in tokens:
      tokens = tokens[:tokens.index(model.eos_id)]
    predictions.append(postprocess(tokenizer.decode(tokens)))
  seconds = time.monotonic() - start
  scores = metrics_lib.compute_metrics(list(metrics), references, predictions)
  return {**scores, "num_examples": len(examples), "num_tokens": num_tokens,
          "decode_seconds": seconds, "predictions": predictions}
