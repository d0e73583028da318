"""`make bench`: efficiency, loop overhead, compiles, HF side by side, memory.

Writes results/bench/bench.json and bench.md (definitions: docs/bench.md).

  .venv/bin/python -m benchmarks                  # the committed pair
  .venv/bin/python -m benchmarks --random_pair    # development
  .venv/bin/python -m benchmarks --hf_only --cpu_threads 2   # HF at 2 threads

XLA:CPU and torch run with the same thread count (`--cpu_threads`, default
as the sweeps: one on a CPU-only host). `--hf_only` times just the verifier's
greedy decode and spec_decode at the HF γ on both sides and writes
hf_threads<N>.{json,md}.
"""

import argparse
import dataclasses
import os
import tempfile

from benchmarks import BenchConfig, run_bench
from benchmarks.pair import save_random_pair
from harness.edge import cpu_threads

TOKENIZER = "checkpoints/multi30k_spm.model"
RANDOM_VOCAB = 6000


def parse_args() -> argparse.Namespace:
  d = BenchConfig()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--drafter", default=d.drafter_dir)
  p.add_argument("--verifier", default=d.verifier_dir)
  p.add_argument("--random_pair", action="store_true",
                 help="a random T5 pair of the default sizes instead")
  p.add_argument("--num_prompts", type=int, default=d.num_prompts)
  p.add_argument("--max_decode_len", type=int, default=d.max_decode_len)
  p.add_argument("--gammas", default=",".join(map(str, d.gammas)))
  p.add_argument("--repeats", type=int, default=d.repeats)
  p.add_argument("--step_calls", type=int, default=d.step_calls)
  p.add_argument("--no_hf", action="store_true")
  p.add_argument("--no_rss", action="store_true")
  p.add_argument("--out", default=d.out_dir)
  p.add_argument("--cpu_threads", default=None,
                 help="XLA:CPU and torch threads (default: as the sweeps)")
  p.add_argument("--hf_only", action="store_true",
                 help="only ours vs Hugging Face (hf_threads<N>.json)")
  return p.parse_args()


def main() -> None:
  a = parse_args()
  try:
    threads = cpu_threads.apply(a.cpu_threads)
  except (ValueError, RuntimeError) as e:
    raise SystemExit(f"bench: {e}") from None
  threads = threads or os.cpu_count() or 1
  cfg = BenchConfig(
      drafter_dir=a.drafter, verifier_dir=a.verifier,
      num_prompts=a.num_prompts, max_decode_len=a.max_decode_len,
      gammas=tuple(int(g) for g in a.gammas.split(",")), repeats=a.repeats,
      step_calls=a.step_calls, hf=not a.no_hf, out_dir=a.out,
      threads=threads, hf_threads=threads, hf_only=a.hf_only)
  if a.no_rss:
    cfg = dataclasses.replace(cfg, rss_gin_file=None)
  with tempfile.TemporaryDirectory(prefix="bench-pair-") as tmp:
    if a.random_pair:
      small, large = save_random_pair(tmp, TOKENIZER, RANDOM_VOCAB)
      cfg = dataclasses.replace(cfg, drafter_dir=small, verifier_dir=large)
    run_bench(cfg)


if __name__ == "__main__":
  main()
