//! End-to-end tests of `evalverse export`: a preference-shaped run (an SFT adapter merged into the
//! base, a second adapter trained on top, the two stacked into `adapter/` as training writes
//! them) is exported merged, in several shards, and the merged folder loads back and gives the
//! logits of base + adapter; the PEFT export is the run's adapter with a model card; a non-empty
//! output folder is refused without --force.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::module::Param;
use burn::tensor::{DType, Distribution, Tensor};
use evalverse_model::lora::{
    apply_lora, drop_adapters, load_peft, merge_all, save_peft, save_stacked_peft, LoraConfig,
    DEFAULT_TARGETS,
};
use evalverse_model::{Cpu, QwenVl};

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

fn ok(args: &[&str]) -> String {
    let o = evalverse(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    text(&o)
}

fn tiny_base(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    let tok = root().join("target/test-assets/qwen-tokenizer.json");
    assert!(
        tok.is_file(),
        "{} is missing: run scripts/fetch_test_assets.sh",
        tok.display()
    );
    ok(&[
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
    base
}

/// Attach a fresh adapter with random (non-zero) B, as if trained.
fn random_adapter(model: &mut QwenVl<Cpu>, rank: usize, seed: u64) -> LoraConfig {
    let cfg = LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        dropout: 0.0,
        target_modules: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
        include_vision: false,
        use_rslora: false,
        seed,
    };
    apply_lora(model, &cfg).unwrap();
    model.for_each_linear(|_, lin| {
        let d_out = lin.d_out();
        if let Some(l) = lin.lora.as_mut() {
            l.lora_b = Param::from_tensor(Tensor::random(
                [rank, d_out],
                Distribution::Normal(0.0, 0.5),
                &Default::default(),
            ));
        }
    });
    cfg
}

/// A run folder shaped like a preference run's: recipe.toml and the stacked adapter/.
fn preference_run(dir: &Path, base: &Path) -> PathBuf {
    let load = || {
        QwenVl::<Cpu>::from_source(base.to_str().unwrap(), DType::F32, &Default::default()).unwrap()
    };
    let sft = dir.join("sft/adapter");
    let mut m = load();
    let cfg = random_adapter(&mut m, 4, 1);
    save_peft(&mut m, &cfg, &sft, base.to_str().unwrap()).unwrap();
    let run = dir.join("dpo");
    let mut m = load();
    load_peft(&mut m, &sft).unwrap();
    merge_all(&mut m);
    drop_adapters(&mut m);
    random_adapter(&mut m, 2, 2);
    save_stacked_peft(&sft, &mut m, &run.join("adapter"), base.to_str().unwrap()).unwrap();
    let recipe = std::fs::read_to_string(root().join("recipes/tiny/preference_dpo.toml"))
        .unwrap()
        .replace("runs/tiny/dpo", run.to_str().unwrap())
        .replace("runs/tiny/base", base.to_str().unwrap())
        .replace("runs/tiny/sft/adapter", sft.to_str().unwrap())
        .replace("data/sample", root().join("data/sample").to_str().unwrap());
    std::fs::write(run.join("recipe.toml"), recipe).unwrap();
    run
}

fn read_logits(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

fn shard_keys(path: &Path) -> Vec<(String, safetensors::Dtype, Vec<usize>, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.dtype(), v.shape().to_vec(), v.data().len()))
        .collect()
}

#[test]
fn merged_export_of_a_preference_run_loads_back_with_the_logits_of_base_plus_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let run = preference_run(dir.path(), &base);
    let out = dir.path().join("merged");
    let said = ok(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "merged",
        "--out",
        out.to_str().unwrap(),
        "--max-shard-size",
        "100KB",
    ]);
    assert!(said.contains("with LoRA folded in"), "{said}");

    // Shards and index: every tensor in exactly the shard the index names, sizes summed,
    // the base's keys (original layout), shapes and dtypes.
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let shards: std::collections::BTreeSet<&str> =
        map.values().map(|v| v.as_str().unwrap()).collect();
    assert!(
        shards.len() >= 3,
        "100KB shards of a ~1 MB model: {shards:?}"
    );
    let n = shards.len();
    let mut total = 0usize;
    let mut seen = std::collections::BTreeMap::new();
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(*s, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
        let size = std::fs::metadata(out.join(s)).unwrap().len();
        for (k, dtype, shape, bytes) in shard_keys(&out.join(s)) {
            assert_eq!(map[&k].as_str(), Some(*s), "{k} indexed in another shard");
            total += bytes;
            seen.insert(k, (dtype, shape));
        }
        let tensors_in = shard_keys(&out.join(s));
        assert!(
            size <= 100_000 + 4096 || tensors_in.len() == 1,
            "{s}: {size} bytes"
        );
    }
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total as u64));
    let base_keys: std::collections::BTreeMap<_, _> = shard_keys(&base.join("model.safetensors"))
        .into_iter()
        .map(|(k, d, s, _)| (k, (d, s)))
        .collect();
    assert_eq!(seen, base_keys, "same keys, dtypes and shapes as the base");
    for f in ["config.json", "tokenizer.json", "README.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        std::fs::read(base.join("config.json")).unwrap()
    );

    // The merged folder, loaded as a plain checkpoint, gives base + adapter's logits.
    let want = dir.path().join("adapter.safetensors");
    let got = dir.path().join("merged.safetensors");
    let bare = dir.path().join("base.safetensors");
    let adapter = run.join("adapter");
    ok(&[
        "model",
        "logits",
        "--model",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        want.to_str().unwrap(),
    ]);
    ok(&[
        "model",
        "logits",
        "--model",
        out.to_str().unwrap(),
        "--out",
        got.to_str().unwrap(),
    ]);
    ok(&[
        "model",
        "logits",
        "--model",
        base.to_str().unwrap(),
        "--out",
        bare.to_str().unwrap(),
    ]);
    let (want, got, bare) = (read_logits(&want), read_logits(&got), read_logits(&bare));
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs() as f64));
    let err = max_abs_diff(&want, &got);
    let effect = max_abs_diff(&want, &bare);
    println!("merged vs base+adapter: max abs {err:.2e} (max |logit| {scale:.3}); adapter effect {effect:.3}");
    // f32 merge: only the summation order of W + s B A differs from the two-matmul path.
    assert!(err <= 1e-5 * scale.max(1.0), "{err}");
    assert!(
        effect > 1e3 * err.max(1e-7),
        "the adapter must change the logits: {effect}"
    );

    // The card says what it is and that no eval was run.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\nbase_model: "), "{card}");
    assert!(card.contains("library_name: transformers"));
    assert!(
        card.contains("| Production | Cinematography | composition, lens, pacing |"),
        "{card}"
    );
    assert!(card.contains("kind = \"preference\""), "{card}");
    assert!(card.contains("| test |"), "{card}");
    assert!(card.contains("No evaluation was run"), "{card}");
}

#[test]
fn peft_export_carries_the_run_adapter_and_eval_table_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let run = preference_run(dir.path(), &base);
    ok(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--dimensions",
        "lens",
        "--max-new-tokens",
        "2",
        "--bootstrap",
        "20",
    ]);
    let out = dir.path().join("peft");
    let args = [
        "export",
        run.to_str().unwrap(),
        "--format",
        "peft",
        "--out",
        out.to_str().unwrap(),
        "--base-name",
        "org/tiny-qwen",
    ];
    ok(&args);
    assert_eq!(
        std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap()
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "org/tiny-qwen");
    assert_eq!(cfg["r"], 6, "SFT rank 4 + preference rank 2, stacked");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.starts_with("---\nbase_model: org/tiny-qwen\nlibrary_name: peft\n"),
        "{card}"
    );
    let lens_row = card
        .lines()
        .find(|l| l.starts_with("| lens | 30 |"))
        .unwrap_or_else(|| panic!("{card}"));
    assert!(
        lens_row.contains(" [") && lens_row.contains("] |"),
        "CIs in {lens_row}"
    );

    // Not over a non-empty folder, unless --force; the old folder is replaced whole.
    let o = evalverse(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    std::fs::write(out.join("stale.txt"), "x").unwrap();
    let mut forced = args.to_vec();
    forced.push("--force");
    ok(&forced);
    assert!(!out.join("stale.txt").exists());
    assert!(out.join("adapter_config.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );

    // An adapter that does not fit the base is refused before anything is written.
    let other = root().join("crates/evalverse-model/tests/fixtures/lora_peft");
    let bad_out = dir.path().join("bad");
    let o = evalverse(&[
        "export",
        other.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--format",
        "merged",
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not fit base"), "{}", text(&o));
    assert!(!bad_out.exists());
}
