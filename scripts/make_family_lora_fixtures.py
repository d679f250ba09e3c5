"""PEFT parity fixtures for evalverse's LoRA on the Qwen2-VL and Qwen3-VL families, both
directions, on the tiny checkpoints of scripts/make_family_fixtures.py.

For each family, Python PEFT makes a LoRA adapter (rank 4, alpha 8, init_lora_weights=False so B
is not zero) on the seven language-model projections and on vision modules whose names differ by
family (Qwen2-VL: every block's mlp.fc1; Qwen3-VL: every block's mlp.linear_fc1 and the DeepStack
mergers' linear_fc2), saves it to crates/evalverse-model/tests/fixtures/families/lora_<family>/
and PEFT's logits on case_<family>.safetensors to families/lora_<family>_logits.safetensors
("peft_adapter_logits"). Then PEFT loads the adapter evalverse wrote (families/lora_evalverse_<family>,
from `cargo run --release -p evalverse-model --example make_lora_fixture -- families/<family>
families/lora_evalverse_<family> <fc1 | linear_fc1>`) and its logits are saved beside
("evalverse_adapter_logits"). The Rust tests (tests/families.rs) check evalverse's logits
against both.

Run from the repository root (after make_family_fixtures.py and the two example runs):
    /work/venv/bin/python scripts/make_family_lora_fixtures.py
"""
import json
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Qwen2VLForConditionalGeneration, Qwen3VLForConditionalGeneration

FX = Path("crates/evalverse-model/tests/fixtures/families")
LM = r"model\.language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
TARGETS = {
    "qwen2_vl": (Qwen2VLForConditionalGeneration, rf"^({LM}|model\.visual\.blocks\.\d+\.mlp\.fc1)$"),
    "qwen3_vl": (Qwen3VLForConditionalGeneration,
                 rf"^({LM}|model\.visual\.blocks\.\d+\.mlp\.linear_fc1|model\.visual\.deepstack_merger_list\.\d+\.linear_fc2)$"),
}


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for family, (cls, targets) in TARGETS.items():
        torch.manual_seed(0)  # each family's adapter independent of the other's run
        case = load_file(FX / f"case_{family}.safetensors")
        base = cls.from_pretrained(FX / family, dtype=torch.float32, attn_implementation="eager").eval()
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, init_lora_weights=False,
                         bias="none", task_type="CAUSAL_LM")
        pm = get_peft_model(base, cfg).eval()
        names = sorted(n[: -len(".lora_A")] for n, _ in pm.named_modules() if n.endswith(".lora_A"))
        pm.save_pretrained(FX / f"lora_{family}")
        kw = dict(input_ids=case["input_ids"], attention_mask=case["attention_mask"],
                  pixel_values_videos=case["pixel_values_videos"], video_grid_thw=case["video_grid_thw"])
        with torch.no_grad():
            lg = pm(**kw).logits.float().contiguous()
        change = float((lg - case["logits"]).abs().max())
        assert change > 0.1, f"{family}: the adapter barely changes the logits ({change})"
        # The adapter evalverse wrote, loaded by PEFT on a fresh base.
        ev_dir = FX / f"lora_evalverse_{family}"
        base2 = cls.from_pretrained(FX / family, dtype=torch.float32, attn_implementation="eager").eval()
        ev = PeftModel.from_pretrained(base2, ev_dir).eval()
        n_ev = sum(1 for n, _ in ev.named_modules() if n.endswith(".lora_A"))
        with torch.no_grad():
            ev_lg = ev(**kw).logits.float().contiguous()
        ev_change = float((ev_lg - case["logits"]).abs().max())
        assert ev_change > 0.1, f"{family}: the evalverse adapter barely changes the logits ({ev_change})"
        meta = {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                "generator": "scripts/make_family_lora_fixtures.py", "target_modules": targets,
                "adapted_modules": len(names), "max_abs_logit_change_from_base": change,
                "evalverse_adapter_modules_in_peft": n_ev, "max_abs_logit_change_from_evalverse_adapter": ev_change}
        save_file({"peft_adapter_logits": lg, "evalverse_adapter_logits": ev_lg},
                  FX / f"lora_{family}_logits.safetensors", metadata={"fixture": json.dumps(meta, sort_keys=True)})
        print(family, json.dumps(meta), names[:3], "...")


if __name__ == "__main__":
    main()
