//! Stage 1 of the judge recipe: chain-of-thought SFT with LoRA (EvalVerse §6.2 "score
//! calibration": cross-entropy on the expert rationale then the score). Reads top to bottom:
//! setup, resume, the loop with explicit gradient accumulation, logging, checkpoints, the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::{Int, Tensor, TensorData};
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;

use crate::checkpoint::{self, TrainerState};
use crate::examples;
use crate::log::Logger;
use crate::losses::{label_rows, token_nll};
use crate::optim::{clip_global_norm, AdamWState};
use crate::recipe::{Recipe, StageConfig};
use crate::runtime::{self, runtime, Encoded, TrainError};
use evalverse_model::{ModelBackend, QwenVl, TrainBackend};

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

/// Run the stage (`sft` or `caption`). `stop(step)` is asked after every optimizer step (Ctrl-C in the CLI); when it
/// answers true the run saves a checkpoint and returns `TrainError::Interrupted`.
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
    evalverse_model::lora::set_training(&mut model, true);
    let clips = runtime::decode_clips(recipe, &ds, &all, &model.cfg.vision);
    for (id, why) in &clips.skipped {
        eprintln!("warning: skipping clip {id}: {why}");
    }
    let encode = |e: &examples::JudgeExample| -> Option<Encoded> {
        let clip = clips.by_video.get(&e.video)?;
        let conv = runtime::conversation(&clips, e, clip, Some(&e.answer));
        let enc = tok.encode_chat(&conv, false).ok()?;
        Some(Encoded {
            ids: enc.ids,
            labels: enc.labels,
            video: e.video.clone(),
        })
    };
    let data: Vec<Encoded> = all.iter().filter_map(encode).collect();
    if data.is_empty() {
        return Err(TrainError::Config(format!(
            "no trainable examples in the train split of {}",
            recipe.data.dataset.display()
        )));
    }
    let val_examples = stage_examples(recipe, &ds, Split::Val)?;
    let val_clips = runtime::decode_clips(recipe, &ds, &val_examples, &model.cfg.vision);
    let t = &recipe.train;
    let per_step = t.batch_size * t.grad_accum;
    let total_steps = match (t.max_steps, t.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => ((e * data.len() as f64) / per_step as f64).ceil().max(1.0) as usize,
        _ => unreachable!("validated"),
    };
    let pad = tok.special.endoftext;
    let seed = recipe.run.seed;
    let lora = evalverse_model::lora::LoraConfig {
        seed,
        ..recipe.lora.clone()
    };
    // A frozen vision tower gives the same tokens every epoch: encode each clip once.
    let vision =
        (!recipe.lora.include_vision).then(|| runtime::encode_vision(&model, &clips, device));
    let (mut params, shapes) = runtime::lora_params(&mut model);
    let mut opt = AdamWState::default();
    let mut state = TrainerState {
        step: 0,
        micro_batches: 0,
        seed,
        losses: vec![],
        skipped_clips: clips.skipped.iter().map(|(i, _)| i.clone()).collect(),
    };

    // ---- resume
    if resume {
        if let Some(ck) = runtime::restore_checkpoint(out, &mut model, &mut opt, &mut state)? {
            params = runtime::lora_params(&mut model).0;
            // Restored adapters load in evaluation mode: dropout back on.
            evalverse_model::lora::set_training(&mut model, true);
            eprintln!("resuming from {} (step {})", ck.display(), state.step);
        }
    }
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
    let save = |_step: usize, model: &mut QwenVl<B>, opt: &AdamWState, state: &TrainerState| {
        runtime::save_checkpoint(recipe, &lora, model, None, opt, state)
    };

    // ---- train
    let started = Instant::now();
    let mut tokens_seen = 0usize;
    while state.step < total_steps {
        let lr = recipe.optim.lr * recipe.schedule.factor(state.step, total_steps);
        // Dropout masks come from the backend RNG: seed it per step so a resumed run draws the same.
        B::seed(
            device,
            seed.wrapping_mul(0x9E37_79B9)
                .wrapping_add(state.step as u64),
        );
        let mut grads_acc: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut loss_sum = 0.0;
        for _ in 0..t.grad_accum {
            let idx = runtime::micro_batch(seed, data.len(), t.batch_size, state.micro_batches);
            state.micro_batches += 1;
            let seqs: Vec<&Encoded> = idx.iter().map(|&i| &data[i]).collect();
            let (batch, labels) =
                runtime::make_batch::<B>(&seqs, &clips, pad, device, vision.as_ref());
            let (rows, targets) = label_rows(&batch.ids, &labels);
            let n = rows.len();
            let (h, ..) = model.forward_hidden(&batch, false, None).map_err(runtime)?;
            let loss = runtime::label_nll(&model, h, &rows, targets);
            tokens_seen += batch.mask.iter().flatten().filter(|m| **m).count();
            let value: f64 = loss.clone().into_scalar().elem();
            loss_sum += value / t.grad_accum as f64;
            if n > 0 {
                let grads = (loss / t.grad_accum as f64).backward();
                runtime::accumulate_grads(&mut model, &grads, 1.0, &mut grads_acc);
            }
        }
        if !loss_sum.is_finite() {
            let last = checkpoint::latest(out)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none (no checkpoint yet)".into());
            return Err(TrainError::NonFiniteLoss {
                step: state.step,
                value: loss_sum,
                last_checkpoint: last,
            });
        }
        let grad_norm = clip_global_norm(&mut grads_acc, recipe.optim.grad_clip);
        opt.update(&recipe.optim, lr, &mut params, &grads_acc);
        runtime::set_lora_params(&mut model, &params, &shapes);
        state.step += 1;
        state.losses.push((state.step, loss_sum));
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        logger
            .log(
                state.step,
                &[
                    ("loss", loss_sum),
                    ("learning_rate", lr),
                    ("grad_norm", grad_norm),
                    ("tokens_per_second", tokens_seen as f64 / secs),
                ],
            )
            .map_err(runtime)?;
        if let Some(b) = &logger.bar {
            b.set_position(state.step as u64);
            b.set_message(format!(
                "loss {loss_sum:.4}  lr {lr:.2e}  {:.0} tok/s",
                tokens_seen as f64 / secs
            ));
        }
        if t.eval_every > 0 && state.step.is_multiple_of(t.eval_every) && !val_examples.is_empty() {
            // On the inner backend: validation passes keep no autodiff graph.
            let v = val_loss(&model.valid(), &tok, &val_examples, &val_clips, pad, device)?;
            logger
                .log(state.step, &[("eval/loss", v)])
                .map_err(runtime)?;
        }
        let interrupted = stop(state.step);
        if (t.save_every > 0 && state.step.is_multiple_of(t.save_every)) || interrupted {
            let ck = save(state.step, &mut model, &opt, &state)?;
            if interrupted {
                return Err(TrainError::Interrupted {
                    step: state.step,
                    checkpoint: ck,
                });
            }
        }
    }

    // ---- finish
    if checkpoint::latest(out)
        .map(|p| p != checkpoint::checkpoint_dir(out, state.step))
        .unwrap_or(true)
    {
        save(state.step, &mut model, &opt, &state)?;
    }
    let adapter = out.join("adapter");
    let lora = evalverse_model::lora::LoraConfig {
        seed,
        ..recipe.lora.clone()
    };
    evalverse_model::lora::save_peft(&mut model, &lora, &adapter, &recipe.model.source)
        .map_err(runtime)?;
    if let Some(b) = &logger.bar {
        b.finish();
    }
    Ok(RunSummary {
        steps: state.step,
        losses: state.losses,
        skipped_clips: state.skipped_clips,
        adapter,
        examples: data.len(),
    })
}

use burn::tensor::ElementConversion;

/// Mean SFT loss over validation examples (no gradients).
fn val_loss<B: ModelBackend>(
    model: &evalverse_model::QwenVl<B>,
    tok: &evalverse_model::chat::ChatTokenizer,
    exs: &[examples::JudgeExample],
    clips: &runtime::Clips,
    pad: u32,
    device: &B::Device,
) -> Result<f64, TrainError> {
    let mut total = 0.0;
    let mut n = 0;
    for e in exs {
        let Some(clip) = clips.by_video.get(&e.video) else {
            continue;
        };
        let conv = runtime::conversation(clips, e, clip, Some(&e.answer));
        let enc = tok.encode_chat(&conv, false).map_err(runtime)?;
        let seq = Encoded {
            ids: enc.ids,
            labels: enc.labels,
            video: e.video.clone(),
        };
        let (batch, labels) = runtime::make_batch::<B>(&[&seq], clips, pad, device, None);
        let (rows, targets) = label_rows(&batch.ids, &labels);
        let k = rows.len();
        let (h, ..) = model.forward_hidden(&batch, false, None).map_err(runtime)?;
        let logits = model.head_at(h.detach(), &rows);
        let loss = token_nll(
            logits,
            Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [k]), device),
        );
        total += loss.into_scalar().elem::<f64>();
        n += 1;
    }
    Ok(total / n.max(1) as f64)
}
