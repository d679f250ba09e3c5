#!/usr/bin/env bash
# LoRA SFT step and judge (generation) throughput: evalverse (burn-cuda, bf16 base weights, f32
# LoRA) vs PyTorch + transformers + PEFT (bf16, sdpa attention), on the SAME random
# Qwen2.5-VL-7B-shaped checkpoint, made on the GPU machine by transformers (scripts/bench_gpu.py
# make), and the SAME batch file (scripts/bench_sft_step.py batch): BATCH sequences of TEXT text
# tokens, a 16-frame 448x448 video (grid [8, 32, 32]: 2,048 video tokens), TEXT text tokens; loss
# on the last LABELS. LoRA r 8, alpha 16, dropout 0 on the 7 language-model projections; AdamW lr
# 1e-4, clip 1.0. Judging: batch 1, 32 + video + 32 tokens, 64 greedy new tokens.
#
#   scripts/bench_gpu.sh [WORK]      (default: $OUT/bench_gpu when $OUT is set, else /tmp/bench_gpu)
#
# Runs on the GPU machine, which has no Rust: the evalverse binaries (examples bench_sft_step and
# gpu_check, built with --features cuda by scripts/build_gpu_bins.sh, plain or .xz) come from BIN
# (default target/gpu, else target/release/examples). Environment (defaults in brackets): SHAPE
# [7b] (tiny: a 4-layer model), DEVICE [cuda] (cpu tries the whole script without a GPU), STEPS
# [5] timed steps after WARMUP [2], REPS [3] (generation), GRID [8,32,32], TEXT [300], LABELS
# [256], BATCH [2], CHECKPOINTING [0] (1: both sides again with gradient checkpointing), PYTHON
# [python3], TIMEOUT [900] seconds per run, PROFILE [0] (1: after the timed runs, one more LoRA
# SFT step per side under a profiler: torch.profiler's per-op GPU self times, CubeCL's per-kernel
# times (CUBECL_DEBUG_OPTION=profile, its raw log in PROFILE_LOG [/tmp/evalverse_cubecl.log]);
# WORK/{torch,evalverse}_profile.json and the top kernels of each, by scripts/bench_gpu.py
# profile). Each run is alone on the GPU; its peak memory is the
# GPU's used memory (nvidia-smi, every 200 ms) minus the idle baseline, the same for both sides.
# Writes WORK/{torch,evalverse}_{train,generate}[_ckpt].{json,log,gpu_mem}, env.json, and prints
# the table (scripts/bench_gpu.py table).
set -uo pipefail

cd "$(dirname "$0")/.."
WORK=${1:-${OUT:+$OUT/bench_gpu}}
WORK=${WORK:-/tmp/bench_gpu}
SHAPE=${SHAPE:-7b}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
GRID=${GRID:-8,32,32}
TEXT=${TEXT:-300}
LABELS=${LABELS:-256}
BATCH=${BATCH:-2}
CHECKPOINTING=${CHECKPOINTING:-0}
PYTHON=${PYTHON:-python3}
TIMEOUT=${TIMEOUT:-900}
PROFILE=${PROFILE:-0}
PROFILE_LOG=${PROFILE_LOG:-/tmp/evalverse_cubecl.log}
mkdir -p "$WORK/bin"

# The evalverse binaries: BIN, or target/gpu (scripts/build_gpu_bins.sh), or a local build.
. scripts/gpu_bins.sh
BIN=${BIN:-$(gpu_bin_dir)}
for b in bench_sft_step gpu_check; do
  unpack_gpu_bin "$BIN" "$b" "$WORK/bin" || exit 2
done
EV_DEV=(--cuda)
[ "$DEVICE" = cuda ] || EV_DEV=()
GPU_CHECK_DEV=()
[ "$DEVICE" = cuda ] || GPU_CHECK_DEV=(--cpu)

gpu_used() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1
}

# run NAME CMD...: the command under timeout, stdout -> NAME.json, stderr -> NAME.log, GPU memory
# sampled into NAME.gpu_mem (MB above the idle baseline).
run() {
  local name=$1
  shift
  local base sampler=""
  base=$(gpu_used)
  echo "== $name: $* (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if [ -n "$base" ]; then
    (while sleep 0.2; do
      u=$(gpu_used) && echo $((u - base))
    done) > "$WORK/$name.gpu_mem" 2>/dev/null &
    sampler=$!
  fi
  local t0=$SECONDS
  timeout "$TIMEOUT" "$@" > "$WORK/$name.json" 2> "$WORK/$name.log"
  local rc=$?
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  echo "   rc $rc in $((SECONDS - t0)) s; $(tail -c 300 "$WORK/$name.json")" >&2
  [ $rc = 0 ] || tail -5 "$WORK/$name.log" >&2
  return 0
}

"$PYTHON" - "$WORK/env.json" "$BIN" <<'PY'
import json, subprocess, sys
env = {}
try:
    import torch, transformers, peft
    env["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                       "peft": peft.__version__, "cuda": torch.version.cuda}
    env["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU run)"
except Exception as e:  # the table still prints what ran
    env["error"] = repr(e)
try:
    env["evalverse_rev"] = open(sys.argv[2] + "/REV").read().strip()
except OSError:
    env["evalverse_rev"] = "unknown"
try:
    env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                   capture_output=True, text=True).stdout.strip()
except OSError:
    pass
json.dump(env, open(sys.argv[1], "w"))
print(json.dumps(env))
PY

if [ ! -f "$WORK/base/config.json" ]; then
  run make "$PYTHON" scripts/bench_gpu.py make "$WORK/base" --shape "$SHAPE" --device "$DEVICE"
fi
if [ ! -f "$WORK/batch.safetensors" ]; then
  "$PYTHON" scripts/bench_sft_step.py batch "$WORK/base" "$WORK/batch.safetensors" \
    --grid "$GRID" --text "$TEXT" --labels "$LABELS" --batch "$BATCH" || exit 1
fi

variants=("")
[ "$CHECKPOINTING" = 1 ] && variants+=("_ckpt")
for v in "${variants[@]}"; do
  py_ck=() ev_ck=()
  [ -n "$v" ] && py_ck=(--checkpointing) && ev_ck=(--checkpointing)
  run "torch_train$v" "$PYTHON" scripts/bench_sft_step.py run "$WORK/base" "$WORK/batch.safetensors" \
    --attn sdpa --device "$DEVICE" --dtype bf16 --steps "$STEPS" --warmup "$WARMUP" "${py_ck[@]}"
  run "evalverse_train$v" "$WORK/bin/bench_sft_step" "$WORK/base" "$WORK/batch.safetensors" \
    "${EV_DEV[@]}" --bf16 --steps "$STEPS" --warmup "$WARMUP" "${ev_ck[@]}"
done
run torch_generate "$PYTHON" scripts/bench_model.py run "$WORK/base" --attn sdpa \
  --device "$DEVICE" --dtype bf16 --grid "$GRID" --text 32 --reps "$REPS"
run evalverse_generate "$WORK/bin/gpu_check" generate "$WORK/base" "${GPU_CHECK_DEV[@]}" --bf16 \
  --grid "$GRID" --text 32 --reps "$REPS"

"$PYTHON" scripts/bench_gpu.py table "$WORK"

if [ "$PROFILE" = 1 ]; then
  # One step each, after the timed runs: the autotune cache (target/ here) is warm, so the
  # evalverse step runs the tuned kernels and no tuning trials. CubeCL times each kernel on the
  # device and logs it (with the compiled sources, hence the log outside WORK).
  run torch_profile_step "$PYTHON" scripts/bench_sft_step.py run "$WORK/base" "$WORK/batch.safetensors" \
    --attn sdpa --device "$DEVICE" --dtype bf16 --steps 1 --warmup 1 --profile "$WORK/torch_profile.json"
  rm -f "$PROFILE_LOG"
  CUBECL_DEBUG_LOG=$PROFILE_LOG CUBECL_DEBUG_OPTION=profile run evalverse_profile_step \
    "$WORK/bin/bench_sft_step" "$WORK/base" "$WORK/batch.safetensors" "${EV_DEV[@]}" --bf16 \
    --steps 1 --warmup 0
  "$PYTHON" scripts/bench_gpu.py profile "$WORK" --cubecl-log "$PROFILE_LOG"
fi
