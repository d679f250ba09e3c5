#!/usr/bin/env python3
"""Throughput of the Python reference Qwen2.5-VL video path on a folder of clips.

Per clip: PyAV decode of every frame to RGB24 (as torchvision.io.read_video / the qwen-vl-utils
torchvision backend; video_fps = stream.average_rate), qwen_vl_utils smart_nframes + round(linspace)
sampling, then transformers Qwen2VLVideoProcessor(do_sample_frames=False) with the Qwen2.5-VL
default size (128*28*28 ..= 768*28*28 pixels), torch threads = 2 (the Rust side is single-threaded).

    /work/venv/bin/python scripts/bench_preprocess.py data/sample [N] [PASSES] [--nominal-fps]

N limits the clips to the first N by name (default all), PASSES repeats the set (default 1), after
one untimed warm-up clip. --nominal-fps samples with the stream's r_frame_rate instead of its
average rate (what evalverse's video.rs currently does), so both sides sample the same frames.
The last line is machine-readable: `RESULT clips=.. frames=.. seconds=.. clips_per_s=.. frames_per_s=..`.
"""

import argparse
import time
from pathlib import Path

import av
import numpy as np
import torch
from qwen_vl_utils.vision_process import smart_nframes
from transformers import Qwen2VLVideoProcessor

FPS, MIN_FRAMES, MAX_FRAMES = 2.0, 4, 768
MIN_PIXELS, MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28


def clips_in(root: Path) -> list[Path]:
    videos = root / "videos"
    folder = videos if videos.is_dir() else root
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".mp4")


def decode(path: Path, nominal: bool):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        fps = float(stream.base_rate if nominal else stream.average_rate)
    return np.stack(frames), fps


def sample(rgb: np.ndarray, video_fps: float, fps=FPS, min_frames=MIN_FRAMES, max_frames=MAX_FRAMES):
    total = rgb.shape[0]
    ele = {"fps": fps, "min_frames": min_frames, "max_frames": max_frames}
    nframes = smart_nframes(ele, total_frames=total, video_fps=video_fps)
    idx = torch.linspace(0, total - 1, nframes).round().long()
    sample_fps = nframes / max(total, 1e-6) * video_fps
    video = torch.from_numpy(rgb[idx.numpy()]).permute(0, 3, 1, 2).contiguous()
    return video, sample_fps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path, nargs="?", default=Path("data/sample"))
    parser.add_argument("n", type=int, nargs="?", default=None)
    parser.add_argument("passes", type=int, nargs="?", default=1)
    parser.add_argument("--nominal-fps", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    clips = clips_in(args.dir)[: args.n]
    assert clips, f"no .mp4 clips under {args.dir}"
    processor = Qwen2VLVideoProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})

    def run(path: Path):
        t0 = time.perf_counter()
        rgb, fps = decode(path, args.nominal_fps)
        video, _ = sample(rgb, fps)
        t1 = time.perf_counter()
        out = processor(videos=[video], do_sample_frames=False, return_tensors="pt")
        t2 = time.perf_counter()
        return video.shape[0], out, t1 - t0, t2 - t1

    _, warm, _, _ = run(clips[0])
    print(
        f"{len(clips)} clips x {args.passes} pass(es) from {args.dir}; torch threads {torch.get_num_threads()}; "
        f"fps source {'r_frame_rate' if args.nominal_fps else 'average_rate'}; first clip grid "
        f"{warm['video_grid_thw'][0].tolist()}"
    )
    frames = rows = 0
    t_decode = t_proc = 0.0
    start = time.perf_counter()
    for _ in range(args.passes):
        for clip in clips:
            n, out, d, p = run(clip)
            frames += n
            rows += out["pixel_values_videos"].shape[0]
            t_decode += d
            t_proc += p
    total = time.perf_counter() - start
    count = len(clips) * args.passes
    print(
        f"python reference: {count} clips, {frames} sampled frames, {rows} patch rows in {total:.3f} s -> "
        f"{count / total:.2f} clips/s, {frames / total:.1f} frames/s"
    )
    print(
        f"stages: decode(all frames to rgb24)+sample {t_decode:.3f} s ({100 * t_decode / total:.0f}%), "
        f"Qwen2VLVideoProcessor {t_proc:.3f} s ({100 * t_proc / total:.0f}%)"
    )
    print(
        f"RESULT clips={count} frames={frames} seconds={total:.6f} clips_per_s={count / total:.4f} "
        f"frames_per_s={frames / total:.4f}"
    )


if __name__ == "__main__":
    main()
