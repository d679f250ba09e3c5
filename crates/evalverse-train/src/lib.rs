//! evalverse-train: the two LoRA training stages of the EvalVerse method (chain-of-thought SFT
//! and preference calibration), as flat programs over small libraries: losses (pure functions),
//! optimizer and schedule, checkpoints with exact resume, metric loggers, recipes.

pub mod checkpoint;
pub mod grpo;
pub mod judge_spec;
pub mod log;
pub mod losses;
pub mod objective;
pub mod optim;
pub mod preference;
pub mod recipe;
pub mod runtime;
pub mod sft;
pub mod trainer;

/// Judge prompts and examples (they live in evalverse-data, shared with evaluation).
pub use evalverse_data::prompts as examples;

/// Run the recipe's stage on `Autodiff<Inner>`, or with `train.gradient_checkpointing = true`
/// on `Autodiff<Inner, BalancedCheckpointing>` (memory-bound operations recomputed in the
/// backward pass). `stop(step)` is asked after every optimizer step (Ctrl-C); when it answers
/// true the stage saves a checkpoint and returns `TrainError::Interrupted`.
pub fn run_stage<Inner: evalverse_model::ModelBackend>(
    recipe: &recipe::Recipe,
    resume: bool,
    device: &Inner::Device,
    stop: &dyn Fn(usize) -> bool,
) -> Result<sft::RunSummary, runtime::TrainError> {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    use burn::backend::Autodiff;
    use recipe::StageConfig;
    type Plain<I> = Autodiff<I>;
    type Checkpointed<I> = Autodiff<I, BalancedCheckpointing>;
    match (&recipe.stage, recipe.train.gradient_checkpointing) {
        (StageConfig::Sft | StageConfig::Caption, false) => {
            sft::run::<Plain<Inner>>(recipe, resume, device, stop)
        }
        (StageConfig::Sft | StageConfig::Caption, true) => {
            sft::run::<Checkpointed<Inner>>(recipe, resume, device, stop)
        }
        (StageConfig::Preference { .. }, false) => {
            preference::run::<Plain<Inner>>(recipe, resume, device, stop)
        }
        (StageConfig::Preference { .. }, true) => {
            preference::run::<Checkpointed<Inner>>(recipe, resume, device, stop)
        }
    }
}
