//! End-to-end tests of `evalverse model init`, `evalverse train` and `evalverse eval`: a judge is
//! evaluated with reports written; bad input is a usage error (exit 2) with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evalverse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalverse"))
        .args(args)
        .output()
        .expect("run evalverse")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tiny_base(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    let tok = root().join("target/test-assets/qwen-tokenizer.json");
    assert!(
        tok.is_file(),
        "{} is missing: run scripts/fetch_test_assets.sh",
        tok.display()
    );
    let o = evalverse(&[
        "model",
        "init",
        "--out",
        base.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--hidden",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--vision-hidden",
        "32",
        "--vision-depth",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    base
}

#[test]
fn eval_of_a_base_model_writes_reports_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let data = root().join("data/sample");
    let out = dir.path().join("report");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--dimensions",
        "lens",
        "--max-new-tokens",
        "4",
        "--bootstrap",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "judgements.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["dimensions"][0]["dimension"], "lens");
    assert_eq!(r["judged"], 30, "6 test prompt groups x 5 generators");
    assert!(r["dimensions"][0]["human_ceiling_srcc"].as_f64().unwrap() > 0.5);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && !html.contains("http://") && !html.contains("https://"),
        "self-contained page"
    );

    // An unknown dimension names the known ones.
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--dimensions",
        "smell",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("'smell'") && text(&o).contains("lens"),
        "{}",
        text(&o)
    );

    // An adapter made for another base (hidden 64 vs 32) is refused.
    let adapter = root().join("crates/evalverse-model/tests/fixtures/lora_peft");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        adapter.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--dimensions",
        "lens",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not fit base"), "{}", text(&o));

    // A dataset without annotations for the split.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let manifest = std::fs::read_to_string(data.join("manifest.jsonl")).unwrap();
    let stripped: String = manifest
        .lines()
        .filter(|l| l.contains("\"record\":\"clip\""))
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["annotations"] = serde_json::json!([]);
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(bare.join("manifest.jsonl"), stripped).unwrap();
    for sub in ["videos", "refs"] {
        std::fs::create_dir_all(bare.join(sub)).unwrap();
        for e in std::fs::read_dir(data.join(sub)).unwrap().flatten() {
            std::fs::copy(e.path(), bare.join(sub).join(e.file_name())).unwrap();
        }
    }
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
        "--data",
        bare.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no annotated clips in the test split"),
        "{}",
        text(&o)
    );
}

#[test]
fn train_refuses_a_bad_recipe_with_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, "[run]\noutput_dir = \"x\"\n").unwrap();
    let o = evalverse(&["train", recipe.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("r.toml") && text(&o).contains("missing field"),
        "{}",
        text(&o)
    );
    // A CUDA recipe on a binary built without CUDA: a configuration error naming the fix.
    let shipped = std::fs::read_to_string(root().join("recipes/quickstart/sft.toml")).unwrap();
    let mut t: toml::Table = toml::from_str(&shipped).unwrap();
    t["run"]
        .as_table_mut()
        .unwrap()
        .insert("device".into(), "cuda".into());
    let cuda = dir.path().join("cuda.toml");
    std::fs::write(&cuda, toml::to_string(&t).unwrap()).unwrap();
    if cfg!(feature = "cuda") {
        return; // this binary has CUDA; whether a GPU is there is another matter
    }
    let o = evalverse(&["train", cuda.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cuda.toml") && text(&o).contains("--features cuda"),
        "{}",
        text(&o)
    );
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        "unused",
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--device",
        "cuda",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--features cuda"), "{}", text(&o));
    let data = root().join("data/sample");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--device",
        "tpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("'tpu' (allowed: cpu, cuda)"),
        "{}",
        text(&o)
    );
}

/// A copy of the checkpoint folder `base` with tensor `name` (f32) overwritten by `value`.
fn with_tensor_filled(base: &Path, out: &Path, name: &str, value: f32) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    for e in std::fs::read_dir(base).unwrap().flatten() {
        std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
    }
    let path = out.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let t = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no tensor {name}"));
    assert_eq!(t["dtype"], "F32");
    let (a, b) = (
        t["data_offsets"][0].as_u64().unwrap() as usize,
        t["data_offsets"][1].as_u64().unwrap() as usize,
    );
    for c in bytes[8 + n + a..8 + n + b].chunks_exact_mut(4) {
        c.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    out.to_path_buf()
}

#[test]
fn nan_weights_are_an_error_naming_the_cause_never_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let nan = with_tensor_filled(
        &base,
        &dir.path().join("nan"),
        "model.norm.weight",
        f32::NAN,
    );
    let clip = root().join("data/sample/videos/pg000_aurora.mp4");
    let o = evalverse(&[
        "judge",
        clip.to_str().unwrap(),
        "--prompt",
        "a detective in a desert canyon",
        "--checkpoint",
        "none",
        "--base",
        nan.to_str().unwrap(),
        "--dimensions",
        "lens",
        "--max-new-tokens",
        "4",
        "--json",
        "--cache",
        dir.path().join("cache").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("not finite") && said.contains("NaN") && said.contains("lens"),
        "{said}"
    );
    assert!(o.stdout.is_empty(), "no verdict: {}", text(&o));

    let out = dir.path().join("eval");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        nan.to_str().unwrap(),
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--dimensions",
        "lens",
        "--max-new-tokens",
        "4",
        "--bootstrap",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not finite"), "{}", text(&o));
    for f in ["judgements.jsonl", "report.json", "report.md"] {
        assert!(!out.join(f).exists(), "{f} written from NaN weights");
    }
}

#[test]
fn eval_without_bootstrap_prints_the_point_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let out = dir.path().join("eval");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--dimensions",
        "lens",
        "--max-new-tokens",
        "4",
        "--bootstrap",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let srcc = r["overall"]["srcc"]["estimate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no overall SRCC: {}", r["overall"]));
    assert!(r["overall"]["srcc"]["lower"].is_null());
    assert!(r["dimensions"][0]["soft_srcc_ci"]["estimate"].is_number());
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(
        printed.contains(&format!("| Overall | {srcc:.3} (no interval) |")),
        "{printed}"
    );
}

#[test]
fn a_malformed_config_json_is_a_configuration_error_like_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let data = root().join("data/sample");
    let eval = |model: &Path| {
        evalverse(&[
            "eval",
            "--checkpoint",
            "none",
            "--base",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--dimensions",
            "lens",
            "--out",
            dir.path().join("never").to_str().unwrap(),
        ])
    };
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&base).unwrap().flatten() {
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        d
    };
    let missing = copy("missing");
    std::fs::remove_file(missing.join("config.json")).unwrap();
    let malformed = copy("malformed");
    std::fs::write(
        malformed.join("config.json"),
        "{\"model_type\": \"qwen2_5_vl\",",
    )
    .unwrap();
    for m in [&missing, &malformed] {
        let o = eval(m);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains(&m.join("config.json").display().to_string()),
            "{}",
            text(&o)
        );
    }
    // A hidden size the weights contradict: the weights' shape, named (invalid data, exit 1).
    let wide = copy("wide");
    let config = std::fs::read_to_string(wide.join("config.json")).unwrap();
    let edited = config.replacen("\"hidden_size\": 32", "\"hidden_size\": 64", 1);
    assert_ne!(edited, config);
    std::fs::write(wide.join("config.json"), edited).unwrap();
    let o = eval(&wide);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("'model.embed_tokens.weight'") && !text(&o).contains("mrope_section"),
        "{}",
        text(&o)
    );
}
