#!/usr/bin/env python3
"""Generate Qwen3-VL video preprocessing parity fixtures for crates/evalverse-data/src/video.rs.

Sibling of scripts/make_preprocess_fixtures.py (Qwen2.5-VL); same clips and the same PyAV decode.
Here transformers does the sampling itself, as Qwen3VLProcessor drives it:

  1. decode every frame with PyAV to RGB24 (video_fps = float(stream.average_rate), as
     torchvision.io.read_video and make_preprocess_fixtures.py);
  2. transformers.Qwen3VLVideoProcessor on the whole uint8 clip (T, C, H, W) with
     video_metadata={"total_num_frames", "fps"} and do_sample_frames=True, return_metadata=True:
     its sample_frames gives num_frames = int(total / fps_v * fps), clamped to
     [min_frames, max_frames] and the clip (odd counts kept), indices
     np.linspace(0, total-1, n).round(); its smart_resize bounds the clip's T*H*W
     (factor 32 = patch 16 x merge 2); bicubic antialiased uint8 resize; fused rescale+normalise
     with mean = std = 0.5; an odd frame count repeats the last frame; patch rows in
     [gt, gh/2, gw/2, 2, 2] order of C*T*16*16 = 1536 values;
  3. Qwen3VLProcessor._calculate_timestamps(frames_indices, fps_v, merge_size=2): the timestamps
     its prompt writes before each temporal patch.

Two sizes per clip:
  * `size = {shortest_edge: 4096, longest_edge: 40960}` (40 * 32 * 32 pixels over the clip) at 2.5 fps:
    the 168x224 clips are downsampled (7 frames -> 64x64), so the kernel's antialias branch runs and
    the pixel tensors stay small; pixel values are stored.
  * the class defaults (shortest 128*32*32, longest 768*32*32): only the sampled indices, grid and
    timestamps are stored (the pixel tensors would be ~2.6 MB per clip).

Re-run after data/sample is regenerated: qwen3_preprocess.json records each clip's sha256 and the
Rust test refuses to compare against a different file.

Outputs (crates/evalverse-data/tests/fixtures/preprocess/):
  qwen3_<clip>.safetensors  pixel_values f32 [rows, 1536], grid_thw i64 [3]
  qwen3_preprocess.json     spec, clips, frame indices, timestamps, grids, library versions

Usage (from the repository root):
    /work/venv/bin/python scripts/make_qwen3_preprocess_fixtures.py
"""

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

import av
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import Qwen3VLVideoProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
OUT = ROOT / "crates" / "evalverse-data" / "tests" / "fixtures" / "preprocess"

CLIPS = ["pg002_borealis", "pg000_aurora", "pg001_echo"]

# 2.5 fps (the class default is 2) makes the sampled counts odd (int(36/12*2.5) = 7), so the
# repeated last frame and the odd timestamp padding are exercised; the class-default entries use 2.
FPS = 2.5
MIN_FRAMES = 4
MAX_FRAMES = 768
MIN_PIXELS = 4096
MAX_PIXELS = 40 * 32 * 32
PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


def decode_all(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        average = stream.average_rate
    return np.stack(frames), float(average), str(average)


def processor(size=None) -> Qwen3VLVideoProcessor:
    """The class defaults when size is None; else the small spec (FPS, MIN/MAX_FRAMES, size)."""
    kwargs = dict(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE)
    if size is not None:
        kwargs.update(size=size, fps=FPS, min_frames=MIN_FRAMES, max_frames=MAX_FRAMES)
    return Qwen3VLVideoProcessor(**kwargs)


def run(proc, video, total, video_fps):
    out = proc(
        videos=[video],
        video_metadata=[{"total_num_frames": total, "fps": video_fps}],
        do_sample_frames=True,
        return_metadata=True,
        return_tensors="pt",
    )
    meta = out["video_metadata"][0]
    indices = [int(i) for i in meta.frames_indices]
    # _calculate_timestamps does not read self; call it unbound.
    stamps = Qwen3VLProcessor._calculate_timestamps(None, list(indices), video_fps, MERGE_SIZE)
    grid = [int(v) for v in out["video_grid_thw"][0]]
    return out["pixel_values_videos"].to(torch.float32).contiguous(), grid, indices, [float(t) for t in stamps]


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    small = processor({"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
    default = processor()
    clips = []
    for name in CLIPS:
        rel = f"videos/{name}.mp4"
        rgb, video_fps, average_str = decode_all(SAMPLE / rel)
        total, height, width, _ = rgb.shape
        video = torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()  # T, C, H, W uint8
        pixels, grid, indices, stamps = run(small, video, total, video_fps)
        save_file(
            {"pixel_values": pixels, "grid_thw": torch.tensor(grid, dtype=torch.int64)},
            str(OUT / f"qwen3_{name}.safetensors"),
        )
        _, d_grid, d_indices, d_stamps = run(default, video, total, video_fps)
        clips.append(
            {
                "name": name,
                "video": rel,
                "sha256": hashlib.sha256((SAMPLE / rel).read_bytes()).hexdigest(),
                "width": width,
                "height": height,
                "total_frames": total,
                "video_fps": video_fps,
                "video_fps_rational": average_str,
                "frame_indices": indices,
                "timestamps": stamps,
                "grid_thw": grid,
                "rows": int(pixels.shape[0]),
                "row_len": int(pixels.shape[1]),
                "file": f"qwen3_{name}.safetensors",
                "class_default_size": {"frame_indices": d_indices, "timestamps": d_stamps, "grid_thw": d_grid},
            }
        )
        print(f"{name}: {total} frames @ {average_str} fps -> {indices}, grid {grid}, t {stamps}; default grid {d_grid}")

    meta = {
        "generator": "scripts/make_qwen3_preprocess_fixtures.py",
        "reference": "PyAV rgb24 decode of all frames (fps = stream.average_rate) + transformers "
        "Qwen3VLVideoProcessor(do_sample_frames=True, video_metadata) + Qwen3VLProcessor._calculate_timestamps",
        "spec": {"fps": FPS, "min_frames": MIN_FRAMES, "max_frames": MAX_FRAMES, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS},
        "class_default_spec": {
            "fps": float(default.fps),
            "min_frames": default.min_frames,
            "max_frames": default.max_frames,
            "min_pixels": default.size["shortest_edge"],
            "max_pixels": default.size["longest_edge"],
        },
        "patch": {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE},
        "image_mean": list(small.image_mean),
        "image_std": list(small.image_std),
        "clips": clips,
        "versions": {
            "python": platform.python_version(),
            "transformers": importlib.metadata.version("transformers"),
            "torch": torch.__version__,
            "torchvision": importlib.metadata.version("torchvision"),
            "av": av.__version__,
            "numpy": np.__version__,
        },
    }
    (OUT / "qwen3_preprocess.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(p.stat().st_size for p in OUT.glob("qwen3_*"))
    print(f"wrote {OUT}/qwen3_* ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
