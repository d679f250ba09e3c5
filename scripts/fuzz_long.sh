#!/usr/bin/env bash
# The long run of the parser fuzz targets (crates/*/tests/fuzz.rs): each target alone, one
# after another, for SECONDS seconds (default 600), in chunks of PROPTEST_CASES generated
# inputs (default 1000) with a fresh random seed per chunk. Prints each target's cases, time
# and failures (a failure's shrunk input is in its log under LOGDIR), then a summary table;
# exits 1 if any target failed. docs/RELIABILITY.md records a run.
#   bash scripts/fuzz_long.sh [SECONDS] [TARGET...]      e.g. bash scripts/fuzz_long.sh 30 manifest
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
logdir=${LOGDIR:-target/fuzz-logs}
mkdir -p "$logdir"
# crate:test for every target.
all=(
  evalverse-data:fuzz_manifest_lines
  evalverse-data:fuzz_dataset_toml
  evalverse-data:fuzz_taxonomy_toml
  evalverse-data:fuzz_import
  evalverse-train:fuzz_recipe_toml
  evalverse-model:fuzz_config_json
  evalverse-model:fuzz_safetensors_header
  evalverse-judge:fuzz_judge_bundle
  evalverse-judge:fuzz_score_list
  evalverse-judge:fuzz_fusion_json
  evalverse-serve:fuzz_score_request
)
targets=()
for t in "${all[@]}"; do
  if [ $# -eq 0 ]; then targets+=("$t"); continue; fi
  for want in "$@"; do [[ "$t" == *"$want"* ]] && targets+=("$t"); done
done
crates=$(printf '%s\n' "${targets[@]}" | cut -d: -f1 | sort -u)
# Build each crate's fuzz binary once and run the binaries: a target's run is not rebuilt (nor
# broken) by edits made while the run goes on.
declare -A bin
for c in $crates; do
  exe=$(cargo test -q -p "$c" --test fuzz --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "fuzz" and m.get("executable"):
        print(m["executable"])')
  [ -n "$exe" ] || { echo "cannot build the fuzz tests of $c" >&2; exit 1; }
  bin[$c]=$exe
done
summary=()
status=0
for t in "${targets[@]}"; do
  crate=${t%%:*}
  test=${t#*:}
  log="$logdir/$test.log"
  echo "== $test ($crate): ${secs}s"
  FUZZ_SECONDS=$secs PROPTEST_CASES=${PROPTEST_CASES:-1000} \
    "${bin[$crate]}" --exact "$test" --nocapture >"$log" 2>&1
  rc=$?
  line=$(grep -a '^fuzz .* cases in ' "$log" | tail -1)
  if [ -z "$line" ]; then
    line="fuzz $test: no summary (exit $rc; a hang or a crash: see $log)"
  fi
  grep -a -A3 'FAILURE\|HANG\|ABORT' "$log" | head -40
  echo "$line"
  summary+=("$line")
  [ $rc -eq 0 ] || status=1
done
echo
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
