//! A tiny base model with the real tokenizer, and recipes over data/sample, for stage tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use evalverse_model::Cpu;
use evalverse_train::recipe::Recipe;

pub type B = Autodiff<Cpu>;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tiny base model (hidden 32, 1 layer) with the real tokenizer, made once per test.
pub fn tiny_base(dir: &Path) -> PathBuf {
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

pub fn recipe(dir: &Path, base: &Path, out: &str, steps: usize, dropout: f64) -> Recipe {
    recipe_with(dir, base, out, steps, dropout, "kind = \"sft\"", "")
}

/// A recipe with the given [stage] body and extra [model] lines.
pub fn recipe_with(
    dir: &Path,
    base: &Path,
    out: &str,
    steps: usize,
    dropout: f64,
    stage: &str,
    model_extra: &str,
) -> Recipe {
    let text = format!(
        r#"
[run]
output_dir = "{out}"
seed = 5
[model]
source = "{base}"
{model_extra}
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
{stage}
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
        stage = stage,
        model_extra = model_extra,
    );
    let p = dir.join(format!("{out}.toml"));
    std::fs::write(&p, text).unwrap();
    Recipe::load(&p).unwrap()
}
