#!/usr/bin/env python3
"""Generate parity fixtures for crates/evalverse-data/src/video.rs (Qwen2.5-VL video preprocessing).

Reference pipeline, per clip of data/sample:
  1. decode every frame with PyAV to RGB24 (frame.to_ndarray(format="rgb24")), as the old
     torchvision.io.read_video did (the qwen-vl-utils "torchvision" backend: it counts all decoded
     frames and takes video_fps = float(stream.average_rate));
  2. n = qwen_vl_utils.vision_process.smart_nframes({"fps", "min_frames", "max_frames"}, total, video_fps)
     and indices = torch.linspace(0, total - 1, n).round().long(), exactly as
     qwen_vl_utils.vision_process._read_video_torchvision; sample_fps = n / total * video_fps and
     second_per_grid = temporal_patch_size / sample_fps (what the Qwen2.5-VL processor is given);
  3. transformers.Qwen2VLVideoProcessor on the sampled uint8 frames (T, C, H, W), with
     do_sample_frames=False and size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}.

What the sources in the venv say (transformers 4.57.1, torchvision 0.29.2, qwen-vl-utils 0.0.14):
  * Qwen2VLVideoProcessor (models/qwen2_vl/video_processing_qwen2_vl.py) sets
    do_sample_frames = False as the class default ("for BC"); we also pass it explicitly so the
    processor never re-samples (BaseVideoProcessor.preprocess only builds sample_indices_fn when
    it is true). min_pixels/max_pixels are folded into size["shortest_edge"/"longest_edge"] by
    __init__ -- which writes into the *class-level* `size` dict when no `size` is passed, so we
    always pass `size` explicitly.
  * It resizes with `smart_resize` imported from models/qwen2_vl/image_processing_qwen2_vl.py
    (factor = patch_size * merge_size = 28; Python round() = half-to-even; max_pixels branch floors,
    min_pixels branch ceils; no max(factor, round(...)) guard on the first rounding, unlike
    qwen-vl-utils' own smart_resize). For 168x224 with max_pixels 12544 it gives 84x112.
  * resample = PILImageResampling.BICUBIC -> InterpolationMode.BICUBIC
    (BaseImageProcessorFast._further_process_kwargs), and BaseImageProcessorFast.resize calls
    torchvision.transforms.v2.functional.resize(..., antialias=True). In
    torchvision/transforms/v2/functional/_geometry.py, resize_image keeps uint8 on CPU for BICUBIC
    (_do_native_uint8_resize_on_cpu returns True for BICUBIC), i.e. torch's native uint8
    _upsample_bicubic2d_aa kernel: a = -0.5 cubic, support stretched by the scale when
    downsampling (antialias), weights normalised then quantised to int16 fixed point, separable
    horizontal then vertical pass, each pass rounded and clamped to uint8 (same design as PIL's
    ImagingResample). Frames are passed as a uint8 tensor so this path is the one exercised.
  * rescale + normalize are fused (_fuse_mean_std_and_rescale_factor): mean*255 and std*255, then
    F.normalize on float32: (x - 255*mean) / (255*std), OPENAI_CLIP_MEAN/STD.
  * Patch layout: view(B, gt, T, C, gh/m, m, p, gw/m, m, p).permute(0,1,4,7,5,8,3,2,6,9) ->
    rows [gt, gh/m, gw/m, m, m] of C*T*p*p values; an odd frame count repeats the last frame.
  * Note: in the full qwen-vl-utils path, fetch_video resizes first (torchvision BICUBIC,
    antialias=True, same uint8 kernel) and the processor's resize is then a no-op (same size);
    given the same min/max pixels the result equals the processor-only path used here.
  * torchvision 0.29.2 in the venv has no OSS torchvision.io.read_video, hence the direct PyAV decode.

Re-run after data/sample is regenerated: preprocess.json records each clip's sha256 and the Rust
test refuses to compare against a different file.

Outputs (crates/evalverse-data/tests/fixtures/preprocess/):
  <clip>.safetensors  pixel_values f32 [rows, 1176], grid_thw i64 [3]
  preprocess.json     clips, spec, frame indices, fps values, second_per_grid, library versions

Usage (from the repository root):
    /work/venv/bin/python scripts/make_preprocess_fixtures.py [--dump-decoded DIR]
"""

import argparse
import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

import av
import numpy as np
import torch
from safetensors.torch import save_file
from qwen_vl_utils.vision_process import smart_nframes
from transformers import Qwen2VLVideoProcessor

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
OUT = ROOT / "crates" / "evalverse-data" / "tests" / "fixtures" / "preprocess"

# One 48-frame multishot clip (with audio), one 36-frame t2v clip (no audio), one 36-frame av clip.
CLIPS = ["pg002_borealis", "pg000_aurora", "pg001_echo"]

FPS = 2.0
MIN_FRAMES = 4
MAX_FRAMES = 768
MIN_PIXELS = 3136  # 4 * 28 * 28
MAX_PIXELS = 12544  # 16 * 28 * 28: 168x224 -> 84x112, a real downsampling
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


def decode_all(path: Path):
    """All frames as uint8 (T, H, W, 3), the stream's average rate and its nominal (r_frame) rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        average = stream.average_rate
        nominal = stream.base_rate
    return np.stack(frames), float(average), float(nominal), str(average), str(nominal)


def sample(total: int, video_fps: float):
    ele = {"fps": FPS, "min_frames": MIN_FRAMES, "max_frames": MAX_FRAMES}
    nframes = smart_nframes(ele, total_frames=total, video_fps=video_fps)
    idx = torch.linspace(0, total - 1, nframes).round().long()
    sample_fps = nframes / max(total, 1e-6) * video_fps
    return idx, sample_fps


def make_processor() -> Qwen2VLVideoProcessor:
    return Qwen2VLVideoProcessor(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
    )


def version(dist: str) -> str:
    return importlib.metadata.version(dist)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--dump-decoded",
        type=Path,
        help="also write every decoded frame as raw RGB24 (<clip>.rgb, [total_frames, height, width, 3] uint8) "
        "here, for the decode/resize diagnostics of tests/preprocess_parity.rs (EVALVERSE_PARITY_DECODED=DIR)",
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    processor = make_processor()
    clips = []
    for name in CLIPS:
        rel = f"videos/{name}.mp4"
        rgb, video_fps, nominal_fps, average_str, nominal_str = decode_all(SAMPLE / rel)
        total, height, width, _ = rgb.shape
        idx, sample_fps = sample(total, video_fps)
        video = torch.from_numpy(rgb[idx.numpy()]).permute(0, 3, 1, 2).contiguous()  # T, C, H, W uint8
        assert video.dtype == torch.uint8
        out = processor(videos=[video], do_sample_frames=False, return_tensors="pt")
        pixel_values = out["pixel_values_videos"].to(torch.float32).contiguous()
        grid_thw = out["video_grid_thw"][0].to(torch.int64).contiguous()
        save_file({"pixel_values": pixel_values, "grid_thw": grid_thw}, str(OUT / f"{name}.safetensors"))
        if args.dump_decoded:
            args.dump_decoded.mkdir(parents=True, exist_ok=True)
            (args.dump_decoded / f"{name}.rgb").write_bytes(np.ascontiguousarray(rgb).tobytes())
            # The Qwen2.5-VL default spec (128*28*28 .. 768*28*28) upsamples 168x224 to 280x392: the
            # other branch of the kernel (no antialias stretch). Too big to commit, so diagnostics only.
            default = Qwen2VLVideoProcessor(
                size={"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28},
                patch_size=PATCH_SIZE,
                merge_size=MERGE_SIZE,
                temporal_patch_size=TEMPORAL_PATCH_SIZE,
            )
            up = default(videos=[video], do_sample_frames=False, return_tensors="pt")
            up_values = up["pixel_values_videos"].to(torch.float32).contiguous().numpy()
            (args.dump_decoded / f"{name}.default.f32").write_bytes(up_values.astype("<f4").tobytes())
            (args.dump_decoded / f"{name}.default.json").write_text(
                json.dumps({"grid_thw": [int(v) for v in up["video_grid_thw"][0]], "min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28})
            )
        gt, gh, gw = (int(v) for v in grid_thw)
        clips.append(
            {
                "name": name,
                "video": rel,
                # The fixture is only valid for these exact bytes (data/sample is regenerated by the synth).
                "sha256": hashlib.sha256((SAMPLE / rel).read_bytes()).hexdigest(),
                "width": width,
                "height": height,
                "total_frames": total,
                "video_fps": video_fps,
                "video_fps_rational": average_str,
                "nominal_fps": nominal_fps,
                "nominal_fps_rational": nominal_str,
                "frame_indices": [int(i) for i in idx],
                "sample_fps": sample_fps,
                "second_per_grid": TEMPORAL_PATCH_SIZE / sample_fps,
                "resized_height": gh * PATCH_SIZE,
                "resized_width": gw * PATCH_SIZE,
                "grid_thw": [gt, gh, gw],
                "rows": int(pixel_values.shape[0]),
                "row_len": int(pixel_values.shape[1]),
                "file": f"{name}.safetensors",
            }
        )
        print(
            f"{name}: {total} frames @ {average_str} ({video_fps:.6f}) fps -> indices {clips[-1]['frame_indices']}, "
            f"grid {[gt, gh, gw]}, second_per_grid {TEMPORAL_PATCH_SIZE / sample_fps:.6f}"
        )

    meta = {
        "generator": "scripts/make_preprocess_fixtures.py",
        "reference": "PyAV rgb24 decode of all frames (video_fps = stream.average_rate, as torchvision.io.read_video) "
        "+ qwen_vl_utils smart_nframes + round(linspace) + transformers Qwen2VLVideoProcessor(do_sample_frames=False)",
        "spec": {
            "fps": FPS,
            "min_frames": MIN_FRAMES,
            "max_frames": MAX_FRAMES,
            "min_pixels": MIN_PIXELS,
            "max_pixels": MAX_PIXELS,
        },
        "patch": {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE},
        "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std),
        "clips": clips,
        "versions": {
            "python": platform.python_version(),
            "transformers": version("transformers"),
            "torch": torch.__version__,
            "torchvision": version("torchvision"),
            "av": av.__version__,
            "ffmpeg_in_av": {k: ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v) for k, v in av.library_versions.items()},
            "qwen-vl-utils": version("qwen-vl-utils"),
            "numpy": np.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
    }
    (OUT / "preprocess.json").write_text(json.dumps(meta, indent=2) + "\n")
    total_bytes = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total_bytes / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
