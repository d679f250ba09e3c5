#!/usr/bin/env bash
# The README's first command: install everything, build, then run the main job. For now the main
# job synthesises the sample dataset afresh, validates it (decoding every clip) and prints its
# statistics; the quickstart issue replaces it with training and evaluating a judge.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p evalverse-cli
out=runs/quickstart/data
rm -rf "$out"
./target/release/evalverse data synth --out "$out" --clips 100 --seed 7
./target/release/evalverse data validate "$out"
./target/release/evalverse data stats "$out"
echo "quickstart: dataset in $out (same manifest as the bundled data/sample: seed 7)" >&2
cmp -s "$out/manifest.jsonl" data/sample/manifest.jsonl && echo "quickstart: manifest identical to data/sample" >&2 || true
