"""Trains the default pairs and writes their checkpoint directories.

Layout: `<root>/multi30k_<arch>/<size>/` holds config.json,
model.safetensors (bfloat16), the SentencePiece model, train_log.json and,
after `write_cards`, MODEL_CARD.md. All models share one vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys

import jax
import jax.numpy as jnp

from harness import metrics, tasks
from harness.models import Tokenizer, load_pretrained, save_pretrained
from harness.training import data as data_lib
from harness.training import presets
from harness.training.evaluate import (MAX_DECODE_LEN, TASK, decode_cost,
                                       evaluate_bleu)
from harness.training.train import TrainConfig, init_model, train_model
from harness.training.vocab import train_vocab

TRAIN_LOG = "train_log.json"
CARD = "MODEL_CARD.md"
SIZES = ("small", "large")
# The checkpoint tests re-decode this many test sentences (slow / fast run).
FIRST_N = 50
FAST_N = 10


def pair_dir(root: str, arch: str) -> str:
  return os.path.join(root, f"multi30k_{arch}")


def ensure_vocab(path: str, vocab_size: int) -> Tokenizer:
  """Loads the shared vocabulary, training it on Multi30k train if absent."""
  if not os.path.exists(path):
    pairs = data_lib.read_pairs("train")
    train_vocab([s for s, _ in pairs] + [t for _, t in pairs], path,
                vocab_size)
  return Tokenizer(path)


def train_one(arch: str, size: str, out_dir: str, tokenizer: Tokenizer,
              config: TrainConfig, command: str | None = None,
              resume: bool = False) -> dict:
  """Trains one model, saves it in bfloat16 with its training log.

  With `resume`, training starts from the checkpoint already in `out_dir`
  (a new warm-up and decay over the new budget) and the log records both
  stages.

  Args:
    arch: "t5" or "gemma".
    size: a preset name ("small" or "large").
    out_dir: the checkpoint directory to write.
    tokenizer: the shared vocabulary.
    config: optimisation settings.
    command: the command line to record (default: this process's argv).
    resume: continue from the checkpoint in `out_dir` instead of a random
      initialisation.

  Returns:
    The training log written to `out_dir/train_log.json`.
  """
  model_config = presets.make_config(arch, size, tokenizer.vocab_size)
  train = data_lib.encode_pairs(data_lib.read_pairs("train"), tokenizer, arch)
  val = data_lib.encode_pairs(data_lib.read_pairs("validation"), tokenizer,
                              arch)
  previous = None
  if resume:
    model = load_pretrained(out_dir, jnp.float32).model
    if model.config != model_config or model.tokenizer_id != tokenizer.id:
      raise ValueError(f"cannot resume {out_dir}: its config or vocabulary "
                       f"differs from preset {arch}/{size}")
    with open(os.path.join(out_dir, TRAIN_LOG)) as f:
      previous = json.load(f)
  else:
    model = init_model(model_config, config.seed, tokenizer.id)
  result = train_model(model, train, val, config, desc=f"{arch}-{size}")
  stored = result.model.replace(params=jax.tree.map(
      lambda p: p.astype(jnp.bfloat16), result.model.params))
  save_pretrained(stored, out_dir, tokenizer)
  log = {
      "arch": arch, "size": size,
      "model_config": {k: v for k, v in dataclasses.asdict(model_config).items()
                       if k != "attention_types"},
      "num_params": int(sum(p.size for p in
                            jax.tree.leaves(result.model.params))),
      "train_config": dataclasses.asdict(config),
      "train_examples": len(train), "validation_examples": len(val),
      "steps_run": result.steps_run, "best_step": result.best_step,
      "best_val_loss": result.best_val_loss,
      "train_seconds": result.train_seconds,
      "history": [list(h) for h in result.history],
      "command": command or "python " + " ".join(shlex.quote(a)
                                                 for a in sys.argv),
      "storage_dtype": "bfloat16",
  }
  if previous is not None:
    log["stages"] = previous.get("stages", [previous]) + [
        {k: log[k] for k in ("train_config", "steps_run", "best_step",
                             "best_val_loss", "train_seconds", "history",
                             "command")}]
    log["steps_run"] += previous["steps_run"]
    log["train_seconds"] += previous["train_seconds"]
  with open(os.path.join(out_dir, TRAIN_LOG), "w") as f:
    json.dump(log, f, indent=2)
  return log


def train_pair(arch: str, root: str, vocab_path: str, vocab_size: int,
               sizes: tuple[str, ...], config: TrainConfig,
               resume: bool = False, cards: bool = True) -> None:
  """Trains `sizes` of one architecture, then evaluates and writes cards.

  The cards are written (if `cards`) once both sizes of the pair have a
  checkpoint.
  """
  tokenizer = ensure_vocab(vocab_path, vocab_size)
  for size in sizes:
    train_one(arch, size, os.path.join(pair_dir(root, arch), size),
              tokenizer, config, resume=resume)
  if cards and all(os.path.exists(os.path.join(pair_dir(root, arch), s,
                                               TRAIN_LOG)) for s in SIZES):
    for size, r in write_cards(root, arch).items():
      print(f"{arch}-{size}: test BLEU {r['bleu']:.2f} (first {FIRST_N}: "
            f"{r['bleu_first']:.2f}), validation loss "
            f"{r['log']['best_val_loss']:.3f}, "
            f"{r['cost'].ms_per_token:.2f} ms/token")


def _dir_megabytes(path: str) -> float:
  return sum(os.path.getsize(os.path.join(path, f))
             for f in os.listdir(path)) / 1e6


def evaluate_pair(root: str, arch: str) -> dict[str, dict]:
  """Evaluates both sizes of a pair: BLEU, validation loss, decode cost.

  Returns:
    {size: numbers} for `render_card`.
  """
  results = {}
  for size in SIZES:
    path = os.path.join(pair_dir(root, arch), size)
    with open(os.path.join(path, TRAIN_LOG)) as f:
      log = json.load(f)
    full = evaluate_bleu(path)
    test = tasks.load_examples(TASK, split="test")
    first, fast = (metrics.compute_metrics(
        ["bleu"], [ex.targets for ex in test[:n]],
        list(full.predictions[:n]))["bleu"] for n in (FIRST_N, FAST_N))
    cost = decode_cost(path, FIRST_N)
    results[size] = dict(log=log, bleu=full.bleu, chrf=full.chrf,
                         bleu_first=first, bleu_fast=fast,
                         num_test=full.num_examples,
                         eval_seconds=full.seconds, cost=cost,
                         megabytes=_dir_megabytes(path), path=path)
  return results


def write_cards(root: str, arch: str) -> dict[str, dict]:
  """Evaluates a pair and writes MODEL_CARD.md into both directories."""
  results = evaluate_pair(root, arch)
  ratio = (results["large"]["cost"].ms_per_token
           / results["small"]["cost"].ms_per_token)
  marginal = (results["large"]["cost"].ms_per_extra_token
              / results["small"]["cost"].ms_per_extra_token)
  for size, r in results.items():
    with open(os.path.join(r["path"], CARD), "w") as f:
      f.write(render_card(arch, size, r, ratio, marginal,
                          sum(x["megabytes"] for x in results.values())))
  return results


def render_card(arch: str, size: str, r: dict, ratio: float,
                marginal_ratio: float, pair_megabytes: float) -> str:
  """The MODEL_CARD.md text of one model (numbers measured by the caller)."""
  log, cost = r["log"], r["cost"]
  cfg, tc = log["model_config"], log["train_config"]
  other = "large" if size == "small" else "small"
  if arch == "t5":
    shape = (f"T5 v1.1 (gated-GELU, RMSNorm, relative position buckets, "
             f"untied output layer): d_model {cfg['d_model']}, "
             f"{cfg['num_encoder_layers']} encoder + "
             f"{cfg['num_decoder_layers']} decoder layers, "
             f"{cfg['num_heads']} heads x d_kv {cfg['d_kv']}, "
             f"d_ff {cfg['d_ff']}")
    prompt = ("encoder input: the raw English sentence + EOS (task "
              "`multi30k_ende` as is); decoder starts with pad (0)")
  else:
    shape = (f"Gemma 2 (decoder-only, tied embeddings, local/global "
             f"attention, soft-capping): d_model {cfg['d_model']}, "
             f"{cfg['num_layers']} layers, {cfg['num_heads']} query / "
             f"{cfg['num_kv_heads']} key-value heads x head_dim "
             f"{cfg['head_dim']}, d_ff {cfg['d_ff']}")
    prompt = ("BOS + `English: <sentence>\\nGerman:` (the harness's "
              "few-shot translation format, 0 shots); the translation "
              "follows, ended by EOS")
  stages = log.get("stages", [log])
  history = "\n".join(f"| {i + 1} | {s} | {t:.3f} | {v:.3f} |"
                      for i, stage in enumerate(stages)
                      for s, t, v in stage["history"])
  commands = "\n".join(
      f"  {i + 1}. `{stage['command']}` ({stage['steps_run']} steps, "
      f"{stage['train_seconds'] / 60:.1f} min)"
      for i, stage in enumerate(stages))
  minutes = log["train_seconds"] / 60
  return f"""# multi30k_{arch}/{size}

The {size} model of the project's embedded default {arch.upper()} pair
(drafter = small, verifier = large), trained by this repository on
Multi30k EN→DE so that the harness runs end to end on a laptop CPU with real
weights. A toy translation model for benchmarking decoding, not for use.

## Data
- Multi30k task 1, raw text (`data/multi30k`, see its SOURCE.md): train
  {log['train_examples']:,} pairs; validation {log['validation_examples']:,}
  pairs (checkpoint selection by validation loss); test_2016_flickr
  {r['num_test']:,} pairs (BLEU).
- Prompt: {prompt}.
- Vocabulary: SentencePiece unigram, {cfg['vocab_size']:,} pieces trained on
  the English and German training text, shared by all four default models
  (pad 0, eos 1, unk 2, bos 3).

## Model
- {shape}.
- {log['num_params']:,} parameters; stored in {log['storage_dtype']}
  ({r['megabytes']:.1f} MB this directory, {pair_megabytes:.1f} MB the pair);
  evaluated after loading in float32.

## Training
- Commands (run in order from the repository root):
{commands}
- AdamW (b2 0.98, weight decay {tc['weight_decay']}), peak learning rate
  {tc['peak_lr']}, {tc['warmup_steps']} warm-up steps then cosine decay over
  the budget ({tc['steps']} steps or {(tc['time_limit_s'] or 0) / 60:.0f}
  minutes, whichever first), label smoothing {tc['label_smoothing']},
  gradient clipping {tc['clip_norm']}, {tc['tokens_per_batch']} target token
  slots per batch (length-bucketed), seed {tc['seed']}.
- Ran {log['steps_run']} steps in {minutes:.1f} minutes wall-clock on a
  shared 2-core CPU (other jobs running); selected step {log['best_step']}.

| stage | step | train loss (smoothed) | validation loss |
|---|---|---|---|
{history}

## Results (measured by `python scripts/train_pair.py --arch {arch} --eval_only`)
| metric | value |
|---|---|
| validation loss (nats per target token, selected step) | {log['best_val_loss']:.3f} |
| test BLEU (test_2016_flickr, all {r['num_test']:,}, greedy) | {r['bleu']:.2f} |
| test chrF (all {r['num_test']:,}, greedy) | {r['chrf']:.2f} |
| test BLEU (first {FIRST_N} sentences, greedy) | {r['bleu_first']:.2f} |
| test BLEU (first {FAST_N} sentences, greedy) | {r['bleu_fast']:.2f} |
| greedy decode time per generated token (ms, batch 1, prefill included) | {cost.ms_per_token:.2f} |
| marginal decode time per extra token (ms, least-squares slope) | {cost.ms_per_extra_token:.2f} |
| large / small decode time per token (pair) | {ratio:.2f}x |
| large / small marginal time per extra token (pair) | {marginal_ratio:.2f}x |

BLEU and chrF are the harness metrics (sacrebleu corpus BLEU, T5
convention); decoding is `harness.decoding.decode("autoregressive", ...)`
at temperature 0 with max_decode_len {MAX_DECODE_LEN}. Decode times: the
first {FIRST_N} test sentences, best of 3 runs each after a compile run, on
the same shared CPU, so they vary with its load; at these sizes fixed
per-step overhead is a large part of the time. The {other} model of the pair
is in `../{other}`.
"""
