//! The one training loop of every stage: learning-rate schedule, the backend seed per step,
//! gradient accumulation over micro-batches, the NaN stop, global-norm clipping and AdamW on the
//! device, logging, validation, checkpoints with exact resume and the stop callback (Ctrl-C).
//! What a step learns from is an `Objective` (objective/: sft, dpo, bt on score tokens, bt on a
//! reward head, distribution); a stage (sft.rs, preference.rs) sets up the model and the
//! objective, calls `train`, and writes its outputs. Follows torchtune's single-device LoRA
//! recipes (recipes/lora_finetune_single_device.py): the loop is written once, the loss is not.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::tensor::Tensor;
use evalverse_model::{QwenVl, TrainBackend};

use crate::checkpoint::{self, TrainerState};
use crate::log::Logger;
use crate::optim::{self, AdamW, Tensors};
use crate::recipe::Recipe;
use crate::runtime::{self, runtime, TrainError};

/// Named scalars for the logger (metrics.jsonl and TensorBoard), e.g. TRL's "rewards/margins".
pub type Metrics = Vec<(String, f64)>;

/// One micro-batch's contribution to a step.
pub struct MicroBatch<B: TrainBackend> {
    /// The micro-batch's loss, [1]. The trainer divides it by `train.grad_accum` before the
    /// backward pass, so the step's gradient is that of the mean over micro-batches.
    pub loss: Tensor<B, 1>,
    /// False when the micro-batch has nothing to learn from (no label token): its loss is
    /// logged but not back-propagated.
    pub backward: bool,
    /// Averaged over the step's micro-batches and logged beside "loss".
    pub metrics: Metrics,
    /// Tokens the model read (for tokens_per_second; 0 when it read none).
    pub tokens: usize,
}

/// What a step will train on, given to `Objective::prepare_step` before its micro-batches.
pub struct StepPlan<'a> {
    /// Optimizer steps done before this one (0-based index of this step).
    pub step: usize,
    /// Item indices of each micro-batch of the step, in the order they will be asked for.
    pub micro_batches: &'a [Vec<usize>],
    /// A seed for this step's own randomness (sampling), derived from the run's seed and the
    /// step: a resumed run draws the same.
    pub seed: u64,
}

/// A training objective: the items of a stage and the loss of a micro-batch of them. The
/// trainer owns the loop; an objective holds whatever it needs besides the policy (encoded
/// items, cached reference log-probs, a frozen reference model from `frozen_reference`, a reward
/// head) and is read top to bottom in its own module under objective/.
pub trait Objective<B: TrainBackend> {
    /// Number of training items; micro-batches draw `train.batch_size` indices in 0..items()
    /// from the run's seeded epoch permutations.
    fn items(&self) -> usize;

    /// Work done once per step before its micro-batches, with the current policy (e.g. sampling
    /// completions for the step's prompts without gradients). Returns metrics logged as they
    /// are for the step. Default: nothing.
    fn prepare_step(
        &mut self,
        _model: &QwenVl<B>,
        _plan: &StepPlan,
    ) -> Result<Metrics, TrainError> {
        Ok(Vec::new())
    }

    /// The loss of micro-batch `k` of the step (items `items`) under the policy `model`.
    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError>;

    /// Trainable tensors the objective owns besides the model's LoRA (a reward head), by name.
    /// They must be autodiff leaves (`require_grad`); the trainer updates them in place with
    /// the LoRA weights and keeps their optimizer moments in the checkpoint. Default: none.
    fn params(&mut self) -> Vec<(&'static str, &mut Tensor<B, 2>)> {
        Vec::new()
    }

    /// Validation metrics, asked every `train.eval_every` steps. Default: none.
    fn evaluate(&mut self, _model: &QwenVl<B>) -> Result<Metrics, TrainError> {
        Ok(Vec::new())
    }

    /// Write the objective's own state into a checkpoint folder being committed (the LoRA
    /// adapter is already in `dir/adapter`). Default: nothing.
    fn save(&mut self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }

    /// Read back what `save` wrote, when a run resumes from checkpoint `dir`. Default: nothing.
    fn restore(&mut self, _dir: &Path) -> Result<(), TrainError> {
        Ok(())
    }
}

/// A frozen copy of the policy as it is now, without autodiff, for an objective that needs a
/// reference model: the base weights are shared with the policy (no copy), the LoRA weights
/// are the current ones and never change. Take it when the objective is built, before `train`
/// switches LoRA dropout on, so the reference runs without dropout.
pub fn frozen_reference<B: TrainBackend>(model: &QwenVl<B>) -> QwenVl<B::InnerBackend> {
    burn::module::AutodiffModule::valid(model)
}

/// Optimizer steps of the run: `train.max_steps`, or `train.epochs` passes over `items`.
pub fn total_steps(recipe: &Recipe, items: usize) -> usize {
    let t = &recipe.train;
    match (t.max_steps, t.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => ((e * items as f64) / (t.batch_size * t.grad_accum) as f64)
            .ceil()
            .max(1.0) as usize,
        _ => unreachable!("validated"),
    }
}

/// The LoRA settings of the run (the recipe's, seeded with the run's seed).
pub fn lora_config(recipe: &Recipe) -> evalverse_model::lora::LoraConfig {
    evalverse_model::lora::LoraConfig {
        seed: recipe.run.seed,
        ..recipe.lora.clone()
    }
}

/// Train `model` (its LoRA weights and the objective's `params`) for the recipe's steps, or on
/// from the run's newest checkpoint when `resume`. `stop(step)` is asked after every optimizer
/// step; when it answers true the trainer saves a checkpoint and returns
/// `TrainError::Interrupted`. A non-finite loss stops the run with `TrainError::NonFiniteLoss`
/// before the update. Returns the trainer state after the last step, whose checkpoint is saved.
pub fn train<B: TrainBackend>(
    recipe: &Recipe,
    model: &mut QwenVl<B>,
    objective: &mut dyn Objective<B>,
    resume: bool,
    skipped_clips: Vec<String>,
    device: &B::Device,
    stop: &dyn Fn(usize) -> bool,
) -> Result<TrainerState, TrainError> {
    // ---- setup and resume
    let out = &recipe.run.output_dir;
    let t = &recipe.train;
    let seed = recipe.run.seed;
    let lora = lora_config(recipe);
    let total_steps = total_steps(recipe, objective.items());
    let mut opt = AdamW::<B::InnerBackend>::default();
    let mut state = TrainerState {
        step: 0,
        micro_batches: 0,
        seed,
        losses: vec![],
        skipped_clips,
    };
    if resume {
        if let Some(ck) = checkpoint::latest(out) {
            evalverse_model::lora::load_peft(model, &ck.join("adapter")).map_err(runtime)?;
            objective.restore(&ck)?;
            let host =
                checkpoint::load_optimizer(&ck.join("optimizer.safetensors")).map_err(runtime)?;
            let shapes = trainable(model, objective)
                .iter()
                .map(|(k, v)| (k.clone(), v.dims()))
                .collect();
            opt = AdamW::from_host(&host, &shapes, device)
                .map_err(|e| runtime(format!("{}: {e}", ck.display())))?;
            let path = ck.join("trainer_state.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| runtime(format!("{}: {e}", path.display())))?;
            state = serde_json::from_str(&text)
                .map_err(|e| runtime(format!("{}: {e}", path.display())))?;
            eprintln!("resuming from {} (step {})", ck.display(), state.step);
        }
    }
    // Restored adapters load in evaluation mode: dropout on for training.
    evalverse_model::lora::set_training(model, true);
    let mut logger = Logger::new(
        out,
        recipe.log.jsonl,
        recipe.log.tensorboard,
        recipe.log.progress.then_some(total_steps as u64),
        state.step,
    )
    .map_err(runtime)?;
    if let Some(b) = &logger.bar {
        b.set_position(state.step as u64);
    }
    let save = |model: &mut QwenVl<B>,
                objective: &mut dyn Objective<B>,
                opt: &AdamW<B::InnerBackend>,
                state: &TrainerState| {
        save_checkpoint(recipe, &lora, model, objective, opt, state)
    };

    // ---- train
    let started = Instant::now();
    let mut tokens_seen = 0usize;
    while state.step < total_steps {
        let lr = recipe.optim.lr * recipe.schedule.factor(state.step, total_steps);
        // Dropout masks come from the backend RNG: seed it per step so a resumed run draws the same.
        let step_seed = seed
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(state.step as u64);
        B::seed(device, step_seed);
        let plan: Vec<Vec<usize>> = (0..t.grad_accum)
            .map(|k| {
                runtime::micro_batch(
                    seed,
                    objective.items(),
                    t.batch_size,
                    state.micro_batches + k,
                )
            })
            .collect();
        state.micro_batches += t.grad_accum;
        let step_metrics = objective.prepare_step(
            model,
            &StepPlan {
                step: state.step,
                micro_batches: &plan,
                seed: step_seed,
            },
        )?;
        let mut grads_acc: Tensors<B::InnerBackend> = BTreeMap::new();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (k, idx) in plan.iter().enumerate() {
            let mb = objective.micro_batch(model, k, idx)?;
            tokens_seen += mb.tokens;
            let value: f64 = optim::scalar(mb.loss.clone());
            *sums.entry("loss".into()).or_default() += value / t.grad_accum as f64;
            for (name, v) in mb.metrics {
                *sums.entry(name).or_default() += v / t.grad_accum as f64;
            }
            if mb.backward {
                let grads = (mb.loss / t.grad_accum as f64).backward();
                add_grads(model, objective, &grads, &mut grads_acc);
            }
        }
        let loss = sums["loss"];
        if !loss.is_finite() {
            let last = checkpoint::latest(out)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none (no checkpoint yet)".into());
            return Err(TrainError::NonFiniteLoss {
                step: state.step,
                value: loss,
                last_checkpoint: last,
            });
        }
        let norm = optim::clip_global_norm_device(&mut grads_acc, recipe.optim.grad_clip, device);
        let mut params = trainable(model, objective);
        opt.update(&recipe.optim, lr, &mut params, &grads_acc);
        set_trainable(model, objective, params);
        let grad_norm = optim::scalar(norm);
        state.step += 1;
        state.losses.push((state.step, loss));

        // ---- log, validate, save
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let mut scalars: Vec<(&str, f64)> = sums.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        scalars.extend(step_metrics.iter().map(|(k, v)| (k.as_str(), *v)));
        scalars.push(("learning_rate", lr));
        scalars.push(("grad_norm", grad_norm));
        scalars.push(("steps_per_second", state.step as f64 / secs));
        if tokens_seen > 0 {
            scalars.push(("tokens_per_second", tokens_seen as f64 / secs));
        }
        logger.log(state.step, &scalars).map_err(runtime)?;
        if let Some(b) = &logger.bar {
            b.set_position(state.step as u64);
            b.set_message(format!(
                "loss {loss:.4}  lr {lr:.2e}  {:.0} tok/s",
                tokens_seen as f64 / secs
            ));
        }
        if t.eval_every > 0 && state.step.is_multiple_of(t.eval_every) {
            let m = objective.evaluate(model)?;
            if !m.is_empty() {
                let m: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                logger.log(state.step, &m).map_err(runtime)?;
            }
        }
        let interrupted = stop(state.step);
        if (t.save_every > 0 && state.step.is_multiple_of(t.save_every)) || interrupted {
            let ck = save(model, objective, &opt, &state)?;
            if interrupted {
                return Err(TrainError::Interrupted {
                    step: state.step,
                    checkpoint: ck,
                });
            }
        }
    }

    // ---- the last step's checkpoint
    if checkpoint::latest(out)
        .map(|p| p != checkpoint::checkpoint_dir(out, state.step))
        .unwrap_or(true)
    {
        save(model, objective, &opt, &state)?;
    }
    if let Some(b) = &logger.bar {
        b.finish();
    }
    Ok(state)
}

/// The trainable tensors by name (without autodiff): the model's LoRA weights
/// (`<module>.lora_A` [in, r], `<module>.lora_B` [r, out]) and the objective's `params`.
fn trainable<B: TrainBackend>(
    model: &mut QwenVl<B>,
    objective: &mut dyn Objective<B>,
) -> Tensors<B::InnerBackend> {
    let mut out = runtime::lora_tensors(model);
    for (name, t) in objective.params() {
        out.insert(name.to_string(), t.clone().inner());
    }
    out
}

/// Put updated tensors back as fresh trainable leaves.
fn set_trainable<B: TrainBackend>(
    model: &mut QwenVl<B>,
    objective: &mut dyn Objective<B>,
    mut params: Tensors<B::InnerBackend>,
) {
    runtime::set_lora_tensors(model, &mut params);
    for (name, t) in objective.params() {
        let v = params.remove(name).expect("a trained tensor");
        *t = Tensor::from_inner(v).require_grad();
    }
}

/// Add the gradients of a backward pass for every trainable tensor into `acc`, on the device.
/// A tensor the loss did not reach has no gradient and is skipped (the optimizer then leaves it).
fn add_grads<B: TrainBackend>(
    model: &mut QwenVl<B>,
    objective: &mut dyn Objective<B>,
    grads: &B::Gradients,
    acc: &mut Tensors<B::InnerBackend>,
) {
    runtime::add_lora_grads(model, grads, acc);
    for (name, t) in objective.params() {
        if let Some(g) = t.grad(grads) {
            runtime::add_grad_device(acc, name.to_string(), g);
        }
    }
}

/// Save a checkpoint at `state.step`: the adapter (PEFT format), the objective's own state, the
/// optimizer moments (read back from the device, the host format of `checkpoint`), the trainer
/// state and the resolved recipe, atomically (checkpoint::commit); then the run folder's
/// resolved recipe.
fn save_checkpoint<B: TrainBackend>(
    recipe: &Recipe,
    lora: &evalverse_model::lora::LoraConfig,
    model: &mut QwenVl<B>,
    objective: &mut dyn Objective<B>,
    opt: &AdamW<B::InnerBackend>,
    state: &TrainerState,
) -> Result<std::path::PathBuf, TrainError> {
    let ck = checkpoint::commit(
        &recipe.run.output_dir,
        state.step,
        recipe.train.keep_last,
        |dir| {
            evalverse_model::lora::save_peft(
                model,
                lora,
                &dir.join("adapter"),
                &recipe.model.source,
            )
            .map_err(|e| e.to_string())?;
            objective.save(dir)?;
            checkpoint::save_optimizer(&dir.join("optimizer.safetensors"), &opt.to_host())?;
            let write = |name: &str, text: String| {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
            };
            write(
                "trainer_state.json",
                serde_json::to_string_pretty(state).expect("json"),
            )?;
            write("recipe.toml", recipe.to_toml())
        },
    )
    .map_err(runtime)?;
    runtime::write_text(
        &recipe.run.output_dir.join("recipe.toml"),
        &recipe.to_toml(),
    )?;
    Ok(ck)
}
