//! Decoding synthetic clips with video-rs, audio at 16 kHz, a corrupt file, and the decode cache.

use std::path::{Path, PathBuf};

use evalverse_data::cache::{DecodeCache, Lookup};
use evalverse_data::media;
use evalverse_data::video::{preprocess_video, FrameSpec, PatchSpec};

fn clip(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/videos")
        .join(name)
}

#[test]
fn decoding_a_synthetic_clip_gives_its_frames_and_audio() {
    let info = media::probe(&clip("pg001_aurora.mp4")).unwrap();
    assert_eq!((info.width, info.height, info.frames), (224, 168, 36));
    assert!((info.fps - 12.0).abs() < 1e-9);
    let audio_s = info.audio_s.expect("av clip has audio");
    assert!((audio_s - 3.0).abs() < 0.1, "audio lasts {audio_s} s");
    let silent = media::probe(&clip("pg000_aurora.mp4")).unwrap();
    assert_eq!(silent.audio_s, None);
}

#[test]
fn preprocess_gives_qwen_grid_for_default_spec() {
    let v = preprocess_video(
        &clip("pg000_aurora.mp4"),
        &FrameSpec::default(),
        &PatchSpec::default(),
    )
    .unwrap();
    // 36 frames at 12 fps, 2 fps -> 6 frames: indices round(linspace(0, 35, 6)) = 0,7,14,21,28,35.
    assert_eq!(v.frame_indices, vec![0, 7, 14, 21, 28, 35]);
    // 168x224 is below min_pixels 100352 -> 280x392 -> 20x28 patches; 6 frames -> 3 temporal patches.
    assert_eq!(v.grid_thw, [3, 20, 28]);
    assert_eq!(v.pixel_values.len(), 3 * 20 * 28 * 1176);
    // sample fps = 6/36*12 = 2 -> 2 frames per temporal patch = 1 s.
    assert!((v.second_per_grid - 1.0).abs() < 1e-12);
    assert!(v.pixel_values.iter().all(|x| x.is_finite()));
}

#[test]
fn corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.mp4");
    std::fs::write(&bad, b"\x00\x00\x00\x18ftypmp42 this is not a video at all").unwrap();
    let e = preprocess_video(&bad, &FrameSpec::default(), &PatchSpec::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.mp4"), "{e}");
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.mp4");
    let bytes = std::fs::read(clip("pg002_aurora.mp4")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = media::probe(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.mp4"), "{e}");
}

#[test]
fn decode_cache_hits_on_second_lookup_and_misses_on_new_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DecodeCache::new(dir.path());
    let spec = FrameSpec {
        min_pixels: 3136,
        max_pixels: 12544,
        ..FrameSpec::default()
    };
    let patch = PatchSpec::default();
    let path = clip("pg001_borealis.mp4");
    let (first, l1) = cache.get_or_decode(&path, &spec, &patch, true).unwrap();
    let (second, l2) = cache.get_or_decode(&path, &spec, &patch, true).unwrap();
    assert_eq!((l1, l2), (Lookup::Miss, Lookup::Hit));
    assert_eq!(
        first, second,
        "a cache hit returns exactly what was decoded"
    );
    assert!(first.audio.is_some());
    // A fresh cache object on the same folder (a new run) also hits.
    let (_, l3) = DecodeCache::new(dir.path())
        .get_or_decode(&path, &spec, &patch, true)
        .unwrap();
    assert_eq!(l3, Lookup::Hit);
    let other = FrameSpec {
        fps: 4.0,
        ..spec.clone()
    };
    let (_, l4) = cache.get_or_decode(&path, &other, &patch, true).unwrap();
    assert_eq!(l4, Lookup::Miss);
}

#[test]
fn corrupt_cache_entry_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DecodeCache::new(dir.path());
    let spec = FrameSpec {
        min_pixels: 3136,
        max_pixels: 12544,
        ..FrameSpec::default()
    };
    let patch = PatchSpec::default();
    let path = clip("pg000_echo.mp4");
    let (good, _) = cache.get_or_decode(&path, &spec, &patch, false).unwrap();
    let key = cache.key(&path, &spec, &patch, false).unwrap();
    let entry = dir
        .path()
        .join(&key[..2])
        .join(format!("{key}.safetensors"));
    std::fs::write(&entry, b"garbage").unwrap();
    let (again, lookup) = cache.get_or_decode(&path, &spec, &patch, false).unwrap();
    assert_eq!(lookup, Lookup::Miss);
    assert_eq!(good, again);
}

#[test]
fn loading_a_split_skips_a_corrupt_clip_and_counts_it() {
    let data = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample");
    std::fs::create_dir_all(data.path().join("videos")).unwrap();
    let manifest = std::fs::read_to_string(sample.join("manifest.jsonl")).unwrap();
    let lines: Vec<&str> = manifest
        .lines()
        .filter(|l| l.contains("\"prompt_group\":\"pg000\"") && l.contains("\"record\":\"clip\""))
        .collect();
    assert_eq!(lines.len(), 5);
    std::fs::write(data.path().join("manifest.jsonl"), lines.join("\n")).unwrap();
    for name in ["aurora", "borealis", "cinetic", "dreamloom", "echo"] {
        let f = format!("videos/pg000_{name}.mp4");
        std::fs::copy(sample.join(&f), data.path().join(&f)).unwrap();
    }
    std::fs::write(data.path().join("videos/pg000_cinetic.mp4"), b"not a video").unwrap();
    let ds = evalverse_data::dataset::Dataset::load(data.path()).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = DecodeCache::new(cache_dir.path());
    let spec = FrameSpec {
        min_pixels: 3136,
        max_pixels: 12544,
        ..FrameSpec::default()
    };
    let loaded = cache.load_clips(
        &ds,
        ds.clips.iter().map(|c| &c.record),
        &spec,
        &PatchSpec::default(),
        false,
    );
    assert_eq!(loaded.clips.len(), 4);
    assert_eq!(loaded.skipped.len(), 1);
    assert_eq!(loaded.skipped[0].0, "pg000_cinetic");
    assert!(
        loaded.skipped[0].1.contains("pg000_cinetic.mp4"),
        "{}",
        loaded.skipped[0].1
    );
}

#[test]
fn evidence_is_cached_by_content_and_a_corrupt_entry_is_a_miss() {
    use evalverse_data::operators::{AnalysisSpec, OperatorSet};
    let dir = tempfile::tempdir().unwrap();
    let cache = DecodeCache::new(dir.path());
    let set = OperatorSet::parse(&["shots", "audio"]).unwrap();
    let spec = AnalysisSpec::default();
    let path = clip("pg002_aurora.mp4");
    let (first, l1) = cache.get_or_measure(&path, &set, &spec).unwrap();
    let (again, l2) = cache.get_or_measure(&path, &set, &spec).unwrap();
    assert_eq!((l1, l2), (Lookup::Miss, Lookup::Hit));
    // JSON keeps f64 to the last digit or one ulp (serde_json's default float parser).
    let same = |a: &evalverse_data::operators::Evidence,
                b: &evalverse_data::operators::Evidence| {
        a.shots == b.shots
            && a.measurements.len() == b.measurements.len()
            && a.measurements.iter().zip(&b.measurements).all(|(x, y)| {
                x.name == y.name
                    && x.unit == y.unit
                    && (x.value - y.value).abs() <= 1e-12 * x.value.abs().max(1.0)
            })
    };
    assert!(same(&first, &again), "{first:?} vs {again:?}");
    assert_eq!(first.get("shot_count"), Some(3.0));
    // Another operator set is another entry.
    let other = OperatorSet::parse(&["exposure"]).unwrap();
    assert_eq!(
        cache.get_or_measure(&path, &other, &spec).unwrap().1,
        Lookup::Miss
    );
    // Corrupt the entry: it is measured again and rewritten.
    let key = cache.evidence_key(&path, &set, &spec).unwrap();
    let entry = dir
        .path()
        .join(&key[..2])
        .join(format!("{key}.evidence.json"));
    std::fs::write(&entry, b"{not json").unwrap();
    let (fixed, l3) = cache.get_or_measure(&path, &set, &spec).unwrap();
    assert_eq!(l3, Lookup::Miss);
    assert!(same(&fixed, &first));
    assert_eq!(
        cache.get_or_measure(&path, &set, &spec).unwrap().1,
        Lookup::Hit
    );
}

#[test]
fn measuring_a_corrupt_file_names_it() {
    use evalverse_data::operators::{measure_clip, OperatorSet};
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.mp4");
    std::fs::write(&bad, b"not a video at all").unwrap();
    let err = measure_clip(&bad, &OperatorSet::all())
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.mp4"), "{err}");
}

/// Every patch row of `v` holds the same pixels in each of its temporal slots.
fn temporal_slots_equal(v: &evalverse_data::video::VisionInput, patch: &PatchSpec) -> bool {
    let slot = patch.patch_size * patch.patch_size;
    v.pixel_values.chunks(v.row_len).all(|row| {
        row.chunks(slot * patch.temporal_patch_size)
            .all(|channel| channel[..slot] == channel[slot..2 * slot])
    })
}

#[test]
fn a_one_frame_clip_fills_the_temporal_patch_with_its_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.mp4");
    let (w, h) = (224usize, 168usize);
    let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    evalverse_data::synth::encode::write_mp4(&path, w as u32, h as u32, 12, &[frame], None)
        .unwrap();
    let patch = PatchSpec::default();
    let v = preprocess_video(&path, &FrameSpec::default(), &patch).unwrap();
    // The frame twice (transformers' Qwen2VLImageProcessor repeats the last frame up to the
    // temporal patch): one temporal patch.
    assert_eq!(v.frame_indices, vec![0]);
    assert_eq!(v.grid_thw, [1, 20, 28]);
    assert!(temporal_slots_equal(&v, &patch));
}

#[test]
fn a_still_image_is_judged_as_the_image_path_reads_it() {
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/refs/pg003.png");
    let (spec, patch) = (FrameSpec::default(), PatchSpec::default());
    let v = preprocess_video(&png, &spec, &patch).unwrap();
    let image =
        evalverse_data::video::preprocess_image(&png, spec.min_pixels, spec.max_pixels, &patch)
            .unwrap();
    assert_eq!(v.grid_thw, image.grid_thw);
    assert_eq!(v.grid_thw[0], 1);
    assert!(v.pixel_values == image.pixel_values);
    assert!(temporal_slots_equal(&v, &patch));
}

fn encoded(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn a_frame_list_is_read_as_the_video_of_its_frames() {
    let refs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/refs");
    let a = std::fs::read(refs.join("pg003.png")).unwrap();
    let b = std::fs::read(refs.join("pg007.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = evalverse_data::frames::write(
        dir.path(),
        "clip",
        2.0,
        "png",
        &[a.clone(), a, b.clone(), b],
    )
    .unwrap();
    let (spec, patch) = (FrameSpec::default(), PatchSpec::default());
    let v = preprocess_video(&list, &spec, &patch).unwrap();
    // Four frames at 2 fps: all four sampled, two temporal patches.
    assert_eq!(v.frame_indices, vec![0, 1, 2, 3]);
    assert_eq!(v.grid_thw[0], 2);
    assert!((v.second_per_grid - 1.0).abs() < 1e-12);
    // Each temporal patch is the picture the image path reads from the same PNG.
    let per_patch = v.pixel_values.len() / 2;
    for (k, name) in [(0, "pg003.png"), (1, "pg007.png")] {
        let image = evalverse_data::video::preprocess_image(
            &refs.join(name),
            spec.min_pixels,
            spec.max_pixels,
            &patch,
        )
        .unwrap();
        assert_eq!(image.grid_thw[1..], v.grid_thw[1..]);
        assert!(v.pixel_values[k * per_patch..(k + 1) * per_patch] == image.pixel_values[..]);
    }
    // Through the decode cache, keyed by the list's bytes (which carry the frames' hashes).
    let cache = DecodeCache::new(dir.path().join("cache"));
    let (c1, l1) = cache.get_or_decode(&list, &spec, &patch, true).unwrap();
    let (c2, l2) = cache.get_or_decode(&list, &spec, &patch, true).unwrap();
    assert_eq!((l1, l2), (Lookup::Miss, Lookup::Hit));
    assert!(c1.vision.pixel_values == c2.vision.pixel_values && c1.audio.is_none());
    let info = media::probe(&list).unwrap();
    assert_eq!((info.frames, info.width, info.height), (4, 224, 168));
    assert_eq!(info.audio_s, None);
}

#[test]
fn a_frame_list_of_jpegs_decodes_and_mixed_sizes_are_refused_by_frame() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]));
    let small = image::RgbImage::from_fn(32, 48, |_, _| image::Rgb([10, 20, 30]));
    let jpeg = encoded(&img, image::ImageFormat::Jpeg);
    let list = evalverse_data::frames::write(dir.path(), "j", 4.0, "jpg", &vec![jpeg; 6]).unwrap();
    let d = evalverse_data::video::decode_frames(&list, |_| true).unwrap();
    assert_eq!((d.width, d.height, d.fps, d.total_frames), (64, 48, 4.0, 6));
    let mixed = evalverse_data::frames::write(
        dir.path(),
        "m",
        2.0,
        "png",
        &[
            encoded(&img, image::ImageFormat::Png),
            encoded(&small, image::ImageFormat::Png),
        ],
    )
    .unwrap();
    let e = evalverse_data::video::decode_frames(&mixed, |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m.frames.json")
            && e.contains("frame 1")
            && e.contains("32x48")
            && e.contains("64x48"),
        "{e}"
    );
    // Not a picture at all: the frame's decode error names the list's frame file.
    let junk =
        evalverse_data::frames::write(dir.path(), "x", 2.0, "jpg", &[b"not an image".to_vec()])
            .unwrap();
    let e = evalverse_data::video::decode_frames(&junk, |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.000000.jpg"), "{e}");
}
