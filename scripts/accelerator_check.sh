#!/usr/bin/env bash
# One prepared check of an accelerator VM (GPU or TPU chip), in at most
# 9.5 minutes of wall time (one 10-minute command), writing JSON and Markdown under
# results/accelerator/<device>/ (docs/running.md#accelerator-check):
#
#   1. env       device, memory, Python, JAX and library versions
#   2. roofline  batch-1 step of Gemma 2 2B and T5 v1.1 large (random
#                weights at the published sizes, bfloat16) against the HBM
#                roofline, and t(K)/t(1) for K = 1..4
#   3. bench     the speculative loops' per-iteration overhead and compiles
#                per program (shipped Multi30k pair)
#   4. sweep     a reduced paired sweep of experiments/default.gin (every
#                Table-2 method, T = 1 and T = 0) and its Table 2
#   5. finetune  fine-tuning speed (steps/s, tokens/s, MFU;
#                scripts/accelerator_finetune.py)
#   6. plan      Gemma 3 270M's block ratios b(γ), its drafters' cost c
#                (the subset-vocabulary drafter, V = 8,192, beside the same
#                body with the full vocabulary), the loops' own cost, and
#                the speed-ups they allow (benchmarks.plan_gamma --loop;
#                random weights, bfloat16)
#   7. plan_paper  the same for the paper's Gemma pair, Gemma 2 2B drafting
#                for Gemma 2 27B, at the paper's γ = 1
#   summary.{json,md}: the headline figures of every part that finished.
#
# Each part has its own time cap, runs in its own process, and is recorded
# in parts.tsv as ok, failed (exit code) or timeout: a later part's failure
# loses nothing an earlier one wrote.
#
#   scripts/accelerator_check.sh                   # on the VM
#   ACCEL_TINY=1 scripts/accelerator_check.sh      # tiny shapes, any CPU, <= 3 min
#
# Needs Python >= 3.11 with jax (and its accelerator plugin), flax, optax,
# orbax-checkpoint, numpy, scipy, pandas, matplotlib, sacrebleu,
# sentencepiece, safetensors, tqdm, tabulate and jinja2: a stock JAX GPU/TPU
# image has them. No TensorFlow, seqio or TFDS, and no `pip install` of this
# package: it runs from a copy of the work tree. Wheels to carry where the
# image lacks them (scripts/accelerator_wheels.sh downloads them into .whl/,
# ~1.9 MB together; pure Python):
#   gin-config==0.5.0   the sweep's configuration
#   rouge-score==0.1.2  ROUGE (imported only by ROUGE tasks)
#   nltk                rouge-score's tokenizer
# If .whl/ holds wheels they are installed into a temporary folder first
# (pip --no-index: no network needed).
#
# Environment: PYTHON (python3), ACCEL_TINY (0), ACCEL_CAP_SCALE (1: every
# time cap multiplied by it, for a loaded or slow host), ACCEL_RESULTS
# (results/accelerator), ACCEL_MODELS (roofline models, comma-separated),
# ACCEL_DTYPE (bfloat16; float32 under ACCEL_TINY), ACCEL_ARCHIVE (also pack
# the results folder into this .tar.gz), HARNESS_GIT_COMMIT (the commit of a
# copy without .git, recorded in provenance).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TINY="${ACCEL_TINY:-0}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$SECONDS

if compgen -G ".whl/*.whl" > /dev/null; then
  site="$(mktemp -d)"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --target "$site" .whl/*.whl \
    || { echo "accelerator_check: installing .whl/*.whl failed" >&2; exit 2; }
  export PYTHONPATH="$PYTHONPATH:$site"
fi

device="$("$PYTHON" -m benchmarks.accelerator device)" \
  || { echo "accelerator_check: JAX finds no device" >&2; exit 2; }
R="${ACCEL_RESULTS:-results/accelerator}/$device"
mkdir -p "$R"
[[ -n "${ACCEL_PARTS:-}" ]] || : > "$R/parts.tsv"
echo "accelerator_check: device $device, results in $R"

# Time caps in seconds (they add up to 570 s; ACCEL_TINY: 240 s).
if [[ "$TINY" == 1 ]]; then
  CAP_ENV=10 CAP_ROOF=30 CAP_BENCH=40 CAP_SWEEP=60 CAP_REPORT=15 CAP_FT=25
  MODELS="${ACCEL_MODELS:-tiny_t5,tiny_gemma2}" DTYPE="${ACCEL_DTYPE:-float32}"
  MAX_K=3 CALLS=5 HOST_MB=64
  SWEEP=(--gin.NUM_EXAMPLES=4 --gin.NUM_LATENCY_EXAMPLES=2 --gin.NUM_TRIALS=1
         --gin.CALIBRATION_CALLS=2)
  # Both ends of every α grid only (the full run keeps the experiment's 5).
  for m in seq_cascade_chow token_cascade_chow spec_decode_lossy bild_star \
           spec_cascade_chow spec_cascade_token; do
    SWEEP+=("--gin.$m/MethodGrid.alphas=[0.0, 1.0]")
  done
  SWEEP+=("--gin.spec_cascade_diff/MethodGrid.alphas=[-1.0, 1.0]"
          "--gin.spec_cascade_opt/MethodGrid.alphas=['-inf', 'inf']")
  BENCH=(--num_prompts 2 --gammas 3 --repeats 1 --step_calls 10
         --max_decode_len 16)
  FT=(ACCEL_FT_TINY=1 STEPS=4 TIME_LIMIT_S=15)
  CAP_PLAN=30 CAP_PAPER=25
  PLAN=(--verifier tiny_gemma2_large --drafter subset=64,d_model=64,layers=1
        --drafter size=tiny_gemma2 --max_gamma 2 --calls 4 --prompt_len 16
        --max_decode_len 8)
  PAPER=(--verifier tiny_gemma2 --drafter size=tiny_gemma2
         --max_gamma 1 --calls 4 --prompt_len 16 --max_decode_len 8)
else
  # Measured on an H200 (results/accelerator/nvidia_h200): the roofline
  # takes ~30 s per K for Gemma 2 2B and ~12 s for T5 v1.1 large, the sweep
  # ~100 s at 24 examples, the fine-tuning step's first call (its compile)
  # ~50 s, plan ~110 s with 4 drafters and γ <= 3, plan_paper ~90 s. The
  # whole check has to fit one 10-minute command on a lent machine.
  CAP_ENV=10 CAP_ROOF=120 CAP_BENCH=45 CAP_SWEEP=90 CAP_REPORT=10 CAP_FT=90
  MODELS="${ACCEL_MODELS:-gemma2_2b,t5_v1_1_large}"
  DTYPE="${ACCEL_DTYPE:-bfloat16}" MAX_K=4 CALLS=30 HOST_MB=1024
  SWEEP=(--gin.NUM_EXAMPLES=16 --gin.NUM_LATENCY_EXAMPLES=8
         --gin.NUM_TRIALS=2 --gin.CALIBRATION_CALLS=10)
  BENCH=(--num_prompts 8 --gammas 5 --repeats 3 --step_calls 50)
  FT=(STEPS=300 TIME_LIMIT_S=70)
  CAP_PLAN=95 CAP_PAPER=110
  # The subset drafter the Gemma Table 2 uses (V = 8,192, d_model 192,
  # 4 layers) and the same body with the full vocabulary, at the γ that
  # table runs.
  PLAN=(--verifier gemma3_270m --drafter subset=8192,d_model=192,layers=4
        --drafter subset=262144,d_model=192,layers=4
        --acceptance 0.25,0.35,0.5,0.7 --max_gamma 2 --calls 30)
  PAPER=(--verifier gemma2_27b --drafter size=gemma2_2b
         --acceptance 0.35,0.5,0.7 --max_gamma 1 --calls 10)
fi

SCALE="${ACCEL_CAP_SCALE:-1}"
# part NAME CAP COMMAND...: runs COMMAND under a time cap (times SCALE), logs its output
# to $R/NAME.log and records its status in parts.tsv. ACCEL_PARTS (e.g.
# "sweep,report") runs only the parts it names, keeping the others' results.
PARTS=",${ACCEL_PARTS:-env,roofline,bench,sweep,report,finetune,plan,plan_paper},"
part() {
  local name="$1" cap="$(( $2 * SCALE ))"; shift 2
  local t0=$SECONDS rc status
  [[ "$PARTS" == *",$name,"* ]] || return 0
  echo "accelerator_check: $name (cap ${cap}s)"
  timeout -k 5 "$cap" "$@" > "$R/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status="failed ($rc)" ;;
  esac
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" >> "$R/parts.tsv"
  echo "accelerator_check: $name $status in $((SECONDS - t0))s"
  [[ $rc == 0 ]] || tail -n 5 "$R/$name.log" | sed 's/^/    /'
}

part env "$CAP_ENV" "$PYTHON" -m benchmarks.accelerator env --out "$R"
# The roofline stops starting new K values at 3/4 of its cap, so what it
# measured is written before the cap can kill it.
part roofline "$CAP_ROOF" "$PYTHON" -m benchmarks.roofline \
  --models "$MODELS" --dtype "$DTYPE" --max_k "$MAX_K" --calls "$CALLS" \
  --host_mb "$HOST_MB" --no_output_layer --deadline_s "$((CAP_ROOF * SCALE * 3 / 4))" \
  --out "$R/roofline"
part bench "$CAP_BENCH" "$PYTHON" -m benchmarks --no_hf --no_rss \
  "${BENCH[@]}" --out "$R/bench"
part sweep "$CAP_SWEEP" "$PYTHON" -m harness sweep \
  --gin_file experiments/default.gin \
  --gin.RESULTS_DIR="'$R/sweep'" --gin.EXPERIMENT_NAME="'reduced'" \
  "${SWEEP[@]}"
# The report renders whatever cells the sweep finished.
part report "$CAP_REPORT" "$PYTHON" -m harness report \
  --results "$R/sweep/reduced"
part finetune "$CAP_FT" env "${FT[@]}" PYTHON="$PYTHON" OUT="$R/finetune" \
  bash scripts/accelerator_finetune.sh
# accelerator_finetune.sh writes under $OUT/results/accelerator/.
if compgen -G "$R/finetune/results/accelerator/*.json" > /dev/null; then
  mv "$R"/finetune/results/accelerator/*.json "$R/finetune/" \
    && rm -rf "$R/finetune/results"
fi
part plan "$CAP_PLAN" "$PYTHON" -m benchmarks.plan_gamma "${PLAN[@]}" \
  --dtype "$DTYPE" --loop --out "$R/plan"
part plan_paper "$CAP_PAPER" "$PYTHON" -m benchmarks.plan_gamma \
  "${PAPER[@]}" --dtype "$DTYPE" --loop --out "$R/plan"
"$PYTHON" -m benchmarks.accelerator summary --out "$R" > /dev/null \
  || echo "accelerator_check: summary failed" >&2
echo "accelerator_check: done in $((SECONDS - start))s; $R/summary.md"
if [[ -n "${ACCEL_ARCHIVE:-}" ]]; then
  tar czf "$ACCEL_ARCHIVE" -C "$(dirname "$R")" "$device"
fi
cat "$R/parts.tsv"
! grep -qv "	ok	" "$R/parts.tsv"
