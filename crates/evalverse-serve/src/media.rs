//! Where a request's video comes from, resolved without trusting the request: a local path must
//! canonicalise (symlinks and `..` resolved) to a regular file under an allowed media root; an
//! upload (`data:video/mp4;base64,...`) is written to a private temporary file that is removed
//! when the request ends; remote URLs are never fetched.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::ApiError;

/// A video ready to decode: its path, and the temporary file that holds an upload (removed on
/// drop).
#[derive(Debug)]
pub struct ResolvedVideo {
    pub path: PathBuf,
    _upload: Option<tempfile::TempPath>,
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

/// Resolve `video` (a path, `file://` path or a `data:video/...;base64,` upload).
pub fn resolve(video: &str, roots: &[PathBuf], uploads: &Path) -> Result<ResolvedVideo, ApiError> {
    if let Some(rest) = video.strip_prefix("data:") {
        return upload(rest, uploads);
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
    // A regular file only: no device files, fifos or folders.
    match std::fs::metadata(&c) {
        Ok(m) if m.is_file() => Ok(ResolvedVideo {
            path: c,
            _upload: None,
        }),
        _ => Err(denied()),
    }
}

fn upload(rest: &str, uploads: &Path) -> Result<ResolvedVideo, ApiError> {
    let (head, data) = rest
        .split_once(',')
        .ok_or_else(|| ApiError::bad_request("a data: URL needs a ',' before its payload"))?;
    let ext = match head {
        "video/mp4;base64" => "mp4",
        "video/webm;base64" => "webm",
        "video/quicktime;base64" => "mov",
        other => {
            return Err(ApiError::bad_request(&format!(
                "data:{other}: expected data:video/mp4;base64, (or video/webm, video/quicktime)"
            )))
        }
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::bad_request(&format!("the video's base64 is invalid: {e}")))?;
    let mut f = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile_in(uploads)
        .map_err(|e| ApiError::internal(&format!("upload: {e}")))?;
    std::io::Write::write_all(&mut f, &bytes)
        .map_err(|e| ApiError::internal(&format!("upload: {e}")))?;
    let path = f.into_temp_path();
    Ok(ResolvedVideo {
        path: path.to_path_buf(),
        _upload: Some(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(resolve("sub/a.mp4", &roots, up).is_ok());
        assert!(resolve(root.join("sub/a.mp4").to_str().unwrap(), &roots, up).is_ok());
        assert!(resolve(
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
            let e = resolve(bad, &roots, up).unwrap_err();
            assert_eq!(e.status, 403, "{bad}: {}", e.message);
        }
        assert_eq!(
            resolve("https://x/y.mp4", &roots, up).unwrap_err().status,
            403
        );
        assert_eq!(resolve("sub/a.mp4", &[], up).unwrap_err().status, 403);
    }

    #[test]
    fn an_upload_lives_as_long_as_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let v = resolve("data:video/mp4;base64,aGVsbG8=", &[], dir.path()).unwrap();
        assert_eq!(std::fs::read(&v.path).unwrap(), b"hello");
        let p = v.path.clone();
        drop(v);
        assert!(!p.exists(), "removed with the request");
        assert_eq!(
            resolve("data:video/mp4;base64,!!", &[], dir.path())
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            resolve("data:text/html;base64,aGk=", &[], dir.path())
                .unwrap_err()
                .status,
            400
        );
    }
}
