#!/usr/bin/env bash
# Build, on this (CPU) machine, the evalverse binaries the GPU machine runs (it has no Rust, and
# no FFmpeg): the examples bench_sft_step (evalverse-train) and gpu_check (evalverse-model) and
# the `evalverse` binary, all with `--no-default-features --features cuda` (no FFmpeg linked:
# the CLI reads clips from a warm decode cache), stripped and xz-compressed into target/gpu/ with
# the source revision in target/gpu/REV. Then the default (FFmpeg) target/release/evalverse is
# relinked, so that this machine keeps its usual binary. Carry target/gpu to the GPU machine and
# run scripts/gpu_checks.sh, scripts/gpu_cli_checks.sh run and scripts/bench_gpu.sh there.
#
# CUDARC_CUDA_VERSION (default 13000) picks cudarc's CUDA API bindings: without nvcc here cudarc
# would take the newest it knows (13.4); 13.0 bindings run on every CUDA 13 driver.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
# One invocation for the three, so that cargo unifies their features and compiles burn's CUDA
# stack once (three invocations resolved burn with different feature sets: the model example
# alone has no `train`).
cargo build --release --locked --no-default-features --features cuda \
  -p evalverse-train -p evalverse-model -p evalverse-cli \
  --example bench_sft_step --example gpu_check --bin evalverse
mkdir -p target/gpu
for b in examples/bench_sft_step examples/gpu_check evalverse; do
  name=$(basename "$b")
  if ldd "target/release/$b" | grep -q libav; then
    echo "build_gpu_bins: target/release/$b links FFmpeg" >&2
    exit 1
  fi
  strip -o "target/gpu/$name" "target/release/$b"
  xz -T2 -6 -f "target/gpu/$name"
done
cargo build --release --locked -p evalverse-cli
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet 2>/dev/null || rev="$rev+dirty"
echo "$rev (CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, built $(date -u +%F))" > target/gpu/REV
ls -l target/gpu
