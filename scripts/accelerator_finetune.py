"""Measures fine-tuning speed on this machine's accelerator.

A randomly initialised T5 v1.1 small-sized model trains on the `synthetic`
task (random copy rows, no data needed) for a fixed number of steps with
bfloat16 activations over float32 parameters, through
`harness.finetune.trainer.train` (the same step as a real run: Adafactor,
dropout 0.1, the ("data", "model") mesh over all local devices). Writes
steps/s, tokens/s and MFU (`harness.finetune.mfu`), the device name and the
jax version to ``<out>/finetune_<device>.json``.

  python scripts/accelerator_finetune.py [--out DIR] [--steps N] [--tiny]

Step times are measured per step (the step's device work, synchronised by
reading its metrics back), excluding the first step (compilation); the
whole run's wall-clock time (start-up, compilation and building the
batches on the host included) is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

from harness.finetune import config as config_lib
from harness.finetune import mfu
from harness.finetune import trainer
from harness.edge import provenance


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="results/accelerator")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=128)
  parser.add_argument("--time_limit_s", type=float, default=300.0,
                      help="stop training after this long (a guard)")
  parser.add_argument("--tiny", action="store_true",
                      help="tiny model and shapes (a quick check on a CPU)")
  args = parser.parse_args(argv)
  if args.steps < 2:
    print(f"error: --steps={args.steps}: need >= 2 (the first compiles)",
          file=sys.stderr)
    return 2
  size = "tiny" if args.tiny else "t5_v1_1_small"
  cfg = config_lib.FinetuneConfig(
      model_size=size, task="synthetic", inputs_length=args.inputs_length,
      targets_length=args.targets_length, pack=False,
      batch_size=args.batch_size, train_steps=args.steps,
      time_limit_s=args.time_limit_s, learning_rate=1e-3,
      dropout_rate=0.1, activation_dtype="bfloat16", param_dtype="float32",
      checkpoint_every_steps=10**9, keep_checkpoints=1, eval_every_steps=0,
      eval_split=None, eval_batches=0, eval_examples=0, export_dir=None,
      log_every_steps=10)
  began = time.time()
  with tempfile.TemporaryDirectory() as workdir:
    summary = trainer.train(cfg, workdir, progress=False)
    with open(os.path.join(workdir, trainer.TRAIN_LOG), encoding="utf-8") as f:
      log = [json.loads(line) for line in f]
  wall = time.time() - began
  timed = log[1:]
  seconds = sum(r["seconds"] for r in timed)
  positions = cfg.batch_size * (cfg.inputs_length + cfg.targets_length)
  device = mfu.chip_name()
  versions = provenance.versions()
  result = {
      "what": "fine-tuning step speed, random T5 v1.1 "
              f"{'tiny' if args.tiny else 'small'}-sized model, synthetic "
              "data, bf16 activations / f32 params, Adafactor, dropout 0.1",
      "device": device, "device_kind": jax.devices()[0].device_kind,
      "platform": jax.devices()[0].platform,
      "num_devices": jax.device_count(),
      "jax_version": jax.__version__,
      "jaxlib_version": versions.get("jaxlib"),
      "model_size": size, "batch_size": cfg.batch_size,
      "inputs_length": cfg.inputs_length,
      "targets_length": cfg.targets_length,
      "steps": len(log), "stop_reason": summary["stop_reason"],
      "first_step_seconds": log[0]["seconds"],
      "timed_steps": len(timed),
      "steps_per_s": len(timed) / seconds if seconds else None,
      "tokens_per_s": (sum(r["tokens"] for r in timed) / seconds
                       if seconds else None),
      "positions_per_s": len(timed) * positions / seconds if seconds else None,
      "flops_per_step": summary["flops_per_step"],
      "peak_flops": summary["peak_flops"],
      "mfu": summary["mfu"],
      "final_loss": log[-1]["loss"],
      "wall_seconds": round(wall, 1),
      "created": provenance.now_iso(),
      "command": "scripts/accelerator_finetune.sh",
  }
  os.makedirs(args.out, exist_ok=True)
  name = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_") or "unknown"
  path = os.path.join(args.out, f"finetune_{name}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
