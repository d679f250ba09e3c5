//! Fuzz target of the server's request bodies: `/v1/score` bodies (real requests mutated
//! through their JSON tree or bytes, and arbitrary bytes) through `parse_score_request`, and
//! every item's video through `media::resolve` against a media root holding a file, a folder,
//! a symlink out of it and a file beside it. The property: no panic, no hang; a refused body is
//! a 400 with a message; a video resolves only to a regular file under the root, else a 4xx
//! (or a 500 only for an upload that could not be written). Cases: PROPTEST_CASES (default
//! 256); scripts/fuzz_long.sh runs it for minutes (FUZZ_SECONDS).

#[macro_use]
#[path = "../../evalverse-data/tests/fuzz_support/mod.rs"]
mod support;

use evalverse_serve::media;
use support::{fuzz, show, Seeds};

#[test]
fn fuzz_score_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/a.mp4"), b"x").unwrap();
    std::fs::write(dir.path().join("secret.mp4"), b"x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.mp4"), root.join("out.mp4")).unwrap();
    let roots = media::canonical_roots(&[root.clone()]).unwrap();
    let uploads = dir.path().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    let seeds = Seeds::json(
        vec![
            br#"{"items": [{"video": "sub/a.mp4", "prompt": "a cat", "dimensions": ["lens", "vocal"]}]}"#.to_vec(),
            br#"{"items": [{"id": "x", "video": "data:video/mp4;base64,aGVsbG8=", "prompt": "p", "rationale": true}, {"video": "file:///etc/passwd", "prompt": "q"}]}"#.to_vec(),
            br#"{"items": [{"video": "../secret.mp4", "prompt": "p", "reference": "sub/a.mp4"}, {"video": "out.mp4", "prompt": "p"}, {"video": "/dev/zero", "prompt": "p"}, {"video": "https://h/v.mp4", "prompt": "p"}]}"#.to_vec(),
        ],
        &["sub", "a.mp4", "..", "/", "data:", "video/mp4;base64,", "file://", "sub/..", "out.mp4", "/dev/null"],
    );
    let canonical_root = roots[0].clone();
    fuzz("score_request", support::input(), |input| {
        let bytes = seeds.materialise(input);
        let items = match evalverse_serve::parse_score_request(&bytes, 256) {
            Ok(items) => {
                support::tally("parsed");
                items
            }
            Err(e) => {
                support::tally("refused");
                ensure!(
                    e.status == 400 && !e.message.is_empty(),
                    "{e:?}: {}",
                    show(&bytes)
                );
                return Ok(());
            }
        };
        for it in &items {
            match media::resolve(&it.video, None, &roots, &uploads) {
                Ok(v) => {
                    if it.video.is_upload() {
                        ensure!(
                            v.path.starts_with(&uploads),
                            "upload outside the upload folder: {v:?}"
                        );
                    } else {
                        ensure!(
                            v.path.starts_with(&canonical_root) && v.path.is_file(),
                            "{:?} resolved to {:?}, outside the root or not a file",
                            it.video,
                            v.path
                        );
                    }
                    support::tally("resolved");
                }
                Err(e) => {
                    support::tally("video refused");
                    ensure!(
                        matches!(e.status, 400 | 403) && !e.message.is_empty(),
                        "{:?}: {e:?}",
                        it.video
                    );
                }
            }
        }
        Ok(())
    });
}
