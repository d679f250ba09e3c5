//! Loading a judge's parts: the base model and its tokenizer (a local folder or `hf:ORG/NAME`
//! through hf-hub), a PEFT adapter, and the reward head saved beside it. Training loads its
//! starting point and every judging command loads its judge through these functions.

use std::path::Path;

use burn::tensor::DType;
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::reward::RewardHead;
use evalverse_model::weights::{CheckpointFiles, ModelSource};
use evalverse_model::{ModelBackend, QwenVl};

use crate::JudgeError;

/// The files of a base model named by a folder path or `hf:ORG/NAME[@REV]`.
pub fn base_files(source: &str) -> Result<CheckpointFiles, JudgeError> {
    ModelSource::parse(source)
        .and_then(|s| s.resolve())
        .map_err(|e| JudgeError::Config(format!("base model {source}: {e}")))
}

/// The base model and its tokenizer (`tokenizer` overrides the checkpoint's tokenizer.json),
/// checked against each other.
pub fn load_base<B: ModelBackend>(
    source: &str,
    tokenizer: Option<&Path>,
    dtype: DType,
    device: &B::Device,
) -> Result<(QwenVl<B>, ChatTokenizer), JudgeError> {
    let files = base_files(source)?;
    let tok_path = tokenizer
        .map(Path::to_path_buf)
        .or(files.tokenizer.clone())
        .ok_or_else(|| {
            JudgeError::Config(format!(
                "{source} has no tokenizer.json; name one (recipe key model.tokenizer)"
            ))
        })?;
    let tok = ChatTokenizer::from_file(&tok_path).map_err(|e| JudgeError::Config(e.to_string()))?;
    let model = QwenVl::<B>::load_files(&files.config, &files.weights, dtype, device).map_err(
        |e| match e {
            // A missing, malformed or self-contradicting config.json is the user's to fix;
            // damaged weights are invalid data.
            evalverse_model::ModelError::Config { .. } => JudgeError::Config(e.to_string()),
            other => JudgeError::Runtime(other.to_string()),
        },
    )?;
    tok.check_model(&model.cfg)
        .map_err(|e| JudgeError::Config(e.to_string()))?;
    Ok((model, tok))
}

/// Load the PEFT adapter in `dir` into `model` (the base `base`) and fold it into the base
/// weights (identical outputs, one matmul per layer): the judging form of a trained adapter.
pub fn fold_adapter<B: ModelBackend>(
    model: &mut QwenVl<B>,
    dir: &Path,
    base: &str,
) -> Result<(), JudgeError> {
    evalverse_model::lora::load_peft(model, dir).map_err(|e| {
        JudgeError::Config(format!(
            "adapter {} does not fit base {base}: {e}",
            dir.display()
        ))
    })?;
    evalverse_model::lora::merge_all(model);
    Ok(())
}

/// The reward head saved in `dir` (beside an adapter, or in a merged model folder), checked
/// against the model's hidden size; None when the folder has none.
pub fn load_head(dir: &Path, hidden_size: usize) -> Result<Option<RewardHead>, JudgeError> {
    let head = RewardHead::load(dir).map_err(|e| JudgeError::Config(e.to_string()))?;
    if let Some(h) = &head {
        if h.config.hidden_size != hidden_size {
            return Err(JudgeError::Config(format!(
                "{}: the reward head is for hidden size {}, the base model has {hidden_size}",
                dir.join(evalverse_model::reward::CONFIG).display(),
                h.config.hidden_size,
            )));
        }
    }
    Ok(head)
}
