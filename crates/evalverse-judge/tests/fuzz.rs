//! Fuzz targets of the judge crate's parsers of outside input: a judge bundle's metadata
//! (`bundle::read` on a bundle whose judge.json, fusion.json or taxonomy.toml is edited, with
//! the part hashes updated or not), score lists (`score::read_list`, JSONL and CSV) and fusion
//! files (`FusionModel::load`). Inputs are real examples mutated through their JSON tree, CSV
//! cells or bytes, and arbitrary bytes. The property: no panic, no hang, an error names the
//! file (and line or key), a loaded fusion model predicts on its scale, and what loads
//! round-trips. Cases: PROPTEST_CASES (default 256); scripts/fuzz_long.sh runs them for minutes
//! (FUZZ_SECONDS).

#[macro_use]
#[path = "../../evalverse-data/tests/fuzz_support/mod.rs"]
mod support;
#[path = "../../evalverse-data/tests/fuzz_support/csv_table.rs"]
mod csv_table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use evalverse_data::operators::{Evidence, Measurement, OperatorSet, OPERATORS_VERSION};
use evalverse_data::prompts::ResponseUnit;
use evalverse_data::taxonomy::Taxonomy;
use evalverse_data::video::FrameSpec;
use evalverse_judge::bundle::{self, BundleManifest, BundleParts};
use evalverse_judge::fusion::{
    DimensionFusion, Fitted, FusionModel, Mlp, MlpConfig, Regressor, Ridge, FUSION_FORMAT,
    VLM_FEATURE,
};
use evalverse_judge::score::read_list;
use evalverse_judge::{GatePolicy, JudgeSpec};
use proptest::prelude::*;
use support::{fuzz, show, Input, Seeds};

fn model_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../evalverse-model/tests/fixtures")
        .join(rel)
}

/// A fusion model with a ridge and an MLP dimension, fitted on a small made-up relation.
fn fusion_model() -> FusionModel {
    let x: Vec<Vec<f64>> = (0..24)
        .map(|i| vec![1.0 + (i % 5) as f64, (i * 7 % 11) as f64 / 3.0])
        .collect();
    let y: Vec<f64> = x
        .iter()
        .map(|r| (0.8 * r[0] + 0.1 * r[1]).clamp(1.0, 5.0))
        .collect();
    let features = vec![VLM_FEATURE.to_string(), "sharpness".to_string()];
    let dim = |model: Fitted| DimensionFusion {
        features: features.clone(),
        model,
        penalty: 1.0,
        train_rows: x.len(),
        scale_min: 1.0,
        scale_max: 5.0,
    };
    let mlp = MlpConfig {
        hidden: 3,
        steps: 50,
        ..MlpConfig::default()
    };
    FusionModel {
        format: FUSION_FORMAT,
        operators: OperatorSet::parse(&["sharpness"]).unwrap(),
        operators_version: OPERATORS_VERSION,
        regressor: Regressor::Ridge { lambda: 1.0 },
        dimensions: BTreeMap::from([
            (
                "lens".to_string(),
                dim(Fitted::Ridge(Ridge::fit(&x, &y, 1.0).unwrap())),
            ),
            (
                "lighting".to_string(),
                dim(Fitted::Mlp(Mlp::fit(&x, &y, &mlp).unwrap())),
            ),
        ]),
    }
}

/// Words of the fusion format beyond those in the seed.
const FUSION_WORDS: &[&str] = &[
    "ridge",
    "mlp",
    "kind",
    "vlm_soft",
    "sharpness",
    "motion",
    "lo",
    "hi",
    "mean",
    "std",
    "w1",
    "b1",
    "w2",
    "b2",
    "y_mean",
    "y_std",
    "scaler",
    "weights",
    "intercept",
    "lambda",
];

fn fusion_seeds() -> Seeds {
    Seeds::json(
        vec![serde_json::to_string_pretty(&fusion_model())
            .unwrap()
            .into_bytes()],
        FUSION_WORDS,
    )
}

/// Evidence with the measurement a fusion reads, at a generated value.
fn evidence(value: f64) -> Evidence {
    Evidence {
        version: OPERATORS_VERSION,
        operators: OperatorSet::all(),
        measurements: vec![Measurement {
            name: "sharpness".into(),
            value,
            unit: "".into(),
        }],
        shots: vec![],
    }
}

/// A loaded fusion model: it predicts on its scale for any input, and round-trips.
fn fusion_loaded(m: &FusionModel, path: &Path, inputs: &[f64]) -> Result<(), String> {
    for (dim, d) in &m.dimensions {
        for &vlm in inputs {
            for &ev in inputs {
                let y = d.predict(vlm, &evidence(ev));
                ensure!(
                    y >= d.scale_min && y <= d.scale_max,
                    "dimension {dim}: fused score {y} for inputs ({vlm}, {ev}) is off the scale [{}, {}]",
                    d.scale_min,
                    d.scale_max
                );
            }
        }
    }
    m.save(path).map_err(|e| format!("save: {e}"))?;
    let back =
        FusionModel::load(path).map_err(|e| format!("a saved fusion model does not load: {e}"))?;
    if &back != m {
        // serde_json's default float parser can read a float it wrote one ulp off (its
        // `float_roundtrip` feature is off): counted, and equal within that.
        let (a, b) = (
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(m).unwrap(),
        );
        ensure!(
            support::same_json(&a, &b),
            "the fusion model does not round-trip"
        );
        support::tally("float read back 1 ulp off");
    }
    Ok(())
}

const PREDICT_INPUTS: [f64; 6] = [f64::NAN, -1e300, 0.0, 3.0, 4.5, 1e300];

#[test]
fn fuzz_fusion_json() {
    let seeds = fusion_seeds();
    fuzz("fusion_json", support::input(), |input| {
        let bytes = seeds.materialise(input);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fusion.json");
        std::fs::write(&path, &bytes).unwrap();
        match FusionModel::load(&path) {
            Err(e) => {
                support::tally("refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with(&path.display().to_string()),
                    "the error does not name the file: {m:?}"
                );
                Ok(())
            }
            Ok(m) => {
                support::tally("loaded");
                fusion_loaded(&m, &path, &PREDICT_INPUTS)
                    .map_err(|e| format!("{e}\nfusion.json: {}", show(&bytes)))
            }
        }
    });
}

/// A score list: JSONL edited as text and through each line's tree, or a CSV edited by cell.
#[derive(Debug, Clone)]
enum ListInput {
    Jsonl(Vec<Input>),
    Csv(csv_table::CsvInput),
    CsvRaw(Input),
}

const LIST_WORDS: &[&str] = &[
    "id",
    "video",
    "prompt",
    "reference",
    "dimensions",
    "lens",
    "lens;vocal",
    "a.mp4",
    "/v/x.mp4",
    "../up.mp4",
];

/// The line a message `FILE:LINE: ...` about `file` names.
fn line_number(message: &str, file: &str) -> Option<usize> {
    message
        .strip_prefix(file)?
        .strip_prefix(':')?
        .split(':')
        .next()?
        .parse()
        .ok()
}

#[test]
fn fuzz_score_list() {
    let jsonl = Seeds::new(
        [
            r#"{"video": "a.mp4", "prompt": "a cat"}"#,
            r#"{"id": "x", "video": "/v/x.mp4", "prompt": "a \"quoted\" prompt", "dimensions": ["lens", "vocal"]}"#,
            r#"{"video": "b.mp4", "reference": "r.png", "prompt": "p"}"#,
            r#"{"video": "a.mp4"}"#,
        ]
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .collect(),
        |t| serde_json::from_str(t).ok(),
        |v| serde_json::to_string(v).ok(),
        LIST_WORDS,
    );
    let csv = Seeds::new(
        vec![
            b"id,video,prompt,dimensions\nx,/v/x.mp4,\"a \"\"quoted\"\", prompt\",lens;vocal\ny,y.mp4,p,\n".to_vec(),
            b"video,prompt\na.mp4,a cat\na.mp4,again\nb.mp4,\n".to_vec(),
            b"video,prompt,reference\na.mp4,p,r.png\n".to_vec(),
        ],
        |_| None,
        |_| None,
        LIST_WORDS,
    );
    let input = prop_oneof![
        2 => proptest::collection::vec(support::input(), 1..5).prop_map(ListInput::Jsonl),
        2 => csv_table::input().prop_map(ListInput::Csv),
        1 => support::input().prop_map(ListInput::CsvRaw),
    ];
    fuzz("score_list", input, |input| {
        let (name, bytes) = match input {
            ListInput::Jsonl(lines) => {
                let text: Vec<Vec<u8>> = lines.iter().map(|l| jsonl.materialise(l)).collect();
                ("list.jsonl", text.join(&b'\n'))
            }
            ListInput::Csv(i) => ("list.csv", csv_table::materialise(&csv, i)),
            ListInput::CsvRaw(i) => ("list.csv", csv.materialise(i)),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let at = path.display().to_string();
        let (rows, errors) = match read_list(&path) {
            Err(e) => {
                support::tally("list refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with(&at),
                    "the error does not name the file: {m:?}"
                );
                ensure!(
                    line_number(&m, &at).is_some_and(|l| l >= 1),
                    "the error names no line: {m:?} for {}",
                    show(&bytes)
                );
                return Ok(());
            }
            Ok(r) => r,
        };
        (0..rows.len()).for_each(|_| support::tally("rows"));
        (0..errors.len()).for_each(|_| support::tally("rows refused"));
        let lines = bytes.split(|&b| b == b'\n').count();
        let line_of = |s: &str| line_number(s, &at);
        for e in &errors {
            ensure!(
                line_of(e).is_some_and(|l| (1..=lines).contains(&l)),
                "the error does not name its line (1..={lines}): {e:?} for {}",
                show(&bytes)
            );
        }
        for r in &rows {
            ensure!(
                line_of(&format!("{}:", r.at)).is_some_and(|l| (1..=lines).contains(&l)),
                "row {} is at {:?}",
                r.id,
                r.at
            );
        }
        if name == "list.jsonl" {
            // Every line that is not blank is a row or an error: none is dropped unreported.
            let text = String::from_utf8_lossy(&bytes);
            let filled = text.lines().filter(|l| !l.trim().is_empty()).count();
            ensure!(
                rows.len() + errors.len() == filled,
                "{filled} lines, {} rows and {} errors in {}",
                rows.len(),
                errors.len(),
                show(&bytes)
            );
        }
        Ok(())
    });
}

/// A bundle written once: the tiny base's fixture, a PEFT adapter, a fusion model, the
/// built-in taxonomy and a tokenizer of its own.
struct Template {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    base: String,
}

fn template() -> Template {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, b"{\"version\": \"1.0\"}").unwrap();
    let base = model_fixture("tiny_b")
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    let spec = JudgeSpec {
        base: base.clone(),
        tokenizer: Some(tokenizer),
        adapter: Some(model_fixture("lora_peft")),
        frames: FrameSpec::default(),
        unit: ResponseUnit::Dimension,
        prompt_operators: OperatorSet::default(),
        gate: GatePolicy::default(),
        max_new_tokens: 64,
    };
    let taxonomy = Taxonomy::evalverse();
    let fusion = fusion_model();
    let out = dir.path().join("judge");
    std::fs::create_dir_all(&out).unwrap();
    bundle::write(
        &out,
        &BundleParts {
            spec: &spec,
            taxonomy: &taxonomy,
            fusion: Some(&fusion),
            eval: None,
            card: "# fuzz\n",
            exported_from: "fuzz",
        },
    )
    .unwrap();
    bundle::read(&out, None, true).expect("the template bundle reads");
    Template {
        _dir: dir,
        bundle: out,
        base,
    }
}

/// Which file of the bundle an input replaces, and whether judge.json's hashes follow it.
#[derive(Debug, Clone)]
enum BundleInput {
    Manifest(Input),
    Part {
        fusion: bool,
        input: Input,
        rehash: bool,
    },
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn fuzz_judge_bundle() {
    let t = template();
    let manifest = std::fs::read(t.bundle.join(bundle::MANIFEST)).unwrap();
    let manifest_seeds = Seeds::json(
        vec![manifest.clone()],
        &[
            "base",
            "tokenizer.json",
            "adapter",
            "adapter/README.md",
            "fusion.json",
            "taxonomy.toml",
            "judge",
            "operators",
            "dimension",
            "aspect",
        ],
    );
    let fusion_seeds = Seeds::json(
        vec![std::fs::read(t.bundle.join("fusion.json")).unwrap()],
        FUSION_WORDS,
    );
    let taxonomy_seeds = Seeds::new(
        vec![std::fs::read(t.bundle.join("taxonomy.toml")).unwrap()],
        |_| None,
        |_| None,
        &[
            "always",
            "context",
            "multi_shot",
            "min_shots",
            "dimensions",
            "aspect",
        ],
    );
    let input = prop_oneof![
        3 => support::input().prop_map(BundleInput::Manifest),
        2 => (any::<bool>(), support::input(), any::<bool>())
            .prop_map(|(fusion, input, rehash)| BundleInput::Part { fusion, input, rehash }),
    ];
    fuzz("judge_bundle", input, |input| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("judge");
        copy_dir(&t.bundle, &dir);
        let edited = match input {
            BundleInput::Manifest(i) => {
                let bytes = manifest_seeds.materialise(i);
                std::fs::write(dir.join(bundle::MANIFEST), &bytes).unwrap();
                bytes
            }
            BundleInput::Part {
                fusion,
                input,
                rehash,
            } => {
                let (rel, seeds) = match fusion {
                    true => ("fusion.json", &fusion_seeds),
                    false => ("taxonomy.toml", &taxonomy_seeds),
                };
                let bytes = seeds.materialise(input);
                std::fs::write(dir.join(rel), &bytes).unwrap();
                if *rehash {
                    // An edit that keeps judge.json consistent reaches the part's own parser.
                    let mut m: BundleManifest = serde_json::from_slice(&manifest).unwrap();
                    m.parts
                        .insert(rel.into(), bundle::sha256_file(&dir.join(rel)).unwrap());
                    if let Ok(tax) =
                        Taxonomy::from_toml_str(&String::from_utf8_lossy(&bytes), Path::new("x"))
                    {
                        if rel == "taxonomy.toml" {
                            m.taxonomy_sha256 = tax.fingerprint();
                        }
                    }
                    std::fs::write(
                        dir.join(bundle::MANIFEST),
                        serde_json::to_string_pretty(&m).unwrap(),
                    )
                    .unwrap();
                }
                bytes
            }
        };
        // The base named explicitly (`--base`): a fuzzed source could name the Hub.
        match bundle::read(&dir, Some(&t.base), false) {
            Err(e) => {
                support::tally("refused");
                let m = e.to_string();
                ensure!(
                    m.contains(&dir.display().to_string()) || m.contains(&t.base),
                    "the error names neither the bundle's file nor the base: {m:?} for {}",
                    show(&edited)
                );
            }
            Ok(b) => {
                support::tally("read");
                let text = serde_json::to_string(&b.manifest).map_err(|e| e.to_string())?;
                let back: BundleManifest = serde_json::from_str(&text)
                    .map_err(|e| format!("the manifest does not parse back: {e}"))?;
                if back != b.manifest {
                    // A float read back one ulp off (see `fusion_loaded`): counted, equal within that.
                    let (x, y) = (
                        serde_json::to_value(&back).unwrap(),
                        serde_json::to_value(&b.manifest).unwrap(),
                    );
                    ensure!(
                        support::same_json(&x, &y),
                        "the manifest does not round-trip"
                    );
                    support::tally("float read back 1 ulp off");
                }
                for p in [&b.spec.tokenizer, &b.spec.adapter].into_iter().flatten() {
                    ensure!(
                        p.starts_with(&dir)
                            && p.components().all(|c| c != std::path::Component::ParentDir),
                        "the bundle names a part outside itself: {} for {}",
                        p.display(),
                        show(&edited)
                    );
                }
                if let Some(f) = &b.fusion {
                    fusion_loaded(f, &tmp.path().join("fusion.json"), &PREDICT_INPUTS)?;
                }
            }
        }
        Ok(())
    });
}
