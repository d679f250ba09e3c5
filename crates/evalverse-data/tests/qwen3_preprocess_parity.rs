//! Parity of `evalverse_data::video` under Qwen3-VL's parameters (patch 16, merge 2, mean = std =
//! 0.5, `FrameSampling::Qwen3Vl`) with transformers 4.57.1 `Qwen3VLVideoProcessor` sampling the
//! whole PyAV-decoded clip itself. Fixtures: scripts/make_qwen3_preprocess_fixtures.py
//! (tests/fixtures/preprocess/qwen3_*; versions in qwen3_preprocess.json).
//!
//! * `qwen3_preprocess_matches_transformers`: sampled frames, grid and pixel values at 2.5 fps
//!   under a 40*32*32-pixel clip budget (odd frame counts, the last frame repeated; a real
//!   antialiased downsampling to 64x64 and 32x64).
//! * `qwen3_class_defaults_sample_as_transformers`: `FrameSpec::qwen3_vl()` equals the processor's
//!   class defaults and gives its frames and grid.
//!
//! Pixel values must be identical: the resize is torch's integer kernel and the normalisation the
//! same f32 division, `(x - 127.5) / 127.5`.

use std::path::{Path, PathBuf};

use evalverse_data::video::{preprocess_video, FrameSampling, FrameSpec, PatchSpec, PixelNorm};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn meta() -> Value {
    let path = fixture_dir().join("qwen3_preprocess.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn spec_of(s: &Value) -> FrameSpec {
    let u = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("spec key {k}")) as usize;
    FrameSpec {
        fps: s["fps"].as_f64().expect("spec key fps"),
        min_frames: u("min_frames"),
        max_frames: u("max_frames"),
        min_pixels: u("min_pixels"),
        max_pixels: u("max_pixels"),
    }
}

fn qwen3_patch(meta: &Value) -> PatchSpec {
    let p = &meta["patch"];
    let u = |k: &str| p[k].as_u64().unwrap() as usize;
    let mean: Vec<f64> = meta["image_mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let std: Vec<f64> = meta["image_std"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(mean, vec![0.5; 3], "the processor's image_mean");
    assert_eq!(std, vec![0.5; 3], "the processor's image_std");
    PatchSpec {
        patch_size: u("patch_size"),
        merge_size: u("merge_size"),
        temporal_patch_size: u("temporal_patch_size"),
        norm: PixelNorm::Half,
        sampling: FrameSampling::Qwen3Vl,
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn video_of(c: &Value) -> PathBuf {
    let video = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample")
        .join(c["video"].as_str().unwrap());
    let digest = Sha256::digest(
        std::fs::read(&video).unwrap_or_else(|e| panic!("{}: {e}", video.display())),
    );
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        c["sha256"].as_str().unwrap(),
        "{} is not the file the fixture was made from: re-run scripts/make_qwen3_preprocess_fixtures.py",
        video.display()
    );
    video
}

fn tensor_f32(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32);
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (v, t.shape().to_vec())
}

#[test]
fn qwen3_preprocess_matches_transformers() {
    let meta = meta();
    let (spec, patch) = (spec_of(&meta["spec"]), qwen3_patch(&meta));
    let clips = meta["clips"].as_array().unwrap();
    assert!(!clips.is_empty());
    let mut odd = 0;
    for c in clips {
        let name = c["name"].as_str().unwrap();
        let v =
            preprocess_video(&video_of(c), &spec, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let indices = usizes(&c["frame_indices"]);
        odd += indices.len() % 2;
        assert_eq!(v.frame_indices, indices, "{name}: sampled frames");
        assert_eq!(v.grid_thw.to_vec(), usizes(&c["grid_thw"]), "{name}: grid");
        assert_eq!(
            v.video_fps,
            c["video_fps"].as_f64().unwrap(),
            "{name}: source fps"
        );
        let file = fixture_dir().join(c["file"].as_str().unwrap());
        let bytes =
            std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (expected, shape) = tensor_f32(&st, "pixel_values");
        assert_eq!(
            shape,
            vec![v.rows(), v.row_len],
            "{name}: pixel_values shape"
        );
        assert_eq!(v.row_len, 3 * 2 * 16 * 16);
        let differing = v
            .pixel_values
            .iter()
            .zip(&expected)
            .filter(|(a, e)| a != e)
            .count();
        let max_abs = v
            .pixel_values
            .iter()
            .zip(&expected)
            .map(|(&a, &e)| (a - e).abs())
            .fold(0f32, f32::max);
        println!(
            "{name}: {} frames {:?}, grid {:?}: {} values, {differing} differ (max |d| {max_abs:e})",
            indices.len(),
            indices,
            v.grid_thw,
            expected.len()
        );
        assert_eq!(
            differing, 0,
            "{name}: pixel values differ from transformers' (max |d| {max_abs:e})"
        );
    }
    assert!(
        odd > 0,
        "the fixture should sample an odd frame count somewhere"
    );
}

#[test]
fn qwen3_class_defaults_sample_as_transformers() {
    let meta = meta();
    let defaults = FrameSpec::qwen3_vl();
    assert_eq!(
        defaults,
        spec_of(&meta["class_default_spec"]),
        "transformers' class defaults"
    );
    let patch = qwen3_patch(&meta);
    for c in meta["clips"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let d = &c["class_default_size"];
        let v = preprocess_video(&video_of(c), &defaults, &patch)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            v.frame_indices,
            usizes(&d["frame_indices"]),
            "{name}: sampled frames"
        );
        assert_eq!(v.grid_thw.to_vec(), usizes(&d["grid_thw"]), "{name}: grid");
    }
}
