#!/usr/bin/env python3
"""The Python half of scripts/bench_gpu.sh: the random checkpoint, the FLOP count and the table.

    python scripts/bench_gpu.py make OUT [--shape 7b|tiny] [--device cuda|cpu] [--layers N] [--vision-depth N]
    python scripts/bench_gpu.py table WORK [--peak-tflops X]
    python scripts/bench_gpu.py profile WORK [--cubecl-log LOG] [--top N]

make: a random Qwen2.5-VL checkpoint with transformers, in bf16, saved sharded (4 GB shards and
model.safetensors.index.json, as on the Hub). "7b" is Qwen2.5-VL-7B-Instruct's shape (LM hidden
3584, 28 layers, 28 / 4 heads, intermediate 18944, vocab 152064, untied; ViT 1280 x 32, 16
heads, intermediate 3420, full attention in blocks 7, 15, 23, 31; 8.29B parameters); "tiny" is a
4-layer model for trying the script on a CPU. The real special-token ids (151643-151656) either
way. Initialised on `--device` (8B parameters take seconds on a GPU, minutes on a CPU).
`--layers` / `--vision-depth` keep the shape's widths with fewer blocks (a CPU-sized slice of
the 7B model, for activation memory per layer).

table: reads WORK/{torch,evalverse}_{train,generate}[_ckpt].json and WORK/*.gpu_mem (the GPU's
used memory above its idle baseline, sampled every 200 ms by bench_gpu.sh; a CPU run shows the
process's peak RSS instead) and prints, for both implementations: step time, tokens/s, peak
memory, MFU and the forward / backward / optimizer split (where the time goes) for the LoRA SFT
step; prefill and decode tokens/s for judging; and the ratios
evalverse / PyTorch.

profile (bench_gpu.sh PROFILE=1): one LoRA SFT step of each side, device time by kernel family
(matmul, attention, fused element-wise, reduce, copy / layout, ...) and the largest kernels:
PyTorch's from WORK/torch_profile.json (bench_sft_step.py --profile), evalverse's from CubeCL's
profiling log (written to WORK/evalverse_profile.json in the same form).

MFU = model FLOPs of one step / step time / peak bf16 FLOP/s of the GPU (dense: 989.4 TFLOP/s on
H100 SXM and H200; `--peak-tflops` for others). The same FLOP count for both sides (`flops`
below, from the config and the batch): the frozen vision tower forward; the language model
forward and its backward for the activations (LoRA trains no base weight, so no weight-gradient
products: 2 x the forward's matmul FLOPs; attention backward 2.5 x its forward, as
FlashAttention counts it; causal attention counts half the score matrix); lm_head at the label
positions only, forward and backward. LoRA's own products (rank 8) and element-wise work are
left out. PyTorch computes the logits at every position (transformers does when labels are
given): that extra work is not counted as useful FLOPs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

QWEN_IDS = dict(
    image_token_id=151655,
    video_token_id=151656,
    vision_start_token_id=151652,
    vision_end_token_id=151653,
    bos_token_id=151643,
    eos_token_id=151645,
    pad_token_id=151643,
)

# "small" is scripts/bench_model.py's CPU checkpoint (its own 32k vocabulary and ids).
SHAPES = {
    "7b": dict(
        text=dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            max_position_embeddings=128000,
        ),
        vision=dict(
            depth=32,
            hidden_size=1280,
            num_heads=16,
            intermediate_size=3420,
            out_hidden_size=3584,
            fullatt_block_indexes=[7, 15, 23, 31],
        ),
        mrope=[16, 24, 24],
    ),
    "tiny": dict(
        text=dict(
            vocab_size=151936,
            hidden_size=256,
            intermediate_size=704,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=32768,
        ),
        vision=dict(
            depth=2,
            hidden_size=128,
            num_heads=2,
            intermediate_size=256,
            out_hidden_size=256,
            fullatt_block_indexes=[1],
        ),
        mrope=[8, 12, 12],
    ),
    "small": dict(
        text=dict(
            vocab_size=32000,
            hidden_size=512,
            intermediate_size=1408,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=2,
            max_position_embeddings=4096,
        ),
        vision=dict(
            depth=4,
            hidden_size=256,
            num_heads=4,
            intermediate_size=640,
            out_hidden_size=512,
            fullatt_block_indexes=[1, 3],
        ),
        mrope=[8, 12, 12],
        ids=dict(
            image_token_id=31990,
            video_token_id=31991,
            vision_start_token_id=31992,
            vision_end_token_id=31993,
            eos_token_id=31994,
            pad_token_id=31995,
            bos_token_id=31996,
        ),
    ),
}


def config(shape: str, **extra):
    """The Qwen2_5_VLConfig of a shape: Qwen2.5-VL's fixed choices (SwiGLU, RMSNorm 1e-6, rope
    theta 1e6, M-RoPE, 112-pixel windows, patch 14, merge 2, temporal patch 2), untied head."""
    from transformers import Qwen2_5_VLConfig

    s = SHAPES[shape]
    ids = s.get("ids", QWEN_IDS)
    special = {k: v for k, v in ids.items() if not k.startswith(("bos", "eos", "pad"))}
    return Qwen2_5_VLConfig(
        text_config=dict(
            **s["text"],
            hidden_act="silu",
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_scaling={"type": "mrope", "mrope_section": s["mrope"]},
            tie_word_embeddings=False,
            bos_token_id=ids["bos_token_id"],
            eos_token_id=ids["eos_token_id"],
            pad_token_id=ids["pad_token_id"],
        ),
        vision_config=dict(
            **s["vision"],
            window_size=112,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
            tokens_per_second=2,
            hidden_act="silu",
        ),
        **special,
        tie_word_embeddings=False,
        **extra,
    )


def make(out: Path, shape: str, device: str, layers=None, vision_depth=None) -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = config(shape, torch_dtype="bfloat16")
    # A slice of the shape (same widths, fewer layers): activation memory per layer on a CPU.
    if layers is not None:
        cfg.text_config.num_hidden_layers = layers
        if getattr(cfg.text_config, "layer_types", None):  # transformers >= 4.56
            cfg.text_config.layer_types = cfg.text_config.layer_types[:layers]
    if vision_depth is not None:
        full = [i for i in cfg.vision_config.fullatt_block_indexes if i < vision_depth]
        cfg.vision_config.depth = vision_depth
        cfg.vision_config.fullatt_block_indexes = full or [vision_depth - 1]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="4GB")
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"made": str(out), "shape": shape, "layers": cfg.text_config.num_hidden_layers,
                      "vision_depth": cfg.vision_config.depth, "parameters": n}))


def flops(cfg: dict, batch: int, text_before: int, text_after: int, grid, labels: int) -> dict:
    """Model FLOPs of one LoRA SFT step (see the module docstring) and of its parts."""
    t = cfg.get("text_config", cfg)
    v = cfg["vision_config"]
    h, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    nh, nkv = t["num_attention_heads"], t["num_key_value_heads"]
    hd = h // nh
    vocab = t["vocab_size"]
    gt, gh, gw = grid
    merge = v.get("spatial_merge_size", 2)
    n_vid = gt * (gh // merge) * (gw // merge)
    seq = text_before + 2 + n_vid + text_after
    # Language model, per sequence: projections (q, o: h x h; k, v: h x kv*hd; MLP 3 x h x inter).
    proj = h * h * 2 + h * nkv * hd * 2 + 3 * h * inter
    lm_matmul = 2 * proj * seq * layers
    lm_attn = 2 * 2 * nh * hd * seq * seq / 2 * layers  # QK^T and PV, causal half
    head = 2 * h * vocab * labels
    # Vision tower, per sequence: patches gt*gh*gw; window attention (8x8 = 64-patch windows)
    # except the full-attention blocks (one temporal patch of gh*gw patches each).
    vh, vd, vi = v["hidden_size"], v["depth"], v["intermediate_size"]
    vheads = v["num_heads"]
    patches = gt * gh * gw
    patch_dim = v.get("in_channels", 3) * v.get("temporal_patch_size", 2) * v["patch_size"] ** 2
    win = (v.get("window_size", 112) // v["patch_size"]) ** 2
    full_blocks = len(v.get("fullatt_block_indexes", []))
    vis = 2 * patches * patch_dim * vh
    vis += 2 * patches * (vh * 3 * vh + vh * vh + 3 * vh * vi) * vd
    vis += 2 * 2 * vh * patches * (win * (vd - full_blocks) + gh * gw * full_blocks)
    merged = patches // (merge * merge)
    vis += 2 * merged * (4 * vh * 4 * vh + 4 * vh * v["out_hidden_size"])
    step = batch * (vis + 2 * lm_matmul + 3.5 * lm_attn + 2 * head)
    prefill = vis + lm_matmul + lm_attn + 2 * h * vocab  # logits at the last position
    return {
        "tokens_per_sequence": seq,
        "step_flops": step,
        "vision_forward_flops": batch * vis,
        "lm_forward_flops": batch * (lm_matmul + lm_attn),
        "prefill_flops": prefill,
        "decode_flops_per_token": 2 * proj * layers + 2 * h * vocab,
    }


def table(work: Path, peak_tflops: float | None) -> None:
    def load(name: str) -> dict | None:
        p = work / f"{name}.json"
        if not p.exists() or not p.read_text().strip():
            return None
        try:
            r = json.loads(p.read_text().strip().splitlines()[-1])
        except json.JSONDecodeError:
            return None
        return r["results"][0] if "results" in r else r  # bench_model.py wraps its runs

    def mem(name: str, r: dict) -> str:
        p = work / f"{name}.gpu_mem"
        vals = [int(x) for x in p.read_text().split() if x.lstrip("-").isdigit()] if p.exists() else []
        if vals:
            return f"{max(vals):,} GPU"
        if r.get("peak_rss_mb"):  # a CPU run: the process's resident peak
            return f"{r['peak_rss_mb']:,.0f} RSS"
        return "-"

    cfg = json.loads((work / "base" / "config.json").read_text())
    meta = json.loads((work / "batch.json").read_text())
    f = flops(cfg, meta["batch"], meta["text"], meta["text"], meta["grid"], meta["labels"])
    env = json.loads((work / "env.json").read_text()) if (work / "env.json").exists() else {}
    gpu = env.get("gpu", "")
    if peak_tflops is None and ("H100" in gpu or "H200" in gpu):
        peak_tflops = 989.4
    print(f"\ndevice: {gpu or 'unknown'} (driver {env.get('driver', '?')}); "
          f"versions: {env.get('versions', {})}; evalverse {env.get('evalverse_rev', '?')}")
    print(
        f"batch {meta['batch']} x {f['tokens_per_sequence']} tokens (grid {meta['grid']}, "
        f"{meta['text']} + {meta['text']} text tokens, loss on the last {meta['labels']}); "
        f"model FLOPs per step {f['step_flops'] / 1e12:.2f} TFLOP; peak "
        f"{peak_tflops or 'unknown'} TFLOP/s"
    )
    print(f"\n{'LoRA SFT step':34} {'step s':>8} {'tokens/s':>9} {'peak MB':>14} {'MFU':>6}"
          f" {'fwd / bwd / optim s':>22}")
    for v, vname in [("", ""), ("_ckpt", " + checkpointing")]:
        rows = {}
        for side, label in [("torch", "PyTorch + PEFT (sdpa)"), ("evalverse", "evalverse (burn)")]:
            name = f"{side}_train{v}"
            r = load(name)
            if r is None:
                if (work / f"{name}.log").exists():
                    print(f"{label + vname:34} (no result: see {name}.log)")
                continue
            mfu = f["step_flops"] / r["step_s"] / (peak_tflops * 1e12) if peak_tflops else None
            rows[side] = r
            # evalverse's optimizer phase is split in two (gradient accumulation, clip + update).
            optim = r["optim_s"] + r.get("grads_s", 0.0)
            phases = f"{r['forward_s']:.3f} / {r['backward_s']:.3f} / {optim:.3f}"
            print(
                f"{label + vname:34} {r['step_s']:8.3f} {r['tok_s']:9.0f} {mem(name, r):>14} "
                f"{(f'{mfu:.1%}' if mfu else '-'):>6} {phases:>22}"
            )
        if len(rows) == 2:
            t, e = rows["torch"], rows["evalverse"]
            print(f"{'  ratio evalverse / PyTorch':34} tokens/s {e['tok_s'] / t['tok_s']:.2f}x; "
                  f"step-0 loss {e['losses'][0]:.5f} vs {t['losses'][0]:.5f}")
    print("  (evalverse's forward phase includes the head's gradient: its loss is fused with the head)")
    print(f"\n{'judge (generation, batch 1)':34} {'prefill tok/s':>14} {'decode tok/s':>13} {'prompt':>7}")
    gens = {}
    for side, label in [("torch", "transformers (sdpa)"), ("evalverse", "evalverse (burn)")]:
        r = load(f"{side}_generate")
        if r is None:
            print(f"{label:34} (no result: see {side}_generate.log)")
            continue
        gens[side] = r
        print(f"{label:34} {r['prefill_tok_s']:14.0f} {r['decode_tok_s']:13.1f} {r['prompt_tokens']:7}")
    if len(gens) == 2:
        t, e = gens["torch"], gens["evalverse"]
        print(
            f"{'  ratio evalverse / transformers':34} prefill {e['prefill_tok_s'] / t['prefill_tok_s']:.2f}x, "
            f"decode {e['decode_tok_s'] / t['decode_tok_s']:.2f}x"
        )


UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def seconds(text: str) -> float | None:
    """A Rust Duration's Debug form ("12.5µs", "3.2ms", "1.04s") in seconds."""
    for unit in ("ns", "µs", "us", "ms", "s"):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * UNITS[unit]
            except ValueError:
                return None
    return None


def cubecl_profile(log: Path) -> dict | None:
    """The last per-kernel summary in a CubeCL profiling log (CUBECL_DEBUG_OPTION=profile): the
    kernels run since the previous device sync. bench_sft_step syncs once per step, after the
    backward pass, so with one warm-up step the last summary is the timed step's forward and
    backward (the previous step's optimizer uploads included, a few small copies). Rows are
    "| NAME | DURATION | COUNT | RATIO |"; NAME itself holds " | " (the kernel's type parts)."""
    if not log.exists():
        return None
    tables, cur = [], None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("| Name ") and "Duration" in line:
            cur = []
            continue
        if cur is None or not line.startswith("| "):
            continue
        parts = line.strip().strip("|").split(" | ")
        if len(parts) < 4:
            continue
        name = " | ".join(p.strip() for p in parts[:-3])
        dur, count = seconds(parts[-3].strip()), parts[-2].strip()
        if name == "Total":
            tables.append(cur)
            cur = None
        elif dur is not None and count.isdigit():
            cur.append({"name": name, "count": int(count), "total_s": dur})
    if not tables:
        return None
    ops = sorted(tables[-1], key=lambda o: -o["total_s"])
    return {"impl": "evalverse", "summaries": len(tables),
            "total_s": sum(o["total_s"] for o in ops), "ops": ops}


FAMILIES = [  # first match wins, on the lower-cased name (CubeCL kernel types, CUDA kernel names)
    ("matmul", "matmul"), ("gemm", "matmul"), ("nvjet", "matmul"), ("xmma", "matmul"),
    ("aten::mm", "matmul"), ("addmm", "matmul"), ("bmm", "matmul"), ("aten::linear", "matmul"),
    ("cutlass", "matmul"), ("flash", "attention"), ("fmha", "attention"),
    ("attention", "attention"), ("softmax", "softmax"), ("norm", "norm"), ("reduce", "reduce"),
    ("fuse", "fused element-wise"), ("elementwise", "element-wise"), ("binop", "element-wise"),
    ("copy", "copy / layout"), ("memcpy", "copy / layout"), ("slice", "copy / layout"),
    ("cat", "copy / layout"), ("select", "gather / scatter"), ("gather", "gather / scatter"),
    ("scatter", "gather / scatter"), ("index", "gather / scatter"),
]


def kernel_family(name: str) -> str:
    """A short group for a kernel's name: what a reader sums to see where the time goes."""
    n = name.lower()
    return next((fam for key, fam in FAMILIES if key in n), "other")


def short_name(name: str) -> str:
    """CubeCL's kernel names list the kernel's type parameters (" | "-separated): keep the kernel,
    its argument kind and, for matmuls, the algorithm families (which blueprint autotune chose),
    dropping the runtime and the size / scalar markers. Other names are cut at 110 characters."""
    parts = [x.strip() for x in name.split(" | ")]
    if len(parts) > 1:
        keep = [parts[0]] + [x for x in parts[1:] if x.endswith(("Args", "MatmulFamily", "Op"))]
        name = " ".join(keep)
    return name if len(name) <= 110 else name[:107] + "..."


def profile(work: Path, cubecl_log: Path, top: int) -> None:
    """WORK/evalverse_profile.json from the CubeCL log; then, for both sides, time by kernel family
    and the TOP largest kernels / ops of one LoRA SFT step."""
    ev = cubecl_profile(cubecl_log)
    if ev is not None:
        (work / "evalverse_profile.json").write_text(json.dumps(ev) + "\n")
    sides = [("PyTorch + PEFT (torch.profiler)", work / "torch_profile.json"),
             ("evalverse (CubeCL profiler, per kernel)", work / "evalverse_profile.json")]
    for label, path in sides:
        if not path.exists():
            print(f"\n{label}: no profile ({path.name} missing; on a CPU run evalverse has none)")
            continue
        p = json.loads(path.read_text())
        if p.get("impl") == "torch":
            label += ", per kernel" if p.get("device") == "cuda" else ", self CPU time per op"
        total = p["total_s"] or 1e-30
        print(f"\n{label}: {p['total_s'] * 1e3:.1f} ms summed over one step")
        for fam, (t, c) in group_by(p["ops"], kernel_family):
            print(f"  {fam:24} {t * 1e3:10.2f} ms {t / total:6.1%} {c:7} launches")
        print(f"  top {top}:")
        for name, (t, c) in group_by(p["ops"], short_name)[:top]:
            print(f"  {t * 1e3:10.2f} ms {t / total:6.1%} {c:6}x  {name}")


def group_by(ops: list[dict], key) -> list[tuple[str, list]]:
    """[(key(name), [total_s, count])], summed per key, largest first."""
    out: dict[str, list] = {}
    for o in ops:
        g = out.setdefault(key(o["name"]), [0.0, 0])
        g[0] += o["total_s"]
        g[1] += o["count"]
    return sorted(out.items(), key=lambda kv: -kv[1][0])


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out", type=Path)
    m.add_argument("--shape", choices=["7b", "tiny"], default="7b")
    m.add_argument("--device", default="cuda")
    m.add_argument("--layers", type=int, help="language-model layers (default: the shape's)")
    m.add_argument("--vision-depth", type=int, help="vision blocks (default: the shape's)")
    t = sub.add_parser("table")
    t.add_argument("work", type=Path)
    t.add_argument("--peak-tflops", type=float)
    pr = sub.add_parser("profile")
    pr.add_argument("work", type=Path)
    pr.add_argument("--cubecl-log", type=Path, default=Path("/tmp/evalverse_cubecl.log"))
    pr.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.out, a.shape, a.device, a.layers, a.vision_depth)
    elif a.cmd == "profile":
        profile(a.work, a.cubecl_log, a.top)
    else:
        table(a.work, a.peak_tflops)


if __name__ == "__main__":
    main()
