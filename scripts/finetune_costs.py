"""Prints the cost table of the shipped fine-tuning runs (docs/finetune.md).

For each top-level `gin/finetune/*.gin` run of a published T5 v1.1 size:
steps, tokens per step (rows × (inputs + targets) positions, padding
included), model FLOPs per step (`harness.finetune.mfu.step_flops`) and the
hours it would take at an ASSUMED model-FLOPs utilisation on each topology
(chips × the dense bfloat16 peak of `harness.models.chips.CHIPS`). The
hours are an estimate, not a measurement: a run's own `train_log.jsonl`
records its real step time and MFU.

  python scripts/finetune_costs.py [--mfu 0.4] [--topology 8xH100 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from harness.finetune import config as config_lib
from harness.finetune import mfu
from harness.models import configs as model_configs
from harness.runner import topologies

T5_VOCAB = 32128  # the public T5 v1.1 embedding rows
PLACEHOLDER = "/public/t5_1_1"  # INIT_CHECKPOINT (only parsed, never read)


def rows(mfu_fraction: float, topology_names: list[str]):
  """One dict per shipped run: name, P/T, steps, tokens, FLOPs, hours."""
  found = sorted(glob.glob(os.path.join(REPO, "gin", "finetune", "*.gin")))
  topos = [topologies.parse(t) for t in topology_names]
  out = []
  for path in found:
    name = os.path.splitext(os.path.basename(path))[0]
    cfg, _ = config_lib.parse([path], [f"INIT_CHECKPOINT = '{PLACEHOLDER}'"])
    if (cfg.init_checkpoint != PLACEHOLDER
        or cfg.model_size not in model_configs.T5_SIZES):
      continue  # a run from a fixed checkpoint (the CPU run), not T5 v1.1
    model = dataclasses.replace(model_configs.T5_SIZES[cfg.model_size][0],
                                vocab_size=T5_VOCAB)
    flops = mfu.step_flops(model, cfg.batch_size, cfg.inputs_length,
                           cfg.targets_length)
    row = {"run": name, "lengths": f"{cfg.inputs_length}/"
           f"{cfg.targets_length}", "steps": cfg.train_steps,
           "tokens_per_step": cfg.batch_size * (cfg.inputs_length
                                                + cfg.targets_length),
           "flops_per_step": flops}
    for topo in topos:
      peak = topo.num_devices * topo.kind.flops
      row[topo.label] = cfg.train_steps * flops / (mfu_fraction * peak) / 3600
    out.append(row)
  return out, topos


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mfu", type=float, default=0.4,
                      help="assumed model-FLOPs utilisation (default 0.4)")
  parser.add_argument("--topology", action="append", default=None,
                      help="topologies (default: 8xH100 and v4-8)")
  args = parser.parse_args(argv)
  table, topos = rows(args.mfu, args.topology or ["8xH100", "v4-8"])
  head = ["run", "P/T", "steps", "tokens/step", "FLOPs/step"] + [
      f"{t.label} ({t.num_devices} × {t.kind.name}) h" for t in topos]
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for r in table:
    cells = [r["run"], r["lengths"], f"{r['steps']:,}",
             f"{r['tokens_per_step']:,}", f"{r['flops_per_step']:.2g}"] + [
                 f"{r[t.label]:.2g}" for t in topos]
    print("| " + " | ".join(cells) + " |")
  print(f"\nhours = steps × FLOPs/step ÷ ({args.mfu:.0%} × chips × peak); "
        "an estimate at an assumed MFU, not a measurement")
  return 0


if __name__ == "__main__":
  sys.exit(main())
