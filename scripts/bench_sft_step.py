#!/usr/bin/env python3
"""One LoRA SFT optimizer step on CPU with PyTorch + transformers + PEFT: the reference side of
crates/evalverse-train/examples/bench_sft_step.rs (see scripts/bench_sft_step.sh for the table).

    /work/venv/bin/python scripts/bench_sft_step.py batch BASE OUT.safetensors  # make the batch
    /work/venv/bin/python scripts/bench_sft_step.py run BASE BATCH [--attn sdpa|eager]

Batch (seed 0; the Rust side reads the same file): 2 sequences of 234 tokens, no padding:
100 text tokens, vision_start, 32 video tokens, vision_end, 100 text tokens. One video per
sequence, grid [2, 8, 8] (128 patch rows of 1176 values in [-1, 1)), second_per_grid 1.0. Loss on
the last 64 tokens of each sequence (labels -100 elsewhere).

Step: model.train(); loss = model(**batch, labels=labels).loss (logits at every position, as HF
computes them); loss.backward(); clip_grad_norm_(1.0) (evalverse's default grad_clip);
AdamW(lr=1e-4) step; zero_grad. LoRA r=8, alpha=16, dropout 0 on the seven language-model
projections. Two warm-up steps, then the median of N (default 10). One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

BATCH = 2
TEXT_BEFORE = TEXT_AFTER = 100
GRID = (2, 8, 8)
LABEL_TOKENS = 64
TARGETS = (
    r"^model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))$"
)


def make_batch(base: Path, out: Path) -> None:
    from safetensors.torch import save_file

    cfg = json.loads((base / "config.json").read_text())
    text_cfg = cfg.get("text_config", cfg)
    vocab = text_cfg.get("vocab_size", cfg.get("vocab_size"))
    vc = cfg["vision_config"]
    merge = vc.get("spatial_merge_size", 2)
    patch_dim = vc.get("in_channels", 3) * vc.get("temporal_patch_size", 2) * vc["patch_size"] ** 2
    special = {
        cfg[k]
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    }
    # Ordinary text tokens: below every special id (the tokenizer's specials sit at the top).
    hi = min(min(special), vocab)
    g = torch.Generator().manual_seed(0)
    t, h, w = GRID
    n_video = t * (h // merge) * (w // merge)
    rows = []
    for _ in range(BATCH):
        rows.append(
            torch.cat(
                [
                    torch.randint(0, hi, (TEXT_BEFORE,), generator=g),
                    torch.tensor([cfg["vision_start_token_id"]]),
                    torch.full((n_video,), cfg["video_token_id"]),
                    torch.tensor([cfg["vision_end_token_id"]]),
                    torch.randint(0, hi, (TEXT_AFTER,), generator=g),
                ]
            )
        )
    ids = torch.stack(rows).to(torch.int64)
    mask = torch.ones_like(ids)
    labels_mask = torch.zeros_like(ids)
    labels_mask[:, -LABEL_TOKENS:] = 1
    pixels = torch.rand((BATCH * t * h * w, patch_dim), generator=g) * 2 - 1
    save_file(
        {
            "input_ids": ids,
            "attention_mask": mask,
            "labels_mask": labels_mask,
            "pixel_values": pixels.contiguous(),
            "video_grid_thw": torch.tensor([list(GRID)] * BATCH, dtype=torch.int64),
            "second_per_grid_ts": torch.ones(BATCH, dtype=torch.float32),
        },
        str(out),
    )
    print(json.dumps({"batch": str(out), "ids": list(ids.shape), "pixels": list(pixels.shape)}))


def run(base: Path, batch: Path, attn: str, steps: int, warmup: int) -> dict:
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    b = load_file(str(batch))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        base, dtype=torch.float32, attn_implementation=attn
    )
    model = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS),
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4)
    labels = b["input_ids"].masked_fill(b["labels_mask"] == 0, -100)
    inp = dict(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        pixel_values_videos=b["pixel_values"],
        video_grid_thw=b["video_grid_thw"],
        second_per_grid_ts=b["second_per_grid_ts"],
        labels=labels,
        use_cache=False,
    )
    tokens = int(b["attention_mask"].sum())

    def step() -> tuple[float, float, float, float]:
        t0 = time.perf_counter()
        loss = model(**inp).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        return loss.item(), t1 - t0, t2 - t1, t3 - t2

    losses, fwd, bwd, opt_t, total = [], [], [], [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss, f, bw, o = step()
        dt = time.perf_counter() - t0
        losses.append(loss)
        if i >= warmup:
            total.append(dt)
            fwd.append(f)
            bwd.append(bw)
            opt_t.append(o)
    med = statistics.median(total)
    return {
        "impl": f"torch-{attn}",
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "label_tokens": int((labels[:, 1:] != -100).sum()),
        "lora_params": n_lora,
        "step_s": med,
        "step_all_s": total,
        "tok_s": tokens / med,
        "forward_s": statistics.median(fwd),
        "backward_s": statistics.median(bwd),
        "optim_s": statistics.median(opt_t),
        "losses": losses,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("batch")
    m.add_argument("base", type=Path)
    m.add_argument("out", type=Path)
    r = sub.add_parser("run")
    r.add_argument("base", type=Path)
    r.add_argument("batch", type=Path)
    r.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "batch":
        make_batch(a.base, a.out)
    else:
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        print(json.dumps(run(a.base, a.batch, a.attn, a.steps, a.warmup)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
