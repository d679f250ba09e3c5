//! Where a request's video comes from, resolved without trusting the request: a local path must
//! canonicalise (symlinks and `..` resolved) to a regular file under an allowed media root; an
//! upload (`data:video/mp4;base64,...`) is written to a private temporary file, and pre-extracted
//! frames (`data:video/jpeg;base64,<f1>,<f2>,...` as vLLM takes them, a `{"frames": [...],
//! "fps": F}` object, or a chat message's `image_url` parts) to a private temporary folder as a
//! frame list (evalverse_data::frames), both removed when the request ends; remote URLs are never
//! fetched.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::ApiError;

/// The frame rate of pre-extracted frames when the request gives none (vLLM's and
/// qwen-vl-utils' default sampling rate).
pub const DEFAULT_FRAMES_FPS: f64 = 2.0;
/// Most frames one uploaded clip may have.
pub const MAX_UPLOADED_FRAMES: usize = 768;

/// A request's video: a path, `file://` path or data URL, or frames with their frame rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VideoArg {
    Url(String),
    Frames(FramesArg),
}

/// Pre-extracted frames: base64 JPEG/PNG (bare or as `data:image/...;base64,` URLs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramesArg {
    pub frames: Vec<String>,
    #[serde(default)]
    pub fps: Option<f64>,
}

impl VideoArg {
    /// Whether the video travels in the request (not a path on the server).
    pub fn is_upload(&self) -> bool {
        match self {
            VideoArg::Url(u) => u.starts_with("data:"),
            VideoArg::Frames(_) => true,
        }
    }

    /// How results name the video: the path given, or `upload`.
    pub fn label(&self) -> String {
        match self {
            VideoArg::Url(u) if !self.is_upload() => u.clone(),
            _ => "upload".into(),
        }
    }
}

/// A video ready to decode: its path, and the temporary file or folder that holds an upload
/// (removed on drop).
#[derive(Debug)]
pub struct ResolvedVideo {
    pub path: PathBuf,
    _upload: Option<Upload>,
}

#[derive(Debug)]
enum Upload {
    File(#[allow(dead_code)] tempfile::TempPath),
    Frames(#[allow(dead_code)] tempfile::TempDir),
}

/// Canonical forms of the allowed media roots (each must exist and be a folder).
pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    roots
        .iter()
        .map(|r| {
            let c = r
                .canonicalize()
                .map_err(|e| format!("--allowed-media-root {}: {e}", r.display()))?;
            if c.is_dir() {
                Ok(c)
            } else {
                Err(format!(
                    "--allowed-media-root {}: not a folder",
                    r.display()
                ))
            }
        })
        .collect()
}

/// Resolve a request's video. `frames_fps` is the frame rate of frames sent as
/// `data:video/jpeg;base64,...` (vLLM's `media_io_kwargs.video.fps`); a frames object carries
/// its own.
pub fn resolve(
    video: &VideoArg,
    frames_fps: Option<f64>,
    roots: &[PathBuf],
    uploads: &Path,
) -> Result<ResolvedVideo, ApiError> {
    match video {
        VideoArg::Url(u) => resolve_url(u, frames_fps, roots, uploads),
        VideoArg::Frames(f) => {
            let frames = f
                .frames
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    image_bytes(x).map_err(|m| ApiError::bad_request(&format!("frame {i}: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            frames_upload(frames, f.fps.or(frames_fps), uploads)
        }
    }
}

fn resolve_url(
    video: &str,
    frames_fps: Option<f64>,
    roots: &[PathBuf],
    uploads: &Path,
) -> Result<ResolvedVideo, ApiError> {
    if let Some(rest) = video.strip_prefix("data:") {
        return upload(rest, frames_fps, uploads);
    }
    if video.starts_with("http://") || video.starts_with("https://") {
        return Err(ApiError::forbidden(
            "remote video URLs are not fetched by this server; send the video as a path under an \
             allowed media root or as data:video/mp4;base64,...",
        ));
    }
    let p = Path::new(video.strip_prefix("file://").unwrap_or(video));
    local(p, roots)
}

fn local(p: &Path, roots: &[PathBuf]) -> Result<ResolvedVideo, ApiError> {
    let Some(first) = roots.first() else {
        return Err(ApiError::forbidden(
            "local video paths are refused: the server was started without --allowed-media-root",
        ));
    };
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        first.join(p)
    };
    let denied = || {
        ApiError::forbidden(&format!(
            "video path '{}' is not a readable file under an allowed media root",
            p.display()
        ))
    };
    let c = joined.canonicalize().map_err(|_| denied())?;
    if !roots.iter().any(|r| c.starts_with(r)) {
        return Err(denied());
    }
    // A regular file only: no device files, fifos or folders. A frame list is read only as an
    // upload the server wrote itself (its frames are resolved beside it, outside this check).
    if evalverse_data::frames::is_frame_list(&c) {
        return Err(ApiError::forbidden(&format!(
            "video path '{}': frame lists are taken as uploads only",
            p.display()
        )));
    }
    match std::fs::metadata(&c) {
        Ok(m) if m.is_file() => Ok(ResolvedVideo {
            path: c,
            _upload: None,
        }),
        _ => Err(denied()),
    }
}

fn base64_bytes(data: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::bad_request(&format!("the {what}'s base64 is invalid: {e}")))
}

fn upload(rest: &str, frames_fps: Option<f64>, uploads: &Path) -> Result<ResolvedVideo, ApiError> {
    let (head, data) = rest
        .split_once(',')
        .ok_or_else(|| ApiError::bad_request("a data: URL needs a ',' before its payload"))?;
    let ext = match head {
        "video/mp4;base64" => "mp4",
        "video/webm;base64" => "webm",
        "video/quicktime;base64" => "mov",
        "video/jpeg;base64" | "video/png;base64" => {
            // vLLM's pre-extracted frames: comma-joined base64 pictures.
            let frames = data
                .split(',')
                .enumerate()
                .map(|(i, f)| base64_bytes(f, &format!("frame {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            return frames_upload(frames, frames_fps, uploads);
        }
        other => {
            return Err(ApiError::bad_request(&format!(
                "data:{other}: expected data:video/mp4;base64, (or video/webm, video/quicktime, \
                 or frames as video/jpeg, video/png)"
            )))
        }
    };
    let bytes = base64_bytes(data, "video")?;
    let mut f = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile_in(uploads)
        .map_err(|e| ApiError::internal(&format!("upload: {e}")))?;
    std::io::Write::write_all(&mut f, &bytes)
        .map_err(|e| ApiError::internal(&format!("upload: {e}")))?;
    let path = f.into_temp_path();
    Ok(ResolvedVideo {
        path: path.to_path_buf(),
        _upload: Some(Upload::File(path)),
    })
}

/// A picture's bytes from bare base64 or a `data:image/...;base64,` URL (`data:image;base64,`
/// as Flow-GRPO's clients send it included). Remote and local image URLs are refused.
pub fn image_bytes(s: &str) -> Result<Vec<u8>, String> {
    let data = match s.strip_prefix("data:") {
        Some(rest) => {
            let (head, data) = rest
                .split_once(',')
                .ok_or("a data: URL needs a ',' before its payload")?;
            if !(head.starts_with("image") && head.ends_with(";base64")) {
                return Err(format!(
                    "data:{head}: expected data:image/jpeg;base64, or data:image/png;base64,"
                ));
            }
            data
        }
        None if s.starts_with("http://") || s.starts_with("https://") || s.starts_with("file:") => {
            return Err("image URLs are not fetched by this server; send frames as base64".into())
        }
        None => s,
    };
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("invalid base64: {e}"))
}

/// The file extension of a JPEG or PNG by its magic bytes.
fn picture_kind(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else {
        None
    }
}

/// Pre-extracted frames (JPEG or PNG, all one kind) written to a private folder as a frame list.
pub fn frames_upload(
    frames: Vec<Vec<u8>>,
    fps: Option<f64>,
    uploads: &Path,
) -> Result<ResolvedVideo, ApiError> {
    if frames.is_empty() || frames.len() > MAX_UPLOADED_FRAMES {
        return Err(ApiError::bad_request(&format!(
            "{} frames; a clip has 1 to {MAX_UPLOADED_FRAMES}",
            frames.len()
        )));
    }
    let fps = fps.unwrap_or(DEFAULT_FRAMES_FPS);
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        return Err(ApiError::bad_request(&format!(
            "fps {fps} is not in (0, 1000]"
        )));
    }
    let mut kind = None;
    for (i, f) in frames.iter().enumerate() {
        let k = picture_kind(f)
            .ok_or_else(|| ApiError::bad_request(&format!("frame {i} is not a JPEG or PNG")))?;
        if kind.is_some_and(|first| first != k) {
            return Err(ApiError::bad_request(&format!(
                "frame {i} is a {k}; the clip's frames must be one kind (frame 0 is a {})",
                kind.unwrap_or_default()
            )));
        }
        kind = Some(k);
    }
    let dir = tempfile::Builder::new()
        .prefix("frames-")
        .tempdir_in(uploads)
        .map_err(|e| ApiError::internal(&format!("upload: {e}")))?;
    let path =
        evalverse_data::frames::write(dir.path(), "clip", fps, kind.unwrap_or("jpg"), &frames)
            .map_err(|e| ApiError::internal(&format!("upload: {e}")))?;
    Ok(ResolvedVideo {
        path,
        _upload: Some(Upload::Frames(dir)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(v: &str, roots: &[PathBuf], up: &Path) -> Result<ResolvedVideo, ApiError> {
        resolve_url(v, None, roots, up)
    }

    #[test]
    fn paths_outside_the_roots_symlinks_out_and_device_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.mp4"), root.join("link.mp4")).unwrap();
        let roots = canonical_roots(&[root.clone()]).unwrap();
        let up = dir.path();
        assert!(url("sub/a.mp4", &roots, up).is_ok());
        assert!(url(root.join("sub/a.mp4").to_str().unwrap(), &roots, up).is_ok());
        assert!(url(
            &format!("file://{}", root.join("sub/a.mp4").display()),
            &roots,
            up
        )
        .is_ok());
        for bad in [
            "../secret.mp4",
            "sub/../../secret.mp4",
            "link.mp4",
            "/dev/zero",
            "sub",
            "missing.mp4",
            "/etc/passwd",
        ] {
            let e = url(bad, &roots, up).unwrap_err();
            assert_eq!(e.status, 403, "{bad}: {}", e.message);
        }
        assert_eq!(url("https://x/y.mp4", &roots, up).unwrap_err().status, 403);
        assert_eq!(url("sub/a.mp4", &[], up).unwrap_err().status, 403);
    }

    #[test]
    fn an_upload_lives_as_long_as_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let v = url("data:video/mp4;base64,aGVsbG8=", &[], dir.path()).unwrap();
        assert_eq!(std::fs::read(&v.path).unwrap(), b"hello");
        let p = v.path.clone();
        drop(v);
        assert!(!p.exists(), "removed with the request");
        assert_eq!(
            url("data:video/mp4;base64,!!", &[], dir.path())
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            url("data:text/html;base64,aGk=", &[], dir.path())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn frames_become_a_private_frame_list_and_bad_frames_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let png = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/refs/pg003.png"),
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let v = url(
            &format!("data:video/png;base64,{b64},{b64},{b64}"),
            &[],
            dir.path(),
        )
        .unwrap();
        let list = evalverse_data::frames::read(&v.path).unwrap();
        assert_eq!((list.frames.len(), list.fps), (3, DEFAULT_FRAMES_FPS));
        let folder = v.path.parent().unwrap().to_path_buf();
        assert!(folder.starts_with(dir.path()));
        drop(v);
        assert!(!folder.exists(), "removed with the request");
        let arg = VideoArg::Frames(FramesArg {
            frames: vec![format!("data:image/png;base64,{b64}"), b64.clone()],
            fps: Some(8.0),
        });
        let v = resolve(&arg, None, &[], dir.path()).unwrap();
        assert_eq!(evalverse_data::frames::read(&v.path).unwrap().fps, 8.0);
        let jpeg_magic = base64::engine::general_purpose::STANDARD.encode([0xFFu8, 0xD8, 0xFF, 0]);
        for (bad, needle) in [
            (
                format!("data:video/jpeg;base64,{b64},aGVsbG8="),
                "frame 1 is not a JPEG or PNG",
            ),
            (
                format!("data:video/jpeg;base64,{b64},{jpeg_magic}"),
                "one kind",
            ),
            (
                format!("data:video/jpeg;base64,{b64},!!"),
                "frame 1's base64",
            ),
        ] {
            let e = url(&bad, &[], dir.path()).unwrap_err();
            assert!(
                e.status == 400 && e.message.contains(needle),
                "{needle}: {e:?}"
            );
        }
        let e = resolve(&arg, Some(0.0), &[], dir.path())
            .map(|_| ())
            .map_err(|e| e.status);
        assert_eq!(e, Ok(()), "the frames object's own fps wins");
        let zero = VideoArg::Frames(FramesArg {
            frames: vec![b64.clone()],
            fps: Some(0.0),
        });
        assert!(resolve(&zero, None, &[], dir.path())
            .unwrap_err()
            .message
            .contains("fps 0"));
        let remote = VideoArg::Frames(FramesArg {
            frames: vec!["https://h/a.jpg".into()],
            fps: None,
        });
        assert!(resolve(&remote, None, &[], dir.path())
            .unwrap_err()
            .message
            .contains("not fetched"));
        // A frame list under a media root is not read from a path (its frames would be outside
        // the check).
        let root = dir.path().join("media");
        std::fs::create_dir_all(&root).unwrap();
        evalverse_data::frames::write(&root, "x", 2.0, "png", &[png]).unwrap();
        let roots = canonical_roots(&[root]).unwrap();
        assert_eq!(
            url("x.frames.json", &roots, dir.path()).unwrap_err().status,
            403
        );
    }
}
