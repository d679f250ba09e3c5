#!/usr/bin/env bash
# Perception-operator throughput (issue 8): clips/s of the Qwen2.5-VL video preprocessing alone,
# of all nine operators alone, and of both, on the same clips (release build).
#
#   scripts/bench_operators.sh [DIR] [N] [PASSES]      (defaults: data/sample, all clips, 1 pass)
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:-data/sample}
N=${2:-1000000000}
PASSES=${3:-1}
cargo build --release -q -p evalverse-data --example bench_operators
cargo run --release -q -p evalverse-data --example bench_operators -- "$DIR" "$N" "$PASSES"
