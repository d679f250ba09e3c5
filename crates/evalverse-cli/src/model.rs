//! `evalverse model init`: a fresh Qwen-VL checkpoint (`--family qwen2_5_vl|qwen2_vl|qwen3_vl`)
//! with random weights in the Hugging Face layout (config.json, model.safetensors,
//! tokenizer.json), for tests and CPU experiments (`evalverse_model::init::write_small_family`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use evalverse_model::config::{Family, SUPPORTED_MODEL_TYPES};
pub use evalverse_model::init::SmallSpec;

use crate::Failure;

pub fn init(
    out: &Path,
    tokenizer: &Path,
    spec: &SmallSpec,
    family: &str,
) -> Result<ExitCode, Failure> {
    let fam = Family::from_model_type(family).ok_or_else(|| {
        Failure::Usage(anyhow!(
            "--family {family}: not a model family; one of {}",
            SUPPORTED_MODEL_TYPES.join(", ")
        ))
    })?;
    evalverse_model::init::write_small_family(out, tokenizer, spec, fam).map_err(|e| match e {
        evalverse_model::ModelError::Io { .. } => Failure::Runtime(anyhow!(e)),
        other => Failure::Usage(anyhow!(other)),
    })?;
    println!(
        "wrote a random {family} checkpoint (hidden {}, {} layers) to {}",
        spec.hidden,
        spec.layers,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
