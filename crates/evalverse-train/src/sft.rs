//! Stage 1 of the judge recipe: chain-of-thought SFT with LoRA (EvalVerse §6.2 "score
//! calibration": cross-entropy on the expert rationale then the score), and caption
//! pretraining, the same objective on (clip, dense caption) pairs. Reads top to bottom: setup,
//! the trainer's loop over the `objective::sft` objective, the adapter.

use std::path::PathBuf;

use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;

use crate::examples;
use crate::objective::sft::Sft;
use crate::recipe::{Recipe, StageConfig};
use crate::runtime::{self, runtime, TrainError};
use crate::trainer;
use evalverse_model::TrainBackend;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: usize,
    pub losses: Vec<(usize, f64)>,
    pub skipped_clips: Vec<String>,
    pub adapter: PathBuf,
    pub examples: usize,
}

/// The examples of a split: judge examples for `sft`, caption examples for `caption`.
fn stage_examples(
    recipe: &Recipe,
    ds: &Dataset,
    split: Split,
) -> Result<Vec<examples::JudgeExample>, TrainError> {
    match recipe.stage {
        StageConfig::Caption => {
            evalverse_data::prompts::caption_examples(ds, split).map_err(TrainError::Config)
        }
        _ => runtime::judge_examples(recipe, ds, split),
    }
}

/// Run the stage (`sft` or `caption`). `stop(step)` is asked after every optimizer step (Ctrl-C
/// in the CLI); when it answers true the run saves a checkpoint and returns
/// `TrainError::Interrupted`.
pub fn run<B: TrainBackend>(
    recipe: &Recipe,
    resume: bool,
    device: &B::Device,
    stop: &dyn Fn(usize) -> bool,
) -> Result<RunSummary, TrainError> {
    // ---- setup
    let out = &recipe.run.output_dir;
    let _lock = runtime::open_run(recipe, resume)?;
    let ds = runtime::load_dataset(recipe)?;
    let all = stage_examples(recipe, &ds, Split::Train)?;
    let (mut model, tok) = runtime::load_model::<B>(recipe, device)?;
    let clips = runtime::decode_clips(recipe, &ds, &all, &model.cfg.vision);
    for (id, why) in &clips.skipped {
        eprintln!("warning: skipping clip {id}: {why}");
    }
    let val = stage_examples(recipe, &ds, Split::Val)?;
    let val_clips = runtime::decode_clips(recipe, &ds, &val, &model.cfg.vision);
    let mut objective = Sft::new(
        &model,
        &tok,
        &all,
        &clips,
        val,
        &val_clips,
        recipe.lora.include_vision,
    );
    if objective.data.is_empty() {
        return Err(TrainError::Config(format!(
            "no trainable examples in the train split of {}",
            recipe.data.dataset.display()
        )));
    }

    // ---- train
    let skipped = clips.skipped.iter().map(|(i, _)| i.clone()).collect();
    let state = trainer::train(
        recipe,
        &mut model,
        &mut objective,
        resume,
        skipped,
        device,
        stop,
    )?;

    // ---- finish
    let adapter = out.join("adapter");
    evalverse_model::lora::save_peft(
        &mut model,
        &trainer::lora_config(recipe),
        &adapter,
        &recipe.model.source,
    )
    .map_err(runtime)?;
    Ok(RunSummary {
        steps: state.step,
        losses: state.losses,
        skipped_clips: state.skipped_clips,
        adapter,
        examples: objective.data.len(),
    })
}
