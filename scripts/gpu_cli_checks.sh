#!/usr/bin/env bash
# The user's path on burn-cuda (issue 7): `evalverse train` for both stages and `evalverse eval`
# on the GPU machine, against the same commands on the CPU.
#
#   scripts/gpu_cli_checks.sh prepare   # here (a default build, with FFmpeg)
#   scripts/gpu_cli_checks.sh run       # on the GPU machine (target/gpu/evalverse.xz, no FFmpeg)
#
# prepare: a 12-clip synthetic dataset (`evalverse data synth`), the tiny random base (`evalverse
# model init`, deterministic), the CPU runs of recipes/gpu_check/{sft,dpo}.toml (8 steps each;
# they warm the decode cache runs/gpu_check/cache, so the GPU machine decodes nothing) and the
# CPU evaluation of the SFT run (test split, 2 dimensions, 16 new tokens). Everything lands in
# runs/gpu_check/ (about 10 MB): carry it with target/gpu and target/test-assets.
# run: the base again (same seed, same weights), the same recipes with run.device = "cuda", the
# evaluation with --device cuda; then the per-step losses against the CPU runs' (metrics.jsonl;
# within 1e-3 relative) and the soft scores against the CPU evaluation's (within 1e-2). Exits 1
# if a check fails. EVALVERSE: the binary (default: target/gpu/evalverse.xz unpacked, else
# target/release/evalverse). DEVICE=cpu runs the "cuda" side on the CPU (to try `run` here with
# the FFmpeg-less binary: it must find every clip in the carried caches).
set -uo pipefail
cd "$(dirname "$0")/.."
W=runs/gpu_check
TOK=target/test-assets/qwen-tokenizer.json
PYTHON=${PYTHON:-python3}
mode=${1:?usage: gpu_cli_checks.sh prepare|run}

EV=${EVALVERSE:-}
if [ -z "$EV" ]; then
  if [ "$mode" = run ] && [ -f target/gpu/evalverse.xz ]; then
    . scripts/gpu_bins.sh
    unpack_gpu_bin target/gpu evalverse "$W/bin" || exit 2
    EV=$W/bin/evalverse
  else
    EV=target/release/evalverse
  fi
fi
EVAL_ARGS=(--data "$W/data" --split test --dimensions lens,scene --max-new-tokens 16 --bootstrap 100)

base() {
  [ -f "$W/base/config.json" ] || "$EV" model init --out "$W/base" --tokenizer "$TOK" >/dev/null
}

# recipe STAGE DEVICE: recipes/gpu_check/STAGE.toml with run.output_dir and run.device set.
recipe() {
  sed -e "s#^output_dir = .*#output_dir = \"$W/$1-$2\"#" -e "s#^device = .*#device = \"$2\"#" \
    "recipes/gpu_check/$1.toml" > "$W/$1-$2.toml"
  echo "$W/$1-$2.toml"
}

if [ "$mode" = prepare ]; then
  set -e
  [ -f "$TOK" ] || bash scripts/fetch_test_assets.sh
  rm -rf "$W" && mkdir -p "$W"
  "$EV" data synth --out "$W/data" --clips 12 --seed 11 >/dev/null
  base
  for s in sft dpo; do "$EV" train "$(recipe $s cpu)"; done
  "$EV" eval --checkpoint "$W/sft-cpu" --out "$W/eval-cpu" "${EVAL_ARGS[@]}" >/dev/null
  # The evaluation's clips are decoded into its own cache (<out>/cache): kept for the GPU side.
  # The base (50 MB, mostly the 151,936-token embedding) is not: `run` makes it again, the same
  # weights (seeded).
  rm -rf "$W/base"
  du -sh "$W"
  exit 0
fi

[ "$mode" = run ] || { echo "usage: gpu_cli_checks.sh prepare|run" >&2; exit 2; }
[ -d "$W/sft-cpu" ] || { echo "gpu_cli_checks: no $W/sft-cpu: run 'prepare' first (and carry $W)" >&2; exit 2; }
DEVICE=${DEVICE:-cuda}
base
fail=0
for s in sft dpo; do
  rm -rf "$W/$s-cuda"
  sed -e "s#$W/$s-$DEVICE\"#$W/$s-cuda\"#" "$(recipe $s "$DEVICE")" > "$W/$s-cuda.toml"
  "$EV" train "$W/$s-cuda.toml" > "$W/$s-cuda.log" 2>&1 || { fail=1; tail -5 "$W/$s-cuda.log"; }
done
rm -rf "$W/eval-cuda" && mkdir -p "$W/eval-cuda" && cp -r "$W/eval-cpu/cache" "$W/eval-cuda/cache"
"$EV" eval --checkpoint "$W/sft-cpu" --out "$W/eval-cuda" --device "$DEVICE" "${EVAL_ARGS[@]}" \
  > "$W/eval-cuda.log" 2>&1 || { fail=1; tail -5 "$W/eval-cuda.log"; }
"$PYTHON" - "$W" <<'PY' || fail=1
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
ok = True

def losses(run):
    rows = [json.loads(l) for l in (w / run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]

for stage in ("sft", "dpo"):
    try:
        cpu, cuda = dict(losses(f"{stage}-cpu")), dict(losses(f"{stage}-cuda"))
        rel = max(abs(cuda[s] - cpu[s]) / max(abs(cpu[s]), 1e-12) for s in cpu)
        good = rel <= 1e-3 and set(cpu) == set(cuda)
    except Exception as e:  # a missing run or key is a failed check, with its reason
        rel, good, cpu, cuda = repr(e), False, {}, {}
    ok &= good
    print(json.dumps({"check": f"{stage} on cuda vs cpu", "ok": good, "max_rel_loss_diff": rel,
                      "tolerance": 1e-3, "cpu": cpu, "cuda": cuda}))
try:
    read = lambda d: {(j["clip_id"], j["dimension"]): j for j in map(json.loads, (w / d / "judgements.jsonl").read_text().splitlines()) if j}
    a, b = read("eval-cpu"), read("eval-cuda")
    diffs = [abs(a[k]["soft"] - b[k]["soft"]) for k in a if a[k].get("soft") is not None and b.get(k, {}).get("soft") is not None]
    same = sum(a[k].get("verdict") == b.get(k, {}).get("verdict") for k in a)
    good = len(diffs) > 0 and max(diffs) <= 1e-2 and set(a) == set(b)
    print(json.dumps({"check": "eval on cuda vs cpu", "ok": good, "judgements": len(a),
                      "max_soft_diff": max(diffs) if diffs else None, "same_verdict": same}))
except Exception as e:
    good = False
    print(json.dumps({"check": "eval on cuda vs cpu", "ok": False, "error": repr(e)}))
ok &= good
sys.exit(0 if ok else 1)
PY
echo "gpu_cli_checks: $([ $fail = 0 ] && echo all passed || echo FAILED)"
exit $fail
