//! `evalverse model init`: a fresh Qwen2.5-VL checkpoint with random weights in the Hugging Face
//! layout (config.json, model.safetensors, tokenizer.json), for tests and CPU experiments
//! (`evalverse_model::init::write_small`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
pub use evalverse_model::init::SmallSpec;

use crate::Failure;

pub fn init(out: &Path, tokenizer: &Path, spec: &SmallSpec) -> Result<ExitCode, Failure> {
    evalverse_model::init::write_small(out, tokenizer, spec).map_err(|e| match e {
        evalverse_model::ModelError::Io { .. } => Failure::Runtime(anyhow!(e)),
        other => Failure::Usage(anyhow!(other)),
    })?;
    println!(
        "wrote a random Qwen2.5-VL checkpoint (hidden {}, {} layers) to {}",
        spec.hidden,
        spec.layers,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
