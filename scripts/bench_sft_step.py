#!/usr/bin/env python3
"""One LoRA SFT optimizer step with PyTorch + transformers + PEFT: the reference side of
crates/evalverse-train/examples/bench_sft_step.rs (see scripts/bench_sft_step.sh for the CPU
table, scripts/bench_gpu.sh for the GPU one).

    /work/venv/bin/python scripts/bench_sft_step.py batch BASE OUT.safetensors \
        [--grid T,H,W] [--text N] [--labels N] [--batch N]           # make the batch
    /work/venv/bin/python scripts/bench_sft_step.py run BASE BATCH [--attn sdpa|eager] \
        [--device cpu|cuda] [--dtype f32|bf16] [--checkpointing] [--profile OUT.json] [--saved]

Batch (seed 0; the Rust side reads the same file; defaults in brackets): BATCH [2] sequences,
no padding: TEXT [100] text tokens, vision_start, the video tokens of grid GRID [2, 8, 8]
(T*H*W patch rows of 1176 values in [-1, 1)), vision_end, TEXT more. One video per sequence,
second_per_grid 1.0. Loss on the last LABELS [64] tokens of each sequence (labels -100
elsewhere). 16 frames at 448x448 with a 256-token target: --grid 8,32,32 --text 300 --labels 256.
The shape is also written beside the batch (OUT with the suffix .json).

--dtype bf16 loads the base weights in bf16; PEFT keeps the LoRA weights in f32
(autocast_adapter_dtype). --checkpointing: transformers' gradient_checkpointing_enable()
(non-reentrant) with the inputs' gradients enabled, as PEFT needs. On cuda every phase ends with
torch.cuda.synchronize(), and the JSON adds the peak allocated / reserved memory
(torch.cuda.max_memory_allocated / max_memory_reserved, MB) over the timed steps.

Step: model.train(); loss = model(**batch, labels=labels).loss (logits at every position, as HF
computes them); loss.backward(); clip_grad_norm_(1.0) (evalverse's default grad_clip);
AdamW(lr=1e-4) step; zero_grad. LoRA r=8, alpha=16, dropout 0 on the seven language-model
projections. Two warm-up steps, then the median of N (default 10). One JSON line on stdout.
--profile: one more step after those under torch.profiler, its per-op self times (GPU on cuda,
else CPU) written to OUT.json (scripts/bench_gpu.sh PROFILE=1 reads it). The JSON's memory:
peak_rss_mb (the process's), loaded_rss_mb (resident after loading; the weights are mapped
lazily), steps_peak_rss_mb (the steps' own peak: VmHWM restarted after loading, Linux) and, with
--saved, saved_for_backward_mb: what autograd keeps over one forward (distinct storages packed by
saved_tensors_hooks, parameters left out), the activation memory without the allocator.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

TARGETS = (
    r"^model\.language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))$"
)


def make_batch(base: Path, out: Path, grid, text: int, label_tokens: int, batch: int) -> None:
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
    t, h, w = grid
    n_video = t * (h // merge) * (w // merge)
    rows = []
    for _ in range(batch):
        rows.append(
            torch.cat(
                [
                    torch.randint(0, hi, (text,), generator=g),
                    torch.tensor([cfg["vision_start_token_id"]]),
                    torch.full((n_video,), cfg["video_token_id"]),
                    torch.tensor([cfg["vision_end_token_id"]]),
                    torch.randint(0, hi, (text,), generator=g),
                ]
            )
        )
    ids = torch.stack(rows).to(torch.int64)
    mask = torch.ones_like(ids)
    labels_mask = torch.zeros_like(ids)
    labels_mask[:, -label_tokens:] = 1
    pixels = torch.rand((batch * t * h * w, patch_dim), generator=g) * 2 - 1
    save_file(
        {
            "input_ids": ids,
            "attention_mask": mask,
            "labels_mask": labels_mask,
            "pixel_values": pixels.contiguous(),
            "video_grid_thw": torch.tensor([list(grid)] * batch, dtype=torch.int64),
            "second_per_grid_ts": torch.ones(batch, dtype=torch.float32),
        },
        str(out),
    )
    shape = {"batch": batch, "grid": list(grid), "text": text, "labels": label_tokens}
    out.with_suffix(".json").write_text(json.dumps(shape) + "\n")
    print(json.dumps({"batch": str(out), "ids": list(ids.shape), "pixels": list(pixels.shape)}))


def run(
    base: Path,
    batch: Path,
    attn: str,
    steps: int,
    warmup: int,
    device: str = "cpu",
    dtype: str = "f32",
    checkpointing: bool = False,
    profile: Path | None = None,
    saved: bool = False,
) -> dict:
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    b = {k: t.to(device) for k, t in load_file(str(batch)).items()}
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        base,
        dtype=torch.bfloat16 if dtype == "bf16" else torch.float32,
        attn_implementation=attn,
    ).to(device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
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
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def step() -> tuple[float, float, float, float]:
        t0 = time.perf_counter()
        loss = model(**inp).loss
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        return loss.item(), t1 - t0, t2 - t1, t3 - t2

    losses, fwd, bwd, opt_t, total = [], [], [], [], []
    loaded_rss = status_mb("VmRSS:")
    peak_reset = reset_peak_rss()
    for i in range(warmup + steps):
        if cuda and i == warmup:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        loss, f, bw, o = step()
        dt = time.perf_counter() - t0
        losses.append(loss)
        if i >= warmup:
            total.append(dt)
            fwd.append(f)
            bwd.append(bw)
            opt_t.append(o)
    if profile is not None:
        write_profile(step, profile, cuda)
    med = statistics.median(total)
    extra = {}
    if saved:
        extra["saved_for_backward_mb"] = saved_for_backward_mb(model, inp)
    if cuda:
        extra = {
            "peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
            "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
            "gpu": torch.cuda.get_device_name(),
        }
    return {
        "impl": f"torch-{attn}",
        "device": device,
        "dtype": dtype,
        "checkpointing": checkpointing,
        **extra,
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
        # The process's peak resident memory (ru_maxrss, KiB on Linux): model, batch and all.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # Resident after loading, and the steps' own peak (VmHWM restarted after loading).
        "loaded_rss_mb": loaded_rss,
        "steps_peak_rss_mb": status_mb("VmHWM:") if peak_reset else None,
    }


def status_mb(key: str):
    """A line of /proc/self/status (VmHWM: peak resident, VmRSS: resident now) in MB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart VmHWM from the resident memory now, so the steps' peak is not the loading's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def saved_for_backward_mb(model, inp) -> float:
    """What autograd keeps for the backward pass over one forward (the loss included), MB: the
    distinct storages packed by saved_tensors_hooks, parameters and buffers left out (the
    activation memory of a step, without any allocator's caching or fragmentation)."""
    frozen = {t.untyped_storage().data_ptr() for t in model.parameters()}
    frozen |= {t.untyped_storage().data_ptr() for t in model.buffers()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in frozen:
            seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**inp).loss
    del loss
    return sum(seen.values()) / 2**20


def write_profile(step, path: Path, cuda: bool) -> None:
    """One more step under torch.profiler: time per kernel on cuda (the CUDA events: kernels and
    copies, each counted once; the aten ops that launch them are left out), per op's self CPU time
    otherwise; JSON {"device", "total_s", "ops": [{"name", "count", "total_s"}, ...]}, largest
    first, as scripts/bench_gpu.py profile reads it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        step()
    ops = []
    for e in prof.key_averages():
        if cuda:
            if e.device_type != DeviceType.CUDA:
                continue
            # torch >= 2.4 names it device time; older releases cuda time
            us = getattr(e, "device_time_total", None)
            us = getattr(e, "cuda_time_total", 0) if us is None else us
        else:
            us = e.self_cpu_time_total
        if us > 0:
            ops.append({"name": e.key, "count": e.count, "total_s": us / 1e6})
    ops.sort(key=lambda o: -o["total_s"])
    out = {"impl": "torch", "device": "cuda" if cuda else "cpu",
           "total_s": sum(o["total_s"] for o in ops), "ops": ops}
    path.write_text(json.dumps(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("batch")
    m.add_argument("base", type=Path)
    m.add_argument("out", type=Path)
    m.add_argument("--grid", default="2,8,8", help="T,H,W of the video's patch grid")
    m.add_argument("--text", type=int, default=100, help="text tokens before and after the video")
    m.add_argument("--labels", type=int, default=64, help="loss on the last N tokens")
    m.add_argument("--batch", type=int, default=2)
    r = sub.add_parser("run")
    r.add_argument("base", type=Path)
    r.add_argument("batch", type=Path)
    r.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--device", default="cpu")
    r.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    r.add_argument("--checkpointing", action="store_true")
    r.add_argument("--profile", type=Path, help="after the timed steps, profile one more: per-op JSON")
    r.add_argument("--saved", action="store_true",
                   help="add saved_for_backward_mb: what autograd keeps over one forward")
    a = ap.parse_args()
    if a.cmd == "batch":
        grid = tuple(int(x) for x in a.grid.split(","))
        if a.labels > a.text:
            ap.error("--labels must be at most --text (the loss is on the trailing text)")
        make_batch(a.base, a.out, grid, a.text, a.labels, a.batch)
    else:
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        res = run(
            a.base, a.batch, a.attn, a.steps, a.warmup, a.device, a.dtype, a.checkpointing,
            a.profile, a.saved,
        )
        print(json.dumps(res))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
