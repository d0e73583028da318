"""Regenerates (or checks) the dry-run transcripts of docs/running.md.

  .venv/bin/python scripts/dry_run_transcripts.py           # rewrite them
  .venv/bin/python scripts/dry_run_transcripts.py --check   # exit 1 if stale

Each command below runs as a user would type it (`python -m harness sweep
... --dry_run --simulate_devices ...`, placeholder checkpoints and a TFDS
directory that do not exist, the `todo` lines left out), and its output and
exit status replace the block between the two markers in docs/running.md.
Simulated topologies use the chip table only, so the output is the same on
any machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "running.md")
BEGIN = "<!-- dry-run transcripts: scripts/dry_run_transcripts.py -->"
END = "<!-- end of dry-run transcripts -->"

_T5 = ["--gin_file", "experiments/table2_t5.gin",
       '--gin.WMT_DRAFTER="/ckpt/t5_small_wmt"',
       '--gin.WMT_VERIFIER="/ckpt/t5_large_wmt"',
       '--gin.XSUM_DRAFTER="/ckpt/t5_small_xsum"',
       '--gin.XSUM_VERIFIER="/ckpt/t5_large_xsum"',
       '--gin.CNN_DRAFTER="/ckpt/t5_small_cnn"',
       '--gin.CNN_VERIFIER="/ckpt/t5_large_cnn"']
_TFDS = ['--gin.DATA_SOURCE="tfds"',
         '--gin.DATA_DIR="/mnt/data/tensorflow_datasets"']


def _gemma(experiment: str, verifier: str) -> list[str]:
  return ["--gin_file", f"experiments/{experiment}.gin",
          '--gin.DRAFTER_CHECKPOINT="/ckpt/gemma-2-2b"',
          f'--gin.VERIFIER_CHECKPOINT="/ckpt/{verifier}"']


COMMANDS = (
    [*_T5, *_TFDS, "--dry_run", "--simulate_devices", "v4-8"],
    [*_T5, *_TFDS, "--dry_run", "--simulate_devices", "8xH100"],
    [*_T5, *_TFDS, "--dry_run", "--simulate_devices", "1xH200"],
    [*_gemma("gemma_fewshot", "gemma-2-27b"), *_TFDS, "--dry_run",
     "--simulate_devices", "v4-8"],
    [*_gemma("gemma_fewshot", "gemma-2-27b"), *_TFDS, "--dry_run",
     "--simulate_devices", "v5e-1"],
    [*_gemma("gemma_fewshot", "gemma-2-27b"), *_TFDS, "--dry_run",
     "--simulate_devices", "8xH100"],
    [*_gemma("gemma_fewshot_9b", "gemma-2-9b"), *_TFDS, "--dry_run",
     "--simulate_devices", "8xH100"],
    [*_gemma("gemma_fewshot", "gemma-2-27b"), *_TFDS, "--dry_run",
     "--simulate_devices", "8xv4-8"],
)


def transcript(args: list[str]) -> str:
  """`$ command`, its output without the `todo` lines, its exit status."""
  proc = subprocess.run(
      [sys.executable, "-m", "harness", "sweep", *args], cwd=ROOT,
      capture_output=True, text=True, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  lines = [line for line in (proc.stdout + proc.stderr).splitlines()
           if not line.startswith("todo")]
  shown = " ".join(shlex.quote(a) for a in args)
  return "\n".join([f"$ python -m harness sweep {shown} | grep -v '^todo'",
                    *lines, f"(exit status {proc.returncode})"])


def block() -> str:
  # The commands are independent processes: run as many at once as there are
  # cores (the output keeps COMMANDS' order).
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    body = "\n\n".join(pool.map(transcript, map(list, COMMANDS)))
  return f"{BEGIN}\n```text\n{body}\n```\n{END}"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--check", action="store_true",
                 help="exit 1 if docs/running.md differs from what the "
                 "commands print today")
  a = p.parse_args(argv)
  with open(DOC, encoding="utf-8") as f:
    doc = f.read()
  if BEGIN not in doc or END not in doc:
    print(f"error: {DOC}: the transcript markers are missing",
          file=sys.stderr)
    return 2
  head, rest = doc.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  new = head + block() + tail
  if a.check:
    if new != doc:
      old_lines = doc.splitlines()
      first = next((i for i, (x, y) in enumerate(
          zip(old_lines, new.splitlines())) if x != y), len(old_lines))
      print(f"error: {DOC}:{first + 1}: the dry-run transcripts are stale; "
            "run scripts/dry_run_transcripts.py", file=sys.stderr)
      return 1
    return 0
  with open(DOC, "w", encoding="utf-8") as f:
    f.write(new)
  print(f"wrote {len(COMMANDS)} transcripts into {DOC}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
