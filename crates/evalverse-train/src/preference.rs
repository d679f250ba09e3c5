//! Stage 2 of the judge recipe: preference calibration with LoRA, strategy from the recipe.
//! The reference is the frozen SFT policy, made as "merged SFT adapter + fresh adapter": the SFT
//! adapter is folded into the base weights and a new LoRA (B = 0) is trained on top, so the policy
//! starts equal to the reference. The frozen vision tower encodes each clip once for the whole
//! run. The final adapter stacks SFT and preference adapters into one PEFT adapter of rank
//! r_sft + r_pref. Reads top to bottom: the policy, the strategy's objective (objective/: dpo,
//! bt, bt_head, distribution), the trainer's loop, the adapters (and the calibrated reward head).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use evalverse_data::split::Split;
use evalverse_data::taxonomy::Scale;
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::{Batch, ModelBackend, QwenVl, TrainBackend};

use crate::examples::JudgeExample;
use crate::losses::label_rows;
use crate::objective::bt::BtScoreTokens;
use crate::objective::bt_head::BtHead;
use crate::objective::distribution::Distribution;
use crate::objective::dpo::Dpo;
use crate::objective::grpo::Grpo;
use crate::recipe::{BtReadout, Recipe, StageConfig, Strategy};
use crate::runtime::{self, runtime, Clips, Encoded, TrainError, VisionCache};
use crate::sft::RunSummary;
use crate::trainer::{self, Objective};

/// What every preference objective reads besides the policy, made once by the stage.
pub struct Setup<B: TrainBackend> {
    /// The train split's examples with an expert score.
    pub scored: Vec<JudgeExample>,
    /// The taxonomy's dimensions (a reward head's rows).
    pub dimensions: Vec<String>,
    /// Clips that could not be decoded.
    pub skipped: Vec<String>,
    pub tok: ChatTokenizer,
    pub clips: Clips,
    /// Vision tokens per clip (the vision tower is frozen in this stage).
    pub vision: VisionCache<B>,
    /// The dataset's default scale, its levels, and the single token of each level.
    pub scale: Scale,
    pub levels: Vec<f64>,
    pub score_ids: Vec<u32>,
    pub device: B::Device,
}

impl<B: TrainBackend> Setup<B> {
    pub fn pad(&self) -> u32 {
        self.tok.special.endoftext
    }

    /// The judge conversation of `e` answered with `answer` (labels on the answer); None when
    /// its clip did not decode or it does not tokenise.
    pub fn encode(&self, e: &JudgeExample, answer: &str) -> Option<Encoded> {
        let clip = self.clips.by_video.get(&e.video)?;
        let conv = runtime::conversation(&self.clips, e, clip, Some(answer));
        let enc = self.tok.encode_chat(&conv, false).ok()?;
        Some(Encoded {
            ids: enc.ids,
            labels: enc.labels,
            video: e.video.clone(),
        })
    }

    /// The prompt of `e` up to the assistant's turn (no answer, no labels).
    pub fn prompt_only(&self, e: &JudgeExample) -> Result<Option<Encoded>, TrainError> {
        prompt_only(&self.tok, e, &self.clips)
    }

    /// A left-padded batch of `seqs` on the cached vision tokens, with its label masks.
    pub fn batch(&self, seqs: &[&Encoded]) -> (Batch<B>, Vec<Vec<bool>>) {
        runtime::make_batch::<B>(
            seqs,
            &self.clips,
            self.pad(),
            &self.device,
            Some(&self.vision),
        )
    }

    /// The vision cache without autodiff, for passes that keep no graph.
    pub fn inner_vision(&self) -> VisionCache<B::InnerBackend> {
        self.vision
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().inner()))
            .collect()
    }

    /// The levels as a [K] tensor (the expected score's values).
    pub fn values(&self) -> Tensor<B, 1> {
        let v: Vec<f32> = self.levels.iter().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(v, [self.levels.len()]), &self.device)
    }

    /// Logits over the score tokens [n, K] where each sequence of `seqs` (batched as `batch`)
    /// states its score: at its last label token that is a score token (position 1 when it has
    /// none).
    pub fn score_logits(
        &self,
        model: &QwenVl<B>,
        batch: &Batch<B>,
        seqs: &[&Encoded],
    ) -> Result<Tensor<B, 2>, TrainError> {
        let l = batch.ids[0].len();
        let rows: Vec<usize> = seqs
            .iter()
            .enumerate()
            .map(|(b, s)| {
                let pos = score_index(s, &self.score_ids)
                    .map(|i| i + (l - s.ids.len()))
                    .unwrap_or(1);
                b * l + pos - 1
            })
            .collect();
        let (h, ..) = model.forward_hidden(batch, false, None).map_err(runtime)?;
        let logits = model.head_at(h, &rows);
        let ids: Vec<i64> = self.score_ids.iter().map(|&t| t as i64).collect();
        let n = ids.len();
        Ok(logits.select(
            1,
            Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &self.device),
        ))
    }
}

/// Index of the score digit in an encoded answer (the last label token that is a score token).
fn score_index(seq: &Encoded, score_ids: &[u32]) -> Option<usize> {
    (0..seq.ids.len())
        .rev()
        .find(|&i| seq.labels[i] && score_ids.contains(&seq.ids[i]))
}

/// The prompt of an example up to the assistant's turn (no answer, no labels).
pub fn prompt_only(
    tok: &ChatTokenizer,
    e: &JudgeExample,
    clips: &Clips,
) -> Result<Option<Encoded>, TrainError> {
    let Some(clip) = clips.by_video.get(&e.video) else {
        return Ok(None);
    };
    let enc = tok
        .encode_chat(&runtime::conversation(clips, e, clip, None), true)
        .map_err(runtime)?;
    Ok(Some(Encoded {
        labels: vec![false; enc.ids.len()],
        ids: enc.ids,
        video: e.video.clone(),
    }))
}

/// Per-token log-probs of each sequence's answer (label) tokens in a padded batch, the head
/// computed only at answer positions, logits divided by `temperature` first (1: as they are):
/// a [sequences, longest answer] tensor (0 past each sequence's answer), the mask of real tokens
/// (row-major, host) and the longest answer's length.
pub fn token_logps<B: ModelBackend>(
    model: &QwenVl<B>,
    batch: &evalverse_model::Batch<B>,
    labels: &[Vec<bool>],
    temperature: f64,
) -> Result<(Tensor<B, 2>, Vec<f32>, usize), TrainError> {
    let device = model.device();
    let (rows, targets) = label_rows(&batch.ids, labels);
    let n_rows = rows.len();
    let l = batch.ids[0].len();
    let n = batch.ids.len();
    let (h, ..) = model.forward_hidden(batch, false, None).map_err(runtime)?;
    let logits = model.head_at(h, &rows);
    let logits = if temperature > 0.0 && temperature != 1.0 {
        logits / temperature
    } else {
        logits
    };
    let picked = log_softmax(logits, 1)
        .gather(
            1,
            Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n_rows]), &device)
                .reshape([n_rows, 1]),
        )
        .reshape([n_rows]);
    // Row j (b * l + t, in order) is the k-th answer token of sequence b: it goes to [b, k]; the
    // rest of the grid reads a zero appended at index n_rows.
    let mut k_of = vec![0usize; n];
    let mut placed = Vec::with_capacity(n_rows);
    for &r in &rows {
        placed.push((r / l, k_of[r / l]));
        k_of[r / l] += 1;
    }
    let width = k_of.iter().copied().max().unwrap_or(0).max(1);
    let mut index = vec![n_rows as i64; n * width];
    let mut mask = vec![0f32; n * width];
    for (j, (b, k)) in placed.into_iter().enumerate() {
        index[b * width + k] = j as i64;
        mask[b * width + k] = 1.0;
    }
    let padded = Tensor::cat(vec![picked, Tensor::zeros([1], &device)], 0)
        .select(
            0,
            Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n * width]), &device),
        )
        .reshape([n, width]);
    Ok((padded, mask, width))
}

/// Per-sequence sum (or mean) of answer-token log-probs for a padded batch.
pub fn seq_logps<B: ModelBackend>(
    model: &QwenVl<B>,
    batch: &evalverse_model::Batch<B>,
    labels: &[Vec<bool>],
    average: bool,
) -> Result<Tensor<B, 1>, TrainError> {
    let n = batch.ids.len();
    let (lp, mask, width) = token_logps(model, batch, labels, 1.0)?;
    let sums = lp.sum_dim(1).reshape([n]);
    Ok(if average {
        let counts: Vec<f32> = mask.chunks(width).map(|m| m.iter().sum()).collect();
        sums / Tensor::<B, 1>::from_data(TensorData::new(counts, [n]), &model.device())
            .clamp_min(1.0)
    } else {
        sums
    })
}

/// Split values of interleaved pairs [a0, b0, a1, b1, ...] into ([a..], [b..]).
pub fn split_pairs<B: ModelBackend>(
    t: Tensor<B, 1>,
    n: usize,
    device: &B::Device,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let idx = |offset: i64| {
        Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                (0..n as i64).map(|i| 2 * i + offset).collect::<Vec<_>>(),
                [n],
            ),
            device,
        )
    };
    (t.clone().select(0, idx(0)), t.select(0, idx(1)))
}

/// The policy (base, then the SFT adapter folded in, then a fresh adapter: policy == reference
/// at step 0) and what the objectives read, for the recipe's dataset.
pub fn setup<B: TrainBackend>(
    recipe: &Recipe,
    device: &B::Device,
) -> Result<(QwenVl<B>, Setup<B>), TrainError> {
    let ds = runtime::load_dataset(recipe)?;
    let all = runtime::judge_examples(recipe, &ds, Split::Train)?;
    let base_only = Recipe {
        model: crate::recipe::ModelConfig {
            adapter: None,
            ..recipe.model.clone()
        },
        ..recipe.clone()
    };
    let (mut model, tok) = runtime::load_model::<B>(&base_only, device)?;
    evalverse_model::lora::drop_adapters(&mut model);
    if let Some(dir) = &recipe.model.adapter {
        evalverse_model::lora::load_peft(&mut model, dir)
            .map_err(|e| TrainError::Config(format!("model.adapter: {e}")))?;
        evalverse_model::lora::merge_all(&mut model);
        evalverse_model::lora::drop_adapters(&mut model);
    }
    evalverse_model::lora::apply_lora(&mut model, &trainer::lora_config(recipe))
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let clips = runtime::decode_clips(recipe, &ds, &all, &model.cfg.vision);
    for (id, why) in &clips.skipped {
        eprintln!("warning: skipping clip {id}: {why}");
    }
    let vision = runtime::encode_vision(&model, &clips, device);
    let scale = ds.taxonomy.default_scale.clone();
    let levels = scale.values();
    let mut score_ids = Vec::new();
    for v in &levels {
        match tok
            .encode(&format!("{}", *v as i64))
            .map_err(runtime)?
            .as_slice()
        {
            [id] => score_ids.push(*id),
            ids => {
                return Err(TrainError::Config(format!(
                    "score level {v} is {} tokens; score tokens must be single tokens",
                    ids.len()
                )))
            }
        }
    }
    let setup = Setup {
        scored: all.into_iter().filter(|e| e.score.is_some()).collect(),
        dimensions: ds
            .taxonomy
            .dimension_ids()
            .into_iter()
            .map(String::from)
            .collect(),
        skipped: clips.skipped.iter().map(|(i, _)| i.clone()).collect(),
        tok,
        clips,
        vision,
        scale,
        levels,
        score_ids,
        device: device.clone(),
    };
    Ok((model, setup))
}

pub fn run<B: TrainBackend>(
    recipe: &Recipe,
    resume: bool,
    device: &B::Device,
    stop: &dyn Fn(usize) -> bool,
) -> Result<RunSummary, TrainError> {
    let StageConfig::Preference { strategy } = &recipe.stage else {
        return Err(TrainError::Config(
            "stage.kind must be \"preference\" for the preference stage".into(),
        ));
    };
    let out = &recipe.run.output_dir;
    let _lock = runtime::open_run(recipe, resume)?;
    let (mut model, setup) = setup::<B>(recipe, device)?;
    let lora = trainer::lora_config(recipe);

    // ---- the strategy's objective, the trainer, and the head's calibration
    let train = |model: &mut QwenVl<B>, objective: &mut dyn Objective<B>| {
        if objective.items() == 0 {
            return Err(TrainError::Config(format!(
                "no preference items in the train split of {}",
                recipe.data.dataset.display()
            )));
        }
        let state = trainer::train(
            recipe,
            model,
            objective,
            resume,
            setup.skipped.clone(),
            device,
            stop,
        )?;
        Ok((state, objective.items()))
    };
    let ((state, items), head) = match strategy {
        Strategy::Dpo {
            loss,
            beta,
            label_smoothing,
            perturb,
        } => {
            let mut o = Dpo::new(&setup, &model, *loss, *beta, *label_smoothing, *perturb)?;
            (train(&mut model, &mut o)?, None)
        }
        Strategy::Bt {
            readout: BtReadout::Head,
            train_lora,
            ..
        } => {
            let ties = strategy.bt_ties().expect("bt");
            let mut o = BtHead::new(&setup, &model, ties, *train_lora)?;
            let done = train(&mut model, &mut o)?;
            // Put on the scale by least squares on the train split, with the trained policy.
            (done, Some(o.calibrated(&model)?))
        }
        Strategy::Bt {
            rationale,
            max_new_tokens,
            ..
        } => {
            let ties = strategy.bt_ties().expect("bt");
            let kept = out.join("rationales.jsonl");
            let mut o = BtScoreTokens::new(
                &setup,
                &model,
                *rationale,
                *max_new_tokens,
                ties,
                &kept,
                resume,
            )?;
            (train(&mut model, &mut o)?, None)
        }
        Strategy::Distribution => {
            let mut o = Distribution::new(&setup);
            (train(&mut model, &mut o)?, None)
        }
        Strategy::Grpo { .. } => {
            let settings = strategy.grpo_settings().expect("grpo");
            let mut o = Grpo::new(&setup, &model, recipe, settings)?;
            (train(&mut model, &mut o)?, None)
        }
    };

    // ---- the preference delta, and the stacked SFT + preference adapter, each with the head
    let delta = out.join("adapter_preference");
    evalverse_model::lora::save_peft(&mut model, &lora, &delta, &recipe.model.source)
        .map_err(runtime)?;
    let adapter = out.join("adapter");
    match &recipe.model.adapter {
        Some(sft) => evalverse_model::lora::save_stacked_peft(
            sft,
            &mut model,
            &adapter,
            &recipe.model.source,
        )
        .map_err(runtime)?,
        None => evalverse_model::lora::save_peft(&mut model, &lora, &adapter, &recipe.model.source)
            .map_err(runtime)?,
    }
    if let Some(h) = &head {
        h.save(&delta).map_err(runtime)?;
        h.save(&adapter).map_err(runtime)?;
    }
    Ok(RunSummary {
        steps: state.step,
        losses: state.losses,
        skipped_clips: state.skipped_clips,
        adapter,
        examples: items,
    })
}
