#!/usr/bin/env bash
# The README's second command: install what the tests need, then run the whole test suite.
# CI (.ci/run) calls exactly this with CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_test_assets.sh
cargo test --workspace --locked
