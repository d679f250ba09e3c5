//! GRPO on the judge's own answers (Shao et al. 2024; VideoScore2 and UnifiedReward-Think's RL
//! stage; TRL's `GRPOTrainer`): for each item of a step, `group` answers are sampled from the
//! current policy (temperature, top-p, seeded by the step), each is rewarded by the recipe's
//! reward functions against the experts (`grpo::reward`: graded match, absolute error, format,
//! N/A correctness), rewards become group-normalised advantages, and the loss is the clipped
//! importance-ratio objective with the k3 KL to the frozen starting policy (`grpo::loss`, equal to
//! TRL's). One optimisation pass per sampled batch (TRL's num_iterations = 1): the old log-probs
//! are the policy's own, detached, so the ratio is 1 in value and the clip acts through later
//! micro-batches' updates only as TRL's does. Items: every train example, N/A ones included (the
//! N/A reward needs them); optionally only those the starting judge gets wrong (its greedy answer's
//! graded reward below 1; UnifiedReward-Think). Logs TRL's names: reward, reward_std,
//! rewards/<fn>/mean, completion_length, frac_reward_zero_std, kl, clip_ratio/*.

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use evalverse_data::split::Split;
use evalverse_model::generate::{generate, GenerationConfig};
use evalverse_model::{QwenVl, TrainBackend};

use crate::examples::JudgeExample;
use crate::grpo::{self, AdvantageScale, Expert, LossConfig, RewardFn};
use crate::preference::{self, Setup};
use crate::recipe::Recipe;
use crate::runtime::{self, runtime, Encoded, TrainError, VisionCache};
use crate::trainer::{frozen_reference, Metrics, MicroBatch, Objective, StepPlan};

/// The recipe's GRPO settings (`stage.strategy`, name = "grpo").
#[derive(Debug, Clone, PartialEq)]
pub struct GrpoSettings {
    pub group: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    /// Reward functions and their weights (the reward is the weighted sum).
    pub rewards: Vec<(RewardFn, f64)>,
    pub scale: AdvantageScale,
    pub loss: LossConfig,
    pub filter_wrong: bool,
}

/// One sampled answer of the step.
struct Sampled {
    tokens: Vec<u32>,
    advantage: f32,
    /// log p_ref of each token (empty when beta is 0).
    ref_logps: Vec<f32>,
}

pub struct Grpo<'a, B: TrainBackend> {
    setup: &'a Setup<B>,
    settings: GrpoSettings,
    prompts: Vec<Encoded>,
    examples: Vec<JudgeExample>,
    /// The starting policy, frozen (KL reference; filtering).
    reference: QwenVl<B::InnerBackend>,
    inner_vision: VisionCache<B::InnerBackend>,
    /// This step's answers per item.
    sampled: BTreeMap<usize, Vec<Sampled>>,
}

fn expert(e: &JudgeExample) -> Expert {
    match (e.score, e.mean) {
        (None, _) => Expert::NotApplicable,
        (Some(s), m) => Expert::Mean(m.unwrap_or(s)),
    }
}

impl<'a, B: TrainBackend> Grpo<'a, B> {
    /// The items of the train split (those whose clip decoded), with the starting policy `model`
    /// frozen as the reference. With `filter_wrong`, only the items whose greedy answer under
    /// the starting policy is not an exact graded match.
    pub fn new(
        setup: &'a Setup<B>,
        model: &QwenVl<B>,
        recipe: &Recipe,
        settings: GrpoSettings,
    ) -> Result<Self, TrainError> {
        let ds = runtime::load_dataset(recipe)?;
        let mut prompts = Vec::new();
        let mut examples = Vec::new();
        for e in runtime::judge_examples(recipe, &ds, Split::Train)? {
            if let Some(p) = setup.prompt_only(&e)? {
                prompts.push(p);
                examples.push(e);
            }
        }
        let mut g = Grpo {
            setup,
            prompts,
            examples,
            reference: frozen_reference(model),
            inner_vision: setup.inner_vision(),
            sampled: BTreeMap::new(),
            settings,
        };
        if g.settings.filter_wrong {
            g.keep_wrong()?;
        }
        Ok(g)
    }

    fn stop_tokens(&self) -> Vec<u32> {
        vec![self.setup.tok.special.im_end, self.setup.pad()]
    }

    /// Keep the items the starting judge's greedy answer does not match exactly.
    fn keep_wrong(&mut self) -> Result<(), TrainError> {
        let mut keep = Vec::new();
        for (i, p) in self.prompts.iter().enumerate() {
            let (batch, _) = runtime::make_batch::<B::InnerBackend>(
                &[p],
                &self.setup.clips,
                self.setup.pad(),
                &self.setup.device,
                Some(&self.inner_vision),
            );
            let cfg = GenerationConfig::greedy(self.settings.max_new_tokens, self.stop_tokens());
            let gen = generate(&self.reference, &batch, &cfg).map_err(runtime)?;
            let text = self
                .setup
                .tok
                .decode(&gen.tokens[0], true)
                .map_err(runtime)?;
            let e = expert(&self.examples[i]);
            if grpo::reward(RewardFn::Graded, &text, e, &self.setup.scale) < 1.0 {
                keep.push(i);
            }
        }
        eprintln!(
            "grpo: {} of {} items answered wrong by the starting judge are kept",
            keep.len(),
            self.prompts.len()
        );
        self.prompts = keep.iter().map(|&i| self.prompts[i].clone()).collect();
        self.examples = keep.iter().map(|&i| self.examples[i].clone()).collect();
        Ok(())
    }

    /// Per-token log-probs of the sequences' answers under `model` at the sampling temperature
    /// (as TRL computes them), padded, with the mask and width.
    fn token_logps<M: evalverse_model::ModelBackend>(
        &self,
        model: &QwenVl<M>,
        seqs: &[&Encoded],
        vision: &VisionCache<M>,
    ) -> Result<(Tensor<M, 2>, Vec<f32>, usize), TrainError> {
        let (batch, labels) = runtime::make_batch::<M>(
            seqs,
            &self.setup.clips,
            self.setup.pad(),
            &model.device(),
            Some(vision),
        );
        preference::token_logps(model, &batch, &labels, self.settings.temperature)
    }

    /// The answers sampled for `item` at the last `prepare_step`.
    pub fn sampled_tokens(&self, item: usize) -> Vec<&[u32]> {
        self.sampled
            .get(&item)
            .map(|v| v.iter().map(|s| s.tokens.as_slice()).collect())
            .unwrap_or_default()
    }

    /// Each answer's advantage at the last `prepare_step`, item by item in `items`' order.
    pub fn advantages(&self, items: &[usize]) -> Vec<f32> {
        items
            .iter()
            .flat_map(|i| {
                self.sampled
                    .get(i)
                    .into_iter()
                    .flatten()
                    .map(|s| s.advantage)
            })
            .collect()
    }

    fn sequences(&self, items: &[usize]) -> Vec<Encoded> {
        let mut seqs = Vec::new();
        for &i in items {
            let p = &self.prompts[i];
            for s in self.sampled.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                let mut ids = p.ids.clone();
                ids.extend(&s.tokens);
                let mut labels = vec![false; p.ids.len()];
                labels.extend(std::iter::repeat_n(true, s.tokens.len()));
                seqs.push(Encoded {
                    ids,
                    labels,
                    video: p.video.clone(),
                });
            }
        }
        seqs
    }
}

impl<B: TrainBackend> Objective<B> for Grpo<'_, B> {
    fn items(&self) -> usize {
        self.prompts.len()
    }

    fn prepare_step(&mut self, model: &QwenVl<B>, plan: &StepPlan) -> Result<Metrics, TrainError> {
        let policy = model.valid();
        let g = self.settings.group;
        let mut items: Vec<usize> = plan.micro_batches.iter().flatten().copied().collect();
        items.sort_unstable();
        items.dedup();
        self.sampled.clear();
        let (mut all_rewards, mut lengths, mut zero_std) = (Vec::new(), Vec::new(), 0usize);
        let mut by_fn = vec![0.0; self.settings.rewards.len()];
        for &i in &items {
            let p = &self.prompts[i];
            let copies: Vec<&Encoded> = vec![p; g];
            let (batch, _) = runtime::make_batch::<B::InnerBackend>(
                &copies,
                &self.setup.clips,
                self.setup.pad(),
                &self.setup.device,
                Some(&self.inner_vision),
            );
            let cfg = GenerationConfig {
                max_new_tokens: self.settings.max_new_tokens,
                temperature: self.settings.temperature,
                top_p: self.settings.top_p,
                stop_tokens: self.stop_tokens(),
                pad_token: self.setup.pad(),
                seed: plan.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            };
            let gen = generate(&policy, &batch, &cfg).map_err(runtime)?;
            let e = expert(&self.examples[i]);
            let mut rewards = Vec::with_capacity(g);
            for toks in &gen.tokens {
                let text = self.setup.tok.decode(toks, true).map_err(runtime)?;
                let mut r = 0.0;
                for (k, (f, w)) in self.settings.rewards.iter().enumerate() {
                    let v = grpo::reward(*f, &text, e, &self.setup.scale);
                    by_fn[k] += v;
                    r += w * v;
                }
                rewards.push(r);
                lengths.push(toks.len() as f64);
            }
            let adv = grpo::advantages(&rewards, g, self.settings.scale);
            if rewards.iter().all(|r| (r - rewards[0]).abs() < 1e-12) {
                zero_std += 1;
            }
            all_rewards.extend_from_slice(&rewards);
            let mut samples: Vec<Sampled> = gen
                .tokens
                .into_iter()
                .zip(adv)
                .map(|(tokens, a)| Sampled {
                    tokens,
                    advantage: a as f32,
                    ref_logps: Vec::new(),
                })
                .collect();
            samples.retain(|s| !s.tokens.is_empty());
            self.sampled.insert(i, samples);
        }
        if self.settings.loss.beta != 0.0 {
            for &i in &items {
                let seqs = self.sequences(&[i]);
                let refs: Vec<&Encoded> = seqs.iter().collect();
                if refs.is_empty() {
                    continue;
                }
                let (lp, mask, width) =
                    self.token_logps(&self.reference, &refs, &self.inner_vision)?;
                let lp: Vec<f32> = lp
                    .into_data()
                    .convert::<f32>()
                    .to_vec()
                    .map_err(|e| TrainError::Runtime(format!("reference log-probs: {e:?}")))?;
                for (k, s) in self
                    .sampled
                    .get_mut(&i)
                    .expect("sampled")
                    .iter_mut()
                    .enumerate()
                {
                    s.ref_logps = (0..width)
                        .filter(|&t| mask[k * width + t] > 0.0)
                        .map(|t| lp[k * width + t])
                        .collect();
                }
            }
        }
        let n = all_rewards.len().max(1) as f64;
        let (mean, std) = grpo::mean_std(&all_rewards);
        let mut m: Metrics = vec![
            ("reward".into(), mean),
            ("reward_std".into(), std),
            (
                "completion_length".into(),
                lengths.iter().sum::<f64>() / lengths.len().max(1) as f64,
            ),
            (
                "frac_reward_zero_std".into(),
                zero_std as f64 / items.len().max(1) as f64,
            ),
        ];
        for ((f, _), total) in self.settings.rewards.iter().zip(by_fn) {
            m.push((format!("rewards/{}/mean", f.name()), total / n));
        }
        Ok(m)
    }

    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        _k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        let seqs = self.sequences(items);
        let device = model.device();
        if seqs.is_empty() {
            return Ok(MicroBatch {
                loss: Tensor::zeros([1], &device),
                backward: false,
                metrics: Vec::new(),
                tokens: 0,
            });
        }
        let refs: Vec<&Encoded> = seqs.iter().collect();
        let (logps, mask, width) = self.token_logps(model, &refs, &self.setup.vision)?;
        let n = seqs.len();
        let samples: Vec<&Sampled> = items
            .iter()
            .flat_map(|i| self.sampled.get(i).map(Vec::as_slice).unwrap_or(&[]))
            .collect();
        let adv: Vec<f32> = samples.iter().map(|s| s.advantage).collect();
        let ref_logps = (self.settings.loss.beta != 0.0).then(|| {
            let mut flat = vec![0f32; n * width];
            for (b, s) in samples.iter().enumerate() {
                flat[b * width..b * width + s.ref_logps.len()].copy_from_slice(&s.ref_logps);
            }
            Tensor::<B, 2>::from_data(TensorData::new(flat, [n, width]), &device)
        });
        let tokens = mask.iter().filter(|m| **m > 0.0).count();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [n, width]), &device);
        let out = grpo::loss(
            logps.clone(),
            logps.detach(),
            ref_logps,
            Tensor::from_data(TensorData::new(adv, [n]), &device),
            mask,
            &self.settings.loss,
        );
        let mut metrics = vec![
            ("clip_ratio/low_mean".into(), grpo::scalar(out.clip_low)),
            ("clip_ratio/high_mean".into(), grpo::scalar(out.clip_high)),
            (
                "clip_ratio/region_mean".into(),
                grpo::scalar(out.clip_region),
            ),
        ];
        if self.settings.loss.beta != 0.0 {
            metrics.push(("kl".into(), grpo::scalar(out.kl)));
        }
        Ok(MicroBatch {
            loss: out.loss,
            backward: tokens > 0,
            metrics,
            tokens,
        })
    }
}
