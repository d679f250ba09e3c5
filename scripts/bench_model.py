#!/usr/bin/env python3
"""CPU throughput of the transformers Qwen2.5-VL reference on a random "small" checkpoint, to
compare with evalverse's burn implementation (crates/evalverse-model/examples/bench_model.rs) on
the SAME config and weights.

    /work/venv/bin/python scripts/bench_model.py make DIR     # random f32 checkpoint -> DIR
    /work/venv/bin/python scripts/bench_model.py run DIR      # timings, JSON on stdout
    /work/venv/bin/python scripts/bench_model.py profile DIR  # per-op times of decoder layer 0

`run` options for other checkpoints and devices (scripts/bench_gpu.sh): --device cuda (every
timed call ends with torch.cuda.synchronize()), --dtype bf16, --grid T,H,W and --text N (the
prompt's shape). The special-token ids are read from the checkpoint's config.

Model ("small"): text vocab 32000, hidden 512, 8 layers, 8 heads / 2 KV heads (head_dim 64),
intermediate 1408, mrope_section [8, 12, 12]; vision depth 4, hidden 256, 4 heads, intermediate
640, out_hidden 512, window 112, full attention in blocks [1, 3], patch 14, merge 2, temporal 2.

Prompt (batch 1, 322 tokens): 32 text tokens, vision_start, 256 video tokens (grid [4, 16, 16] =
1024 patch rows of 1176 values, second_per_grid 1.0), vision_end, 32 text tokens. Token ids and
pixels are deterministic (seed 0); the Rust side uses the same lengths, not the same values.

Measurements (torch threads 2 by default, torch.no_grad, model.eval), for attn_implementation
"sdpa" and "eager":
  prefill      one full forward (vision tower + decoder + logits at every position, as
               evalverse's `model.forward`); one warm-up, then the median of REPS.
  generate_64  model.generate(max_new_tokens=64, min_new_tokens=64, do_sample=False); median of REPS.
  generate_1   the same with max_new_tokens=1 (= generate's own prefill + setup); median of REPS.
  decode       64 tokens = 1 from the prefill logits + 63 decode steps (one forward each), so
               decode_tok_s = 63 / (generate_64 - generate_1). Also reported: the brief's variant
               64 / (generate_64 - prefill) (`decode_tok_s_minus_forward`); note HF's generate
               computes logits only at the last prompt position, so that variant subtracts more
               than generate's prefill costs and flatters the decode rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

TEXT_BEFORE = TEXT_AFTER = 32
GRID = (4, 16, 16)
NEW_TOKENS = 64
IMAGE_ID, VIDEO_ID, VSTART_ID, VEND_ID, EOS_ID, PAD_ID, BOS_ID = (
    31990,
    31991,
    31992,
    31993,
    31994,
    31995,
    31996,
)


def make(out: Path) -> None:
    from transformers import Qwen2_5_VLForConditionalGeneration

    from bench_gpu import config  # scripts/ is on sys.path when this file runs

    torch.manual_seed(0)
    cfg = config("small")
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.float32).eval()
    model.save_pretrained(out, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"made": str(out), "parameters": n}))


def inputs(cfg, grid=GRID, text_len: int = TEXT_BEFORE) -> dict:
    g = torch.Generator().manual_seed(0)
    t, h, w = grid
    merge = cfg.vision_config.spatial_merge_size
    n_video = t * (h // merge) * (w // merge)
    text = lambda n: torch.randint(0, 31000, (n,), generator=g)  # noqa: E731
    ids = torch.cat(
        [
            text(text_len),
            torch.tensor([cfg.vision_start_token_id]),
            torch.full((n_video,), cfg.video_token_id),
            torch.tensor([cfg.vision_end_token_id]),
            text(text_len),
        ]
    ).unsqueeze(0)
    vc = cfg.vision_config
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    pixels = torch.rand((t * h * w, patch_dim), generator=g) * 2 - 1
    return dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values_videos=pixels,
        video_grid_thw=torch.tensor([list(grid)]),
        second_per_grid_ts=torch.tensor([1.0]),
    )


def timed(fn, reps: int) -> tuple[float, list[float]]:
    def call():
        fn()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()

    call()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def bench(
    directory: Path,
    attn: str,
    reps: int,
    stages: bool,
    device: str = "cpu",
    dtype: str = "f32",
    grid=GRID,
    text_len: int = TEXT_BEFORE,
) -> dict:
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = (
        Qwen2_5_VLForConditionalGeneration.from_pretrained(
            directory,
            dtype=torch.bfloat16 if dtype == "bf16" else torch.float32,
            attn_implementation=attn,
        )
        .to(device)
        .eval()
    )
    inp = {k: v.to(device) for k, v in inputs(model.config, grid, text_len).items()}
    pad_id = model.config.get_text_config().pad_token_id
    eos_id = model.config.get_text_config().eos_token_id
    pad_id = PAD_ID if pad_id is None else pad_id
    eos_id = EOS_ID if eos_id is None else eos_id
    prompt_len = inp["input_ids"].shape[1]

    def gen(n):
        return lambda: model.generate(
            **inp,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        )

    with torch.no_grad():
        prefill, prefill_all = timed(lambda: model(**inp, use_cache=False), reps)
        g64, g64_all = timed(gen(NEW_TOKENS), reps)
        g1, g1_all = timed(gen(1), reps)
        out = gen(NEW_TOKENS)()
        assert out.shape[1] == prompt_len + NEW_TOKENS, out.shape
        res = {
            "impl": f"transformers-{attn}",
            "device": device,
            "dtype": dtype,
            "prompt_tokens": prompt_len,
            "new_tokens": NEW_TOKENS,
            "prefill_s": prefill,
            "prefill_all_s": prefill_all,
            "prefill_tok_s": prompt_len / prefill,
            "generate_64_s": g64,
            "generate_64_all_s": g64_all,
            "generate_1_s": g1,
            "generate_1_all_s": g1_all,
            "prefill_tok_s_best": prompt_len / min(prefill_all),
            "decode_tok_s_best": (NEW_TOKENS - 1) / (min(g64_all) - min(g1_all)),
            "decode_s_per_token": (g64 - g1) / (NEW_TOKENS - 1),
            "decode_tok_s": (NEW_TOKENS - 1) / (g64 - g1),
            "decode_tok_s_minus_forward": NEW_TOKENS / (g64 - prefill),
            "first_generated": out[0, prompt_len : prompt_len + 8].tolist(),
        }
        if stages:
            res["stages"] = stage_times(model, inp, reps)
    return res


def stage_times(model, inp: dict, reps: int) -> dict:
    """Median times of the parts of a prefill: vision tower, decoder, lm_head; and one decode step."""
    vis = model.model.visual
    px, grid = inp["pixel_values_videos"], inp["video_grid_thw"]
    t_vis, _ = timed(lambda: vis(px, grid_thw=grid), reps)
    out = model(**inp, use_cache=True, output_hidden_states=True)
    lm = model.model.language_model
    emb = out.hidden_states[0]
    pos, _ = model.model.get_rope_index(
        inp["input_ids"], None, grid, inp["second_per_grid_ts"], inp["attention_mask"]
    )
    t_dec, _ = timed(lambda: lm(inputs_embeds=emb, position_ids=pos, use_cache=False), reps)
    last = out.hidden_states[-1]
    t_head, _ = timed(lambda: model.lm_head(last), reps)
    return {"vision_s": t_vis, "decoder_s": t_dec, "lm_head_all_positions_s": t_head}


def layer_ops(directory: Path, reps: int) -> dict:
    """Per-op median times (ms) of decoder layer 0, as transformers runs them, for the prefill
    (len 322) and one decode step (len 1 after a 354-token cache): the counterpart of the Rust
    example's --layer."""
    import torch.nn.functional as F
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        apply_multimodal_rotary_pos_emb,
        repeat_kv,
    )

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    lm = model.model.language_model
    layer = lm.layers[0]
    a, m = layer.self_attn, layer.mlp
    nh, nkv, hd = a.config.num_attention_heads, a.config.num_key_value_heads, a.head_dim
    section = a.config.rope_scaling["mrope_section"]
    g = torch.Generator().manual_seed(5)
    out = {}

    def ms(f, n):
        t, _ = timed(f, n)
        return t * 1e3

    with torch.no_grad():
        for name, l, past in [("prefill_322", 322, 0), ("decode_past_354", 1, 354)]:
            total = past + l
            n = max(reps, 50) if l == 1 else max(reps, 10)
            x = torch.rand((1, l, lm.config.hidden_size), generator=g) * 2 - 1
            pk = torch.rand((1, nkv, past, hd), generator=g) * 2 - 1
            pos = torch.arange(past, total).view(1, 1, -1).expand(3, 1, -1)
            t = {}
            t["build mrope cos/sin"] = ms(lambda: lm.rotary_emb(x, pos), n)
            cos, sin = lm.rotary_emb(x, pos)
            t["input_layernorm (RmsNorm)"] = ms(lambda: layer.input_layernorm(x), n)
            t["q_proj"] = ms(lambda: a.q_proj(x), n)
            t["k_proj"] = ms(lambda: a.k_proj(x), n)
            t["v_proj"] = ms(lambda: a.v_proj(x), n)
            q = a.q_proj(x).view(1, l, nh, hd).transpose(1, 2)
            k = a.k_proj(x).view(1, l, nkv, hd).transpose(1, 2)
            v = a.v_proj(x).view(1, l, nkv, hd).transpose(1, 2)
            t["apply_rotary q and k"] = ms(
                lambda: apply_multimodal_rotary_pos_emb(q, k, cos, sin, section), n
            )
            q, k = apply_multimodal_rotary_pos_emb(q, k, cos, sin, section)
            if past:
                t["kv cache cat (k and v)"] = ms(
                    lambda: (torch.cat([pk, k], 2), torch.cat([pk, v], 2)), n
                )
                k, v = torch.cat([pk, k], 2), torch.cat([pk, v], 2)
            t["repeat_kv k and v"] = ms(lambda: (repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)), n)
            kr, vr = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)
            mask = torch.full((l, total), float("-inf")).triu(past + 1).view(1, 1, l, total)

            def eager():
                s_ = torch.matmul(q, kr.transpose(2, 3)) * hd**-0.5 + mask
                return torch.matmul(torch.softmax(s_, -1, dtype=torch.float32), vr)

            t["eager attention (matmul+mask+softmax+matmul)"] = ms(eager, n)
            t["sdpa attention (is_causal for prefill)"] = ms(
                lambda: F.scaled_dot_product_attention(q, kr, vr, is_causal=past == 0 and l > 1),
                n,
            )
            o = eager().transpose(1, 2).reshape(1, l, nh * hd)
            t["o_proj"] = ms(lambda: a.o_proj(o), n)
            t["post_attention_layernorm"] = ms(lambda: layer.post_attention_layernorm(x), n)
            t["gate_proj"] = ms(lambda: m.gate_proj(x), n)
            t["up_proj"] = ms(lambda: m.up_proj(x), n)
            gg, uu = m.gate_proj(x), m.up_proj(x)
            t["silu(gate) * up"] = ms(lambda: m.act_fn(gg) * uu, n)
            t["down_proj"] = ms(lambda: m.down_proj(m.act_fn(gg) * uu), n)
            t["WHOLE mlp"] = ms(lambda: m(x), n)
            if past:
                from transformers.cache_utils import DynamicCache

                def step():
                    c = DynamicCache()
                    c.update(pk, pk, 0)
                    return layer(
                        x,
                        attention_mask=None,
                        position_ids=pos,
                        past_key_values=c,
                        use_cache=True,
                        position_embeddings=(cos, sin),
                        cache_position=torch.arange(past, total),
                    )

                t["WHOLE layer (decode step, sdpa, incl. cache update)"] = ms(step, n)
            else:
                t["WHOLE layer (sdpa, causal)"] = ms(
                    lambda: layer(
                        x, attention_mask=None, position_ids=pos, position_embeddings=(cos, sin)
                    ),
                    n,
                )
            xl = x[:, -1:]
            t["lm_head last position"] = ms(lambda: model.lm_head(xl), n)
            out[name] = t
    return {"unit": "ms, median", "layer0": out}


def matmul_ops(reps: int) -> dict:
    """torch F.linear throughput (GFLOP/s) on the shapes the Rust example's --ops measures."""
    import torch.nn.functional as F

    shapes = [
        ("prefill q/o_proj 322x512x512", 322, 512, 512),
        ("prefill k/v_proj 322x512x128", 322, 512, 128),
        ("prefill gate/up 322x512x1408", 322, 512, 1408),
        ("prefill down 322x1408x512", 322, 1408, 512),
        ("prefill lm_head 322x512x32000", 322, 512, 32000),
        ("vision qkv 1024x256x768", 1024, 256, 768),
        ("vision mlp 1024x256x640", 1024, 256, 640),
        ("decode gate/up 1x512x1408", 1, 512, 1408),
        ("decode lm_head 1x512x32000", 1, 512, 32000),
    ]
    res = {}
    with torch.no_grad():
        for name, m, k, n in shapes:
            x, w = torch.rand(1, m, k), torch.rand(n, k)
            t, _ = timed(lambda: F.linear(x, w), max(reps, 20 if m == 1 else 5))
            res[f"linear {name}"] = {"s": t, "gflops": 2 * m * k * n / t / 1e9}
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["make", "run", "profile"])
    p.add_argument("dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--attn", nargs="+", default=["sdpa", "eager"])
    p.add_argument("--stages", action="store_true", help="also time vision / decoder / lm_head")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--grid", default=",".join(map(str, GRID)), help="T,H,W of the video")
    p.add_argument("--text", type=int, default=TEXT_BEFORE, help="text tokens before and after")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.cmd == "make":
        make(a.dir)
        return
    if a.cmd == "profile":
        print(json.dumps({"layer": layer_ops(a.dir, a.reps), "ops": matmul_ops(a.reps)}))
        return
    grid = tuple(int(x) for x in a.grid.split(","))
    results = [
        bench(a.dir, attn, a.reps, a.stages, a.device, a.dtype, grid, a.text) for attn in a.attn
    ]
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "reps": a.reps,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
