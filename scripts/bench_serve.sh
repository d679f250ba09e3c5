#!/usr/bin/env bash
# Throughput and latency of `evalverse serve` against a Python reward server (PyTorch +
# transformers, scripts/bench_serve_ref.py: one request at a time, batch 1, as Flow-GRPO's
# reward servers run) serving the same judge: the quickstart's calibrated judge, merged for
# transformers by `evalverse export --format merged`, on the same clips, dimensions and
# questions, under the same load (scripts/bench_serve.py: C concurrent clients, R requests of one
# clip each). Both sides use 2 CPU threads' worth of machine as they will; evalverse reads decoded
# clips from its decode cache after the warm-up; the reference decodes every request (as such
# servers do), then runs again keeping each clip's preprocessed video (the model's work alone).
# Checks that both computed the same (the score-token soft scores of the warm-up requests) and
# prints the ratios of judgements/s.
#
#   scripts/bench_serve.sh [BUNDLE] [RUN]   (defaults: runs/quickstart/judge, runs/quickstart/calibrated)
#   env: N clips (8), C concurrency (8), R requests (32), DIMS (lens,pacing), PY (/work/venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-runs/quickstart/judge}
RUN=${2:-runs/quickstart/calibrated}
DATA=data/sample
N=${N:-8}; C=${C:-8}; R=${R:-32}; DIMS=${DIMS:-lens,pacing}
PY=${PY:-/work/venv/bin/python}
[ -f "$BUNDLE/judge.json" ] || { echo "no judge bundle at $BUNDLE: run evalverse quickstart first" >&2; exit 2; }
cargo build --release -q -p evalverse-cli
cargo build --release -q -p evalverse-judge --example questions
BIN=target/release/evalverse
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" export "$RUN" --format merged --out "$work/merged" >/dev/null
max_new=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['spec']['max_new_tokens'])" "$BUNDLE/judge.json")
frames=$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['spec']['frames']))" "$BUNDLE/judge.json")
# The first N clips with the judge's questions for each.
python3 - "$DATA" "$N" "$BUNDLE" "$work/clips.json" <<'PY'
import json, os, subprocess, sys
data, n, bundle, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
clips = []
for line in open(os.path.join(data, "manifest.jsonl")):
    r = json.loads(line)
    if r.get("record") != "clip":
        continue
    q = json.loads(subprocess.run(["target/release/examples/questions", bundle, r["prompt"]],
                                  check=True, capture_output=True, text=True).stdout)
    clips.append({"video": os.path.abspath(os.path.join(data, r["video"])), "prompt": r["prompt"],
                  "questions": q["questions"], "system": q["system"]})
    if len(clips) == n:
        break
json.dump(clips, open(out, "w"))
PY
system=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['system'])" "$work/clips.json")
wait_up() { for _ in $(seq 600); do curl -sf "$1/health" >/dev/null 2>&1 && return 0; sleep 0.5; done; echo "server at $1 did not come up" >&2; exit 1; }

"$BIN" serve --judge "$BUNDLE" --allowed-media-root "$DATA" --port 8090 --cache "$work/cache" \
  --max-batch "$C" >"$work/serve.log" 2>&1 &
pids+=($!)
wait_up http://127.0.0.1:8090
ours=$(python3 scripts/bench_serve.py --url http://127.0.0.1:8090 --kind evalverse --clips "$work/clips.json" \
  --dimensions "$DIMS" --concurrency "$C" --requests "$R" --dump "$work/ours.json")
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true

"$PY" scripts/bench_serve_ref.py --model "$work/merged" --port 8091 --max-new-tokens "$max_new" \
  --system "$system" --frames "$frames" >"$work/ref.log" 2>&1 &
pids+=($!)
wait_up http://127.0.0.1:8091
ref=$(python3 scripts/bench_serve.py --url http://127.0.0.1:8091 --kind reference --clips "$work/clips.json" \
  --dimensions "$DIMS" --concurrency "$C" --requests "$R" --dump "$work/ref.json")
kill -TERM "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
# The reference again with each clip's preprocessed video kept (the model's work alone).
"$PY" scripts/bench_serve_ref.py --model "$work/merged" --port 8092 --max-new-tokens "$max_new" \
  --system "$system" --frames "$frames" --cache-videos >"$work/ref2.log" 2>&1 &
pids+=($!)
wait_up http://127.0.0.1:8092
cached=$(python3 scripts/bench_serve.py --url http://127.0.0.1:8092 --kind reference --clips "$work/clips.json" \
  --dimensions "$DIMS" --concurrency "$C" --requests "$R")
echo "$ours"
echo "reference (decodes every request): $ref"
echo "reference (preprocessed videos kept): $cached"
python3 - "$ours" "$ref" "$cached" "$work/ours.json" "$work/ref.json" <<'PY'
import json, sys
val = lambda s: float(s.split("judgements_per_s=")[1].split()[0])  # noqa: E731
ours, ref, cached = map(val, sys.argv[1:4])
a, b = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
diffs = [abs(a[v][d] - b[v][d]) for v in a for d in b[v]]
print(f"same work: largest |score-token soft score, evalverse - reference| over {len(diffs)} judgements: {max(diffs):.2e}")
print(f"evalverse serve / Python reference (judgements/s): {ours / ref:.2f}x; "
      f"/ reference with preprocessed videos kept: {ours / cached:.2f}x")
PY
