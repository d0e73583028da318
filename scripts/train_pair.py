"""Trains a default model pair on Multi30k EN→DE (see harness/training).

Example (the commands recorded in checkpoints/*/*/MODEL_CARD.md):

  python scripts/train_pair.py --arch t5 --sizes large --minutes 38
  python scripts/train_pair.py --arch t5 --sizes small --minutes 10
  python scripts/train_pair.py --arch t5 --eval_only
"""

import argparse

from harness import training


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--arch", choices=("t5", "gemma"), required=True)
  p.add_argument("--sizes", default="small,large",
                 help="comma-separated presets to train")
  p.add_argument("--root", default="checkpoints")
  p.add_argument("--vocab", default="checkpoints/multi30k_spm.model",
                 help="shared SentencePiece model (trained here if absent)")
  p.add_argument("--vocab_size", type=int, default=6000)
  p.add_argument("--steps", type=int, default=20000)
  p.add_argument("--minutes", type=float, default=None,
                 help="wall-clock budget of each model's training loop")
  p.add_argument("--tokens_per_batch", type=int, default=1024)
  p.add_argument("--lr", type=float, default=2e-3)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--resume", action="store_true",
                 help="continue training the checkpoints in --root")
  p.add_argument("--skip_cards", action="store_true",
                 help="train only; evaluate later with --eval_only")
  p.add_argument("--eval_only", action="store_true",
                 help="skip training; evaluate and write the model cards")
  a = p.parse_args()
  config = training.TrainConfig(
      steps=a.steps, tokens_per_batch=a.tokens_per_batch, peak_lr=a.lr,
      time_limit_s=a.minutes * 60 if a.minutes else None, seed=a.seed)
  training.train_pair(a.arch, a.root, a.vocab, a.vocab_size,
                      sizes=() if a.eval_only else tuple(a.sizes.split(",")),
                      config=config, resume=a.resume,
                      cards=not a.skip_cards)


if __name__ == "__main__":
  main()
