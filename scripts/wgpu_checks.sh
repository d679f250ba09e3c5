#!/usr/bin/env bash
# The CubeCL path without a GPU (issue 7): burn-wgpu with fusion and autotune, the backend
# machinery of burn-cuda (CubeBackend, burn-fusion's graph capture and fused kernels, cubek's
# matmul and reductions, autotune) with WGSL for CUDA C++, run on Mesa's lavapipe Vulkan driver
# (llvmpipe: the "GPU" is this machine's CPU). f32 only: WGSL has no bf16. It catches what the
# fused CubeCL backend gets wrong in evalverse's model and training code before a GPU is at hand:
#   1. gpu_check parity --wgpu: the tiny fixture checkpoint's logits against transformers'
#      (1e-3 relative to max |logit|, position ids equal);
#   2. gpu_check attention --wgpu: the attention operation's output and gradients under autodiff
#      against burn's autodiff of the composite on the CPU (1e-3);
#   3. bench_sft_step, 8 LoRA SFT steps (lr 1e-2) on the fixture checkpoint and a synthetic batch
#      (two sequences: 40 text tokens, a 2x8x8 video grid, 40 more, loss on the last 32), on the
#      CPU (burn Flex) and on wgpu, without and with gradient checkpointing: each wgpu loss curve
#      within 1e-3 relative of the CPU's.
# Builds the two examples with `--features wgpu` (dev profile, dependencies optimised: the test
# build's target/debug) unless NO_BUILD=1. Prints one JSON line per check and a summary; exits 1
# if a check fails. WORK: default /tmp/wgpu_checks.
set -uo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/wgpu_checks}
mkdir -p "$WORK"
if ! command -v vulkaninfo >/dev/null || ! vulkaninfo --summary 2>/dev/null | grep -q deviceName; then
  echo "wgpu_checks: no Vulkan device (apt-get install -y mesa-vulkan-drivers libvulkan1 vulkan-tools)" >&2
  exit 2
fi
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --locked -p evalverse-model --features wgpu --example gpu_check || exit 2
  cargo build --locked -p evalverse-train --features wgpu --example bench_sft_step || exit 2
fi
BIN=target/debug/examples
export EVALVERSE_MODEL_FIXTURES=$PWD/crates/evalverse-model/tests/fixtures
fail=0
for c in parity attention; do
  "$BIN/gpu_check" "$c" --wgpu | tee "$WORK/$c.json" || fail=1
  grep -q '"ok":true' "$WORK/$c.json" || fail=1
done
base=$EVALVERSE_MODEL_FIXTURES/tiny_a
sft() { "$BIN/bench_sft_step" "$base" synthetic:2,8,8,40,32 --steps 8 --warmup 0 --lr 1e-2 "$@"; }
sft > "$WORK/sft_cpu.json" || fail=1
sft --wgpu > "$WORK/sft_wgpu.json" || fail=1
sft --wgpu --checkpointing > "$WORK/sft_wgpu_ckpt.json" || fail=1
python3 - "$WORK" <<'PY' || fail=1
import json, sys
w = sys.argv[1]
load = lambda n: json.load(open(f"{w}/{n}.json"))
cpu = load("sft_cpu")["losses"]
ok = True
for name in ["sft_wgpu", "sft_wgpu_ckpt"]:
    r = load(name)
    rel = max(abs(a - b) / abs(b) for a, b in zip(r["losses"], cpu))
    good = rel <= 1e-3 and len(r["losses"]) == len(cpu)
    ok &= good
    print(json.dumps({"check": name, "ok": good, "max_rel_loss_diff": rel, "tolerance": 1e-3,
                      "losses": r["losses"], "cpu_losses": cpu, "step_s": r.get("step_s"),
                      "backend": r.get("backend")}))
sys.exit(0 if ok else 1)
PY
echo "wgpu_checks: $([ $fail = 0 ] && echo all passed || echo FAILED)"
exit $fail
