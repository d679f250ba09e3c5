//! A tiny base model with the real tokenizer, and recipes over data/sample, for stage tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use evalverse_model::{Batch, Cpu, QwenVl};
use evalverse_train::losses::label_rows;
use evalverse_train::recipe::Recipe;
use evalverse_train::runtime::{self, TrainError};
use evalverse_train::trainer::{MicroBatch, Objective};

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

/// Text-only sequences (token ids below the special tokens), loss on the last 6 tokens.
pub fn sequences() -> Vec<(Vec<u32>, Vec<bool>)> {
    let mut rng = evalverse_data::rng::Rng::new(7);
    (0..6)
        .map(|_| {
            let ids: Vec<u32> = (0..16).map(|_| (rng.next_u64() % 150_000) as u32).collect();
            let labels = (0..16).map(|i| i >= 10).collect();
            (ids, labels)
        })
        .collect()
}

pub fn batch_of(seqs: &[&(Vec<u32>, Vec<bool>)]) -> (Batch<B>, Vec<Vec<bool>>) {
    let batch = Batch::<B> {
        ids: seqs.iter().map(|s| s.0.clone()).collect(),
        mask: seqs.iter().map(|s| vec![true; s.0.len()]).collect(),
        pixel_values: None,
        media: vec![vec![]; seqs.len()],
        vision_embeds: None,
    };
    (batch, seqs.iter().map(|s| s.1.clone()).collect())
}

/// The SFT loss of a micro-batch: what both loops compute.
pub fn loss_of(model: &QwenVl<B>, seqs: &[&(Vec<u32>, Vec<bool>)]) -> burn::tensor::Tensor<B, 1> {
    let (batch, labels) = batch_of(seqs);
    let (rows, targets) = label_rows(&batch.ids, &labels);
    let (h, ..) = model.forward_hidden(&batch, false, None).unwrap();
    runtime::label_nll(model, h, &rows, targets)
}

/// An objective over text-only sequences (no clips): the SFT loss of each micro-batch.
pub struct Text(pub Vec<(Vec<u32>, Vec<bool>)>);

impl Objective<B> for Text {
    fn items(&self) -> usize {
        self.0.len()
    }
    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        _k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        let seqs: Vec<_> = items.iter().map(|&i| &self.0[i]).collect();
        Ok(MicroBatch {
            loss: loss_of(model, &seqs),
            backward: true,
            metrics: vec![],
            tokens: 0,
        })
    }
}
