//! Fuzz targets of the data crate's parsers of outside input: manifest lines, dataset.toml, the
//! taxonomy TOML and the import readers (long and VideoAlign CSV, VideoFeedback JSON). Each
//! runs proptest on mutated real examples and arbitrary bytes; the property: no panic, no hang,
//! every error names its file and line or key, and what parses round-trips. Cases:
//! PROPTEST_CASES (default 256); scripts/fuzz_long.sh runs them for minutes (FUZZ_SECONDS).

#[macro_use]
#[path = "fuzz_support/mod.rs"]
mod support;
#[path = "fuzz_support/csv_table.rs"]
mod csv_table;
#[path = "fuzz_support/toml_tree.rs"]
mod toml_tree;

use std::path::{Path, PathBuf};

use evalverse_data::dataset::Dataset;
use evalverse_data::import::{self, Format, Mapping};
use evalverse_data::manifest::{parse_jsonl_bytes, to_jsonl, Record};
use evalverse_data::taxonomy::{DimensionKind, Taxonomy, BUILTIN_EVALVERSE};
use proptest::prelude::*;
use serde_json::Value;
use support::{fuzz, show, Input, Seeds};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The first few lines of each record kind of the sample manifest.
fn sample_lines(group: Option<&str>) -> Vec<String> {
    let text = String::from_utf8(read("data/sample/manifest.jsonl")).unwrap();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    text.lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            match group {
                Some(g) => v["prompt_group"] == g,
                None => {
                    let n = kinds.entry(v["record"].to_string()).or_default();
                    *n += 1;
                    *n <= 2
                }
            }
        })
        .map(str::to_owned)
        .collect()
}

/// Manifest words beyond those in the sample lines.
const MANIFEST_WORDS: &[&str] = &[
    "record",
    "clip",
    "ranking",
    "pair",
    "r2v",
    "multishot",
    "av",
    "reference",
    "image",
    "video",
    "shots",
    "start",
    "end",
    "audio",
    "speech",
    "music",
    "a",
    "b",
    "tie",
    "order",
    "N/A",
    "vocal",
    "rhythm",
];

fn manifest_seeds() -> Seeds {
    let mut lines = sample_lines(None);
    lines.push(r#"{"record":"clip","id":"c1","task":"r2v","prompt":"p","video":"v.mp4","reference":{"kind":"image","path":"r.png"},"shots":[{"start":0.0,"end":1.5},{"start":1.5,"end":3.0}],"audio":{"speech":true,"music":false},"generator":"g","prompt_group":"g1","annotations":[{"rater":"r","dimension":"vocal","score":"N/A"}]}"#.into());
    Seeds::new(
        lines.into_iter().map(String::into_bytes).collect(),
        |t| serde_json::from_str(t).ok(),
        |v| serde_json::to_string(v).ok(),
        MANIFEST_WORDS,
    )
}

/// Whether the parser skips this line as blank (after the first line's byte order mark).
fn blank(i: usize, raw: &[u8]) -> bool {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let raw = match i {
        0 => raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw),
        _ => raw,
    };
    std::str::from_utf8(raw).is_ok_and(|l| l.trim().is_empty())
}

fn manifest_property(bytes: &[u8]) -> Result<(), String> {
    let (records, errors) = parse_jsonl_bytes(bytes);
    (0..records.len()).for_each(|_| support::tally("lines read"));
    (0..errors.len()).for_each(|_| support::tally("lines refused"));
    let raw: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let blanks = raw.iter().enumerate().filter(|(i, l)| blank(*i, l)).count();
    ensure!(
        records.len() + errors.len() + blanks == raw.len(),
        "{} lines, {blanks} blank, but {} records and {} errors: a line was dropped or counted twice in {}",
        raw.len(),
        records.len(),
        errors.len(),
        show(bytes)
    );
    let mut lines: Vec<usize> = records
        .iter()
        .map(|r| r.line)
        .chain(errors.iter().map(|e| e.line))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    ensure!(
        lines.len() == records.len() + errors.len()
            && lines.iter().all(|l| (1..=raw.len()).contains(l)),
        "line numbers {lines:?} are not one per line of {} in {}",
        raw.len(),
        show(bytes)
    );
    for e in &errors {
        ensure!(
            message_is_plain(&e.message),
            "line {}: {:?} in {}",
            e.line,
            e.message,
            show(bytes)
        );
        ensure!(
            !e.message.contains("at line 1 column"),
            "line {}: the message names line 1 of the line, not the file: {:?}",
            e.line,
            e.message
        );
    }
    let all: Vec<Record> = records.iter().map(|r| r.record.clone()).collect();
    let again = parse_jsonl_bytes(to_jsonl(&all).as_bytes());
    let back: Vec<Record> = again.0.iter().map(|r| r.record.clone()).collect();
    ensure!(
        again.1.is_empty() && same_records(&back, &all),
        "records do not round-trip through to_jsonl: {:?}",
        again.1
    );
    Ok(())
}

/// Records equal as JSON (floats within serde_json's read-back error, `support::same_json`;
/// a difference there is counted).
fn same_records(a: &[Record], b: &[Record]) -> bool {
    if a == b {
        return true;
    }
    let same = support::same_json(
        &serde_json::to_value(a).unwrap(),
        &serde_json::to_value(b).unwrap(),
    );
    if same {
        support::tally("float read back 1 ulp off");
    }
    same
}

/// A message a user can act on: not empty, and free of the names of Rust internals.
fn message_is_plain(m: &str) -> bool {
    !m.trim().is_empty() && !m.contains("untagged enum") && !m.contains("Raw")
}

#[test]
fn fuzz_manifest_lines() {
    let seeds = manifest_seeds();
    let strategy = (
        proptest::collection::vec(support::input(), 1..4),
        proptest::collection::vec(support::byte_op_strategy(), 0..2),
    );
    fuzz("manifest", strategy, |(lines, edits)| {
        let text: Vec<Vec<u8>> = lines.iter().map(|l| seeds.materialise(l)).collect();
        let bytes = seeds.apply_bytes(text.join(&b'\n'), edits);
        manifest_property(&bytes)
    });
}

/// The sample's first prompt group: its manifest lines and the files they name.
fn first_group() -> (String, Vec<String>) {
    let lines = sample_lines(Some("pg000"));
    let mut files = Vec::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        for p in [&v["video"], &v["reference"]["path"]] {
            files.extend(p.as_str().map(str::to_owned));
        }
    }
    (lines.join("\n"), files)
}

/// A dataset folder around a fuzzed dataset.toml: the sample's first prompt group (its videos
/// as empty files) and a copy of the built-in taxonomy as taxonomy.toml.
fn dataset_folder(group: &(String, Vec<String>), dataset_toml: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in &group.1 {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }
    std::fs::write(dir.path().join("manifest.jsonl"), &group.0).unwrap();
    std::fs::write(dir.path().join("taxonomy.toml"), BUILTIN_EVALVERSE).unwrap();
    std::fs::write(dir.path().join("dataset.toml"), dataset_toml).unwrap();
    dir
}

#[test]
fn fuzz_dataset_toml() {
    let seeds = toml_tree::seeds(
        vec![
            read("data/sample/dataset.toml"),
            b"name = \"x\"\nmanifest = \"manifest.jsonl\"\ntaxonomy = \"taxonomy.toml\"\n[splits]\nseed = 1\ntrain = 0.5\nval = 0.25\ntest = 0.25\n".to_vec(),
            Vec::new(),
        ],
        &["manifest.jsonl", "taxonomy.toml", "dataset.toml", "videos", "evalverse", "splits", "seed"],
    );
    let group = first_group();
    fuzz("dataset_toml", support::input(), |input| {
        let bytes = seeds.materialise(input);
        let dir = dataset_folder(&group, &bytes);
        let root = dir.path();
        match Dataset::open(root) {
            Err(e) => {
                support::tally("refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with(&root.display().to_string()) || m.starts_with('/'),
                    "the error does not start with the file it is about: {m:?} for {}",
                    show(&bytes)
                );
            }
            Ok((ds, issues)) => {
                support::tally("opened");
                // The manifest dataset.toml names (another file of the folder, after an edit).
                let manifest = std::fs::read(&ds.manifest_path).unwrap();
                let manifest_lines = manifest.split(|&b| b == b'\n').count();
                for i in &issues {
                    ensure!(
                        i.file == ds.manifest_path
                            && i.line.is_some_and(|l| (1..=manifest_lines).contains(&l)),
                        "issue without its manifest line: {i}"
                    );
                }
                let text = toml::to_string(&ds.config)
                    .map_err(|e| format!("config does not serialise: {e}"))?;
                let back: evalverse_data::dataset::DatasetConfig = toml::from_str(&text)
                    .map_err(|e| format!("written config does not parse: {e}\n{text}"))?;
                ensure!(
                    back == ds.config,
                    "config does not round-trip: {:?} vs {:?}",
                    back,
                    ds.config
                );
            }
        }
        Ok(())
    });
}

const USER_TAXONOMY: &str = r#"
name = "mine"
version = "2"
[default_scale]
min = 0
max = 10
step = 1
[[stages]]
id = "s"
name = "S"
[[aspects]]
id = "a"
name = "A"
stage = "s"
[[dimensions]]
id = "sharpness"
name = "Sharpness"
aspect = "a"
description = "d"
sub_dimensions = [{ id = "edges", name = "Edges" }]
questions = ["Is it sharp?"]
scale = { min = 0, max = 2, step = 0.5, labels = ["a", "b", "c", "d", "e"] }
applicability = { when = "multi_shot", min_shots = 2 }
[[rightness]]
id = "physics"
name = "Physics"
description = "d"
sub_dimensions = []
questions = ["Does it fall?"]
applicability = { when = "context", note = "no object" }
"#;

/// The taxonomy written back as a taxonomy file (cinematic and rightness dimensions apart).
fn taxonomy_as_toml(t: &Taxonomy) -> Option<String> {
    let dims = |kind: DimensionKind| -> Vec<Value> {
        t.dimensions
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap();
                v.as_object_mut().unwrap().remove("kind");
                v
            })
            .collect()
    };
    let file = serde_json::json!({
        "name": t.name,
        "version": t.version,
        "default_scale": t.default_scale,
        "stages": t.stages,
        "aspects": t.aspects,
        "dimensions": dims(DimensionKind::Cinematic),
        "rightness": dims(DimensionKind::Rightness),
    });
    toml_tree::render(&file)
}

#[test]
fn fuzz_taxonomy_toml() {
    let seeds = toml_tree::seeds(
        vec![
            BUILTIN_EVALVERSE.as_bytes().to_vec(),
            USER_TAXONOMY.as_bytes().to_vec(),
        ],
        &[
            "always",
            "context",
            "multi_shot",
            "audio",
            "speech",
            "min_shots",
            "labels",
            "when",
            "note",
        ],
    );
    let origin = Path::new("fuzz/taxonomy.toml");
    fuzz("taxonomy_toml", support::input(), |input| {
        let bytes = seeds.materialise(input);
        let text = String::from_utf8_lossy(&bytes);
        let t = match Taxonomy::from_toml_str(&text, origin) {
            Err(e) => {
                support::tally("refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with("fuzz/taxonomy.toml: "),
                    "the error does not name the file: {m:?}"
                );
                return Ok(());
            }
            Ok(t) => t,
        };
        support::tally("accepted");
        for d in &t.dimensions {
            let s = t.scale(d);
            let n = s.levels();
            ensure!(
                (2..=101).contains(&n),
                "dimension {}: {n} levels accepted",
                d.id
            );
            let values = s.values();
            ensure!(
                values.len() == n && values.iter().all(|v| s.contains(*v)),
                "dimension {}: levels {values:?}",
                d.id
            );
            for x in [f64::NAN, -1e300, s.min, s.max, 1e300] {
                ensure!(
                    s.level_index(x) < n,
                    "dimension {}: level_index({x}) out of range",
                    d.id
                );
            }
        }
        let fp = t.fingerprint();
        let written = taxonomy_as_toml(&t).ok_or("the taxonomy cannot be written as TOML")?;
        let back = Taxonomy::from_toml_str(&written, origin)
            .map_err(|e| format!("the written taxonomy does not parse: {e}\n{written}"))?;
        ensure!(
            back.fingerprint() == fp,
            "the taxonomy does not round-trip:\n{written}"
        );
        Ok(())
    });
}

/// Import inputs: a CSV table edited by cell (long and VideoAlign) or a seed edited through
/// its JSON tree and bytes (VideoFeedback, and raw edits of the CSV seeds).
#[derive(Debug, Clone)]
enum ImportInput {
    Csv(Format, csv_table::CsvInput),
    Raw(Format, Input),
}

fn import_input() -> impl Strategy<Value = ImportInput> {
    let csv_format = prop_oneof![Just(Format::Long), Just(Format::VideoAlign)];
    let any_format = prop_oneof![
        Just(Format::Long),
        Just(Format::VideoAlign),
        Just(Format::VideoFeedback)
    ];
    prop_oneof![
        2 => (csv_format, csv_table::input()).prop_map(|(f, i)| ImportInput::Csv(f, i)),
        2 => (any_format, support::input()).prop_map(|(f, i)| ImportInput::Raw(f, i)),
    ]
}

const VIDEOS: [&str; 4] = [
    "videos/kling1.5/kling1.5_00001.mp4",
    "videos/kling1.5/kling1.5_00002.mp4",
    "videos/minimax/minimax_00001.mp4",
    "videos/minimax/minimax_00002.mp4",
];

#[test]
fn fuzz_import() {
    let fixture = |f: &str| read(&format!("tests/fixtures/import/{f}"));
    let words = &[
        "videos/kling1.5/kling1.5_00001.mp4",
        "videos/minimax/minimax_00002.mp4",
        "kling1.5_00001",
        "minimax_00002",
        "./videos/kling1.5/kling1.5_00001.mp4",
        "lens",
        "vocal",
        "N/A",
        "A",
        "B",
        "same",
        "video",
        "prompt_group",
        "rationale",
        "id",
        "video link",
        "text prompt",
    ];
    let csv_seeds = |files: &[&str]| {
        Seeds::new(
            files.iter().map(|f| fixture(f)).collect(),
            |_| None,
            |_| None,
            words,
        )
    };
    let long = csv_seeds(&["long.csv", "long_bad.csv"]);
    let align = csv_seeds(&["videoalign.csv", "videoalign_bad.csv"]);
    let feedback = Seeds::new(
        vec![
            fixture("videofeedback.json"),
            fixture("videofeedback_bad.jsonl"),
        ],
        |t| {
            // JSON Lines seeds become an array for the tree edits.
            serde_json::from_str(t).ok().or_else(|| {
                t.lines()
                    .map(serde_json::from_str)
                    .collect::<Result<Vec<Value>, _>>()
                    .ok()
                    .map(Value::Array)
            })
        },
        |v| serde_json::to_string_pretty(v).ok(),
        words,
    );
    let tax = Taxonomy::evalverse();
    fuzz("import", import_input(), |input| {
        let (format, bytes) = match input {
            ImportInput::Csv(Format::Long, i) => (Format::Long, csv_table::materialise(&long, i)),
            ImportInput::Csv(f, i) => (*f, csv_table::materialise(&align, i)),
            ImportInput::Raw(f, i) => {
                let seeds = match f {
                    Format::Long => &long,
                    Format::VideoAlign => &align,
                    Format::VideoFeedback => &feedback,
                };
                (*f, seeds.materialise(i))
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        for v in VIDEOS {
            let p = src.join(v);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
            // VideoFeedback finds a clip's video as <id>.mp4 in the videos folder.
            std::fs::write(src.join(p.file_name().unwrap()), b"").unwrap();
        }
        let input_path = dir.path().join(match format {
            Format::VideoFeedback => "input.json",
            _ => "input.csv",
        });
        std::fs::write(&input_path, &bytes).unwrap();
        let mapping = Mapping::default_for(format);
        let imported = match import::import(format, &input_path, &src, &tax, &mapping, false) {
            Err(e) => {
                support::tally("file refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with(&input_path.display().to_string()),
                    "the error does not start with the input file: {m:?} for {}",
                    show(&bytes)
                );
                return Ok(());
            }
            Ok(i) => i,
        };
        let lines = bytes.split(|&b| b == b'\n').count();
        for e in &imported.errors {
            ensure!(
                e.file == input_path
                    && (1..=lines).contains(&e.line)
                    && !e.reason.trim().is_empty(),
                "bad row without its file and line: {e} in {}",
                show(&bytes)
            );
        }
        let again = parse_jsonl_bytes(to_jsonl(&imported.records).as_bytes());
        let back: Vec<Record> = again.0.iter().map(|r| r.record.clone()).collect();
        ensure!(
            again.1.is_empty() && same_records(&back, &imported.records),
            "imported records do not round-trip through the manifest: {:?}",
            again.1
        );
        support::tally(match imported.errors.is_empty() {
            true => "imported clean",
            false => "imported with bad rows",
        });
        if imported.errors.is_empty() {
            // An import that reports no bad row writes a dataset that validates.
            let out = dir.path().join("out");
            import::write(&imported, &out, "fuzz", "fuzz").map_err(|e| format!("write: {e}"))?;
            let (_, issues) = Dataset::open(&out)
                .map_err(|e| format!("the imported dataset does not open: {e}"))?;
            ensure!(
                issues.is_empty(),
                "import reported no bad row but the dataset has issues: {}\ninput {}",
                issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                show(&bytes)
            );
        }
        Ok(())
    });
}
