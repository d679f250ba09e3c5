//! The SFT stage end to end on a tiny random Qwen2.5-VL with the real Qwen tokenizer and
//! data/sample: the loss falls; a run stopped halfway and resumed reproduces the losses of an
//! uninterrupted run; a NaN-free run writes checkpoints and a PEFT adapter.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use evalverse_model::Cpu;
use evalverse_train::recipe::Recipe;
use evalverse_train::runtime::TrainError;

type B = Autodiff<Cpu>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tiny base model (hidden 32, 1 layer) with the real tokenizer, made once per test.
fn tiny_base(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    let cfg = evalverse_model::init::small_config(151_936, 32, 1, 2, 1, 32, 1);
    evalverse_model::init::write_random_checkpoint(&base, &cfg, 3).unwrap();
    let tok = root().join("target/test-assets/qwen-tokenizer.json");
    assert!(
        tok.is_file(),
        "{} is missing: run scripts/fetch_test_assets.sh",
        tok.display()
    );
    std::fs::copy(tok, base.join("tokenizer.json")).unwrap();
    base
}

fn recipe(dir: &Path, base: &Path, out: &str, steps: usize, dropout: f64) -> Recipe {
    let text = format!(
        r#"
[run]
output_dir = "{out}"
seed = 5
[model]
source = "{base}"
[lora]
rank = 4
alpha = 8
dropout = {dropout}
[data]
dataset = "{data}"
dimensions = ["lens", "pacing"]
cache_dir = "{cache}"
[data.frames]
fps = 2.0
min_frames = 4
max_frames = 4
min_pixels = 3136
max_pixels = 12544
[stage]
kind = "sft"
[optim]
lr = 5e-3
[schedule]
decay = "cosine"
warmup_steps = 1
[train]
batch_size = 2
grad_accum = 2
max_steps = {steps}
save_every = 2
[log]
progress = false
"#,
        out = dir.join(out).display(),
        base = base.display(),
        data = root().join("data/sample").display(),
        cache = dir.join("cache").display(),
    );
    let p = dir.join(format!("{out}.toml"));
    std::fs::write(&p, text).unwrap();
    Recipe::load(&p).unwrap()
}

#[test]
fn sft_resume_after_half_reproduces_losses_and_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let straight = evalverse_train::sft::run::<B>(
        &recipe(dir.path(), &base, "straight", 6, 0.1),
        false,
        &device,
        &|_| false,
    )
    .unwrap();
    assert_eq!(straight.steps, 6);
    let first = straight.losses[0].1;
    let last = straight.losses[5].1;
    assert!(last < first, "loss should fall: {:?}", straight.losses);

    let r = recipe(dir.path(), &base, "resumed", 6, 0.1);
    match evalverse_train::sft::run::<B>(&r, false, &device, &|step| step == 3) {
        Err(TrainError::Interrupted { step: 3, .. }) => {}
        other => panic!("expected an interruption at step 3, got {other:?}"),
    }
    // Starting again without --resume is refused rather than overwriting.
    assert!(matches!(
        evalverse_train::sft::run::<B>(&r, false, &device, &|_| false),
        Err(TrainError::Config(_))
    ));
    let resumed = evalverse_train::sft::run::<B>(&r, true, &device, &|_| false).unwrap();
    assert_eq!(resumed.losses.len(), 6);
    for ((s1, a), (s2, b)) in straight.losses.iter().zip(&resumed.losses) {
        assert_eq!(s1, s2);
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "step {s1}: straight {a} vs resumed {b}"
        );
    }
    // Outputs: a PEFT adapter, the resolved recipe, metrics, TensorBoard events, 2 checkpoints kept.
    let out = dir.path().join("resumed");
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "recipe.toml",
        "metrics.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cks: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cks.len(), 2, "keep_last = 2");
}
