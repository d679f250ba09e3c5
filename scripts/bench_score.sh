#!/usr/bin/env bash
# Throughput of `evalverse score` (one process: the judge loaded once, prompts of several
# videos batched together) against `evalverse judge` called once per clip, with the same judge
# bundle on the same clips and dimensions, both on a warm decode cache (decoding and operator
# evidence are cached by content for both). Prints clips/s of each and the ratio.
#
#   scripts/bench_score.sh [BUNDLE] [DATA] [N]   (defaults: runs/quickstart/judge, data/sample, 20)
#   env: DIMS (default all), CLIPS_PER_BATCH (8), BATCH_SIZE (16)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-runs/quickstart/judge}
DATA=${2:-data/sample}
N=${3:-20}
BIN=target/release/evalverse
[ -f "$BUNDLE/judge.json" ] || { echo "no judge bundle at $BUNDLE: run evalverse quickstart first" >&2; exit 2; }
cargo build --release -q -p evalverse-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The first N clips of the manifest as a score list (video paths relative to the list).
python3 - "$DATA" "$N" "$work/list.jsonl" <<'PY'
import json, os, sys
data, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
for line in open(os.path.join(data, "manifest.jsonl")):
    r = json.loads(line)
    if r.get("record") == "clip":
        rows.append({"id": r["id"], "video": os.path.abspath(os.path.join(data, r["video"])), "prompt": r["prompt"]})
    if len(rows) == n:
        break
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
PY
dims=()
[ -n "${DIMS:-}" ] && dims=(--dimensions "$DIMS")
cache="$work/cache"
# Warm the decode cache (both sides then read clips and evidence from it).
"$BIN" score "$work/list.jsonl" --judge "$BUNDLE" --out "$work/warm.jsonl" --cache "$cache" "${dims[@]}" >/dev/null 2>&1 || true
t0=$(date +%s.%N)
"$BIN" score "$work/list.jsonl" --judge "$BUNDLE" --out "$work/score.jsonl" --cache "$cache" \
  --clips-per-batch "${CLIPS_PER_BATCH:-8}" --batch-size "${BATCH_SIZE:-16}" "${dims[@]}" 2>/dev/null || true
t1=$(date +%s.%N)
python3 - "$work/list.jsonl" "$BUNDLE" "$cache" "$BIN" "${DIMS:-}" <<'PY'
import json, subprocess, sys
lst, bundle, cache, binary, dims = sys.argv[1:6]
for line in open(lst):
    r = json.loads(line)
    args = [binary, "judge", r["video"], "--prompt", r["prompt"], "--judge", bundle, "--cache", cache, "--json"]
    if dims:
        args += ["--dimensions", dims]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
PY
t2=$(date +%s.%N)
python3 - "$N" "$t0" "$t1" "$t2" "$work/score.jsonl" <<'PY'
import json, sys
n, t0, t1, t2, out = int(sys.argv[1]), *map(float, sys.argv[2:5]), sys.argv[5]
rows = [json.loads(l) for l in open(out)]
ok = sum(1 for r in rows if not r.get("error"))
s, j = t1 - t0, t2 - t1
print(f"clips: {n} ({ok} scored by score)")
print(f"score: {s:.1f} s, {n / s:.3f} clips/s")
print(f"judge once per clip: {j:.1f} s, {n / j:.3f} clips/s")
print(f"ratio score / judge-per-clip: {j / s:.2f}x")
PY
