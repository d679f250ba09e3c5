//! A clip given as still frames: a frame list `NAME.frames.json` beside its images,
//! `{"format": "evalverse.frames/1", "fps": 2.0, "frames": [{"file": "000000.jpg", "sha256":
//! "..."}, ...]}`. RL loops often hold sampled frames rather than an encoded video (vLLM's
//! `data:video/jpeg;base64,<f1>,<f2>,...`, UnifiedReward's frames as images); a frame list lets
//! them reach the same decode, sampling and cache path as a video file. Frame files are plain
//! names in the list's own folder and each carries its SHA-256, so the list's bytes (which the
//! decode cache hashes) stand for the pictures' content, and a frame changed after the list was
//! written is refused rather than read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// The file-name ending that marks a frame list.
pub const SUFFIX: &str = ".frames.json";
/// The `format` a frame list declares.
pub const FORMAT: &str = "evalverse.frames/1";
/// Most frames one list may hold.
pub const MAX_FRAMES: usize = 4096;

/// Whether `path` names a frame list (by its ending).
pub fn is_frame_list(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(SUFFIX))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    format: String,
    fps: f64,
    frames: Vec<ListedFrame>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedFrame {
    file: String,
    sha256: String,
}

/// A frame list read and checked: its frame rate and the frames' paths, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameList {
    pub fps: f64,
    pub frames: Vec<PathBuf>,
    hashes: Vec<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A frame's file name must be a plain name: no folder, no `..`, nothing hidden.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && !name.ends_with(SUFFIX)
        && Path::new(name).components().count() == 1
}

/// Read and check a frame list (format, fps, names); the frames are read by `frame_bytes`.
pub fn read(path: &Path) -> Result<FrameList> {
    let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bad = |m: String| DataError::decode(path, format!("frame list: {m}"));
    let list: ListFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if list.format != FORMAT {
        return Err(bad(format!(
            "format '{}', expected '{FORMAT}'",
            list.format
        )));
    }
    if !(list.fps.is_finite() && list.fps > 0.0 && list.fps <= 1000.0) {
        return Err(bad(format!("fps {} is not in (0, 1000]", list.fps)));
    }
    if list.frames.is_empty() || list.frames.len() > MAX_FRAMES {
        return Err(bad(format!(
            "{} frames; a list holds 1 to {MAX_FRAMES}",
            list.frames.len()
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut frames = Vec::with_capacity(list.frames.len());
    let mut hashes = Vec::with_capacity(list.frames.len());
    for (i, f) in list.frames.iter().enumerate() {
        if !plain_name(&f.file) {
            return Err(bad(format!(
                "frame {i}: '{}' is not a plain file name in the list's folder",
                f.file
            )));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "frame {i}: sha256 '{}' is not 64 hex digits",
                f.sha256
            )));
        }
        frames.push(dir.join(&f.file));
        hashes.push(f.sha256.to_ascii_lowercase());
    }
    Ok(FrameList {
        fps: list.fps,
        frames,
        hashes,
    })
}

impl FrameList {
    /// Frame `i`'s path, checked: a regular file (not a link) whose bytes have the listed hash.
    pub fn checked_frame(&self, list: &Path, i: usize) -> Result<&Path> {
        let p = &self.frames[i];
        let meta = std::fs::symlink_metadata(p).map_err(|e| DataError::io(p, e))?;
        if !meta.is_file() {
            return Err(DataError::decode(
                list,
                format!("frame {i} ({}) is not a regular file", p.display()),
            ));
        }
        let bytes = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
        if sha256_hex(&bytes) != self.hashes[i] {
            return Err(DataError::decode(
                list,
                format!(
                    "frame {i} ({}) does not have the listed sha256",
                    p.display()
                ),
            ));
        }
        Ok(p)
    }
}

/// Write `frames` (encoded images: JPEG, PNG, ...; `ext` without the dot) and their list into
/// `dir` as `stem.frames.json` (atomically: the list is written last, by rename); returns the
/// list's path.
pub fn write(dir: &Path, stem: &str, fps: f64, ext: &str, frames: &[Vec<u8>]) -> Result<PathBuf> {
    let mut listed = Vec::with_capacity(frames.len());
    for (i, bytes) in frames.iter().enumerate() {
        let file = format!("{stem}.{i:06}.{ext}");
        let p = dir.join(&file);
        std::fs::write(&p, bytes).map_err(|e| DataError::io(&p, e))?;
        listed.push(ListedFrame {
            file,
            sha256: sha256_hex(bytes),
        });
    }
    let list = ListFile {
        format: FORMAT.into(),
        fps,
        frames: listed,
    };
    let path = dir.join(format!("{stem}{SUFFIX}"));
    let tmp = dir.join(format!(".{stem}{SUFFIX}.tmp"));
    let text = serde_json::to_vec(&list).expect("a frame list serialises");
    std::fs::write(&tmp, text).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_list_reads_back_and_refuses_what_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "clip",
            2.0,
            "jpg",
            &[b"a".to_vec(), b"b".to_vec()],
        )
        .unwrap();
        assert!(is_frame_list(&p));
        let l = read(&p).unwrap();
        assert_eq!(l.fps, 2.0);
        assert_eq!(l.frames.len(), 2);
        assert!(l.checked_frame(&p, 1).is_ok());
        // A frame changed after the list was written.
        std::fs::write(&l.frames[1], b"c").unwrap();
        let e = l.checked_frame(&p, 1).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("frame 1"), "{e}");
        for (body, want) in [
            (r#"{"format":"x","fps":2,"frames":[]}"#, "format 'x'"),
            (
                r#"{"format":"evalverse.frames/1","fps":0,"frames":[]}"#,
                "fps 0",
            ),
            (
                r#"{"format":"evalverse.frames/1","fps":2,"frames":[]}"#,
                "0 frames",
            ),
            (
                r#"{"format":"evalverse.frames/1","fps":2,"frames":[{"file":"../x.jpg","sha256":"00"}]}"#,
                "plain file name",
            ),
            (
                r#"{"format":"evalverse.frames/1","fps":2,"frames":[{"file":"x.jpg","sha256":"00"}]}"#,
                "64 hex digits",
            ),
        ] {
            let q = dir.path().join("bad.frames.json");
            std::fs::write(&q, body).unwrap();
            let e = read(&q).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("bad.frames.json"),
                "{body}: {e}"
            );
        }
    }
}
