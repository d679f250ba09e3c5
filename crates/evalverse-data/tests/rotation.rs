//! A clip whose container says to turn it for display (the MP4 `tkhd` matrix that phones write
//! instead of rotating the pixels) decodes upright, as FFmpeg's autorotate shows it: every frame
//! of the rotated file equals the turned frame of the same file without the rotation.

use std::path::{Path, PathBuf};

use evalverse_data::media;
use evalverse_data::video::{decode_frames, preprocess_video, DecodedFrames, FrameSpec, PatchSpec};

/// A sample clip with a video and an audio track, 224x168, 36 frames.
fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/videos/pg001_aurora.mp4")
}

/// Boxes (type, start, size) directly inside `data[from..to]`.
fn boxes(data: &[u8], from: usize, to: usize) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut i = from;
    while i + 8 <= to {
        let size = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && i + size <= to, "64-bit or broken box at {i}");
        out.push((data[i + 4..i + 8].try_into().unwrap(), i, size));
        i += size;
    }
    out
}

/// Offset of the 3x3 matrix in the `tkhd` of the video track.
fn video_tkhd_matrix(data: &[u8]) -> usize {
    let (_, moov, moov_len) = boxes(data, 0, data.len())
        .into_iter()
        .find(|b| &b.0 == b"moov")
        .expect("moov");
    for (kind, trak, len) in boxes(data, moov + 8, moov + moov_len) {
        if &kind != b"trak" {
            continue;
        }
        let children = boxes(data, trak + 8, trak + len);
        let (_, mdia, mdia_len) = *children.iter().find(|b| &b.0 == b"mdia").expect("mdia");
        let (_, hdlr, _) = boxes(data, mdia + 8, mdia + mdia_len)
            .into_iter()
            .find(|b| &b.0 == b"hdlr")
            .expect("hdlr");
        // hdlr: header 8, version/flags 4, pre_defined 4, handler_type 4.
        if &data[hdlr + 16..hdlr + 20] != b"vide" {
            continue;
        }
        let (_, tkhd, _) = *children.iter().find(|b| &b.0 == b"tkhd").expect("tkhd");
        // tkhd: header 8, version 1 + flags 3, then times, id and duration (20 bytes in
        // version 0, 32 in version 1), reserved 8, layer 2, group 2, volume 2, reserved 2.
        let times = if data[tkhd + 8] == 1 { 32 } else { 20 };
        return tkhd + 12 + times + 16;
    }
    panic!("no video track");
}

/// A copy of the sample whose video track carries the matrix [a b 0; c d 0; tx ty 1] (a, b, c,
/// d in 16.16 fixed point), written to `dir`.
fn with_matrix(dir: &Path, name: &str, [a, b, c, d]: [i32; 4]) -> PathBuf {
    let mut data = std::fs::read(sample()).unwrap();
    let at = video_tkhd_matrix(&data);
    let one = 1 << 16;
    let matrix = [a * one, b * one, 0, c * one, d * one, 0, 0, 0, 1 << 30];
    for (k, v) in matrix.iter().enumerate() {
        data[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_be_bytes());
    }
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// RGB pixel (x, y) of a packed frame `w` wide.
fn px(frame: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
    let i = (y * w + x) * 3;
    [frame[i], frame[i + 1], frame[i + 2]]
}

/// Every frame of `turned` is `f(x, y)` of the same frame of `upright`: the source pixel of
/// output pixel (x, y).
fn assert_turned(
    upright: &DecodedFrames,
    turned: &DecodedFrames,
    f: impl Fn(usize, usize) -> (usize, usize),
) {
    assert_eq!(upright.frames.len(), turned.frames.len());
    for ((i, a), (_, b)) in upright.frames.iter().zip(&turned.frames) {
        for y in 0..turned.height {
            for x in 0..turned.width {
                let (sx, sy) = f(x, y);
                assert_eq!(
                    px(b, turned.width, x, y),
                    px(a, upright.width, sx, sy),
                    "frame {i} pixel ({x}, {y})"
                );
            }
        }
    }
}

#[test]
fn clip_rotated_90_degrees_decodes_turned_clockwise() {
    let dir = tempfile::tempdir().unwrap();
    // What a phone held upright writes (ffprobe: "rotation of -90.00 degrees", tag rotate=90).
    let path = with_matrix(dir.path(), "r90.mp4", [0, 1, -1, 0]);
    let upright = decode_frames(&sample(), |_| true).unwrap();
    let turned = decode_frames(&path, |_| true).unwrap();
    assert_eq!((upright.width, upright.height), (224, 168));
    assert_eq!((turned.width, turned.height), (168, 224));
    // Clockwise: the top row of the output is the left column of the input, read bottom-up.
    let h = upright.height;
    assert_turned(&upright, &turned, |x, y| (y, h - 1 - x));
}

#[test]
fn clip_rotated_180_degrees_decodes_upside_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_matrix(dir.path(), "r180.mp4", [-1, 0, 0, -1]);
    let upright = decode_frames(&sample(), |_| true).unwrap();
    let turned = decode_frames(&path, |_| true).unwrap();
    assert_eq!((turned.width, turned.height), (224, 168));
    let (w, h) = (upright.width, upright.height);
    assert_turned(&upright, &turned, |x, y| (w - 1 - x, h - 1 - y));
}

#[test]
fn clip_rotated_270_degrees_decodes_turned_counterclockwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_matrix(dir.path(), "r270.mp4", [0, -1, 1, 0]);
    let upright = decode_frames(&sample(), |_| true).unwrap();
    let turned = decode_frames(&path, |_| true).unwrap();
    assert_eq!((turned.width, turned.height), (168, 224));
    // Counterclockwise: the top row of the output is the right column of the input, top-down.
    let w = upright.width;
    assert_turned(&upright, &turned, |x, y| (w - 1 - y, x));
}

#[test]
fn preprocessing_and_probing_see_the_rotated_clip_upright() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_matrix(dir.path(), "r90.mp4", [0, 1, -1, 0]);
    let (spec, patch) = (FrameSpec::default(), PatchSpec::default());
    let upright = preprocess_video(&sample(), &spec, &patch).unwrap();
    let turned = preprocess_video(&path, &spec, &patch).unwrap();
    let [t, h, w] = upright.grid_thw;
    assert_ne!(h, w, "a square grid would not show the turn");
    assert_eq!(turned.grid_thw, [t, w, h]);
    let info = media::probe(&path).unwrap();
    assert_eq!((info.width, info.height), (168, 224));
}
