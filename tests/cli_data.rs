//! End-to-end tests of the `evalverse data` subcommands: output, and exit codes
//! (0 ok, 1 runtime failure or invalid data, 2 usage or configuration error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evalverse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalverse"))
        .args(args)
        .output()
        .expect("run evalverse")
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn validate_sample_exits_zero() {
    let o = evalverse(&["data", "validate", sample().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("100 clips") && text(&o).contains("every file decodes"));
}

#[test]
fn validate_reports_each_bad_line_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("videos")).unwrap();
    std::fs::copy(
        sample().join("videos/pg000_aurora.mp4"),
        dir.path().join("videos/a.mp4"),
    )
    .unwrap();
    let good = r#"{"record":"clip","id":"a","task":"t2v","prompt":"p","video":"videos/a.mp4","generator":"g","prompt_group":"pg","annotations":[{"rater":"r1","dimension":"lens","score":3}]}"#;
    let bad_score = good
        .replace("\"id\":\"a\"", "\"id\":\"b\"")
        .replace("\"score\":3", "\"score\":6");
    std::fs::write(
        dir.path().join("manifest.jsonl"),
        format!("{good}\n{{broken\n{bad_score}\n"),
    )
    .unwrap();
    let o = evalverse(&["data", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("manifest.jsonl:2: malformed JSON"), "{out}");
    assert!(
        out.contains("manifest.jsonl:3: clip 'b'") && out.contains("score 6"),
        "{out}"
    );
    assert!(out.contains("2 problem(s)"), "{out}");
}

#[test]
fn stats_prints_splits_and_agreement() {
    let o = evalverse(&["data", "stats", sample().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clips"], 100);
    let dims = v["per_dimension"].as_array().unwrap();
    assert_eq!(dims.len(), 21);
    let lens = dims.iter().find(|d| d["dimension"] == "lens").unwrap();
    let alpha = lens["alpha_interval"].as_f64().unwrap();
    assert!(
        alpha > 0.3 && alpha < 0.95,
        "simulated raters agree, but not perfectly: {alpha}"
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let o = evalverse(&["data", "validate", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn bad_taxonomy_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dataset.toml"), "taxonomy = \"tax.toml\"\n").unwrap();
    std::fs::write(dir.path().join("tax.toml"), "name = 1\n").unwrap();
    std::fs::write(dir.path().join("manifest.jsonl"), "").unwrap();
    let o = evalverse(&["data", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("tax.toml"), "{}", text(&o));
}

#[test]
fn missing_dataset_is_a_runtime_error() {
    let o = evalverse(&["data", "stats", "/nonexistent/dataset"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("/nonexistent/dataset/manifest.jsonl"),
        "{}",
        text(&o)
    );
}

#[test]
fn synth_is_reproducible_from_its_seed_and_validates() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [&a, &b] {
        let out = d.path().join("ds");
        let o = evalverse(&[
            "data",
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--clips",
            "10",
            "--seed",
            "3",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let read = |d: &tempfile::TempDir, f: &str| std::fs::read(d.path().join("ds").join(f)).unwrap();
    assert_eq!(read(&a, "manifest.jsonl"), read(&b, "manifest.jsonl"));
    assert_eq!(
        read(&a, "videos/pg001_echo.mp4"),
        read(&b, "videos/pg001_echo.mp4"),
        "videos are byte-identical"
    );
    let o = evalverse(&["data", "validate", a.path().join("ds").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Refuses to write into a non-empty folder rather than mixing datasets.
    let o = evalverse(&[
        "data",
        "synth",
        "--out",
        a.path().join("ds").to_str().unwrap(),
        "--clips",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not empty"));
}
