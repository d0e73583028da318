#!/usr/bin/env bash
# Fine-tuning speed on one accelerator (GPU or TPU) in at most 8 minutes: a
# random T5 v1.1 small-sized model trains on the synthetic task for STEPS
# steps (bf16 activations, f32 parameters, batch 128 of 512/128 tokens) and
# steps/s, tokens/s, MFU, the device and the jax version are written to
# $OUT/results/accelerator/finetune_<device>.json (results/accelerator/
# when OUT is unset). See scripts/accelerator_finetune.py.
#
#   scripts/accelerator_finetune.sh
# Environment: STEPS (200), BATCH_SIZE (128), TIME_LIMIT_S (300: training
# stops there even if STEPS are not done), PYTHON, and ACCEL_FT_TINY=1 for a
# tiny model and shapes (a check that the script runs, e.g. on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT_DIR="${OUT:+$OUT/}results/accelerator"
args=(--out "$OUT_DIR" --steps "${STEPS:-200}"
      --batch_size "${BATCH_SIZE:-128}" --time_limit_s "${TIME_LIMIT_S:-300}")
if [[ "${ACCEL_FT_TINY:-0}" == 1 ]]; then
  args+=(--tiny --steps "${STEPS:-6}" --batch_size "${BATCH_SIZE:-8}"
         --inputs_length 32 --targets_length 16)
fi
# Whole-script guard: 8 minutes including start-up and compilation.
exec timeout 480 "$PYTHON" scripts/accelerator_finetune.py "${args[@]}"
