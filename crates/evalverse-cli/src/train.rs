//! `evalverse train RECIPE [--resume]`: runs the stage the recipe names. Ctrl-C finishes the
//! current step, saves a checkpoint and exits; `--resume` continues from the newest checkpoint.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use evalverse_train::recipe::{Device, Recipe};
use evalverse_train::runtime::TrainError;

use crate::Failure;

pub fn train(recipe_path: &Path, resume: bool) -> Result<ExitCode, Failure> {
    Ok(if run_stage(recipe_path, resume)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Raised by Ctrl-C (`install_interrupt_handler`).
static STOP: AtomicBool = AtomicBool::new(false);

/// One Ctrl-C handler per process (the quickstart runs several stages): it raises `STOP`,
/// and the running stage finishes its step, saves a checkpoint and stops.
pub fn install_interrupt_handler() {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // A second Ctrl-C while saving would leave the temporary checkpoint only; it is harmless.
        let _ = ctrlc::set_handler(|| {
            eprintln!("\ninterrupt: finishing this step and saving a checkpoint");
            STOP.store(true, Ordering::SeqCst);
        });
    });
}

/// Whether Ctrl-C was pressed (the `stop` of a training stage).
pub fn interrupted(_step: usize) -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Run the recipe's stage; false when Ctrl-C stopped it (a checkpoint was saved).
pub fn run_stage(recipe_path: &Path, resume: bool) -> Result<bool, Failure> {
    let recipe = Recipe::load(recipe_path).map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    install_interrupt_handler();
    let should_stop = interrupted;
    let result = match recipe.run.device {
        Device::Cpu => evalverse_train::run_stage::<evalverse_model::Cpu>(
            &recipe,
            resume,
            &Default::default(),
            &should_stop,
        ),
        #[cfg(feature = "cuda")]
        Device::Cuda => evalverse_train::run_stage::<burn::backend::Cuda>(
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
