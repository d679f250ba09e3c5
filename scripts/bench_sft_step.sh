#!/usr/bin/env bash
# One LoRA SFT optimizer step (forward + backward + AdamW) on CPU: evalverse (burn Flex +
# Autodiff; example bench_sft_step, the loop body of evalverse_train::sft::run) vs PyTorch +
# transformers + PEFT (scripts/bench_sft_step.py; sdpa and eager attention), on the SAME random
# Qwen2.5-VL checkpoint (hidden 256, 4 layers, vision hidden 128 / depth 2, vocab 151936) and the
# SAME batch file: 2 x 234 tokens (100 text + vision_start + 32 video tokens of grid [2, 8, 8] +
# vision_end + 100 text), loss on the last 64 tokens of each sequence. LoRA r 8, alpha 16,
# dropout 0 on the 7 language-model projections; AdamW lr 1e-4, grad clip 1.0.
#
#   scripts/bench_sft_step.sh [BASE] [BATCH] [STEPS]
#   (defaults: /tmp/bench_sft_base, /tmp/bench_sft_batch.safetensors, 10; 2 warm-up steps)
#
# Makes BASE (evalverse model init) and BATCH (bench_sft_step.py batch) when absent. Environment:
# PYTHON (default /work/venv/bin/python), THREADS (torch threads, default 2). Prints the JSON
# reports, then the table: median step time, tokens/s (real tokens per step / median step),
# forward / backward / optimizer medians, and evalverse / PyTorch step-time ratios (> 1:
# evalverse is slower).
set -euo pipefail

cd "$(dirname "$0")/.."
BASE=${1:-/tmp/bench_sft_base}
BATCH=${2:-/tmp/bench_sft_batch.safetensors}
STEPS=${3:-10}
PYTHON=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
TOK=target/test-assets/qwen-tokenizer.json

if [ ! -f "$BASE/config.json" ]; then
  [ -f "$TOK" ] || scripts/fetch_test_assets.sh
  cargo build --release -q -p evalverse-cli
  ./target/release/evalverse model init --out "$BASE" --tokenizer "$TOK" \
    --hidden 256 --layers 4 --heads 4 --kv-heads 2 --vision-hidden 128 --vision-depth 2
fi
if [ ! -f "$BATCH" ]; then
  "$PYTHON" scripts/bench_sft_step.py batch "$BASE" "$BATCH"
fi

cargo build --release -q -p evalverse-train --example bench_sft_step

echo "== evalverse (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
rust_json=$(./target/release/examples/bench_sft_step "$BASE" "$BATCH" --steps "$STEPS" --warmup 2)
echo "$rust_json"
py_jsons=""
for attn in sdpa eager; do
  echo "== torch $attn (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
  j=$("$PYTHON" scripts/bench_sft_step.py run "$BASE" "$BATCH" --attn "$attn" \
    --steps "$STEPS" --warmup 2 --threads "$THREADS" 2>/dev/null)
  echo "$j"
  py_jsons+="$j"$'\n'
done

RUST_JSON=$rust_json PY_JSONS=$py_jsons "$PYTHON" - <<'PY'
import json, os

r = json.loads(os.environ["RUST_JSON"])
ps = [json.loads(l) for l in os.environ["PY_JSONS"].splitlines() if l.strip()]
print(f"\n{r['tokens_per_step']} tokens/step ({r['label_tokens']} label tokens), "
      f"{r['lora_params']} LoRA params; torch threads {ps[0]['threads']}; "
      f"median of {len(r['step_all_s'])} steps after 2 warm-up")
print(f"step-0 loss: evalverse {r['losses'][0]:.6f}, "
      + ", ".join(f"{p['impl']} {p['losses'][0]:.6f}" for p in ps))
h = f"{'':18} {'step s':>8} {'tok/s':>8} {'fwd s':>7} {'bwd s':>7} {'optim s':>8}"
print(h)
opt_r = r["grads_s"] + r["optim_s"]
print(f"{'evalverse':18} {r['step_s']:8.3f} {r['tok_s']:8.1f} {r['forward_s']:7.3f} "
      f"{r['backward_s']:7.3f} {opt_r:8.4f}")
for p in ps:
    print(f"{p['impl']:18} {p['step_s']:8.3f} {p['tok_s']:8.1f} {p['forward_s']:7.3f} "
          f"{p['backward_s']:7.3f} {p['optim_s']:8.4f}")
for p in ps:
    print(f"ratio evalverse/{p['impl']}: step time {r['step_s'] / p['step_s']:.2f}x "
          f"(tok/s {r['tok_s'] / p['tok_s']:.2f}x; forward {r['forward_s'] / p['forward_s']:.2f}x, "
          f"backward {r['backward_s'] / p['backward_s']:.2f}x)")
PY
