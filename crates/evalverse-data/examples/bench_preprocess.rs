//! Throughput of the Qwen2.5-VL video path (decode + sample + smart_resize + resize + patchify) on
//! a folder of clips, with the default `FrameSpec` (2 fps, 128*28*28 ..= 768*28*28 pixels).
//!
//!     cargo run --release -p evalverse-data --example bench_preprocess -- data/sample [N] [PASSES]
//!
//! DIR is a dataset folder (clips under DIR/videos/*.mp4) or a folder of .mp4 files; N limits the
//! clips to the first N by name (default all); PASSES repeats the whole set (default 1), after one
//! untimed warm-up clip. Prints clips/s and sampled frames/s of `preprocess_video`, then a stage
//! breakdown from a second, separately timed run through the same public functions.
//! The last line is machine-readable: `RESULT clips=.. frames=.. seconds=.. clips_per_s=.. frames_per_s=..`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evalverse_data::video::{
    patchify, preprocess_video, resize_rgb, sample_video, smart_resize, FrameSpec, PatchSpec,
};

fn clips_in(dir: &Path) -> Vec<PathBuf> {
    let videos = dir.join("videos");
    let dir = if videos.is_dir() {
        videos
    } else {
        dir.to_path_buf()
    };
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("mp4")))
        .collect();
    clips.sort();
    clips
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().map(String::as_str).unwrap_or("data/sample"));
    let mut clips = clips_in(&dir);
    if let Some(n) = args.get(1) {
        clips.truncate(n.parse().expect("N must be a number of clips"));
    }
    let passes: usize = args
        .get(2)
        .map(|p| p.parse().expect("PASSES must be a number"))
        .unwrap_or(1);
    assert!(!clips.is_empty(), "no .mp4 clips under {}", dir.display());
    let spec = FrameSpec::default();
    let patch = PatchSpec::default();

    // Warm-up: FFmpeg initialisation and first-touch allocations.
    let warm = preprocess_video(&clips[0], &spec, &patch).expect("warm-up clip");
    println!(
        "{} clips x {passes} pass(es) from {}; spec {:?}; first clip grid {:?}",
        clips.len(),
        dir.display(),
        spec,
        warm.grid_thw
    );

    // End to end, as a caller would use it.
    let (mut frames, mut rows) = (0usize, 0usize);
    let start = Instant::now();
    for _ in 0..passes {
        for clip in &clips {
            let v = preprocess_video(clip, &spec, &patch).unwrap_or_else(|e| panic!("{e}"));
            frames += v.frame_indices.len();
            rows += v.rows();
            std::hint::black_box(&v.pixel_values);
        }
    }
    let total = start.elapsed().as_secs_f64();
    let n = clips.len() * passes;

    // Stage breakdown through the same public functions preprocess_video is made of.
    let (mut t_decode, mut t_resize, mut t_patch) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..passes {
        for clip in &clips {
            let t0 = Instant::now();
            let (decoded, _fps) =
                sample_video(clip, &spec, patch.sampling).unwrap_or_else(|e| panic!("{e}"));
            let t1 = Instant::now();
            let (rh, rw) = smart_resize(
                decoded.height,
                decoded.width,
                patch.factor(),
                spec.min_pixels,
                spec.max_pixels,
            )
            .unwrap();
            let resized: Vec<Vec<u8>> = decoded
                .frames
                .iter()
                .map(|(_, f)| resize_rgb(f, decoded.width, decoded.height, rw, rh))
                .collect();
            let t2 = Instant::now();
            let out = patchify(&resized, rw, rh, &patch);
            std::hint::black_box(&out);
            let t3 = Instant::now();
            t_decode += t1 - t0;
            t_resize += t2 - t1;
            t_patch += t3 - t2;
        }
    }
    let staged = (t_decode + t_resize + t_patch).as_secs_f64();
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / staged;
    println!(
        "rust preprocess_video: {n} clips, {frames} sampled frames, {rows} patch rows in {total:.3} s -> \
         {:.2} clips/s, {:.1} frames/s",
        n as f64 / total,
        frames as f64 / total
    );
    println!(
        "stages ({staged:.3} s): decode+sample {:.3} s ({:.0}%), resize {:.3} s ({:.0}%), normalise+patchify {:.3} s ({:.0}%)",
        t_decode.as_secs_f64(),
        pct(t_decode),
        t_resize.as_secs_f64(),
        pct(t_resize),
        t_patch.as_secs_f64(),
        pct(t_patch)
    );
    println!(
        "RESULT clips={n} frames={frames} seconds={total:.6} clips_per_s={:.4} frames_per_s={:.4}",
        n as f64 / total,
        frames as f64 / total
    );
}
