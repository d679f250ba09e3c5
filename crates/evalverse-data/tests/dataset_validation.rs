//! Every kind of bad record is reported with file:line and a reason, validation never stops at
//! the first problem, and the bundled sample dataset is clean.

use std::path::{Path, PathBuf};

use evalverse_data::dataset::{Dataset, Issue};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")
}

/// A dataset folder with two real clips copied from data/sample and the given manifest lines.
fn dataset_with(lines: &[String]) -> tempfile::TempDir {
    dataset_with_bytes(lines.join("\n").as_bytes())
}

/// A dataset folder with two real clips copied from data/sample and `manifest` as its manifest.
fn dataset_with_bytes(manifest: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("videos")).unwrap();
    for id in ["pg000_aurora", "pg000_borealis"] {
        std::fs::copy(
            sample_dir().join(format!("videos/{id}.mp4")),
            dir.path().join(format!("videos/{id}.mp4")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("manifest.jsonl"), manifest).unwrap();
    dir
}

fn clip(id: &str, video: &str, annotations: &str) -> String {
    format!(
        r#"{{"record":"clip","id":"{id}","task":"t2v","prompt":"A tense scene.","video":"{video}","generator":"g1","prompt_group":"pg0","annotations":[{annotations}]}}"#
    )
}

fn ann(rater: &str, dim: &str, score: &str) -> String {
    format!(r#"{{"rater":"{rater}","dimension":"{dim}","score":{score}}}"#)
}

fn good_pair() -> Vec<String> {
    vec![
        clip("a", "videos/pg000_aurora.mp4", &ann("r1", "lens", "4")),
        clip("b", "videos/pg000_borealis.mp4", &ann("r1", "lens", "2")),
    ]
}

fn issues_of(lines: &[String]) -> Vec<Issue> {
    let dir = dataset_with(lines);
    let (ds, mut issues) = Dataset::open(dir.path()).unwrap();
    issues.extend(ds.check_media(|_, _| {}));
    issues
}

fn assert_one_issue(lines: &[String], line: usize, needle: &str) {
    let issues = issues_of(lines);
    assert_eq!(
        issues.len(),
        1,
        "expected one issue containing '{needle}', got {issues:#?}"
    );
    let text = issues[0].to_string();
    assert_eq!(issues[0].line, Some(line), "{text}");
    assert!(
        text.contains("manifest.jsonl:") && text.contains(needle),
        "'{needle}' not in: {text}"
    );
}

#[test]
fn well_formed_manifest_has_no_issues() {
    assert!(issues_of(&good_pair()).is_empty());
}

#[test]
fn manifest_reports_malformed_json_with_line() {
    let mut lines = good_pair();
    lines.insert(1, "{\"record\":\"clip\", \"id\": ".into());
    assert_one_issue(&lines, 2, "malformed JSON");
}

#[test]
fn manifest_rejects_unknown_dimension() {
    let mut lines = good_pair();
    lines[1] = clip("b", "videos/pg000_borealis.mp4", &ann("r1", "smell", "3"));
    assert_one_issue(&lines, 2, "unknown dimension 'smell'");
}

#[test]
fn manifest_rejects_score_outside_scale() {
    let mut lines = good_pair();
    lines[0] = clip("a", "videos/pg000_aurora.mp4", &ann("r1", "lens", "7"));
    assert_one_issue(&lines, 1, "score 7 for 'lens' is outside the scale 1..=5");
}

#[test]
fn manifest_rejects_fractional_score_between_levels() {
    let mut lines = good_pair();
    lines[0] = clip("a", "videos/pg000_aurora.mp4", &ann("r1", "lens", "3.5"));
    assert_one_issue(&lines, 1, "outside the scale");
}

#[test]
fn manifest_rejects_na_where_dimension_always_applies() {
    let mut lines = good_pair();
    lines[0] = clip(
        "a",
        "videos/pg000_aurora.mp4",
        &ann("r1", "lens", "\"N/A\""),
    );
    assert_one_issue(&lines, 1, "answers N/A for 'lens'");
}

#[test]
fn manifest_rejects_score_for_multishot_dimension_on_single_shot_clip() {
    let mut lines = good_pair();
    lines[0] = clip("a", "videos/pg000_aurora.mp4", &ann("r1", "rhythm", "4"));
    assert_one_issue(&lines, 1, "must be \"N/A\"");
}

#[test]
fn manifest_rejects_path_outside_root() {
    let mut lines = good_pair();
    lines[0] = clip("a", "../outside.mp4", "");
    assert_one_issue(&lines, 1, "escapes the dataset root");
    lines[0] = clip("a", "/etc/passwd", "");
    assert_one_issue(&lines, 1, "is absolute");
}

#[test]
fn manifest_rejects_missing_file() {
    let mut lines = good_pair();
    lines[0] = clip("a", "videos/nope.mp4", "");
    assert_one_issue(&lines, 1, "'videos/nope.mp4' does not exist");
}

#[test]
fn manifest_rejects_duplicate_id() {
    let mut lines = good_pair();
    lines.push(clip("a", "videos/pg000_aurora.mp4", ""));
    assert_one_issue(&lines, 3, "duplicate id (first at line 1)");
}

#[test]
fn manifest_rejects_ranking_naming_unknown_clip() {
    let mut lines = good_pair();
    lines.push(r#"{"record":"ranking","prompt_group":"pg0","dimension":"lens","rater":"r1","order":[["a"],["zz","b"]]}"#.into());
    assert_one_issue(&lines, 3, "names unknown clip 'zz'");
}

#[test]
fn ranking_with_ties_is_accepted() {
    let mut lines = good_pair();
    lines.push(r#"{"record":"ranking","prompt_group":"pg0","dimension":"lens","rater":"r1","order":[["a","b"]]}"#.into());
    lines.push(r#"{"record":"pair","prompt_group":"pg0","dimension":"lens","rater":"r2","a":"a","b":"b","preference":"tie"}"#.into());
    assert!(issues_of(&lines).is_empty());
}

#[test]
fn manifest_rejects_undecodable_video() {
    let lines = good_pair();
    let dir = dataset_with(&lines);
    let path = dir.path().join("videos/pg000_borealis.mp4");
    let bytes = std::fs::read(&path).unwrap();
    // Keep the container header, cut the stream in the middle: a truncated download.
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let (ds, issues) = Dataset::open(dir.path()).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    let media = ds.check_media(|_, _| {});
    assert_eq!(media.len(), 1, "{media:#?}");
    let text = media[0].to_string();
    assert!(
        text.contains(":2: clip 'b'") && text.contains("undecodable video"),
        "{text}"
    );
    assert!(
        text.contains("pg000_borealis.mp4"),
        "the message names the file: {text}"
    );
}

#[test]
fn validation_reports_every_problem_not_just_the_first() {
    let lines = vec![
        "not json".to_string(),
        clip("a", "videos/pg000_aurora.mp4", &[ann("r1", "lens", "9"), ann("r1", "smell", "1")].join(",")),
        clip("a", "../x.mp4", ""),
        r#"{"record":"ranking","prompt_group":"pg0","dimension":"lens","rater":"r1","order":[["a"],["ghost"]]}"#.into(),
    ];
    let issues = issues_of(&lines);
    let lines_hit: Vec<_> = issues.iter().map(|i| i.line.unwrap()).collect();
    assert_eq!(issues.len(), 6, "{issues:#?}");
    assert_eq!(lines_hit, vec![1, 2, 2, 3, 3, 4]);
}

#[test]
fn load_refuses_dataset_with_issues_and_names_them() {
    let mut lines = good_pair();
    lines[0] = clip("a", "videos/pg000_aurora.mp4", &ann("r1", "lens", "0"));
    let dir = dataset_with(&lines);
    let e = Dataset::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("1 problem") && e.contains("manifest.jsonl:1"),
        "{e}"
    );
}

#[test]
fn sample_dataset_is_clean_and_splits_keep_groups_whole() {
    let ds = Dataset::load(&sample_dir()).unwrap();
    assert_eq!(ds.clips.len(), 100);
    let mut split_of_group = std::collections::HashMap::new();
    for c in &ds.clips {
        let s = ds.split_of(&c.record);
        assert_eq!(
            *split_of_group
                .entry(c.record.prompt_group.clone())
                .or_insert(s),
            s
        );
    }
    assert!(ds.clips_in(evalverse_data::split::Split::Test).count() > 0);
}

fn ranking(order: &str) -> String {
    format!(
        r#"{{"record":"ranking","prompt_group":"pg0","dimension":"lens","rater":"r1","order":{order}}}"#
    )
}

fn pair(a: &str, b: &str) -> String {
    format!(
        r#"{{"record":"pair","prompt_group":"pg0","dimension":"lens","rater":"r2","a":"{a}","b":"{b}","preference":"tie"}}"#
    )
}

/// (line, text) of every issue of a manifest given as bytes.
fn issues_of_bytes(manifest: &[u8]) -> Vec<(Option<usize>, String)> {
    let dir = dataset_with_bytes(manifest);
    let (_, issues) = Dataset::open(dir.path()).unwrap();
    issues.iter().map(|i| (i.line, i.to_string())).collect()
}

#[test]
fn invalid_utf8_is_reported_once_per_line_and_the_other_lines_are_read() {
    let good = good_pair();
    let mut bytes = good[0].clone().into_bytes();
    bytes.push(b'\n');
    // Latin-1 text in a prompt, as a spreadsheet export writes it: "Caf\xe9".
    bytes.extend(
        clip("b", "videos/pg000_borealis.mp4", "")
            .replace("A tense", "Caf\u{1}")
            .bytes()
            .map(|c| if c == 1 { 0xe9 } else { c }),
    );
    bytes.push(b'\n');
    bytes.extend(b"\xff\xfe\n");
    bytes.extend(ranking(r#"[["a"],["zz"]]"#).into_bytes());
    let issues = issues_of_bytes(&bytes);
    assert_eq!(
        issues.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![Some(2), Some(3), Some(4)],
        "{issues:#?}"
    );
    for (_, text) in &issues[..2] {
        assert!(
            text.contains("manifest.jsonl:") && text.contains("not valid UTF-8"),
            "{text}"
        );
        assert_eq!(
            text.matches("not valid UTF-8").count(),
            1,
            "reported once: {text}"
        );
    }
    assert!(
        issues[1].1.contains("column 1"),
        "the first bad byte is named: {}",
        issues[1].1
    );
    assert!(
        issues[2].1.contains("names unknown clip 'zz'"),
        "{}",
        issues[2].1
    );
}

#[test]
fn leading_utf8_byte_order_mark_is_skipped() {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(good_pair().join("\n").into_bytes());
    let issues = issues_of_bytes(&bytes);
    assert!(issues.is_empty(), "{issues:#?}");
}

#[test]
fn byte_order_mark_inside_the_manifest_is_reported_by_name() {
    let good = good_pair();
    let text = format!("{}\n\u{feff}{}\n", good[0], good[1]);
    let issues = issues_of_bytes(text.as_bytes());
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].0, Some(2));
    assert!(
        issues[0].1.contains("UTF-8 byte order mark"),
        "{}",
        issues[0].1
    );
}

#[test]
fn references_to_a_clip_whose_record_failed_to_parse_are_not_repeated() {
    let mut lines = good_pair();
    // A score that is neither a number nor "N/A": the clip record is dropped.
    lines[1] = clip(
        "b",
        "videos/pg000_borealis.mp4",
        &ann("r1", "lens", "\"four\""),
    );
    lines.push(ranking(r#"[["a"],["b"]]"#));
    lines.push(pair("a", "b"));
    lines.push(pair("b", "a"));
    lines.push(ranking(r#"[["a"],["zz"]]"#));
    let issues = issues_of_bytes(lines.join("\n").as_bytes());
    assert_eq!(
        issues.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![Some(2), Some(6)],
        "{issues:#?}"
    );
    assert!(
        issues[0].1.contains("record 'b'")
            && issues[0].1.contains("3 follow-on references")
            && issues[0].1.contains("not repeated"),
        "{}",
        issues[0].1
    );
    assert!(
        issues[1].1.contains("names unknown clip 'zz'"),
        "{}",
        issues[1].1
    );
}

#[test]
fn references_to_a_truncated_clip_record_are_not_repeated() {
    let mut lines = good_pair();
    // Cut mid-record, as an interrupted write leaves it: malformed JSON.
    let half = lines[1].len() / 2;
    lines[1].truncate(half);
    lines.push(pair("a", "b"));
    let issues = issues_of_bytes(lines.join("\n").as_bytes());
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].0, Some(2));
    assert!(
        issues[0].1.contains("malformed JSON") && issues[0].1.contains("1 follow-on reference"),
        "{}",
        issues[0].1
    );
}

#[test]
fn a_manifest_outside_the_dataset_or_not_a_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (manifest, want) in [
        ("/dev/zero", "absolute"),
        ("../elsewhere.jsonl", "escapes the dataset root"),
    ] {
        std::fs::write(
            dir.path().join("dataset.toml"),
            format!("name = \"d\"\nmanifest = \"{manifest}\"\n"),
        )
        .unwrap();
        let e = evalverse_data::dataset::Dataset::load(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dataset.toml") && e.contains("manifest") && e.contains(want),
            "{e}"
        );
    }
    std::fs::create_dir_all(dir.path().join("sub.jsonl")).unwrap();
    std::fs::write(
        dir.path().join("dataset.toml"),
        "name = \"d\"\nmanifest = \"sub.jsonl\"\n",
    )
    .unwrap();
    let e = evalverse_data::dataset::Dataset::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::write(
        dir.path().join("dataset.toml"),
        "name = \"d\"\ntaxonomy = \"/dev/zero\"\n",
    )
    .unwrap();
    let e = evalverse_data::dataset::Dataset::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("taxonomy") && e.contains("not a regular file"),
        "{e}"
    );
}
