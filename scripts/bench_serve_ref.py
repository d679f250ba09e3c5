#!/usr/bin/env python3
"""The reference of scripts/bench_serve.sh: a Python reward server as RL loops run video judges
today (Flow-GRPO's reward-server: one model per process, requests handled one at a time by a
synchronous worker, batch 1), serving the same judge with PyTorch + transformers.

    /work/venv/bin/python scripts/bench_serve_ref.py --model MERGED --port 8091 [--max-new-tokens 48]

POST /score {"items": [{"video": PATH, "questions": {dimension: question}}]} ->
{"rewards": [...], "results": [{dimension: soft score}]}; GET /health.

Per item: the video path of scripts/bench_preprocess.py (PyAV decode, qwen-vl-utils frame
sampling, transformers Qwen2VLVideoProcessor, both with the judge's frame settings); per
dimension, what evalverse's judge does (crates/evalverse-judge/src/harness.rs): a prefill of the
prompt (the judge's reward head reads it), greedy generation of up to --max-new-tokens, then a
forward pass over prompt + answer + "Score: " for the distribution over the score tokens "1".."5"
and its expected value. The prompt is the judge's own: its system prompt and each dimension's
question (from `cargo run --example questions`), in the Qwen chat layout with the video first.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration, Qwen2VLVideoProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_preprocess import decode, sample  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--system", required=True, help="the judge's system prompt")
    ap.add_argument("--frames", required=True,
                    help="the judge's frame sampling, JSON (judge.json's spec.frames)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-videos", action="store_true",
                    help="keep each path's preprocessed video (as evalverse's decode cache does)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    spec = json.loads(args.frames)
    proc = Qwen2VLVideoProcessor(
        size={"shortest_edge": spec["min_pixels"], "longest_edge": spec["max_pixels"]},
        patch_size=model.config.vision_config.patch_size,
        temporal_patch_size=model.config.vision_config.temporal_patch_size,
        merge_size=model.config.vision_config.spatial_merge_size,
    )
    merge = model.config.vision_config.spatial_merge_size
    level_ids = [tok.convert_tokens_to_ids(str(v)) for v in range(1, 6)]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    lock = threading.Lock()

    def prompt_ids(question: str, n_video: int) -> list[int]:
        text = (
            f"<|im_start|>system\n{args.system}<|im_end|>\n<|im_start|>user\n<|vision_start|>"
            + "<|video_pad|>" * n_video
            + f"<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
        )
        return tok(text, add_special_tokens=False)["input_ids"]

    videos = {}

    def preprocess(path):
        if path in videos:
            return videos[path]
        rgb, fps = decode(Path(path), False)
        video, sample_fps = sample(rgb, fps, spec["fps"], spec["min_frames"], spec["max_frames"])
        v = proc(videos=[video], do_sample_frames=False, return_tensors="pt")
        if args.cache_videos:
            videos[path] = (v, sample_fps)
        return v, sample_fps

    @torch.no_grad()
    def judge(item):
        v, sample_fps = preprocess(item["video"])
        grid = v["video_grid_thw"]
        n_video = int(grid.prod()) // (merge * merge)
        vision = dict(
            pixel_values_videos=v["pixel_values_videos"],
            video_grid_thw=grid,
            second_per_grid_ts=torch.tensor([model.config.vision_config.temporal_patch_size / sample_fps]),
        )
        out = {}
        for dim, q in item["questions"].items():
            ids = torch.tensor([prompt_ids(q, n_video)])
            mask = torch.ones_like(ids)
            model(input_ids=ids, attention_mask=mask, **vision)  # the reward head's prefill
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                do_sample=False, eos_token_id=[im_end, tok.pad_token_id or im_end], **vision,
            )
            answer = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
            cut = answer.rfind("Score:")
            prefix = answer[:cut] + "Score: " if cut >= 0 else answer.rstrip() + "\nScore: "
            full = torch.cat([ids, torch.tensor([tok(prefix, add_special_tokens=False)["input_ids"]])], 1)
            logits = model(input_ids=full, attention_mask=torch.ones_like(full), **vision).logits[0, -1]
            p = torch.softmax(logits[level_ids].double(), 0)
            out[dim] = float((p * torch.arange(1, 6, dtype=torch.float64)).sum())
        return out

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply(200, {"status": "ok"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            results, rewards = [], []
            with lock:  # one model, one request at a time (a sync worker)
                for item in body["items"]:
                    r = judge(item)
                    results.append(r)
                    rewards.append(sum(r.values()) / len(r))
            self.reply(200, {"results": results, "rewards": rewards})

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"reference server on 127.0.0.1:{args.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
