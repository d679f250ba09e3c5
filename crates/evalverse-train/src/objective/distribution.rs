//! Distribution matching: KL(raters' score histogram || the judge's distribution over the score
//! tokens) where the consensus answer states its score (`losses::distribution_kl`), per scored
//! example; teaches the judge the raters' spread, not only their mean.

use burn::tensor::{Tensor, TensorData};
use evalverse_model::{QwenVl, TrainBackend};

use crate::losses::distribution_kl;
use crate::preference::Setup;
use crate::runtime::{Encoded, TrainError};
use crate::trainer::{MicroBatch, Objective};

struct Hist {
    seq: Encoded,
    /// The raters' histogram over the scale's levels.
    target: Vec<f32>,
}

pub struct Distribution<'a, B: TrainBackend> {
    setup: &'a Setup<B>,
    items: Vec<Hist>,
}

impl<'a, B: TrainBackend> Distribution<'a, B> {
    /// One item per scored example whose clip decoded.
    pub fn new(setup: &'a Setup<B>) -> Self {
        let items = setup
            .scored
            .iter()
            .filter_map(|e| {
                Some(Hist {
                    seq: setup.encode(e, &e.answer)?,
                    target: e.histogram.iter().map(|&x| x as f32).collect(),
                })
            })
            .collect();
        Distribution { setup, items }
    }
}

impl<B: TrainBackend> Objective<B> for Distribution<'_, B> {
    fn items(&self) -> usize {
        self.items.len()
    }

    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        _k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        let chunk: Vec<&Hist> = items.iter().map(|&i| &self.items[i]).collect();
        let n = chunk.len();
        let seqs: Vec<&Encoded> = chunk.iter().map(|h| &h.seq).collect();
        let (batch, _) = self.setup.batch(&seqs);
        let logits = self.setup.score_logits(model, &batch, &seqs)?;
        let target: Vec<f32> = chunk
            .iter()
            .flat_map(|h| h.target.iter().copied())
            .collect();
        let k = self.setup.levels.len();
        let target = Tensor::<B, 2>::from_data(TensorData::new(target, [n, k]), &self.setup.device);
        Ok(MicroBatch {
            loss: distribution_kl(logits, target).mean(),
            backward: true,
            metrics: Vec::new(),
            tokens: batch.mask.iter().flatten().filter(|m| **m).count(),
        })
    }
}
