//! Parity of `evalverse_data::video` with the Python reference: PyAV decode + qwen-vl-utils
//! `smart_nframes` / round(linspace) sampling + transformers `Qwen2VLVideoProcessor`.
//! Fixtures come from scripts/make_preprocess_fixtures.py (versions recorded in preprocess.json);
//! the spec (min_pixels 3136, max_pixels 12544) downsamples 168x224 to 84x112.
//!
//! * `preprocess_video_matches_reference`: the whole path (sampling, grid, time scale, pixels).
//! * `pixels_match_reference_on_reference_frames`: decode + smart_resize + resize_rgb + patchify on
//!   the reference's own frame indices, so pixel parity is measured even when sampling differs.
//! * `decode_and_resize_diagnostics`: with EVALVERSE_PARITY_DECODED=DIR (written by the script's
//!   `--dump-decoded DIR`), separates colour conversion (FFmpeg/video-rs vs PyAV RGB24) from the
//!   resampling kernel (resize_rgb on PyAV's own frames); skipped without it.
//!
//! Pixel tolerances, in uint8 levels of the channel (one level = 1/(255*std_c) ~ 0.0146 normalised):
//! max 1 level, mean <= 0.001 level, <= 0.1% of values off by one level. Measured (fixtures of
//! 2026-11-25): FFmpeg's (video-rs) and PyAV's YUV->RGB24 frames are byte-identical on all frames
//! of the three clips; resize_rgb's f32 kernel vs torch's int16 fixed-point kernel gives 0 levels on
//! two clips and 1 level on 0.0115% of pg001_echo's values (mean 0.0001 level). Upsampling to
//! 280x392 (default spec, diagnostics only) gives 1 level on ~0.15-0.23% and 2 levels on
//! <= 0.001% of values. Reproducing torch's fixed-point weights makes both exactly 0.
//!
//! Sampling: qwen-vl-utils takes video_fps from the stream's average rate (avg_frame_rate), which
//! for the synthetic clips is 432/35 (36 frames) or 576/47 (48 frames), not the nominal 12 that
//! video.rs reads (r_frame_rate): the MP4s give their last frame no duration.

use std::path::{Path, PathBuf};

use evalverse_data::video::{
    decode_frames, patchify, preprocess_video, resize_rgb, smart_resize, FrameSpec, PatchSpec,
    CLIP_STD,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Largest difference allowed, in uint8 levels.
const MAX_LEVELS: f64 = 1.0;
/// Mean absolute difference allowed, in uint8 levels.
const MEAN_LEVELS: f64 = 0.001;
/// Fraction of values allowed to differ by one level (none may differ by more than MAX_LEVELS).
const FRAC_ONE_LEVEL: f64 = 0.001;
/// Tolerance of float noise when converting a normalised difference to levels.
const LEVEL_EPS: f64 = 1e-3;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")
}

struct Clip {
    name: String,
    video: PathBuf,
    width: usize,
    height: usize,
    total_frames: usize,
    frame_indices: Vec<usize>,
    second_per_grid: f64,
    grid_thw: [usize; 3],
    pixel_values: Vec<f32>,
    row_len: usize,
}

fn load() -> (FrameSpec, PatchSpec, Vec<Clip>) {
    let dir = fixture_dir();
    let path = dir.join("preprocess.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let meta: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let s = &meta["spec"];
    let spec = FrameSpec {
        fps: s["fps"].as_f64().unwrap(),
        min_frames: s["min_frames"].as_u64().unwrap() as usize,
        max_frames: s["max_frames"].as_u64().unwrap() as usize,
        min_pixels: s["min_pixels"].as_u64().unwrap() as usize,
        max_pixels: s["max_pixels"].as_u64().unwrap() as usize,
    };
    let p = &meta["patch"];
    let patch = PatchSpec {
        patch_size: p["patch_size"].as_u64().unwrap() as usize,
        merge_size: p["merge_size"].as_u64().unwrap() as usize,
        temporal_patch_size: p["temporal_patch_size"].as_u64().unwrap() as usize,
        ..PatchSpec::default()
    };
    let usize_of = |v: &Value| v.as_u64().expect("unsigned integer") as usize;
    let clips = meta["clips"]
        .as_array()
        .expect("clips")
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let file = dir.join(c["file"].as_str().unwrap());
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let pv = st.tensor("pixel_values").unwrap();
            assert_eq!(pv.dtype(), Dtype::F32);
            let row_len = pv.shape()[1];
            let pixel_values: Vec<f32> =
                pv.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let g = st.tensor("grid_thw").unwrap();
            assert_eq!(g.dtype(), Dtype::I64);
            let grid: Vec<usize> = g
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize)
                .collect();
            let grid_thw = [grid[0], grid[1], grid[2]];
            assert_eq!(pixel_values.len(), grid_thw.iter().product::<usize>() * row_len, "{name}: fixture shape");
            assert_eq!(
                grid_thw,
                [usize_of(&c["grid_thw"][0]), usize_of(&c["grid_thw"][1]), usize_of(&c["grid_thw"][2])],
                "{name}: json and safetensors disagree"
            );
            let video = sample_dir().join(c["video"].as_str().unwrap());
            let digest = Sha256::digest(std::fs::read(&video).unwrap_or_else(|e| panic!("{}: {e}", video.display())));
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                hex,
                c["sha256"].as_str().unwrap(),
                "{} is not the file the fixture was made from: re-run scripts/make_preprocess_fixtures.py",
                video.display()
            );
            Clip {
                video,
                width: usize_of(&c["width"]),
                height: usize_of(&c["height"]),
                total_frames: usize_of(&c["total_frames"]),
                frame_indices: c["frame_indices"].as_array().unwrap().iter().map(usize_of).collect(),
                second_per_grid: c["second_per_grid"].as_f64().unwrap(),
                grid_thw,
                pixel_values,
                row_len,
                name,
            }
        })
        .collect();
    (spec, patch, clips)
}

/// Differences of two patch-row tensors, in uint8 levels of each value's channel.
#[derive(Debug, Default)]
struct Diff {
    n: usize,
    max_abs: f64,
    mean_abs: f64,
    max_levels: f64,
    frac_one_level: f64,
    frac_over_one_level: f64,
}

impl Diff {
    fn of(actual: &[f32], expected: &[f32], row_len: usize, patch: &PatchSpec) -> Diff {
        assert_eq!(actual.len(), expected.len(), "pixel_values lengths differ");
        let per_channel = patch.temporal_patch_size * patch.patch_size * patch.patch_size;
        let (mut sum, mut max_abs, mut max_levels, mut one, mut over) =
            (0f64, 0f64, 0f64, 0usize, 0usize);
        for (k, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let c = (k % row_len) / per_channel;
            let d = (a as f64 - e as f64).abs();
            let levels = d * 255.0 * CLIP_STD[c] as f64;
            sum += d;
            max_abs = max_abs.max(d);
            max_levels = max_levels.max(levels);
            if levels > 1.0 + LEVEL_EPS {
                over += 1;
            } else if levels > 0.5 {
                one += 1;
            }
        }
        let n = actual.len();
        Diff {
            n,
            max_abs,
            mean_abs: sum / n as f64,
            max_levels,
            frac_one_level: one as f64 / n as f64,
            frac_over_one_level: over as f64 / n as f64,
        }
    }

    fn mean_levels(&self) -> f64 {
        // Channels differ in std by under 6%; the mid std gives the mean in levels to that accuracy.
        self.mean_abs * 255.0 * CLIP_STD[1] as f64
    }

    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} values, max |d| {:.6} ({:.3} levels), mean |d| {:.3e} (~{:.5} levels), \
             one level {:.4}%, over one level {:.4}%",
            self.n,
            self.max_abs,
            self.max_levels,
            self.mean_abs,
            self.mean_levels(),
            100.0 * self.frac_one_level,
            100.0 * self.frac_over_one_level
        )
    }

    fn check(&self, what: &str) {
        assert!(
            self.max_levels <= MAX_LEVELS + LEVEL_EPS
                && self.mean_levels() <= MEAN_LEVELS
                && self.frac_one_level <= FRAC_ONE_LEVEL,
            "{} exceeds tolerance (max {MAX_LEVELS} level, mean {MEAN_LEVELS} levels, \
             one-level fraction {FRAC_ONE_LEVEL})",
            self.report(what)
        );
    }
}

/// Byte-wise comparison of RGB24 frames: (max |d|, mean |d|, fraction of bytes differing).
fn rgb_diff(a: &[u8], b: &[u8]) -> (u8, f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut max, mut sum, mut ne) = (0u8, 0u64, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        max = max.max(d);
        sum += d as u64;
        ne += (d != 0) as usize;
    }
    (max, sum as f64 / a.len() as f64, ne as f64 / a.len() as f64)
}

#[test]
fn preprocess_video_matches_reference() {
    let (spec, patch, clips) = load();
    let mut failures = Vec::new();
    for clip in &clips {
        let v = preprocess_video(&clip.video, &spec, &patch)
            .unwrap_or_else(|e| panic!("{}: {e}", clip.name));
        println!(
            "{}: indices rust {:?} ref {:?}; grid rust {:?} ref {:?}; second_per_grid rust {:.9} ref {:.9}",
            clip.name, v.frame_indices, clip.frame_indices, v.grid_thw, clip.grid_thw, v.second_per_grid,
            clip.second_per_grid
        );
        if v.frame_indices != clip.frame_indices || v.grid_thw != clip.grid_thw {
            failures.push(format!(
                "{}: sampled frames {:?} (grid {:?}) but the reference samples {:?} (grid {:?})",
                clip.name, v.frame_indices, v.grid_thw, clip.frame_indices, clip.grid_thw
            ));
            continue;
        }
        if (v.second_per_grid - clip.second_per_grid).abs() > 1e-9 {
            failures.push(format!(
                "{}: second_per_grid {} but the reference has {}",
                clip.name, v.second_per_grid, clip.second_per_grid
            ));
        }
        assert_eq!(v.row_len, clip.row_len);
        let diff = Diff::of(&v.pixel_values, &clip.pixel_values, clip.row_len, &patch);
        println!("  {}", diff.report("pixel_values"));
        diff.check(&clip.name);
    }
    assert!(
        failures.is_empty(),
        "sampling differs from qwen-vl-utils (which takes video_fps from the stream's average rate, \
         see preprocess.json video_fps vs nominal_fps):\n{}",
        failures.join("\n")
    );
}

#[test]
fn pixels_match_reference_on_reference_frames() {
    let (spec, patch, clips) = load();
    for clip in &clips {
        let wanted = &clip.frame_indices;
        let decoded = decode_frames(&clip.video, |i| wanted.contains(&i)).unwrap();
        assert_eq!(
            (decoded.width, decoded.height),
            (clip.width, clip.height),
            "{}",
            clip.name
        );
        assert_eq!(
            decoded.total_frames, clip.total_frames,
            "{}: decoded frame count",
            clip.name
        );
        let frames: Vec<&Vec<u8>> = wanted
            .iter()
            .map(|i| {
                &decoded
                    .frames
                    .iter()
                    .find(|(j, _)| j == i)
                    .expect("sampled frame decoded")
                    .1
            })
            .collect();
        let (rh, rw) = smart_resize(
            decoded.height,
            decoded.width,
            patch.factor(),
            spec.min_pixels,
            spec.max_pixels,
        )
        .unwrap();
        let resized: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| resize_rgb(f, decoded.width, decoded.height, rw, rh))
            .collect();
        let (pixel_values, grid) = patchify(&resized, rw, rh, &patch);
        assert_eq!(grid, clip.grid_thw, "{}: grid", clip.name);
        let diff = Diff::of(&pixel_values, &clip.pixel_values, clip.row_len, &patch);
        println!(
            "{}: {}",
            clip.name,
            diff.report("decode+resize+patchify on reference indices")
        );
        diff.check(&clip.name);
    }
}

#[test]
fn decode_and_resize_diagnostics() {
    let Some(dir) = std::env::var_os("EVALVERSE_PARITY_DECODED") else {
        println!(
            "skipped: set EVALVERSE_PARITY_DECODED=DIR after \
             `python scripts/make_preprocess_fixtures.py --dump-decoded DIR`"
        );
        return;
    };
    let (spec, patch, clips) = load();
    for clip in &clips {
        let raw = std::fs::read(Path::new(&dir).join(format!("{}.rgb", clip.name))).unwrap();
        let frame_len = clip.width * clip.height * 3;
        assert_eq!(
            raw.len(),
            clip.total_frames * frame_len,
            "{}: dump size",
            clip.name
        );
        let py_frames: Vec<&[u8]> = raw.chunks_exact(frame_len).collect();

        // 1. Colour conversion: every decoded frame, FFmpeg swscale via video-rs vs PyAV rgb24.
        let decoded = decode_frames(&clip.video, |_| true).unwrap();
        assert_eq!(decoded.frames.len(), clip.total_frames);
        let (mut max, mut mean, mut frac) = (0u8, 0f64, 0f64);
        for ((_, ours), theirs) in decoded.frames.iter().zip(&py_frames) {
            let (m, a, f) = rgb_diff(ours, theirs);
            max = max.max(m);
            mean += a / clip.total_frames as f64;
            frac += f / clip.total_frames as f64;
        }
        println!(
            "{}: decoded RGB24 (video-rs/FFmpeg vs PyAV), {} frames: max |d| {max}, mean |d| {mean:.5}, \
             bytes differing {:.4}%",
            clip.name,
            clip.total_frames,
            100.0 * frac
        );

        // 2. Resampling alone: resize_rgb + patchify on PyAV's own frames vs the processor.
        let (rh, rw) = smart_resize(
            clip.height,
            clip.width,
            patch.factor(),
            spec.min_pixels,
            spec.max_pixels,
        )
        .unwrap();
        let resized: Vec<Vec<u8>> = clip
            .frame_indices
            .iter()
            .map(|&i| resize_rgb(py_frames[i], clip.width, clip.height, rw, rh))
            .collect();
        let (pixel_values, _) = patchify(&resized, rw, rh, &patch);
        let diff = Diff::of(&pixel_values, &clip.pixel_values, clip.row_len, &patch);
        println!(
            "{}: {}",
            clip.name,
            diff.report("resize_rgb+patchify on PyAV frames")
        );

        // 3. The default Qwen2.5-VL spec upsamples (168x224 -> 280x392): the kernel's other branch.
        let up_meta = Path::new(&dir).join(format!("{}.default.json", clip.name));
        let Ok(text) = std::fs::read_to_string(&up_meta) else {
            continue;
        };
        let up: Value = serde_json::from_str(&text).unwrap();
        let px = |k: &str| up[k].as_u64().unwrap() as usize;
        let (uh, uw) = smart_resize(
            clip.height,
            clip.width,
            patch.factor(),
            px("min_pixels"),
            px("max_pixels"),
        )
        .unwrap();
        let expected: Vec<f32> =
            std::fs::read(Path::new(&dir).join(format!("{}.default.f32", clip.name)))
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
        let resized: Vec<Vec<u8>> = clip
            .frame_indices
            .iter()
            .map(|&i| resize_rgb(py_frames[i], clip.width, clip.height, uw, uh))
            .collect();
        let (pixel_values, grid) = patchify(&resized, uw, uh, &patch);
        let want: Vec<usize> = up["grid_thw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(grid.to_vec(), want, "{}: default-spec grid", clip.name);
        let diff = Diff::of(&pixel_values, &expected, clip.row_len, &patch);
        println!(
            "{}: {}",
            clip.name,
            diff.report(&format!("upsampling to {uw}x{uh} on PyAV frames"))
        );
    }
}
