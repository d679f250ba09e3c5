#!/usr/bin/env bash
# Rust (evalverse-data, example bench_preprocess) vs the Python reference (PyAV + qwen-vl-utils +
# transformers Qwen2VLVideoProcessor, torch threads 2) on the same clips, Qwen2.5-VL default spec.
#
#   scripts/bench_preprocess.sh [DIR] [N] [PASSES]      (defaults: data/sample, all clips, 1 pass)
#
# Environment: PYTHON (default /work/venv/bin/python); PY_ARGS, extra arguments for the Python side
# (e.g. PY_ARGS=--nominal-fps to make it sample the same frames as video.rs does today).
# Prints both reports and the ratio Rust clips/s / Python clips/s (and frames/s).
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:-data/sample}
N=${2:-}
PASSES=${3:-1}
PYTHON=${PYTHON:-/work/venv/bin/python}
NARG=${N:-1000000000}

cargo build --release -q -p evalverse-data --example bench_preprocess

echo "== rust"
rust_out=$(cargo run --release -q -p evalverse-data --example bench_preprocess -- "$DIR" "$NARG" "$PASSES")
echo "$rust_out"

echo "== python"
# Library warnings go to a file, shown only if the reference fails.
py_err=$(mktemp)
trap 'rm -f "$py_err"' EXIT
# shellcheck disable=SC2086
if ! py_out=$("$PYTHON" scripts/bench_preprocess.py "$DIR" "$NARG" "$PASSES" ${PY_ARGS:-} 2>"$py_err"); then
  cat "$py_err" >&2
  exit 1
fi
echo "$py_out"

field() { # field NAME TEXT -> value of NAME= on the RESULT line
  grep '^RESULT ' <<<"$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
rc=$(field clips_per_s "$rust_out"); pc=$(field clips_per_s "$py_out")
rf=$(field frames_per_s "$rust_out"); pf=$(field frames_per_s "$py_out")
echo "== ratio (rust / python)"
awk -v rc="$rc" -v pc="$pc" -v rf="$rf" -v pf="$pf" 'BEGIN {
  printf "clips/s:  rust %.2f  python %.2f  ratio %.2fx\n", rc, pc, rc / pc;
  printf "frames/s: rust %.1f  python %.1f  ratio %.2fx\n", rf, pf, rf / pf;
}'
