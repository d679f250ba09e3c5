"""PEFT parity fixtures for evalverse's LoRA, both directions, on the tiny_a checkpoint.

1. PEFT -> evalverse: Python PEFT makes a LoRA adapter on tiny_a (rank 4, alpha 8, rsLoRA off,
   the seven language-model projections, init_lora_weights=False so B is not zero) and saves it
   to crates/evalverse-model/tests/fixtures/lora_peft/, with PEFT's logits on case_video_a.
2. evalverse -> PEFT: loads the adapter evalverse wrote
   (cargo run --release -p evalverse-model --example make_lora_fixture) with PeftModel and saves
   PEFT's logits for it. The Rust test checks evalverse's logits against both.

Run from the repository root:  /work/venv/bin/python scripts/make_lora_fixtures.py
"""
import json
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Qwen2_5_VLForConditionalGeneration

FX = Path("crates/evalverse-model/tests/fixtures")
TARGETS = r"^model\.language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))$"


def base():
    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(FX / "tiny_a", torch_dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def logits(model, case):
    with torch.no_grad():
        out = model(
            input_ids=case["input_ids"],
            attention_mask=case["attention_mask"],
            pixel_values_videos=case["pixel_values_videos"],
            video_grid_thw=case["video_grid_thw"],
            second_per_grid_ts=case["second_per_grid_ts"],
        )
    return out.logits.float().contiguous()


def main():
    torch.manual_seed(0)
    case = load_file(FX / "case_video_a.safetensors")
    meta = {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "generator": "scripts/make_lora_fixtures.py", "target_modules": TARGETS}

    # 1. A PEFT-made adapter.
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, init_lora_weights=False, bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(base(), cfg).eval()
    n_adapted = sum(1 for n, _ in pm.named_modules() if n.endswith(".lora_A"))
    out_dir = FX / "lora_peft"
    pm.save_pretrained(out_dir)
    peft_logits = logits(pm, case)

    # 2. The evalverse-made adapter, loaded by PEFT.
    ev = PeftModel.from_pretrained(base(), FX / "lora_evalverse").eval()
    n_loaded = sum(1 for n, _ in ev.named_modules() if n.endswith(".lora_A"))
    ev_logits = logits(ev, case)
    base_logits = logits(base(), case)
    meta.update({"peft_adapted_modules": n_adapted, "evalverse_adapter_modules_in_peft": n_loaded,
                 "max_abs_logit_change_from_evalverse_adapter": float((ev_logits - base_logits).abs().max())})
    save_file({"peft_adapter_logits": peft_logits, "evalverse_adapter_logits": ev_logits},
              FX / "lora_logits.safetensors", metadata={"fixture": json.dumps(meta)})
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
