#!/usr/bin/env bash
# Build, on this (CPU) machine, the evalverse binaries the GPU machine runs (it has no Rust): the
# examples bench_sft_step (evalverse-train) and gpu_check (evalverse-model) with --features cuda,
# stripped and xz-compressed into target/gpu/ with the source revision in target/gpu/REV. Neither
# links FFmpeg (the GPU machine has none). Carry target/gpu to the GPU machine, then run
# scripts/gpu_checks.sh and scripts/bench_gpu.sh there.
#
# CUDARC_CUDA_VERSION (default 13000) picks cudarc's CUDA API bindings: without nvcc here cudarc
# would take the newest it knows (13.4); 13.0 bindings run on every CUDA 13 driver.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
cargo build --release --locked -p evalverse-train --features cuda --example bench_sft_step
cargo build --release --locked -p evalverse-model --features cuda --example gpu_check
mkdir -p target/gpu
for b in bench_sft_step gpu_check; do
  strip -o "target/gpu/$b" "target/release/examples/$b"
  xz -T2 -6 -f "target/gpu/$b"
done
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet 2>/dev/null || rev="$rev+dirty"
echo "$rev (CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, built $(date -u +%F))" > target/gpu/REV
ls -l target/gpu
