//! `evalverse model init`: a fresh Qwen2.5-VL checkpoint with random weights in the Hugging Face
//! layout (config.json, model.safetensors, tokenizer.json), for tests and CPU experiments.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crate::Failure;

pub struct InitArgs<'a> {
    pub out: &'a Path,
    pub tokenizer: &'a Path,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vision_hidden: usize,
    pub vision_depth: usize,
    pub seed: u64,
    pub init_std: f64,
    pub embed_std: Option<f64>,
}

pub fn init(a: &InitArgs) -> Result<ExitCode, Failure> {
    if a.heads == 0 || !a.hidden.is_multiple_of(a.heads) || !(a.hidden / a.heads).is_multiple_of(8)
    {
        return Err(Failure::Usage(anyhow!(
            "--hidden must be a multiple of --heads with a head size divisible by 8"
        )));
    }
    let tok = evalverse_model::chat::ChatTokenizer::from_file(a.tokenizer)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    // Qwen2.5-VL's embedding size; the tokenizer's ids must fit.
    let vocab = 151_936.max(tok.tokenizer.get_vocab_size(true));
    if !(a.init_std.is_finite() && a.init_std > 0.0)
        || a.embed_std.is_some_and(|e| !(e.is_finite() && e > 0.0))
    {
        return Err(Failure::Usage(anyhow!(
            "--init-std and --embed-std must be positive numbers"
        )));
    }
    let mut cfg = evalverse_model::init::small_config(
        vocab,
        a.hidden,
        a.layers,
        a.heads,
        a.kv_heads,
        a.vision_hidden,
        a.vision_depth,
    );
    cfg["initializer_range"] = serde_json::json!(a.init_std);
    evalverse_model::init::write_random_checkpoint_with(a.out, &cfg, a.seed, a.embed_std)
        .map_err(|e| Failure::Runtime(anyhow!(e)))?;
    std::fs::copy(a.tokenizer, a.out.join("tokenizer.json"))
        .with_context(|| format!("copying {}", a.tokenizer.display()))?;
    println!(
        "wrote a random Qwen2.5-VL checkpoint (hidden {}, {} layers) to {}",
        a.hidden,
        a.layers,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
