"""Compile seconds of each decoding-loop family for a model pair.

  python scripts/compile_times.py [--drafter DIR] [--verifier DIR]
      [--bucket 16] [--gamma 5] [--max_decode_len 64]

Compiles (trace + lower + XLA compile) one program per loop family —
autoregressive, the shared rule-based speculative loop, the token-level
cascade and the sequence-level cascade — for one prompt bucket, and prints
each one's seconds (``decoding.compile_stats``) with the load average.
Run it on a quiet machine: compile time is CPU time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from harness import decoding
from harness import models

FAMILIES = ("autoregressive", "spec_decode", "token_cascade_chow",
            "seq_cascade_chow")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--drafter", default=os.path.join(
      REPO, "checkpoints", "multi30k_t5", "small"))
  parser.add_argument("--verifier", default=os.path.join(
      REPO, "checkpoints", "multi30k_t5", "large"))
  parser.add_argument("--bucket", type=int, default=16)
  parser.add_argument("--gamma", type=int, default=5)
  parser.add_argument("--max_decode_len", type=int, default=64)
  args = parser.parse_args(argv)
  drafter = models.load_pretrained(args.drafter).model
  verifier = models.load_pretrained(args.verifier).model
  print(f"load average before: {os.getloadavg()}")
  total = 0.0
  for method in FAMILIES:
    before = decoding.compile_stats()["compile_s"]
    start = time.perf_counter()
    decoding.compile(method, drafter, verifier, prompt_bucket=args.bucket,
                     gamma=args.gamma, max_decode_len=args.max_decode_len)
    seconds = decoding.compile_stats()["compile_s"] - before
    total += seconds
    print(f"{method:20s} {seconds:6.1f} s compile "
          f"({time.perf_counter() - start:.1f} s wall)")
  print(f"total {total:.1f} s for {len(FAMILIES)} programs; load average "
        f"after: {os.getloadavg()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
