"""The drafter table: subset-vocabulary drafters of Gemma 3 270M, measured.

  .venv/bin/python scripts/subset_drafters.py \
      --drafter ~/.cache/harness/gemma3-270m-drafter-s32k

Takes one distilled subset drafter (scripts/distill_drafter.py
--vocab_subset N) and, for each size V in --sizes (at most the drafter's
own), the drafter whose output keeps the V most frequent tokens of the
distillation text (plus EOS and the stop-string pieces; the same ranking the
distillation used, so each smaller subset is inside the trained one, and
its q is the trained q renormalised on it). For each it reports, on the
held-out distillation rows (never trained on):

* acceptance at T = 1, sum_v min(p, q); greedy acceptance, the top-1
  agreement; p(S), the verifier's mass on the subset; KL(p_S || q);
* c, the drafter's step over the verifier's (`benchmarks.plan_gamma`: each
  model call as a decoding loop makes it, one XLA thread), and the
  verifier's block ratios b(γ);
* the expected speed-up of speculative decoding for γ = 1..5 at the
  measured acceptance (T = 1) and top-1 agreement (T = 0), and the best γ.

Writes results/subset_drafters/drafters.{json,md}. Timing: run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # the repository root: `benchmarks` is not installed
# pylint: disable=wrong-import-position
from harness.edge import cpu_threads  # noqa: E402


def _restricted(drafter, ranking_ids, size: int, keep):
  """`drafter` with its output cut to the `size` most frequent ids."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from harness.models import subset_vocab  # pylint: disable=g-import-not-at-top
  trained = subset_vocab.output_ids(drafter)
  chosen = np.unique(np.concatenate([ranking_ids[:size],
                                     np.asarray(keep, np.int64),
                                     [drafter.eos_id]]))
  chosen = np.intersect1d(chosen, trained)
  rows = np.searchsorted(trained, chosen)
  params = dict(drafter.params)
  params["head"] = drafter.params["head"][jnp.asarray(rows)]
  params["head_ids"] = jnp.asarray(chosen, jnp.int32)
  return drafter.replace(params=params)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--drafter", required=True,
                 help="a distilled subset drafter's checkpoint directory")
  p.add_argument("--verifier", default=None,
                 help="default: Gemma 3 270M from the `model` extra")
  p.add_argument("--sizes", default="8192,16384,32768")
  p.add_argument("--seq_len", type=int, default=256)
  p.add_argument("--val_rows", type=int, default=32)
  p.add_argument("--batch_size", type=int, default=4)
  p.add_argument("--max_gamma", type=int, default=5)
  p.add_argument("--calls", type=int, default=8)
  p.add_argument("--out", default="results/subset_drafters")
  p.add_argument("--reuse_metrics", action="store_true",
                 help="read the held-out metrics from OUT/metrics.json (a "
                 "previous run's) instead of evaluating again")
  p.add_argument("--save", default=None, metavar="V:DIR",
                 help="also save the drafter restricted to size V as a "
                 "checkpoint in DIR (the one the experiment uses)")
  a = p.parse_args(argv)
  cpu_threads.apply("1")
  from benchmarks import plan_gamma, report  # pylint: disable=g-import-not-at-top
  from harness.models import gguf, load_pretrained, subset_vocab  # pylint: disable=g-import-not-at-top
  from harness.tasks import data_root  # pylint: disable=g-import-not-at-top
  from harness.training import distill  # pylint: disable=g-import-not-at-top
  verifier, _, tokenizer = load_pretrained(a.verifier or
                                           gguf.gemma3_270m_dir())
  drafter, _, _ = load_pretrained(os.path.expanduser(a.drafter))
  trained = subset_vocab.output_ids(drafter)
  if trained is None:
    raise SystemExit(f"{a.drafter}: not a subset drafter "
                     f"(no {subset_vocab.SUBSET_FILE})")
  # The distillation's own rows: the same text, packing and split.
  texts = distill.read_texts(data_root())
  rows = distill.pack_sequences(distill.interleave(texts, 0), tokenizer,
                                a.seq_len, 0)
  val, train = rows[:a.val_rows], rows[a.val_rows:]
  keep = distill.stop_piece_ids(tokenizer)
  # The ranking `subset_vocab.frequent_ids` took the trained S from.
  ranking = subset_vocab.frequency_ranking(train, verifier.vocab_size)
  c = drafter.config
  if a.save:
    size, folder = a.save.split(":", 1)
    from harness.models import save_pretrained  # pylint: disable=g-import-not-at-top
    save_pretrained(_restricted(drafter, ranking, int(size), keep),
                    os.path.expanduser(folder), tokenizer)
    print(f"saved the V = {size} drafter in {folder}")
  measured = []
  cache = os.path.join(a.out, "metrics.json")
  previous = {}
  if a.reuse_metrics:
    with open(cache, encoding="utf-8") as f:
      previous = json.load(f)
  for size in sorted(int(s) for s in a.sizes.split(",") if s):
    model = _restricted(drafter, ranking, size, keep)
    metrics = previous.get(str(size)) or distill.evaluate(
        distill.make_eval_step(verifier, model),
        distill.trainable(model.params), val, a.batch_size)
    spec = (f"subset={int(subset_vocab.output_ids(model).size)},"
            f"d_model={c.d_model},layers={c.num_layers}")
    measured.append((size, spec, metrics))
    print(f"V = {size}: {metrics}")
  if not measured:
    return {}
  if a.out:
    os.makedirs(a.out, exist_ok=True)
    with open(cache, "w", encoding="utf-8") as f:
      json.dump({str(size): m for size, _, m in measured}, f, indent=1)
  # One plan: the verifier's block costs once, each drafter's c, and the
  # speed-up at every measured acceptance (each row reads its own).
  alphas = sorted({round(m[k], 4) for _, _, m in measured
                   for k in ("acceptance", "top1")})
  plan = plan_gamma.plan("gemma3_270m", [spec for _, spec, _ in measured],
                         alphas, a.max_gamma, 256, 44, a.calls)
  table = []
  for (size, spec, metrics), row in zip(measured, plan["drafters"]):
    t1, t0 = round(metrics["acceptance"], 4), round(metrics["top1"], 4)
    table.append({"size": size, "subset": int(spec.split(",")[0][7:]),
                  "d_model": c.d_model, "layers": c.num_layers, **metrics,
                  "c": row["c"], "t_q_ms": row["t_q_ms"],
                  "t_p_ms": plan["t_p_ms"],
                  "block_ratio": plan["block_ratio"],
                  "speedup_t1": row["speedup"][str(t1)],
                  "speedup_greedy": row["speedup"][str(t0)],
                  "best_gamma_t1": row["best_gamma"][str(t1)],
                  "best_gamma_greedy": row["best_gamma"][str(t0)],
                  "load_average": plan["load_average"]})
  lines = ["# Subset-vocabulary drafters of Gemma 3 270M", "",
           f"Drafter: {a.drafter} (trained subset {trained.size} ids); "
           f"held-out rows: {len(val)} x {a.seq_len} tokens of the "
           "distillation text. Costs: `benchmarks.plan_gamma` (one XLA "
           "thread). Expected speed-up: Leviathan's formula with the "
           "measured b(γ) and c (no loop overhead, no prefill).", "",
           "| V | |S| | d_model | layers | c | acceptance T=1 | greedy "
           "(top-1) | p(S) | KL(p_S‖q) | best γ (T=1): speed-up | best γ "
           "(T=0): speed-up | load |", "|---|---|---|---|---|---|---|---|"
           "---|---|---|---|"]
  for r in table:
    g1, g0 = r["best_gamma_t1"], r["best_gamma_greedy"]
    lines.append(
        f"| {r['size']} | {r['subset']} | {r['d_model']} | {r['layers']} | "
        f"{r['c']:.4f} | {r['acceptance']:.3f} | {r['top1']:.3f} | "
        f"{r['support_mass']:.3f} | {r['kl']:.3f} | {g1}: "
        f"{r['speedup_t1'][g1]:.2f}x | {g0}: {r['speedup_greedy'][g0]:.2f}x "
        f"| {r['load_average'][0]:.2f} |")
  if table:
    lines += ["", "Verifier block ratios b(γ) = t_p(γ+1)/t_p(1): " + ", ".join(
        f"γ={g}: {b:.3f}" for g, b in table[0]["block_ratio"].items()),
              f"(t_p(1) = {table[0]['t_p_ms']['1']:.1f} ms)."]
  text = "\n".join(lines) + "\n"
  print(text)
  result = {"drafter": a.drafter, "trained_subset": int(trained.size),
            "rows": table}
  if a.out:
    report.write_json_md(os.path.join(a.out, "drafters"), result, text)
  return result


if __name__ == "__main__":
  main()
