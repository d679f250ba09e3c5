//! `evalverse train RECIPE [--resume]`: runs the stage the recipe names. Ctrl-C finishes the
//! current step, saves a checkpoint and exits; `--resume` continues from the newest checkpoint.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;
use evalverse_train::recipe::{Recipe, StageConfig};
use evalverse_train::runtime::TrainError;

use crate::Failure;

type TrainBackend = Autodiff<evalverse_model::Cpu>;
/// `train.gradient_checkpointing = true`: memory-bound operations recomputed in the backward pass.
type CheckpointedBackend = Autodiff<evalverse_model::Cpu, BalancedCheckpointing>;

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
    let device = Default::default();
    use evalverse_train::{preference, sft};
    let result = match (&recipe.stage, recipe.train.gradient_checkpointing) {
        (StageConfig::Sft | StageConfig::Caption, false) => {
            sft::run::<TrainBackend>(&recipe, resume, &device, &should_stop)
        }
        (StageConfig::Sft | StageConfig::Caption, true) => {
            sft::run::<CheckpointedBackend>(&recipe, resume, &device, &should_stop)
        }
        (StageConfig::Preference { .. }, false) => {
            preference::run::<TrainBackend>(&recipe, resume, &device, &should_stop)
        }
        (StageConfig::Preference { .. }, true) => {
            preference::run::<CheckpointedBackend>(&recipe, resume, &device, &should_stop)
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
