//! `evalverse train RECIPE [--resume]`: runs the stage the recipe names. Ctrl-C finishes the
//! current step, saves a checkpoint and exits; `--resume` continues from the newest checkpoint.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;
use evalverse_model::ModelBackend;
use evalverse_train::recipe::{Device, Recipe, StageConfig};
use evalverse_train::runtime::TrainError;
use evalverse_train::sft::RunSummary;

use crate::Failure;

/// The stage on `Autodiff<Inner>`, or with `train.gradient_checkpointing = true` on
/// `Autodiff<Inner, BalancedCheckpointing>` (memory-bound operations recomputed in the backward
/// pass).
fn run_on<Inner: ModelBackend>(
    recipe: &Recipe,
    resume: bool,
    device: &Inner::Device,
    stop: &dyn Fn(usize) -> bool,
) -> Result<RunSummary, TrainError> {
    use evalverse_train::{preference, sft};
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

pub fn train(recipe_path: &Path, resume: bool) -> Result<ExitCode, Failure> {
    Ok(if run_stage(recipe_path, resume)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Run the recipe's stage; false when Ctrl-C stopped it (a checkpoint was saved).
pub fn run_stage(recipe_path: &Path, resume: bool) -> Result<bool, Failure> {
    let recipe = Recipe::load(recipe_path).map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    // One handler per process (quickstart runs several stages): it raises a global flag.
    static STOP: AtomicBool = AtomicBool::new(false);
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // A second Ctrl-C while saving would leave the temporary checkpoint only; it is harmless.
        let _ = ctrlc::set_handler(|| {
            eprintln!("\ninterrupt: finishing this step and saving a checkpoint");
            STOP.store(true, Ordering::SeqCst);
        });
    });
    let should_stop = |_: usize| STOP.load(Ordering::SeqCst);
    let result = match recipe.run.device {
        Device::Cpu => {
            run_on::<evalverse_model::Cpu>(&recipe, resume, &Default::default(), &should_stop)
        }
        #[cfg(feature = "cuda")]
        Device::Cuda => run_on::<burn::backend::Cuda>(
            &recipe,
            resume,
            &burn::backend::cuda::CudaDevice::new(0),
            &should_stop,
        ),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => {
            return Err(Failure::Usage(anyhow!(
                "{}: run.device = \"cuda\", and this evalverse was built without CUDA \
                 (cargo build --release -p evalverse-cli --features cuda)",
                recipe_path.display()
            )))
        }
    };
    match result {
        Ok(s) => {
            let first = s.losses.first().map(|l| l.1).unwrap_or(f64::NAN);
            let last = s.losses.last().map(|l| l.1).unwrap_or(f64::NAN);
            println!(
                "trained {} steps on {} examples: loss {first:.4} -> {last:.4}; adapter in {}{}",
                s.steps,
                s.examples,
                s.adapter.display(),
                if s.skipped_clips.is_empty() {
                    String::new()
                } else {
                    format!(" ({} unreadable clips skipped)", s.skipped_clips.len())
                }
            );
            println!(
                "metrics: {}",
                recipe.run.output_dir.join("metrics.jsonl").display()
            );
            println!(
                "tensorboard --logdir {}",
                recipe.run.output_dir.join("tb").display()
            );
            Ok(true)
        }
        Err(TrainError::Config(m)) => {
            Err(Failure::Usage(anyhow!("{}: {m}", recipe_path.display())))
        }
        Err(e @ TrainError::Interrupted { .. }) => {
            eprintln!(
                "{e}; continue with: evalverse train {} --resume",
                recipe_path.display()
            );
            Ok(false)
        }
        Err(e) => Err(Failure::Runtime(anyhow!(e))),
    }
}
