//! Importing public datasets: every malformed CSV row is reported with file and line, a column
//! the format does not know is refused the same way for every CSV format, and a missing video
//! is reported with each path that was tried.

use std::path::Path;

use evalverse_data::import::{import, Format, Imported, Mapping};
use evalverse_data::Taxonomy;

/// A folder with `input.csv` holding `csv` and empty video files under `videos/`.
fn csv_input(csv: &str, videos: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for v in videos {
        let p = dir.path().join("videos").join(v);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }
    std::fs::write(dir.path().join("input.csv"), csv).unwrap();
    dir
}

fn run(format: Format, dir: &Path) -> evalverse_data::Result<Imported> {
    run_on(format, dir, "input.csv")
}

/// Import `dir/file` with the videos under `dir/videos`.
fn run_on(format: Format, dir: &Path, file: &str) -> evalverse_data::Result<Imported> {
    let tax = Taxonomy::evalverse();
    import(
        format,
        &dir.join(file),
        &dir.join("videos"),
        &tax,
        &Mapping::default_for(format),
        false,
    )
}

/// (line, reason) of every bad row.
fn bad_rows(imported: &Imported) -> Vec<(usize, String)> {
    imported
        .errors
        .iter()
        .map(|e| (e.line, e.to_string()))
        .collect()
}

#[test]
fn long_csv_reports_rows_with_more_and_fewer_fields_than_the_header() {
    let dir = csv_input(
        "clip,dimension,rater,score,prompt,generator\n\
         a.mp4,lens,r1,4,A scene.,g1\n\
         b.mp4,lens,r1,3,A scene.,g1,extra\n\
         c.mp4,lens,r1,3,A scene.\n\
         d.mp4,lens,r1,2,A scene.,g1\n",
        &["a.mp4", "b.mp4", "c.mp4", "d.mp4"],
    );
    let imported = run(Format::Long, dir.path()).unwrap();
    let bad = bad_rows(&imported);
    assert_eq!(
        bad.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![3, 4],
        "{bad:#?}"
    );
    assert!(
        bad[0].1.contains("input.csv:3") && bad[0].1.contains("7 fields, the header has 6"),
        "{}",
        bad[0].1
    );
    assert!(
        bad[1].1.contains("input.csv:4") && bad[1].1.contains("5 fields, the header has 6"),
        "{}",
        bad[1].1
    );
}

#[test]
fn videoalign_csv_reports_rows_with_more_and_fewer_fields_than_the_header() {
    let dir = csv_input(
        "path_A,path_B,prompt,VQ\n\
         m1/a.mp4,m2/a.mp4,A scene.,A\n\
         m1/b.mp4,m2/b.mp4,A scene.,B,extra\n\
         m1/c.mp4,m2/c.mp4,A scene.\n",
        &[
            "m1/a.mp4", "m2/a.mp4", "m1/b.mp4", "m2/b.mp4", "m1/c.mp4", "m2/c.mp4",
        ],
    );
    let imported = run(Format::VideoAlign, dir.path()).unwrap();
    let bad = bad_rows(&imported);
    assert_eq!(
        bad.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![3, 4],
        "{bad:#?}"
    );
    assert!(
        bad[0].1.contains("5 fields, the header has 4"),
        "{}",
        bad[0].1
    );
    assert!(
        bad[1].1.contains("3 fields, the header has 4"),
        "{}",
        bad[1].1
    );
}

#[test]
fn long_csv_refuses_an_unknown_column_naming_it_and_the_allowed_ones() {
    let dir = csv_input(
        "clip,dimension,rater,score,prompt,generator,note\n\
         a.mp4,lens,r1,4,A scene.,g1,hello\n",
        &["a.mp4"],
    );
    let e = run(Format::Long, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("input.csv")
            && e.contains("line 1")
            && e.contains("unknown column 'note'")
            && e.contains("allowed:")
            && e.contains("rationale"),
        "{e}"
    );
}

#[test]
fn videoalign_csv_refuses_an_unknown_column_naming_it_and_the_allowed_ones() {
    let dir = csv_input(
        "path_A,path_B,prompt,VQ,note\n\
         m1/a.mp4,m2/a.mp4,A scene.,A,hello\n",
        &["m1/a.mp4", "m2/a.mp4"],
    );
    let e = run(Format::VideoAlign, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("input.csv")
            && e.contains("line 1")
            && e.contains("unknown column 'note'")
            && e.contains("allowed:")
            && e.contains("path_A")
            && e.contains("MQ"),
        "{e}"
    );
}

#[test]
fn csv_refuses_a_column_named_twice() {
    let dir = csv_input(
        "clip,dimension,rater,score,prompt,generator,score\n\
         a.mp4,lens,r1,4,A scene.,g1,2\n",
        &["a.mp4"],
    );
    let e = run(Format::Long, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("line 1") && e.contains("column 'score' appears twice"),
        "{e}"
    );
}

#[test]
fn videofeedback_missing_video_lists_each_candidate_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("videos")).unwrap();
    // The link's file name and `<id>.mp4` are the same candidate.
    let record = r#"{"id": "x1", "text prompt": "A scene.", "video link": "https://host/v/x1.mp4", "visual quality": 3, "temporal consistency": 3, "dynamic degree": 3, "text-to-video alignment": 3, "factual consistency": 3}"#;
    std::fs::write(dir.path().join("input.jsonl"), format!("{record}\n")).unwrap();
    let imported = run_on(Format::VideoFeedback, dir.path(), "input.jsonl").unwrap();
    assert_eq!(imported.errors.len(), 1, "{:#?}", imported.errors);
    let e = imported.errors[0].to_string();
    assert!(e.contains("no video in"), "{e}");
    assert_eq!(e.matches("x1.mp4").count(), 1, "{e}");
}
