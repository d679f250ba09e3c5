//! Stage 2 of the judge recipe: preference calibration with LoRA, strategy from the recipe.
//! The reference is the frozen SFT policy, made as "merged SFT adapter + fresh adapter": the SFT
//! adapter is folded into the base weights and a new LoRA (B = 0) is trained on top, so the policy
//! starts equal to the reference, whose log-probs are computed once and cached. The frozen vision
//! tower encodes each clip once for the whole run. The final adapter stacks SFT and preference
//! adapters into one PEFT adapter of rank r_sft + r_pref.
//!
//! - dpo: chosen = the experts' consensus answer, rejected = the same rationale with the score
//!   moved `perturb` levels (Rafailov et al. 2023 and the DPO family, TRL metric names).
//! - bt: Bradley-Terry on the expected score over the score tokens, pairs of clips of one prompt
//!   group and dimension ordered by the experts' mean (EvalVerse §6.2, with Rao-Kupper/Davidson ties).
//! - distribution: KL(raters' histogram || score-token distribution).

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};
use evalverse_data::split::Split;
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::reward::{self, RewardHead};
use evalverse_model::{ModelBackend, QwenVl, TrainBackend};

use crate::checkpoint::{self, TrainerState};
use crate::examples::{score_line, JudgeExample};
use crate::log::Logger;
use crate::losses::{bt_loss, distribution_kl, dpo_loss, expected_score, label_rows, DpoKind};
use crate::optim::{clip_global_norm, AdamWState};
use crate::recipe::{BtRationale, BtReadout, Recipe, StageConfig, Strategy};
use crate::runtime::{self, runtime, Encoded, TrainError};
use crate::sft::RunSummary;

/// One training item of the chosen strategy.
enum Item {
    Pair {
        chosen: Encoded,
        rejected: Encoded,
        ref_chosen: f32,
        ref_rejected: f32,
    },
    Compare {
        a: Encoded,
        b: Encoded,
        tie: bool,
        /// The pair's dimension (reward head row; 0 when the scalar is read from score tokens).
        dim: usize,
        /// (clip, dimension) of a and b.
        keys: [(String, String); 2],
    },
    Hist {
        seq: Encoded,
        target: Vec<f32>,
    },
}

const HEAD_W: &str = "reward_head.weight";
const HEAD_B: &str = "reward_head.bias";

/// Put a reward head's weights into the optimizer's parameter map (bias as [1, n]).
fn insert_head(
    params: &mut BTreeMap<String, Vec<f32>>,
    shapes: &mut BTreeMap<String, [usize; 2]>,
    h: &RewardHead,
) {
    let n = h.config.dimensions.len();
    params.insert(HEAD_W.into(), h.weight.clone());
    shapes.insert(HEAD_W.into(), [n, h.feature_len()]);
    params.insert(HEAD_B.into(), h.bias.clone());
    shapes.insert(HEAD_B.into(), [1, n]);
}

/// The reward head of `template`'s layout with the weights of the parameter map.
fn head_of(params: &BTreeMap<String, Vec<f32>>, template: &RewardHead) -> RewardHead {
    RewardHead {
        weight: params[HEAD_W].clone(),
        bias: params[HEAD_B].clone(),
        ..template.clone()
    }
}

/// Score-digit positions of sequences left-padded to `len` (1 where a sequence has none).
fn score_positions(seqs: &[&Encoded], len: usize, score_ids: &[u32]) -> Vec<usize> {
    seqs.iter()
        .map(|s| {
            score_index(s, score_ids)
                .map(|i| i + (len - s.ids.len()))
                .unwrap_or(1)
        })
        .collect()
}

/// Index of the score digit in an encoded answer (the last label token that is a score token).
fn score_index(seq: &Encoded, score_ids: &[u32]) -> Option<usize> {
    (0..seq.ids.len())
        .rev()
        .find(|&i| seq.labels[i] && score_ids.contains(&seq.ids[i]))
}

fn encode(
    tok: &ChatTokenizer,
    e: &JudgeExample,
    clips: &runtime::Clips,
    answer: &str,
) -> Option<Encoded> {
    let clip = clips.by_video.get(&e.video)?;
    let enc = tok
        .encode_chat(&runtime::conversation(clips, e, clip, Some(answer)), false)
        .ok()?;
    Some(Encoded {
        ids: enc.ids,
        labels: enc.labels,
        video: e.video.clone(),
    })
}

/// The prompt of an example up to the assistant's turn (no answer, no labels).
fn prompt_only(
    tok: &ChatTokenizer,
    e: &JudgeExample,
    clips: &runtime::Clips,
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

/// Greedy answers of `model` to the judge questions of `examples`, cut where the judge's score
/// is read: up to and including the last "Score:" of the answer, or the whole answer when it has
/// none (the evaluation harness then appends a score line the same way).
fn own_rationales<B: ModelBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    examples: &[&JudgeExample],
    clips: &runtime::Clips,
    vision: &runtime::VisionCache<B>,
    max_new_tokens: usize,
) -> Result<Vec<String>, TrainError> {
    const BATCH: usize = 16;
    let device = model.device();
    let pad = tok.special.endoftext;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(BATCH) {
        let mut prompts = Vec::with_capacity(chunk.len());
        for e in chunk {
            prompts.push(prompt_only(tok, e, clips)?.expect("decoded clip"));
        }
        let refs: Vec<&Encoded> = prompts.iter().collect();
        let (batch, _) = runtime::make_batch::<B>(&refs, clips, pad, &device, Some(vision));
        let gen = evalverse_model::generate::generate(
            model,
            &batch,
            &evalverse_model::generate::GenerationConfig::greedy(
                max_new_tokens,
                vec![tok.special.im_end, pad],
            ),
        )
        .map_err(runtime)?;
        for tokens in &gen.tokens {
            let text = tok.decode(tokens, true).map_err(runtime)?;
            out.push(match text.rfind("Score:") {
                Some(i) => text[..i].to_string(),
                None => format!("{}\n", text.trim_end()),
            });
        }
    }
    Ok(out)
}

/// `own_rationales` of the starting policy (the autodiff model's inner copy, on the cached
/// vision tokens), logged once.
fn generate_rationales<B: TrainBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    scored: &[&JudgeExample],
    clips: &runtime::Clips,
    vision: &runtime::VisionCache<B>,
    max_new_tokens: usize,
) -> Result<Vec<String>, TrainError> {
    eprintln!(
        "bt: generating the starting judge's rationales for {} examples",
        scored.len()
    );
    let inner: runtime::VisionCache<B::InnerBackend> = vision
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().inner()))
        .collect();
    own_rationales(&model.valid(), tok, scored, clips, &inner, max_new_tokens)
}

/// One JSON line per example: clip, dimension and the generated rationale.
fn write_rationales(
    path: &std::path::Path,
    scored: &[&JudgeExample],
    own: &[String],
) -> Result<(), TrainError> {
    let mut lines = String::new();
    for (e, a) in scored.iter().zip(own) {
        let row =
            serde_json::json!({"clip_id": e.clip_id, "dimension": e.dimension, "generated": a});
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    runtime::write_text(path, &lines)
}

/// The rationales a run wrote before it was interrupted, in `scored` order; None unless the
/// file holds exactly one for every example (then they are generated again: greedy, the same).
fn kept_rationales(path: &std::path::Path, scored: &[&JudgeExample]) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut by_key = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let key = (
            v["clip_id"].as_str()?.to_string(),
            v["dimension"].as_str()?.to_string(),
        );
        by_key.insert(key, v["generated"].as_str()?.to_string());
    }
    if by_key.len() != scored.len() {
        return None;
    }
    scored
        .iter()
        .map(|e| by_key.remove(&(e.clip_id.clone(), e.dimension.clone())))
        .collect()
}

/// A generated rationale (cut by `own_rationales`) completed with the score line of `score`,
/// so the score digit sits where the harness reads the soft score.
fn with_score_line(rationale: &str, score: Option<f64>) -> String {
    let line = score_line(score);
    let body = rationale.trim_start_matches('\n');
    if body.trim().is_empty() {
        line
    } else {
        format!("{body}{line}")
    }
}

/// Per-sequence sum (or mean) of answer-token log-probs for a padded batch, computing the head only
/// at answer positions.
fn seq_logps<B: ModelBackend>(
    model: &QwenVl<B>,
    batch: &evalverse_model::Batch<B>,
    labels: &[Vec<bool>],
    average: bool,
) -> Result<Tensor<B, 1>, TrainError> {
    let device = model.device();
    let (rows, targets) = label_rows(&batch.ids, labels);
    let l = batch.ids[0].len();
    let n_seq = batch.ids.len();
    let (h, ..) = model.forward_hidden(batch, false, None).map_err(runtime)?;
    let lp = log_softmax(model.head_at(h, &rows), 1);
    let picked = lp.gather(
        1,
        Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [rows.len()]), &device)
            .reshape([rows.len(), 1]),
    );
    let mut onehot = vec![0f32; n_seq * rows.len()];
    let mut counts = vec![0f32; n_seq];
    for (j, r) in rows.iter().enumerate() {
        onehot[(r / l) * rows.len() + j] = 1.0;
        counts[r / l] += 1.0;
    }
    let m = Tensor::<B, 2>::from_data(TensorData::new(onehot, [n_seq, rows.len()]), &device);
    let sums = m.matmul(picked).reshape([n_seq]);
    Ok(if average {
        sums / Tensor::<B, 1>::from_data(TensorData::new(counts, [n_seq]), &device).clamp_min(1.0)
    } else {
        sums
    })
}

/// Split values of interleaved pairs [a0, b0, a1, b1, ...] into ([a..], [b..]).
fn split_pairs<B: ModelBackend>(
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

/// Logits over the score tokens [n, K] at the score positions of a padded batch.
fn score_logits<B: TrainBackend>(
    model: &QwenVl<B>,
    batch: &evalverse_model::Batch<B>,
    score_pos: &[usize],
    score_ids: &[u32],
) -> Result<Tensor<B, 2>, TrainError> {
    let device = model.device();
    let l = batch.ids[0].len();
    let rows: Vec<usize> = score_pos
        .iter()
        .enumerate()
        .map(|(b, &i)| b * l + i - 1)
        .collect();
    let (h, ..) = model.forward_hidden(batch, false, None).map_err(runtime)?;
    let logits = model.head_at(h, &rows);
    let ids = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            score_ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [score_ids.len()],
        ),
        &device,
    );
    Ok(logits.select(1, ids))
}

pub fn run<B: TrainBackend>(
    recipe: &Recipe,
    resume: bool,
    device: &B::Device,
    stop: &dyn Fn(usize) -> bool,
) -> Result<RunSummary, TrainError> {
    // ---- setup
    let StageConfig::Preference { strategy } = &recipe.stage else {
        return Err(TrainError::Config(
            "stage.kind must be \"preference\" for the preference stage".into(),
        ));
    };
    let out = &recipe.run.output_dir;
    let _lock = runtime::open_run(recipe, resume)?;
    let ds = runtime::load_dataset(recipe)?;
    let all = runtime::judge_examples(recipe, &ds, Split::Train)?;
    let scored: Vec<&JudgeExample> = all.iter().filter(|e| e.score.is_some()).collect();
    // Base, then the SFT adapter folded in, then a fresh adapter: policy == reference at step 0.
    let base_only = Recipe {
        model: evalverse_model_cfg_without_adapter(recipe),
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
    let seed = recipe.run.seed;
    let lora = evalverse_model::lora::LoraConfig {
        seed,
        ..recipe.lora.clone()
    };
    evalverse_model::lora::apply_lora(&mut model, &lora)
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
    let pad = tok.special.endoftext;
    // A Bradley-Terry run with `readout = "head"` trains a reward head (one row per dimension)
    // with the LoRA; its weights sit in the optimizer's parameter map under these names.
    let (readout, train_lora) = match strategy {
        Strategy::Bt {
            readout,
            train_lora,
            ..
        } => (*readout, *train_lora),
        _ => (BtReadout::ScoreTokens, true),
    };
    let mut head_template = (readout == BtReadout::Head).then(|| {
        RewardHead::zeros(
            ds.taxonomy
                .dimension_ids()
                .into_iter()
                .map(String::from)
                .collect(),
            model.cfg.text.hidden_size,
        )
    });

    // Its features are standardised with their train-split statistics under the starting
    // policy (the same on a resumed run: the starting policy is the same).
    // With the policy frozen (`train_lora = false`) those features are the same at every step,
    // so they are kept per (clip, dimension) and training runs no forward pass.
    let mut frozen_features: BTreeMap<(String, String), Vec<f32>> = BTreeMap::new();
    if let Some(h) = head_template.as_mut() {
        let usable = head_examples(h, &scored, &clips);
        let rows = head_feature_rows(&model, &tok, &usable, &clips, &vision)?;
        let w = h.feature_len();
        h.config.standardize = Some(reward::Standardize::fit(&rows, w));
        if !train_lora {
            frozen_features = usable
                .iter()
                .zip(rows.chunks_exact(w))
                .map(|(e, r)| ((e.clip_id.clone(), e.dimension.clone()), r.to_vec()))
                .collect();
        }
    }

    // ---- items (and the reference log-probs, once)
    let mut items = Vec::new();
    match strategy {
        Strategy::Dpo { perturb, loss, .. } => {
            for e in &scored {
                let s = e.score.expect("scored");
                let wrong = if s + perturb <= scale.max {
                    s + perturb
                } else {
                    s - perturb
                };
                let wrong_line = score_line(Some(wrong.clamp(scale.min, scale.max)));
                let rejected_answer = if e.rationale.trim().is_empty() {
                    wrong_line
                } else {
                    format!("{}\n{}", e.rationale.trim(), wrong_line)
                };
                if let (Some(c), Some(r)) = (
                    encode(&tok, e, &clips, &e.answer),
                    encode(&tok, e, &clips, &rejected_answer),
                ) {
                    items.push(Item::Pair {
                        chosen: c,
                        rejected: r,
                        ref_chosen: 0.0,
                        ref_rejected: 0.0,
                    });
                }
            }
            let average = *loss == DpoKind::Ipo;
            // Without autodiff: a forward pass on the autodiff backend keeps its graph until a
            // backward pass, so thousands of reference passes would hold every activation.
            let reference = model.valid();
            let ref_vision: runtime::VisionCache<B::InnerBackend> = vision
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().inner()))
                .collect();
            for it in &mut items {
                if let Item::Pair {
                    chosen,
                    rejected,
                    ref_chosen,
                    ref_rejected,
                } = it
                {
                    let (batch, labels) = runtime::make_batch::<B::InnerBackend>(
                        &[&*chosen, &*rejected],
                        &clips,
                        pad,
                        device,
                        Some(&ref_vision),
                    );
                    let lp: Vec<f32> = seq_logps(&reference, &batch, &labels, average)?
                        .into_data()
                        .convert::<f32>()
                        .to_vec()
                        .expect("f32");
                    *ref_chosen = lp[0];
                    *ref_rejected = lp[1];
                }
            }
        }
        Strategy::Bt {
            ties,
            rationale,
            max_new_tokens,
            ..
        } => {
            // The answer before the score position, per example: the judge's own rationale
            // (generated once by the starting policy, which equals the SFT reference) or the
            // experts' consensus. A reward head reads the prompt alone.
            let answers: Vec<String> = match rationale {
                _ if readout == BtReadout::Head => vec![],
                BtRationale::Expert => scored.iter().map(|e| e.answer.clone()).collect(),
                BtRationale::Generated => {
                    let kept = out.join("rationales.jsonl");
                    let own = match resume.then(|| kept_rationales(&kept, &scored)).flatten() {
                        Some(own) => own,
                        None => {
                            let own = generate_rationales(
                                &model,
                                &tok,
                                &scored,
                                &clips,
                                &vision,
                                *max_new_tokens,
                            )?;
                            write_rationales(&kept, &scored, &own)?;
                            own
                        }
                    };
                    own.iter()
                        .zip(&scored)
                        .map(|(a, e)| with_score_line(a, e.score))
                        .collect()
                }
            };
            let answer_of: BTreeMap<(&str, &str), &str> = scored
                .iter()
                .zip(&answers)
                .map(|(e, a)| ((e.clip_id.as_str(), e.dimension.as_str()), a.as_str()))
                .collect();
            let answer = |e: &JudgeExample| answer_of[&(e.clip_id.as_str(), e.dimension.as_str())];
            let mut by_key: BTreeMap<(String, String), Vec<&JudgeExample>> = BTreeMap::new();
            for e in &scored {
                by_key
                    .entry((e.prompt_group.clone(), e.dimension.clone()))
                    .or_default()
                    .push(e);
            }
            for group in by_key.values() {
                for i in 0..group.len() {
                    for j in i + 1..group.len() {
                        let (mi, mj) = (
                            group[i].mean.expect("scored"),
                            group[j].mean.expect("scored"),
                        );
                        let tie = (mi - mj).abs() < 1e-9;
                        if tie && *ties == crate::recipe::TieModel::Ignore {
                            continue;
                        }
                        let (w, l) = if mi >= mj {
                            (group[i], group[j])
                        } else {
                            (group[j], group[i])
                        };
                        let enc = |e: &JudgeExample| match readout {
                            BtReadout::Head => prompt_only(&tok, e, &clips),
                            BtReadout::ScoreTokens => Ok(encode(&tok, e, &clips, answer(e))),
                        };
                        let dim = head_template
                            .as_ref()
                            .and_then(|h| h.index(&w.dimension))
                            .unwrap_or(0);
                        let key = |e: &JudgeExample| (e.clip_id.clone(), e.dimension.clone());
                        if let (Some(a), Some(b)) = (enc(w)?, enc(l)?) {
                            items.push(Item::Compare {
                                a,
                                b,
                                tie,
                                dim,
                                keys: [key(w), key(l)],
                            });
                        }
                    }
                }
            }
        }
        Strategy::Distribution => {
            for e in &scored {
                if let Some(seq) = encode(&tok, e, &clips, &e.answer) {
                    items.push(Item::Hist {
                        seq,
                        target: e.histogram.iter().map(|&x| x as f32).collect(),
                    });
                }
            }
        }
    }
    if items.is_empty() {
        return Err(TrainError::Config(format!(
            "no preference items in the train split of {}",
            recipe.data.dataset.display()
        )));
    }
    let t = &recipe.train;
    let total_steps = match (t.max_steps, t.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => ((e * items.len() as f64) / (t.batch_size * t.grad_accum) as f64)
            .ceil()
            .max(1.0) as usize,
        _ => unreachable!("validated"),
    };
    let (mut params, mut shapes) = runtime::lora_params(&mut model);
    if let Some(h) = &head_template {
        insert_head(&mut params, &mut shapes, h);
    }
    let mut opt = AdamWState::default();
    let mut state = TrainerState {
        step: 0,
        micro_batches: 0,
        seed,
        losses: vec![],
        skipped_clips: clips.skipped.iter().map(|(i, _)| i.clone()).collect(),
    };
    if resume {
        if let Some(ck) = runtime::restore_checkpoint(out, &mut model, &mut opt, &mut state)? {
            params = runtime::lora_params(&mut model).0;
            if head_template.is_some() {
                let dir = ck.join("adapter");
                let h = RewardHead::load(&dir).map_err(runtime)?.ok_or_else(|| {
                    runtime(format!(
                        "{}: the checkpoint has no reward head, but the recipe trains one",
                        dir.display()
                    ))
                })?;
                insert_head(&mut params, &mut shapes, &h);
            }
            eprintln!("resuming from {} (step {})", ck.display(), state.step);
        }
    }
    evalverse_model::lora::set_training(&mut model, true);
    let mut logger = Logger::new(
        out,
        recipe.log.jsonl,
        recipe.log.tensorboard,
        recipe.log.progress.then_some(total_steps as u64),
        state.step,
    )
    .map_err(runtime)?;
    let save = |model: &mut QwenVl<B>,
                opt: &AdamWState,
                state: &TrainerState,
                params: &BTreeMap<String, Vec<f32>>| {
        let head = head_template.as_ref().map(|t| head_of(params, t));
        runtime::save_checkpoint(recipe, &lora, model, head.as_ref(), opt, state)
    };
    let values = Tensor::<B, 1>::from_data(
        TensorData::new(
            levels.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            [levels.len()],
        ),
        device,
    );

    // ---- train
    let started = Instant::now();
    while state.step < total_steps {
        let lr = recipe.optim.lr * recipe.schedule.factor(state.step, total_steps);
        B::seed(
            device,
            seed.wrapping_mul(0x9E37_79B9)
                .wrapping_add(state.step as u64),
        );
        let mut grads_acc = BTreeMap::new();
        let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
        for _ in 0..t.grad_accum {
            let idx = runtime::micro_batch(seed, items.len(), t.batch_size, state.micro_batches);
            state.micro_batches += 1;
            let chunk: Vec<&Item> = idx.iter().map(|&i| &items[i]).collect();
            let mut head_leaves: Option<(Tensor<B, 2>, Tensor<B, 2>)> = None;
            let (loss, metrics) = match strategy {
                Strategy::Dpo {
                    loss: kind,
                    beta,
                    label_smoothing,
                    ..
                } => {
                    let mut seqs = Vec::new();
                    let (mut rc, mut rr) = (vec![], vec![]);
                    for it in &chunk {
                        if let Item::Pair {
                            chosen,
                            rejected,
                            ref_chosen,
                            ref_rejected,
                        } = it
                        {
                            seqs.push(chosen);
                            seqs.push(rejected);
                            rc.push(*ref_chosen);
                            rr.push(*ref_rejected);
                        }
                    }
                    let n = rc.len();
                    let (batch, labels) =
                        runtime::make_batch::<B>(&seqs, &clips, pad, device, Some(&vision));
                    let lp = seq_logps(&model, &batch, &labels, *kind == DpoKind::Ipo)?;
                    let (pc, pr) = split_pairs(lp, n, device);
                    let mk =
                        |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [n]), device);
                    let o = dpo_loss(
                        pc.clone(),
                        pr.clone(),
                        mk(rc),
                        mk(rr),
                        *kind,
                        *beta,
                        *label_smoothing,
                    );
                    let f = |t: Tensor<B, 1>| -> f64 { t.mean().into_scalar().elem() };
                    let ch = o.chosen_rewards.clone();
                    let rj = o.rejected_rewards.clone();
                    let acc: f64 = ch
                        .clone()
                        .greater(rj.clone())
                        .float()
                        .mean()
                        .into_scalar()
                        .elem();
                    let metrics = vec![
                        ("rewards/chosen", f(ch.clone())),
                        ("rewards/rejected", f(rj.clone())),
                        ("rewards/accuracies", acc),
                        ("rewards/margins", f(ch - rj)),
                        ("logps/chosen", f(pc.detach())),
                        ("logps/rejected", f(pr.detach())),
                    ];
                    (o.losses.mean(), metrics)
                }
                Strategy::Bt { .. } => {
                    let mut seqs = Vec::new();
                    let mut ties = Vec::new();
                    let mut dims = Vec::new();
                    let mut keys = Vec::new();
                    for it in &chunk {
                        if let Item::Compare {
                            a,
                            b,
                            tie,
                            dim,
                            keys: k,
                        } = it
                        {
                            seqs.push(a);
                            seqs.push(b);
                            ties.push(*tie);
                            dims.extend([*dim, *dim]);
                            keys.extend(k.iter());
                        }
                    }
                    let n = ties.len();
                    let batch =
                        || runtime::make_batch::<B>(&seqs, &clips, pad, device, Some(&vision)).0;
                    let s = match &head_template {
                        Some(h) => {
                            // Fresh leaves from the parameter map; their gradients are read
                            // after the backward pass below.
                            let leaf = |name: &str, shape: [usize; 2]| {
                                Tensor::<B, 2>::from_data(
                                    TensorData::new(params[name].clone(), shape),
                                    device,
                                )
                                .require_grad()
                            };
                            let k = h.config.dimensions.len();
                            let w = leaf(HEAD_W, [k, h.feature_len()]);
                            let b = leaf(HEAD_B, [1, k]);
                            let feats = if train_lora {
                                let batch = batch();
                                let (hid, ..) =
                                    model.forward_hidden(&batch, false, None).map_err(runtime)?;
                                reward::features(&model, &batch, hid)
                            } else {
                                let rows: Vec<f32> = keys
                                    .iter()
                                    .flat_map(|k| frozen_features[*k].iter().copied())
                                    .collect();
                                Tensor::<B, 2>::from_data(
                                    TensorData::new(rows, [keys.len(), h.feature_len()]),
                                    device,
                                )
                            };
                            let feats = h.standardized(feats);
                            let s = reward::raw(feats, w.clone(), b.clone().reshape([k]), &dims);
                            head_leaves = Some((w, b));
                            s
                        }
                        None => {
                            let batch = batch();
                            let pos = score_positions(&seqs, batch.ids[0].len(), &score_ids);
                            expected_score(
                                score_logits(&model, &batch, &pos, &score_ids)?,
                                values.clone(),
                            )
                        }
                    };
                    let (sw, sl) = split_pairs(s, n, device);
                    let tie = Tensor::<B, 1, Bool>::from_data(TensorData::new(ties, [n]), device);
                    let acc: f64 = sw
                        .clone()
                        .greater(sl.clone())
                        .float()
                        .mean()
                        .into_scalar()
                        .elem();
                    (
                        bt_loss(sw, sl, tie, strategy.bt_ties().expect("bt")).mean(),
                        vec![("accuracy", acc)],
                    )
                }
                Strategy::Distribution => {
                    let mut seqs = Vec::new();
                    let mut target = Vec::new();
                    for it in &chunk {
                        if let Item::Hist { seq, target: h } = it {
                            seqs.push(seq);
                            target.extend_from_slice(h);
                        }
                    }
                    let n = seqs.len();
                    let (batch, _) =
                        runtime::make_batch::<B>(&seqs, &clips, pad, device, Some(&vision));
                    let pos = score_positions(&seqs, batch.ids[0].len(), &score_ids);
                    let logits = score_logits(&model, &batch, &pos, &score_ids)?;
                    let tgt = Tensor::<B, 2>::from_data(
                        TensorData::new(target, [n, levels.len()]),
                        device,
                    );
                    (distribution_kl(logits, tgt).mean(), vec![])
                }
            };
            let value: f64 = loss.clone().into_scalar().elem();
            *sums.entry("loss").or_default() += value / t.grad_accum as f64;
            for (k, v) in metrics {
                *sums.entry(k).or_default() += v / t.grad_accum as f64;
            }
            let grads = (loss / t.grad_accum as f64).backward();
            if train_lora {
                runtime::accumulate_grads(&mut model, &grads, 1.0, &mut grads_acc);
            }
            if let Some((w, b)) = head_leaves.take() {
                for (name, g) in [(HEAD_W, w.grad(&grads)), (HEAD_B, b.grad(&grads))] {
                    if let Some(g) = g {
                        runtime::add_grad(&mut grads_acc, name, g, 1.0);
                    }
                }
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
        let grad_norm = clip_global_norm(&mut grads_acc, recipe.optim.grad_clip);
        opt.update(&recipe.optim, lr, &mut params, &grads_acc);
        runtime::set_lora_params(&mut model, &params, &shapes);
        state.step += 1;
        state.losses.push((state.step, loss));
        let mut scalars: Vec<(&str, f64)> = sums.iter().map(|(k, v)| (*k, *v)).collect();
        scalars.push(("learning_rate", lr));
        scalars.push(("grad_norm", grad_norm));
        scalars.push((
            "steps_per_second",
            state.step as f64 / started.elapsed().as_secs_f64().max(1e-9),
        ));
        logger.log(state.step, &scalars).map_err(runtime)?;
        if let Some(b) = &logger.bar {
            b.set_position(state.step as u64);
            b.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
        }
        let interrupted = stop(state.step);
        if (t.save_every > 0 && state.step.is_multiple_of(t.save_every)) || interrupted {
            let ck = save(&mut model, &opt, &state, &params)?;
            if interrupted {
                return Err(TrainError::Interrupted {
                    step: state.step,
                    checkpoint: ck,
                });
            }
        }
    }

    // ---- finish: the preference delta, and the stacked SFT + preference adapter.
    if checkpoint::latest(out)
        .map(|p| p != checkpoint::checkpoint_dir(out, state.step))
        .unwrap_or(true)
    {
        save(&mut model, &opt, &state, &params)?;
    }
    // A trained reward head is put on the scale by least squares on the train split, then
    // saved beside both adapters (evaluation and export find it there).
    let head = match &head_template {
        Some(t) => Some(calibrate_head(
            head_of(&params, t),
            &model,
            &tok,
            &scored,
            &clips,
            &vision,
        )?),
        None => None,
    };
    let delta = out.join("adapter_preference");
    evalverse_model::lora::save_peft(&mut model, &lora, &delta, &recipe.model.source)
        .map_err(runtime)?;
    if let Some(h) = &head {
        h.save(&delta).map_err(runtime)?;
    }
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
        h.save(&adapter).map_err(runtime)?;
    }
    if let Some(b) = &logger.bar {
        b.finish();
    }
    Ok(RunSummary {
        steps: state.step,
        losses: state.losses,
        skipped_clips: state.skipped_clips,
        adapter,
        examples: items.len(),
    })
}

/// Head features (`reward::features`, one row of 2 x hidden per example) of `examples` under
/// `model` without autodiff, on the cached vision tokens.
fn head_feature_rows<B: TrainBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    examples: &[&JudgeExample],
    clips: &runtime::Clips,
    vision: &runtime::VisionCache<B>,
) -> Result<Vec<f32>, TrainError> {
    const BATCH: usize = 16;
    let inner = model.valid();
    let vis: runtime::VisionCache<B::InnerBackend> = vision
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().inner()))
        .collect();
    let device = inner.device();
    let pad = tok.special.endoftext;
    let mut rows = Vec::new();
    for chunk in examples.chunks(BATCH) {
        let mut prompts = Vec::with_capacity(chunk.len());
        for e in chunk {
            prompts.push(prompt_only(tok, e, clips)?.expect("decoded clip"));
        }
        let refs: Vec<&Encoded> = prompts.iter().collect();
        let (batch, _) = runtime::make_batch(&refs, clips, pad, &device, Some(&vis));
        let (h, ..) = inner.forward_hidden(&batch, false, None).map_err(runtime)?;
        rows.extend(
            reward::features(&inner, &batch, h)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32"),
        );
    }
    Ok(rows)
}

/// The scored examples a reward head is trained and calibrated on (clip decoded, dimension
/// covered by the head).
fn head_examples<'a>(
    head: &RewardHead,
    scored: &[&'a JudgeExample],
    clips: &runtime::Clips,
) -> Vec<&'a JudgeExample> {
    scored
        .iter()
        .copied()
        .filter(|e| clips.by_video.contains_key(&e.video) && head.index(&e.dimension).is_some())
        .collect()
}

/// Fit the head's per-dimension calibration (`reward::fit_calibration`: raw scalar -> the
/// experts' mean) on the scored train examples, with the trained policy.
fn calibrate_head<B: TrainBackend>(
    mut head: RewardHead,
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    scored: &[&JudgeExample],
    clips: &runtime::Clips,
    vision: &runtime::VisionCache<B>,
) -> Result<RewardHead, TrainError> {
    let usable = head_examples(&head, scored, clips);
    let feats = head_feature_rows(model, tok, &usable, clips, vision)?;
    let rows: Vec<usize> = usable
        .iter()
        .map(|e| head.index(&e.dimension).expect("filtered"))
        .collect();
    let mut by_dim: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for ((e, &d), r) in usable.iter().zip(&rows).zip(head.raw_host(&feats, &rows)) {
        let slot = by_dim.entry(d).or_default();
        slot.0.push(r);
        slot.1.push(e.mean.expect("scored"));
    }
    for (d, (raw, target)) in &by_dim {
        head.config.calibration[*d] = reward::fit_calibration(raw, target);
    }
    Ok(head)
}

fn evalverse_model_cfg_without_adapter(recipe: &Recipe) -> crate::recipe::ModelConfig {
    crate::recipe::ModelConfig {
        adapter: None,
        ..recipe.model.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::{kept_rationales, with_score_line, write_rationales};
    use crate::examples::JudgeExample;

    fn example(clip: &str, dim: &str) -> JudgeExample {
        JudgeExample {
            clip_id: clip.into(),
            prompt_group: "pg".into(),
            generator: "g".into(),
            video: format!("videos/{clip}.mp4").into(),
            has_audio: false,
            dimension: dim.into(),
            question: String::new(),
            answer: String::new(),
            rationale: String::new(),
            score: Some(3.0),
            mean: Some(3.0),
            histogram: vec![],
        }
    }

    #[test]
    fn resumed_bt_run_reuses_the_rationales_only_when_every_example_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rationales.jsonl");
        let (a, b) = (example("c1", "lens"), example("c2", "lens"));
        write_rationales(&path, &[&a, &b], &["one\n".into(), "two\n".into()]).unwrap();
        // Read back in the order asked for, whatever the file's order.
        assert_eq!(
            kept_rationales(&path, &[&b, &a]),
            Some(vec!["two\n".to_string(), "one\n".to_string()])
        );
        // Another example set (a changed recipe): generate again.
        assert_eq!(kept_rationales(&path, &[&a]), None);
        assert_eq!(kept_rationales(&path, &[&a, &example("c3", "lens")]), None);
        assert_eq!(
            kept_rationales(&dir.path().join("missing.jsonl"), &[&a]),
            None
        );
    }

    #[test]
    fn generated_rationale_gets_the_score_line_where_the_harness_reads_it() {
        // Cut at the answer's last "Score:" (own_rationales keeps the text before it).
        assert_eq!(
            with_score_line("Soft image. Overall poor, so I give 2.\n", Some(4.0)),
            "Soft image. Overall poor, so I give 2.\nScore: 4"
        );
        // An answer without a score line was closed with a newline, as the harness does.
        assert_eq!(
            with_score_line("Soft image\n", Some(3.0)),
            "Soft image\nScore: 3"
        );
        // Nothing before the score line: the score line alone.
        assert_eq!(with_score_line("\n", Some(5.0)), "Score: 5");
        assert_eq!(with_score_line("", Some(1.0)), "Score: 1");
    }
}
