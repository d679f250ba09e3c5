//! The judge bundle on disk: written, read back with every part checked, and refused with a
//! message naming what differs when a part is missing, altered or added, when the base weights
//! are not the ones fingerprinted, or when the taxonomy does not match a dataset's.

use std::path::{Path, PathBuf};

use evalverse_data::taxonomy::Taxonomy;
use evalverse_judge::bundle::{self, BundleParts};
use evalverse_judge::fusion::{
    DimensionFusion, Fitted, FusionModel, Regressor, Ridge, Standardiser,
};
use evalverse_judge::{GatePolicy, JudgeSpec};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A copy of the sharded tiny checkpoint fixture (config + 3 shards + tokenizer).
fn base(dir: &Path) -> PathBuf {
    let src = root().join("crates/evalverse-model/tests/fixtures/tiny_a");
    let dst = dir.join("base");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    let tok = root().join("target/test-assets/qwen-tokenizer.json");
    assert!(tok.is_file(), "run scripts/fetch_test_assets.sh");
    std::fs::copy(tok, dst.join("tokenizer.json")).unwrap();
    dst
}

fn fusion() -> FusionModel {
    let scaler = Standardiser {
        mean: vec![3.0, 0.5],
        std: vec![1.0, 0.2],
        lo: vec![1.0, 0.0],
        hi: vec![5.0, 1.0],
    };
    FusionModel {
        format: evalverse_judge::fusion::FUSION_FORMAT,
        operators: evalverse_data::operators::OperatorSet::all(),
        operators_version: evalverse_data::operators::OPERATORS_VERSION,
        regressor: Regressor::Ridge { lambda: 1.0 },
        dimensions: [(
            "lens".to_string(),
            DimensionFusion {
                features: vec!["vlm_soft".into(), "sharpness".into()],
                model: Fitted::Ridge(Ridge {
                    scaler,
                    weights: vec![0.5, 0.25],
                    intercept: 3.0,
                    lambda: 1.0,
                }),
                penalty: 1.0,
                train_rows: 40,
                scale_min: 1.0,
                scale_max: 5.0,
            },
        )]
        .into(),
    }
}

fn write(dir: &Path, base: &Path) -> PathBuf {
    let spec = JudgeSpec {
        base: base.display().to_string(),
        tokenizer: None,
        adapter: Some(root().join("crates/evalverse-model/tests/fixtures/lora_peft")),
        frames: Default::default(),
        unit: Default::default(),
        prompt_operators: Default::default(),
        gate: GatePolicy::Both,
        max_new_tokens: 12,
    };
    let out = dir.join("judge");
    std::fs::create_dir_all(&out).unwrap();
    bundle::write(
        &out,
        &BundleParts {
            spec: &spec,
            taxonomy: &Taxonomy::evalverse(),
            fusion: Some(&fusion()),
            eval: None,
            card: "# a judge\n",
            exported_from: "test",
        },
    )
    .unwrap();
    out
}

/// A copy of bundle `b` named `name`.
fn copy(b: &Path, name: &str) -> PathBuf {
    let to = b.with_file_name(name);
    for e in walk(b) {
        let rel = e.strip_prefix(b).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&e, to.join(rel)).unwrap();
    }
    to
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn refused(b: &Path, base: Option<&str>, verify: bool, needle: &str) {
    let e = bundle::read(b, base, verify).unwrap_err().to_string();
    assert!(e.contains(needle), "{needle:?} not in: {e}");
    assert!(matches!(
        bundle::read(b, base, verify),
        Err(evalverse_judge::JudgeError::Config(_))
    ));
}

#[test]
fn a_bundle_reads_back_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path());
    let b = write(dir.path(), &base);
    let r = bundle::read(&b, None, true).unwrap();
    assert_eq!(r.spec.gate, GatePolicy::Both);
    assert_eq!(r.spec.max_new_tokens, 12);
    assert_eq!(r.spec.adapter, Some(b.join("adapter")));
    assert_eq!(r.fusion, Some(fusion()));
    assert_eq!(
        r.taxonomy.fingerprint(),
        Taxonomy::evalverse().fingerprint()
    );
    // The base: config.json, the three shards and the tokenizer, hashed in full.
    assert_eq!(
        r.manifest.base.files.len(),
        5,
        "{:?}",
        r.manifest.base.files
    );
    assert_eq!(r.manifest.tokenizer, "base");
    for part in [
        "adapter/adapter_config.json",
        "fusion.json",
        "taxonomy.toml",
        "README.md",
    ] {
        assert!(r.manifest.parts.contains_key(part), "{part}");
    }
    r.check_taxonomy(&Taxonomy::evalverse(), "dataset d")
        .unwrap();
}

#[test]
fn a_missing_altered_or_extra_part_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path());
    let b = write(dir.path(), &base);
    let c = copy(&b, "missing");
    std::fs::remove_file(c.join("adapter/adapter_model.safetensors")).unwrap();
    refused(
        &c,
        None,
        false,
        "part adapter/adapter_model.safetensors is missing",
    );
    let c = copy(&b, "altered");
    let t = std::fs::read_to_string(c.join("taxonomy.toml")).unwrap();
    std::fs::write(c.join("taxonomy.toml"), t.replacen("Lens", "Lenses", 1)).unwrap();
    refused(&c, None, false, "part taxonomy.toml was altered");
    let c = copy(&b, "extra");
    std::fs::write(c.join("adapter/notes.txt"), "x").unwrap();
    refused(
        &c,
        None,
        false,
        "adapter/notes.txt is not part of the bundle",
    );
    let c = copy(&b, "nomanifest");
    std::fs::remove_file(c.join("judge.json")).unwrap();
    refused(&c, None, false, "--format judge");
}

#[test]
fn other_base_weights_are_refused_cheaply_and_byte_by_byte() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path());
    let b = write(dir.path(), &base);
    // Another config: the cheap header check refuses it.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    for e in std::fs::read_dir(&base).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, other.join(p.file_name().unwrap())).unwrap();
    }
    let cfg = std::fs::read_to_string(other.join("config.json")).unwrap();
    std::fs::write(other.join("config.json"), cfg.replacen("1e-06", "1e-05", 1)).unwrap();
    refused(
        &b,
        Some(other.to_str().unwrap()),
        false,
        "config.json or the safetensors headers differ",
    );
    // Same headers, one weight byte flipped: only the full check sees it.
    let flipped = dir.path().join("flipped");
    std::fs::create_dir_all(&flipped).unwrap();
    for e in std::fs::read_dir(&base).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, flipped.join(p.file_name().unwrap())).unwrap();
    }
    let shard = flipped.join("model-00003-of-00003.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&shard, bytes).unwrap();
    let f = flipped.to_str().unwrap();
    bundle::read(&b, Some(f), false).expect("the headers match");
    refused(
        &b,
        Some(f),
        true,
        "model-00003-of-00003.safetensors has sha256",
    );
}

#[test]
fn a_dataset_of_another_taxonomy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path());
    let b = bundle::read(&write(dir.path(), &base), None, false).unwrap();
    let text = Taxonomy::evalverse()
        .source_toml()
        .replacen("Lens", "Optics", 1);
    let other = Taxonomy::from_toml_str(&text, Path::new("other.toml")).unwrap();
    let e = b
        .check_taxonomy(&other, "dataset d")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataset d") && e.contains("other definitions"),
        "{e}"
    );
}
