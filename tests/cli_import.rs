//! End-to-end tests of `evalverse data import`: each format converts its fixture into a dataset
//! that `evalverse data validate` accepts (decoding every clip); every bad row is reported as
//! FILE:LINE: reason, exit 1, nothing written; usage errors exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evalverse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalverse"))
        .args(args)
        .output()
        .expect("run evalverse")
}

fn fx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/import")
        .join(name)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn import(format: &str, input: &str, videos: &str, out: &Path, extra: &[&str]) -> Output {
    let (i, v) = (fx(input), fx(videos));
    let mut args = vec![
        "data",
        "import",
        "--format",
        format,
        "--input",
        i.to_str().unwrap(),
        "--videos",
        v.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    evalverse(&args)
}

fn records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn validates(out: &Path) {
    let o = evalverse(&["data", "validate", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("every file decodes"), "{}", text(&o));
}

/// The bad rows printed, as (line, message) after "FILE:".
fn bad_rows(o: &Output, file: &Path) -> Vec<(usize, String)> {
    let prefix = format!("{}:", file.display());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("not FILE:LINE: {l}"));
            let (line, msg) = rest.split_once(": ").unwrap();
            (line.parse().unwrap(), msg.to_string())
        })
        .collect()
}

fn assert_rows(got: &[(usize, String)], want: &[(usize, &str)]) {
    let lines: Vec<usize> = got.iter().map(|(l, _)| *l).collect();
    let want_lines: Vec<usize> = want.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, want_lines, "{got:#?}");
    for ((_, msg), (line, needle)) in got.iter().zip(want) {
        assert!(
            msg.contains(needle),
            "line {line}: '{msg}' lacks '{needle}'"
        );
    }
}

#[test]
fn videofeedback_imports_five_dimensions_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vf");
    let o = import(
        "videofeedback",
        "videofeedback.json",
        "videos/kling1.5",
        &out,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    validates(&out);
    let r = records(&out);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["id"], "kling1.5_00001");
    assert_eq!(r[0]["video"], "videos/kling1.5_00001.mp4");
    assert_eq!(
        r[0]["prompt_group"], r[1]["prompt_group"],
        "same prompt, one group"
    );
    let score = |rec: &serde_json::Value, dim: &str| {
        rec["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["dimension"] == dim)
            .map(|a| a["score"].clone())
    };
    assert_eq!(score(&r[0], "visual_quality"), Some(3.into()));
    assert_eq!(score(&r[0], "action"), Some(2.into()), "dynamic degree");
    assert_eq!(score(&r[0], "prompt_following"), Some(3.into()));
    assert_eq!(r[0]["annotations"].as_array().unwrap().len(), 5);

    // --rescale maps 1-4 onto 1-5: 1 -> 1, 3 -> 3.67 -> 4, 4 -> 5.
    let out2 = dir.path().join("vf_rescaled");
    let o = import(
        "videofeedback",
        "videofeedback.json",
        "videos/kling1.5",
        &out2,
        &["--rescale"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = records(&out2);
    let num = |v: Option<serde_json::Value>| v.and_then(|x| x.as_f64());
    assert_eq!(num(score(&r[0], "visual_quality")), Some(4.0));
    assert_eq!(num(score(&r[0], "temporal_consistency")), Some(5.0));
    assert_eq!(num(score(&r[1], "visual_quality")), Some(1.0));
    validates(&out2);
}

#[test]
fn videofeedback_reports_every_bad_record_with_its_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vf");
    let o = import(
        "videofeedback",
        "videofeedback_bad.jsonl",
        "videos/kling1.5",
        &out,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_rows(
        &bad_rows(&o, &fx("videofeedback_bad.jsonl")),
        &[
            (1, "outside the source scale 1-4"),
            (2, "missing 'text prompt'"),
            (4, "no video"),
            (5, "must be an integer score, got 2.5"),
            (6, "missing score 'factual consistency'"),
            (8, "score from rater 'videofeedback' (line 7)"),
            (9, "not valid JSON"),
        ],
    );
    assert!(
        text(&o).contains("7 bad row(s); nothing written"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary folder left"
    );
}

#[test]
fn videoalign_pairs_import_with_generators_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("va");
    let o = import("videoalign", "videoalign.csv", "", &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    validates(&out);
    let r = records(&out);
    let clips: Vec<_> = r.iter().filter(|x| x["record"] == "clip").collect();
    let pairs: Vec<_> = r.iter().filter(|x| x["record"] == "pair").collect();
    assert_eq!(clips.len(), 4);
    assert_eq!(pairs.len(), 9, "3 rows x VQ/MQ/TA; Overall skipped");
    assert_eq!(clips[1]["generator"], "minimax");
    assert_eq!(pairs[0]["a"], "videos_kling1_5_kling1_5_00001");
    assert_eq!(pairs[0]["dimension"], "visual_quality");
    assert_eq!(pairs[1]["preference"], "tie", "MQ same");
    assert_eq!(pairs[2]["dimension"], "prompt_following");
    assert_eq!(pairs[2]["preference"], "b");
}

#[test]
fn videoalign_bad_rows_are_all_reported_with_csv_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("va");
    let o = import("videoalign", "videoalign_bad.csv", "", &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_rows(
        &bad_rows(&o, &fx("videoalign_bad.csv")),
        &[
            (2, "MQ must be A, B or same, got 'C'"),
            (4, "the same video"),
            (5, "does not exist"),
            (6, "without '..'"),
            (7, "no folder naming the generator"),
        ],
    );
    assert!(!out.exists());
}

#[test]
fn long_csv_imports_with_a_map_file_and_rescales_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let map = fx("long_map.toml");
    let map = map.to_str().unwrap();

    // Without the map, "shot_quality" is not a taxonomy dimension.
    let out = dir.path().join("plain");
    let o = import("long", "long.csv", "", &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_rows(
        &bad_rows(&o, &fx("long.csv")),
        &[(7, "'shot_quality' has no mapping")],
    );

    let out = dir.path().join("mapped");
    let o = import("long", "long.csv", "", &out, &["--map", map]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    validates(&out);
    let r = records(&out);
    assert_eq!(r.len(), 3);
    let lens: Vec<_> = r[0]["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["dimension"] == "lens")
        .map(|a| a["score"].as_f64().unwrap())
        .collect();
    assert_eq!(lens, vec![4.0, 3.0], "kept as they are");
    assert_eq!(r[0]["annotations"][0]["rationale"], "Sharp, well exposed.");
    assert_eq!(r[0]["annotations"][2]["score"], "N/A");
    assert_eq!(r[2]["annotations"][0]["dimension"], "lens");

    // 1-10 onto 1-5: 4 -> 2.33 -> 2, 3 -> 1.89 -> 2, 5 -> 2.78 -> 3.
    let out = dir.path().join("rescaled");
    let o = import("long", "long.csv", "", &out, &["--map", map, "--rescale"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = records(&out);
    assert_eq!(r[0]["annotations"][0]["score"].as_f64(), Some(2.0));
    assert_eq!(r[0]["annotations"][1]["score"].as_f64(), Some(2.0));
    assert_eq!(r[2]["annotations"][0]["score"].as_f64(), Some(3.0));
    validates(&out);
}

#[test]
fn long_csv_bad_rows_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad");
    let o = import("long", "long_bad.csv", "", &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_rows(
        &bad_rows(&o, &fx("long_bad.csv")),
        &[
            (2, "score 7 is not on the scale of 'lens'"),
            (3, "'smell' has no mapping"),
            (
                5,
                "already has a 'lens' score from rater 'expert_02' (line 4)",
            ),
            (6, "score 'abc' is not a number or N/A"),
            (7, "prompt differs from line 4"),
            (8, "N/A for 'composition'"),
            (9, "a score for 'vocal'"),
            (10, "empty rater"),
        ],
    );
    assert!(!out.exists());
}

#[test]
fn usage_errors_exit_two_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // --rescale without a source scale (the long CSV has none by default).
    let o = import(
        "long",
        "long.csv",
        "",
        &dir.path().join("a"),
        &["--rescale"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--rescale needs the source scale"),
        "{}",
        text(&o)
    );
    // A map onto an unknown dimension names the file and the known ids.
    let bad_map = dir.path().join("map.toml");
    std::fs::write(&bad_map, "[dimensions]\nVQ = \"sharpness\"\n").unwrap();
    let o = import(
        "videoalign",
        "videoalign.csv",
        "",
        &dir.path().join("b"),
        &["--map", bad_map.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("map.toml") && text(&o).contains("\"sharpness\""),
        "{}",
        text(&o)
    );
    // An unknown format, and a non-empty output folder.
    let o = import("parquet", "long.csv", "", &dir.path().join("c"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("allowed: videofeedback, videoalign, long"),
        "{}",
        text(&o)
    );
    std::fs::write(dir.path().join("keep.txt"), "x").unwrap();
    let o = import("long", "long.csv", "", dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not an empty folder"), "{}", text(&o));
}
