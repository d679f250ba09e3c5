#!/usr/bin/env bash
# Correctness of the CUDA path, on the GPU machine (issue 7), with the binaries of
# scripts/build_gpu_bins.sh (BIN, default target/gpu, plain or .xz):
#   1. gpu_check parity: the tiny fixture checkpoint's logits on burn-cuda against transformers'
#      (f32 weights within 1e-3, bf16 within 5e-2, position ids equal);
#   2. gpu_check attention: the attention operation's output and gradients on burn-cuda against
#      burn's autodiff of the composite on the CPU (1e-3);
#   3. a short LoRA SFT (bench_sft_step: forward, fused head loss, backward, global clip, AdamW
#      lr 1e-2, 8 steps) on the fixture checkpoint and the CPU benchmark's batch layout, on the
#      CPU (burn Flex), on burn-cuda in f32 and in bf16 base weights: the cuda loss curves
#      against the CPU's, within 1e-3 relative (f32) and 2e-2 (bf16).
# `--cpu` runs 1 and 2 on the CPU backend (to try the script here). Prints one JSON line per
# check and a summary; exits 1 if a check fails. Environment: PYTHON (python3; with torch and
# safetensors, to write the batch), WORK (default $OUT/gpu_checks or /tmp/gpu_checks).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WORK=${WORK:-${OUT:+$OUT/gpu_checks}}
WORK=${WORK:-/tmp/gpu_checks}
. scripts/gpu_bins.sh
BIN=${BIN:-$(gpu_bin_dir)}
for b in bench_sft_step gpu_check; do
  unpack_gpu_bin "$BIN" "$b" "$WORK/bin" || exit 2
done
DEV=()
[ "${1:-}" = --cpu ] && DEV=(--cpu)
CUDA=(--cuda)
[ "${1:-}" = --cpu ] && CUDA=()
export EVALVERSE_MODEL_FIXTURES=$PWD/crates/evalverse-model/tests/fixtures
fail=0
for c in parity attention; do
  "$WORK/bin/gpu_check" "$c" "${DEV[@]}" | tee "$WORK/$c.json" || fail=1
done
base=$EVALVERSE_MODEL_FIXTURES/tiny_a
"$PYTHON" scripts/bench_sft_step.py batch "$base" "$WORK/batch.safetensors" >/dev/null || exit 1
sft() { "$WORK/bin/bench_sft_step" "$base" "$WORK/batch.safetensors" --steps 8 --warmup 0 --lr 1e-2 "$@"; }
sft > "$WORK/sft_cpu.json" || fail=1
sft "${CUDA[@]}" > "$WORK/sft_cuda_f32.json" || fail=1
sft "${CUDA[@]}" --bf16 > "$WORK/sft_cuda_bf16.json" || fail=1
"$PYTHON" - "$WORK" <<'PY' || fail=1
import json, sys
w = sys.argv[1]
load = lambda n: json.load(open(f"{w}/{n}.json"))
cpu = load("sft_cpu")["losses"]
ok = True
for name, tol in [("sft_cuda_f32", 1e-3), ("sft_cuda_bf16", 2e-2)]:
    r = load(name)
    rel = max(abs(a - b) / abs(b) for a, b in zip(r["losses"], cpu))
    ok &= rel <= tol and len(r["losses"]) == len(cpu)
    print(json.dumps({"check": name, "ok": rel <= tol, "max_rel_loss_diff": rel, "tolerance": tol,
                      "losses": r["losses"], "cpu_losses": cpu, "backend": r.get("backend")}))
sys.exit(0 if ok else 1)
PY
for c in parity attention; do
  grep -q '"ok":true' "$WORK/$c.json" || fail=1
done
echo "gpu_checks: $([ $fail = 0 ] && echo all passed || echo FAILED)"
exit $fail
