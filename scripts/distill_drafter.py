"""Distils a small drafter from Gemma 3 270M (GGUF) on the bundled text.

The result derives from Gemma weights: it is written outside the repository
(default ~/.cache/harness/gemma3-270m-drafter, or $HARNESS_CACHE_DIR) with
the verifier's tokenizer and a DISTILL.json report. See docs/gemma270m.md.

  python scripts/distill_drafter.py --minutes 55
  python scripts/distill_drafter.py --max_steps 5 --out /tmp/drafter  # smoke
"""

import argparse
import os

from harness.models import gguf, load_pretrained
from harness.tasks import data_root
from harness.training import distill

DRAFTER_DIR = "gemma3-270m-drafter"


def main() -> None:
  shape, cfg = distill.DrafterShape(), distill.DistillConfig()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--verifier", help="GGUF file or checkpoint directory "
                 "(default: Gemma 3 270M from the `model` extra)")
  p.add_argument("--out", default=os.path.join(gguf.cache_dir(), DRAFTER_DIR))
  p.add_argument("--minutes", type=float, default=55.0)
  p.add_argument("--max_steps", type=int, default=100_000)
  p.add_argument("--batch_size", type=int, default=cfg.batch_size)
  p.add_argument("--seq_len", type=int, default=256)
  p.add_argument("--lr", type=float, default=cfg.peak_lr)
  p.add_argument("--eval_every", type=int, default=cfg.eval_every)
  for name in ("d_model", "num_layers", "num_heads", "head_dim", "d_ff",
               "vocab_subset"):
    p.add_argument(f"--{name}", type=int, default=getattr(shape, name))
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args()
  verifier, _, tokenizer = load_pretrained(a.verifier or gguf.gemma3_270m_dir())
  shape = distill.DrafterShape(a.d_model, a.num_layers, a.num_heads,
                               a.head_dim, a.d_ff, a.vocab_subset)
  cfg = distill.DistillConfig(
      steps=a.max_steps, batch_size=a.batch_size, peak_lr=a.lr,
      eval_every=a.eval_every, time_limit_s=a.minutes * 60, seed=a.seed)
  r = distill.run(verifier, tokenizer, data_root(), a.out, shape, cfg,
                  seq_len=a.seq_len)
  print(f"saved {a.out}: {r['steps_run']} steps, {r['tokens_seen']} tokens in "
        f"{r['train_seconds']:.0f} s; val KL {r['initial']['kl']:.3f} -> "
        f"{r['final']['kl']:.3f}, acceptance {r['final']['acceptance']:.3f}, "
        f"top-1 {r['final']['top1']:.3f}; cost ratio {r['cost']['ratio']:.3f}")


if __name__ == "__main__":
  main()
