#!/usr/bin/env bash
# The CPU fine-tuning run: continue training the shipped Multi30k T5 large
# (checkpoints/multi30k_t5/large) on the bundled WMT news (newstest
# 2008-2012), 128/128 tokens, for TIME_LIMIT_S seconds of training, with
# newstest2014 BLEU (first TEST_EXAMPLES sentences) before and after
# (gin/finetune/newstest_multi30k_large.gin).
#
# It checks the resume on the way: the first invocation is stopped by
# --kill_at_step (SIGKILL) at step KILL_AT; the second resumes from the
# newest checkpoint and runs to the time limit. A resumed run replays the
# steps after the checkpoint with the same data and dropout, so its logged
# losses of those steps must equal the killed run's (printed at the end).
#
#   scripts/finetune_newstest.sh [WORKDIR] [--gin.X=Y ...]
# Environment: TIME_LIMIT_S (1800), TEST_EXAMPLES (500), KILL_AT (60;
# 0 = no kill), CHECKPOINT_STEPS (50 while checking the resume), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR="${1:-/tmp/ft_newstest_multi30k_large}"
shift || true
PYTHON="${PYTHON:-python}"
TIME_LIMIT_S="${TIME_LIMIT_S:-1800}"
TEST_EXAMPLES="${TEST_EXAMPLES:-500}"
KILL_AT="${KILL_AT:-60}"
CHECKPOINT_STEPS="${CHECKPOINT_STEPS:-50}"
args=(-m harness finetune --gin_file finetune/newstest_multi30k_large.gin
      --workdir "$WORKDIR" --gin.TIME_LIMIT_S="$TIME_LIMIT_S"
      --gin.TEST_EXAMPLES="$TEST_EXAMPLES"
      --gin.CHECKPOINT_STEPS="$CHECKPOINT_STEPS" "$@")
if [[ "$KILL_AT" != 0 && ! -d "$WORKDIR/checkpoints" ]]; then
  echo "== first invocation, SIGKILLed after step $KILL_AT"
  "$PYTHON" "${args[@]}" --kill_at_step "$KILL_AT" || echo "(exit $?)"
  cp "$WORKDIR/train_log.jsonl" "$WORKDIR/train_log.killed.jsonl"
fi
echo "== resumed invocation"
"$PYTHON" "${args[@]}"
"$PYTHON" - "$WORKDIR" <<'PY'
import json, os, sys
w = sys.argv[1]
read = lambda p: [json.loads(l) for l in open(p) if l.strip()]
log = read(os.path.join(w, "train_log.jsonl"))
killed = os.path.join(w, "train_log.killed.jsonl")
if os.path.exists(killed):
  before = {r["step"]: r["loss"] for r in read(killed)}
  after = {r["step"]: r["loss"] for r in log}
  replayed = sorted(s for s in before if s in after)
  same = all(before[s] == after[s] for s in replayed)
  print(f"resume check: {len(replayed)} steps logged before the kill, "
        f"losses after resuming identical: {same}")
evals = read(os.path.join(w, "eval_log.jsonl"))
for r in evals:
  if r.get("when") in ("before", "after"):
    print(f"newstest2014 BLEU {r['when']} (step {r['step']}, "
          f"{r.get('num_examples')} sentences): {r.get('bleu')}")
timed = [r for r in log[1:]]
if timed:
  tok = sum(r["tokens"] for r in timed) / sum(r["seconds"] for r in timed)
  print(f"steps {log[-1]['step']}, tokens/s {tok:.0f}, "
        f"last loss {log[-1]['loss']:.3f}")
PY
