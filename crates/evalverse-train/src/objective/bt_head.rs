//! Bradley-Terry on a reward head (evalverse_model::reward: one output per dimension over the
//! final hidden states pooled over the video positions and at the end of the prompt), trained
//! with the LoRA or alone on the frozen policy (`train_lora = false`): for two clips of one
//! prompt group and dimension ranked by the experts' mean, P(a beats b) = sigmoid(r_a - r_b)
//! (`losses::bt_loss`, ties as the recipe says). The head reads the prompt alone. Its features
//! are standardised with their train-split statistics under the starting policy; after training
//! it is put on the scale by least squares on the train split (`calibrated`).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::{Bool, ElementConversion, Tensor, TensorData};
use evalverse_model::reward::{self, RewardHead};
use evalverse_model::{QwenVl, TrainBackend};

use crate::examples::JudgeExample;
use crate::losses::{bt_loss, BtTies};
use crate::objective::bt::pairs;
use crate::preference::{split_pairs, Setup};
use crate::runtime::{self, runtime, Encoded, TrainError, VisionCache};
use crate::trainer::{MicroBatch, Objective};

const HEAD_W: &str = "reward_head.weight";
const HEAD_B: &str = "reward_head.bias";

struct Compare {
    /// The winner's and the loser's prompts.
    a: Encoded,
    b: Encoded,
    tie: bool,
    /// The pair's dimension (the head's row).
    dim: usize,
    /// (clip, dimension) of a and b.
    keys: [(String, String); 2],
}

pub struct BtHead<'a, B: TrainBackend> {
    setup: &'a Setup<B>,
    pairs: Vec<Compare>,
    ties: BtTies,
    /// The head's layout and standardisation; its weights are `w` and `b`.
    template: RewardHead,
    /// [dimensions, 2 x hidden] and [1, dimensions], autodiff leaves.
    w: Tensor<B, 2>,
    b: Tensor<B, 2>,
    train_lora: bool,
    /// With the policy frozen the features are the same at every step: kept per (clip,
    /// dimension), so training runs no forward pass.
    frozen_features: BTreeMap<(String, String), Vec<f32>>,
}

impl<'a, B: TrainBackend> BtHead<'a, B> {
    /// A zero head over the taxonomy's dimensions (every scalar 0: Bradley-Terry starts from
    /// ties), its feature statistics under `model` as it is now, and the pairs of the scored
    /// examples.
    pub fn new(
        setup: &'a Setup<B>,
        model: &QwenVl<B>,
        ties: BtTies,
        train_lora: bool,
    ) -> Result<Self, TrainError> {
        let scored: Vec<&JudgeExample> = setup.scored.iter().collect();
        let mut template = RewardHead::zeros(setup.dimensions.clone(), model.cfg.text.hidden_size);
        // The same statistics on a resumed run: the starting policy is the same.
        let usable = head_examples(&template, &scored, setup);
        let rows = feature_rows(model, &usable, setup)?;
        let width = template.feature_len();
        template.config.standardize = Some(reward::Standardize::fit(&rows, width));
        let frozen_features = if train_lora {
            BTreeMap::new()
        } else {
            usable
                .iter()
                .zip(rows.chunks_exact(width))
                .map(|(e, r)| ((e.clip_id.clone(), e.dimension.clone()), r.to_vec()))
                .collect()
        };
        let key = |e: &JudgeExample| (e.clip_id.clone(), e.dimension.clone());
        let mut items = Vec::new();
        for (w, l, tie) in pairs(&scored, ties) {
            if let (Some(a), Some(b)) = (setup.prompt_only(w)?, setup.prompt_only(l)?) {
                items.push(Compare {
                    a,
                    b,
                    tie,
                    dim: template.index(&w.dimension).unwrap_or(0),
                    keys: [key(w), key(l)],
                });
            }
        }
        let (w, b) = leaves(&template, &setup.device);
        Ok(BtHead {
            setup,
            pairs: items,
            ties,
            template,
            w,
            b,
            train_lora,
            frozen_features,
        })
    }

    /// The head with its trained weights (read back from the device).
    pub fn head(&self) -> RewardHead {
        let host = |t: &Tensor<B, 2>| -> Vec<f32> {
            t.clone()
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32")
        };
        RewardHead {
            weight: host(&self.w),
            bias: host(&self.b),
            ..self.template.clone()
        }
    }

    /// The trained head with its per-dimension calibration fitted (`reward::fit_calibration`:
    /// raw scalar -> the experts' mean) on the scored train examples under the trained `model`.
    pub fn calibrated(&self, model: &QwenVl<B>) -> Result<RewardHead, TrainError> {
        let mut head = self.head();
        let scored: Vec<&JudgeExample> = self.setup.scored.iter().collect();
        let usable = head_examples(&head, &scored, self.setup);
        let feats = feature_rows(model, &usable, self.setup)?;
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
}

/// The head's weight and bias ([1, dimensions]) as autodiff leaves on `device`.
fn leaves<B: TrainBackend>(head: &RewardHead, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let k = head.config.dimensions.len();
    let leaf = |v: &[f32], shape: [usize; 2]| {
        Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), shape), device).require_grad()
    };
    (
        leaf(&head.weight, [k, head.feature_len()]),
        leaf(&head.bias, [1, k]),
    )
}

impl<B: TrainBackend> Objective<B> for BtHead<'_, B> {
    fn items(&self) -> usize {
        self.pairs.len()
    }

    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        _k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        let device = &self.setup.device;
        let chunk: Vec<&Compare> = items.iter().map(|&i| &self.pairs[i]).collect();
        let n = chunk.len();
        let seqs: Vec<&Encoded> = chunk.iter().flat_map(|p| [&p.a, &p.b]).collect();
        let dims: Vec<usize> = chunk.iter().flat_map(|p| [p.dim, p.dim]).collect();
        let width = self.template.feature_len();
        let (feats, tokens) = if self.train_lora {
            let (batch, _) = self.setup.batch(&seqs);
            let (hid, ..) = model.forward_hidden(&batch, false, None).map_err(runtime)?;
            let tokens = batch.mask.iter().flatten().filter(|m| **m).count();
            (reward::features(model, &batch, hid), tokens)
        } else {
            let rows: Vec<f32> = chunk
                .iter()
                .flat_map(|p| p.keys.iter())
                .flat_map(|k| self.frozen_features[k].iter().copied())
                .collect();
            let t = Tensor::<B, 2>::from_data(TensorData::new(rows, [2 * n, width]), device);
            (t, 0)
        };
        let k = self.template.config.dimensions.len();
        let s = reward::raw(
            self.template.standardized(feats),
            self.w.clone(),
            self.b.clone().reshape([k]),
            &dims,
        );
        let (sw, sl) = split_pairs(s, n, device);
        let tie = Tensor::<B, 1, Bool>::from_data(
            TensorData::new(chunk.iter().map(|p| p.tie).collect::<Vec<_>>(), [n]),
            device,
        );
        let acc: f64 = sw
            .clone()
            .greater(sl.clone())
            .float()
            .mean()
            .into_scalar()
            .elem();
        Ok(MicroBatch {
            loss: bt_loss(sw, sl, tie, self.ties).mean(),
            backward: true,
            metrics: vec![("accuracy".into(), acc)],
            tokens,
        })
    }

    fn params(&mut self) -> Vec<(&'static str, &mut Tensor<B, 2>)> {
        vec![(HEAD_W, &mut self.w), (HEAD_B, &mut self.b)]
    }

    /// The head beside the checkpoint's adapter.
    fn save(&mut self, dir: &Path) -> Result<(), String> {
        self.head()
            .save(&dir.join("adapter"))
            .map_err(|e| e.to_string())
    }

    fn restore(&mut self, dir: &Path) -> Result<(), TrainError> {
        let dir = dir.join("adapter");
        let h = RewardHead::load(&dir).map_err(runtime)?.ok_or_else(|| {
            runtime(format!(
                "{}: the checkpoint has no reward head, but the recipe trains one",
                dir.display()
            ))
        })?;
        let saved = RewardHead {
            weight: h.weight,
            bias: h.bias,
            ..self.template.clone()
        };
        (self.w, self.b) = leaves(&saved, &self.setup.device);
        Ok(())
    }
}

/// The scored examples a reward head is trained and calibrated on (clip decoded, dimension
/// covered by the head).
fn head_examples<'e, B: TrainBackend>(
    head: &RewardHead,
    scored: &[&'e JudgeExample],
    setup: &Setup<B>,
) -> Vec<&'e JudgeExample> {
    scored
        .iter()
        .copied()
        .filter(|e| {
            setup.clips.by_video.contains_key(&e.video) && head.index(&e.dimension).is_some()
        })
        .collect()
}

/// Head features (`reward::features`, one row of 2 x hidden per example) of `examples` under
/// `model` without autodiff, on the cached vision tokens.
fn feature_rows<B: TrainBackend>(
    model: &QwenVl<B>,
    examples: &[&JudgeExample],
    setup: &Setup<B>,
) -> Result<Vec<f32>, TrainError> {
    const BATCH: usize = 16;
    let inner = model.valid();
    let vis: VisionCache<B::InnerBackend> = setup.inner_vision();
    let device = inner.device();
    let mut rows = Vec::new();
    for chunk in examples.chunks(BATCH) {
        let mut prompts = Vec::with_capacity(chunk.len());
        for e in chunk {
            prompts.push(setup.prompt_only(e)?.expect("decoded clip"));
        }
        let refs: Vec<&Encoded> = prompts.iter().collect();
        let (batch, _) = runtime::make_batch(&refs, &setup.clips, setup.pad(), &device, Some(&vis));
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
