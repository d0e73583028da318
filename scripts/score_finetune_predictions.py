"""Scores a fine-tuning run's `predictions_*.json` on newstest2014.

  python scripts/score_finetune_predictions.py WORKDIR_OR_FILE [...]

Each predictions file (written by `python -m harness finetune` for the
offline newstest task: the first N test sentences in file order) is scored
with the harness's metrics (sacrebleu BLEU and chrF against the first N
lines of data/wmt14_en_de/newstest2014.de), with the mean words per output.
"""

from __future__ import annotations

import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from harness import metrics  # pylint: disable=wrong-import-position

REFERENCES = os.path.join(REPO, "data", "wmt14_en_de", "newstest2014.de")


def score(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    predictions = json.load(f)["predictions"]
  with open(REFERENCES, encoding="utf-8") as f:
    refs = [line.rstrip("\n") for line in f][:len(predictions)]
  result = metrics.compute_metrics(("bleu", "chrf"), [(r,) for r in refs],
                                   predictions)
  result["sentences"] = len(predictions)
  result["words_per_output"] = sum(len(p.split()) for p in predictions) / max(
      len(predictions), 1)
  return result


def main(argv: list[str]) -> int:
  files = []
  for arg in argv:
    files += sorted(glob.glob(os.path.join(arg, "predictions_*.json"))) if (
        os.path.isdir(arg)) else [arg]
  for path in files:
    if "validation" in os.path.basename(path):
      continue  # newstest2013 sentences, not the test set
    r = score(path)
    print(f"{path}: {r['sentences']} sentences, BLEU {r['bleu']:.2f}, chrF "
          f"{r['chrf']:.2f}, {r['words_per_output']:.1f} words/output")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
