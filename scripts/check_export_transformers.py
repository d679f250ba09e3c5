"""Check `evalverse export` against Python: the merged export loads in transformers
(Qwen2_5_VLForConditionalGeneration) and the PEFT export loads with PEFT on the base, and both give
the logits evalverse computes on the same fixed probe input (`evalverse model logits`, hidden).

Default checkpoint: the PEFT fixture adapter on the tiny_a fixture (untied head, sharded base,
non-trivial random weights; crates/evalverse-model/tests/fixtures). Any run or adapter folder
works: --checkpoint RUN [--base BASE]. Not part of CI (CI has no torch).

Run from the repository root, after `cargo build -p evalverse-cli`:
    /work/venv/bin/python scripts/check_export_transformers.py [--evalverse target/debug/evalverse]
Exits 1 if a relative difference exceeds --tol (default 1e-4).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file
from transformers import Qwen2_5_VLForConditionalGeneration

FX = Path("crates/evalverse-model/tests/fixtures")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout.strip()


def load(path):
    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def logits(model, probe):
    with torch.no_grad():
        out = model(
            input_ids=probe["input_ids"],
            attention_mask=probe["attention_mask"],
            pixel_values_videos=probe["pixel_values_videos"],
            video_grid_thw=probe["video_grid_thw"],
            second_per_grid_ts=probe["second_per_grid_ts"],
            use_cache=False,
        )
    return out.logits.float()


def compare(name, got, want):
    d = (got - want).abs().max().item()
    scale = want.abs().max().item()
    return {"check": name, "max_abs": d, "max_rel": d / scale, "max_abs_logit": scale}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evalverse", default=os.environ.get("EVALVERSE", "target/debug/evalverse"))
    ap.add_argument("--checkpoint", default=str(FX / "lora_peft"))
    ap.add_argument("--base", default=str(FX / "tiny_a"))
    ap.add_argument("--max-shard-size", default="400KB")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ev = a.evalverse
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_args = ["--base", a.base] if a.base else []
        merged, adapter = tmp / "merged", tmp / "peft"
        run([ev, "export", a.checkpoint, *base_args, "--format", "merged", "--out", merged, "--max-shard-size", a.max_shard_size])
        run([ev, "export", a.checkpoint, *base_args, "--format", "peft", "--out", adapter])
        base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = a.base or base
        run([ev, "model", "logits", "--model", merged, "--out", tmp / "ev_merged.safetensors"])
        run([ev, "model", "logits", "--model", base, "--adapter", adapter, "--out", tmp / "ev_adapter.safetensors"])
        ev_merged = load_file(tmp / "ev_merged.safetensors")
        ev_adapter = load_file(tmp / "ev_adapter.safetensors")
        shards = sorted(p.name for p in merged.glob("*.safetensors"))

        hf_merged = logits(load(merged), ev_merged)
        pm = PeftModel.from_pretrained(load(base), adapter).eval()
        hf_adapter = logits(pm, ev_adapter)
        hf_base = logits(load(base), ev_adapter)

    results = [
        compare("merged export in transformers vs evalverse (merged)", hf_merged, ev_merged["logits"]),
        compare("PEFT export on the base in PEFT vs evalverse (base + adapter)", hf_adapter, ev_adapter["logits"]),
        compare("merged export in transformers vs PEFT export in PEFT", hf_merged, hf_adapter),
    ]
    report = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "checkpoint": a.checkpoint,
        "base": base,
        "merged_files": shards,
        "probe_tokens": int(ev_merged["input_ids"].shape[1]),
        "adapter_effect_max_abs": (hf_adapter - hf_base).abs().max().item(),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    bad = [r for r in results if not r["max_rel"] <= a.tol]
    if bad:
        sys.exit(f"{len(bad)} check(s) above tolerance {a.tol}")


if __name__ == "__main__":
    main()
