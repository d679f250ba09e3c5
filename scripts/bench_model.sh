#!/usr/bin/env bash
# CPU throughput, evalverse (burn Flex; example bench_model) vs transformers (torch, THREADS
# threads; sdpa and eager attention), on the SAME random Qwen2.5-VL "small" checkpoint and the same
# prompt shape: 32 text + vision_start + 256 video tokens (grid [4, 16, 16]) + vision_end + 32
# text = 322 tokens, then 64 greedy new tokens. See scripts/bench_model.py for the definitions.
#
#   scripts/bench_model.sh [DIR] [REPS]        (defaults: /tmp/evalverse_bench_small, 3)
#
# Makes the checkpoint in DIR when DIR/config.json is absent. Environment: PYTHON (default
# /work/venv/bin/python), THREADS (torch threads, default 2), RUST_ARGS / PY_ARGS (extra arguments,
# e.g. RUST_ARGS=--stages PY_ARGS=--stages), WAIT_IDLE (see wait_idle). Prints both JSON reports,
# then the table: prefill tokens/s (322 / one forward), decode tokens/s (63 decode steps /
# (generate(64) - generate(1))), the median over REPS timed runs and, in brackets, the best run;
# and the ratios evalverse / transformers (> 1: evalverse is faster). The machine may be shared:
# each side first waits for idle CPUs, and the load average is printed.
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:-/tmp/evalverse_bench_small}
REPS=${2:-3}
PYTHON=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Wait (at most WAIT_IDLE seconds, default 120; 0 skips) until the CPUs are < 10% busy over 2 s:
# other jobs on a shared machine distort the numbers, torch's most (its threads meet at barriers).
wait_idle() {
  local limit=${WAIT_IDLE:-120} start=$SECONDS a b c d e f g b1 t1 b2 t2 pct
  [ "$limit" -gt 0 ] || return 0
  while :; do
    read -r _ a b c d e f g _ </proc/stat
    b1=$((a + b + c + e + f + g))
    t1=$((b1 + d))
    sleep 2
    read -r _ a b c d e f g _ </proc/stat
    b2=$((a + b + c + e + f + g))
    t2=$((b2 + d))
    pct=$((100 * (b2 - b1) / (t2 - t1 + 1)))
    if [ "$pct" -lt 10 ]; then return 0; fi
    if [ $((SECONDS - start)) -ge "$limit" ]; then
      echo "(the CPUs are still ${pct}% busy after ${limit} s: numbers may be low)"
      return 0
    fi
  done
}

if [ ! -f "$DIR/config.json" ]; then
  echo "== making the checkpoint in $DIR"
  "$PYTHON" scripts/bench_model.py make "$DIR"
fi

cargo build --release -q -p evalverse-model --example bench_model

wait_idle
echo "== evalverse (load before: $(load))"
# shellcheck disable=SC2086
rust_json=$(cargo run --release -q -p evalverse-model --example bench_model -- "$DIR" --reps "$REPS" ${RUST_ARGS:-})
echo "$rust_json"

wait_idle
echo "== transformers (load before: $(load))"
py_err=$(mktemp)
trap 'rm -f "$py_err"' EXIT
# shellcheck disable=SC2086
if ! py_json=$("$PYTHON" scripts/bench_model.py run "$DIR" --reps "$REPS" --threads "$THREADS" ${PY_ARGS:-} 2>"$py_err"); then
  cat "$py_err" >&2
  exit 1
fi
echo "$py_json"
echo "== load after: $(load); $(nproc) cores"

RUST_JSON=$rust_json PY_JSON=$py_json "$PYTHON" - <<'PY'
import json, os

r = json.loads(os.environ["RUST_JSON"])
p = json.loads(os.environ["PY_JSON"])
rows = [("evalverse (burn flex)", r)] + [(x["impl"], x) for x in p["results"]]
print(f"prompt {r['prompt_tokens']} tokens, {r['new_tokens']} new tokens; torch threads {p['threads']}, "
      f"{r['threads']} cores; {r['reps']} timed runs each: median (best)")
print(f"{'':26} {'prefill tok/s':>20} {'decode tok/s':>18} {'prefill s':>10} {'ms/token':>9}")
for name, x in rows:
    pre = f"{x['prefill_tok_s']:.1f} ({x['prefill_tok_s_best']:.1f})"
    dec = f"{x['decode_tok_s']:.1f} ({x['decode_tok_s_best']:.1f})"
    print(f"{name:26} {pre:>20} {dec:>18} {x['prefill_s']:10.3f} {1e3 * x['decode_s_per_token']:9.1f}")
for name, x in rows[1:]:
    label = f"evalverse/{name.removeprefix('transformers-')}"
    pre = f"{r['prefill_tok_s'] / x['prefill_tok_s']:.2f}x ({r['prefill_tok_s_best'] / x['prefill_tok_s_best']:.2f}x)"
    dec = f"{r['decode_tok_s'] / x['decode_tok_s']:.2f}x ({r['decode_tok_s_best'] / x['decode_tok_s_best']:.2f}x)"
    print(f"{label:26} {pre:>20} {dec:>18}")
PY
