//! The DPO family (Rafailov et al. 2023: L = -log sigmoid(beta [(log pi(y_w) - log ref(y_w)) -
//! (log pi(y_l) - log ref(y_l))]), IPO, hinge, robust; `losses::dpo_loss`) on pairs made from
//! each scored example: chosen = the experts' consensus answer, rejected = the same rationale
//! with the score moved `perturb` levels (clamped to the scale). The reference is the starting
//! policy (the frozen SFT judge); its log-probs are computed once, before training. Logs TRL's
//! metric names.

use burn::tensor::{ElementConversion, Tensor, TensorData};
use evalverse_model::{QwenVl, TrainBackend};

use crate::examples::score_line;
use crate::losses::{dpo_loss, DpoKind};
use crate::preference::{seq_logps, split_pairs, Setup};
use crate::runtime::{self, Encoded, TrainError};
use crate::trainer::{frozen_reference, MicroBatch, Objective};

struct Pair {
    chosen: Encoded,
    rejected: Encoded,
    ref_chosen: f32,
    ref_rejected: f32,
}

pub struct Dpo<'a, B: TrainBackend> {
    setup: &'a Setup<B>,
    pairs: Vec<Pair>,
    kind: DpoKind,
    beta: f64,
    label_smoothing: f64,
}

impl<'a, B: TrainBackend> Dpo<'a, B> {
    /// The pairs of the scored examples and their reference log-probs under `model` as it is now.
    pub fn new(
        setup: &'a Setup<B>,
        model: &QwenVl<B>,
        kind: DpoKind,
        beta: f64,
        label_smoothing: f64,
        perturb: f64,
    ) -> Result<Self, TrainError> {
        let scale = &setup.scale;
        let mut pairs = Vec::new();
        for e in &setup.scored {
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
            if let (Some(chosen), Some(rejected)) = (
                setup.encode(e, &e.answer),
                setup.encode(e, &rejected_answer),
            ) {
                pairs.push(Pair {
                    chosen,
                    rejected,
                    ref_chosen: 0.0,
                    ref_rejected: 0.0,
                });
            }
        }
        // Without autodiff: a forward pass on the autodiff backend keeps its graph until a
        // backward pass, so thousands of reference passes would hold every activation.
        let reference = frozen_reference(model);
        let vision = setup.inner_vision();
        for p in &mut pairs {
            let (batch, labels) = runtime::make_batch::<B::InnerBackend>(
                &[&p.chosen, &p.rejected],
                &setup.clips,
                setup.pad(),
                &setup.device,
                Some(&vision),
            );
            let lp: Vec<f32> = seq_logps(&reference, &batch, &labels, kind == DpoKind::Ipo)?
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32");
            p.ref_chosen = lp[0];
            p.ref_rejected = lp[1];
        }
        Ok(Dpo {
            setup,
            pairs,
            kind,
            beta,
            label_smoothing,
        })
    }
}

impl<B: TrainBackend> Objective<B> for Dpo<'_, B> {
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
        let chunk: Vec<&Pair> = items.iter().map(|&i| &self.pairs[i]).collect();
        let n = chunk.len();
        // Interleaved [c0, r0, c1, r1, ...]: one forward pass for both sides.
        let seqs: Vec<&Encoded> = chunk
            .iter()
            .flat_map(|p| [&p.chosen, &p.rejected])
            .collect();
        let (batch, labels) = self.setup.batch(&seqs);
        let lp = seq_logps(model, &batch, &labels, self.kind == DpoKind::Ipo)?;
        let (pc, pr) = split_pairs(lp, n, device);
        let mk = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [n]), device);
        let o = dpo_loss(
            pc.clone(),
            pr.clone(),
            mk(chunk.iter().map(|p| p.ref_chosen).collect()),
            mk(chunk.iter().map(|p| p.ref_rejected).collect()),
            self.kind,
            self.beta,
            self.label_smoothing,
        );
        let f = |t: Tensor<B, 1>| -> f64 { t.mean().into_scalar().elem() };
        let (ch, rj) = (o.chosen_rewards.clone(), o.rejected_rewards.clone());
        let acc = f(ch.clone().greater(rj.clone()).float());
        let metrics = vec![
            ("rewards/chosen".into(), f(ch.clone())),
            ("rewards/rejected".into(), f(rj.clone())),
            ("rewards/accuracies".into(), acc),
            ("rewards/margins".into(), f(ch - rj)),
            ("logps/chosen".into(), f(pc.detach())),
            ("logps/rejected".into(), f(pr.detach())),
        ];
        Ok(MicroBatch {
            loss: o.losses.mean(),
            backward: true,
            metrics,
            tokens: batch.mask.iter().flatten().filter(|m| **m).count(),
        })
    }
}
