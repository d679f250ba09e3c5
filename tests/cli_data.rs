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
fn missing_dataset_is_a_usage_error() {
    let o = evalverse(&["data", "stats", "/nonexistent/dataset"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("/nonexistent/dataset: no such dataset folder"),
        "{}",
        text(&o)
    );
}

/// Exit 2, usage or configuration: an input the command line names that is not there. The same
/// in every subcommand; each message names what is missing.
#[test]
fn a_missing_input_is_a_usage_error_in_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let gone = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (data, video, list, run) = (gone("data"), gone("v.mp4"), gone("l.jsonl"), gone("run"));
    let (recipe, csv, out) = (gone("r.toml"), gone("in.csv"), gone("out"));
    let sample = sample();
    let sample = sample.to_str().unwrap();
    let base = ["--checkpoint", "none", "--base", sample];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["data", "stats", &data], &data),
        (vec!["data", "validate", &data], &data),
        (
            vec![
                "data", "import", "--format", "long", "--input", &csv, "--videos", sample, "--out",
                &out,
            ],
            &csv,
        ),
        (vec!["train", &recipe], &recipe),
        (vec!["ablate", &recipe], &recipe),
        (vec!["leaderboard", &run], &run),
        (vec!["fuse", "--run", &run, "--data", sample], &run),
        (vec!["export", &run, "--format", "peft"], &run),
        (
            [&["judge", &video, "--prompt", "p"][..], &base].concat(),
            &video,
        ),
        (
            [&["score", &list, "--out", &out][..], &base].concat(),
            &list,
        ),
        (vec!["eval", "--judge", &run, "--data", sample], &run),
        (
            vec![
                "eval",
                "--checkpoint",
                "none",
                "--base",
                &run,
                "--data",
                sample,
            ],
            &run,
        ),
    ];
    for (args, named) in cases {
        let o = evalverse(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(named), "{args:?}: {}", text(&o));
    }
}

/// Exit 2, usage or configuration: a configuration file that is malformed, or settings the
/// command cannot work with (dataset.toml here; recipes, taxonomies and config.json have their
/// own tests).
#[test]
fn a_malformed_configuration_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dataset.toml"), "splits = 3\n").unwrap();
    std::fs::write(dir.path().join("manifest.jsonl"), "").unwrap();
    for cmd in ["stats", "validate"] {
        let o = evalverse(&["data", cmd, dir.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o));
        assert!(text(&o).contains("dataset.toml"), "{cmd}: {}", text(&o));
    }
    let o = evalverse(&[
        "data",
        "synth",
        "--out",
        dir.path().join("s").to_str().unwrap(),
        "--width",
        "31",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--width"), "{}", text(&o));
}

/// Exit 1, invalid data: the input is there and readable, and records in it are wrong; the
/// commands that read a dataset say so the same way.
#[test]
fn invalid_records_are_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    std::fs::write(ds.join("dataset.toml"), "name = \"bad\"\n").unwrap();
    std::fs::write(ds.join("manifest.jsonl"), "{broken\n").unwrap();
    let data = ds.to_str().unwrap();
    // The dataset is read before the model: the (missing) base is never reached.
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\noutput_dir = \"{}\"\n[model]\nsource = \"{}\"\n[lora]\nrank = 4\n\
             alpha = 8\n[data]\ndataset = \"{data}\"\n[stage]\nkind = \"sft\"\n[optim]\n\
             lr = 1e-3\n[schedule]\ndecay = \"constant\"\n[train]\nmax_steps = 2\n",
            dir.path().join("run").display(),
            dir.path().join("no-base").display(),
        ),
    )
    .unwrap();
    let recipe = recipe.to_str().unwrap();
    for args in [
        vec!["data", "stats", data],
        vec!["data", "validate", data],
        vec!["train", recipe],
    ] {
        let o = evalverse(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("manifest.jsonl:1"),
            "{args:?}: {}",
            text(&o)
        );
    }
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
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not empty"));
}
