//! Supervised fine-tuning: next-token cross-entropy on the answer tokens (the expert rationale
//! and score for `sft`, the dense caption for `caption`; EvalVerse §6.2), mean over the
//! micro-batch's label tokens, with the head fused into the loss when it is frozen
//! (`runtime::label_nll`). Validation: the same loss on the val split, without gradients.

use burn::module::AutodiffModule;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::{ModelBackend, QwenVl, TrainBackend};

use crate::examples::JudgeExample;
use crate::losses::{label_rows, token_nll};
use crate::runtime::{self, runtime, Clips, Encoded, TrainError, VisionCache};
use crate::trainer::{Metrics, MicroBatch, Objective};

pub struct Sft<'a, B: TrainBackend> {
    /// The tokenised train examples (prompt and answer, labels on the answer).
    pub data: Vec<Encoded>,
    pub clips: &'a Clips,
    /// Vision tokens per clip when the vision tower is frozen (computed once).
    pub vision: Option<VisionCache<B>>,
    pub tok: &'a ChatTokenizer,
    /// Validation examples and their clips (`train.eval_every`).
    pub val: Vec<JudgeExample>,
    pub val_clips: &'a Clips,
    pub device: B::Device,
}

impl<'a, B: TrainBackend> Sft<'a, B> {
    /// The objective over `examples` (those whose clip decoded and whose conversation
    /// tokenises), with the frozen vision tower's tokens computed once unless the LoRA adapts
    /// the vision tower.
    pub fn new(
        model: &QwenVl<B>,
        tok: &'a ChatTokenizer,
        examples: &[JudgeExample],
        clips: &'a Clips,
        val: Vec<JudgeExample>,
        val_clips: &'a Clips,
        include_vision: bool,
    ) -> Self {
        let device = &model.device();
        let data = examples
            .iter()
            .filter_map(|e| encode(tok, clips, e))
            .collect();
        Sft {
            data,
            clips,
            vision: (!include_vision).then(|| runtime::encode_vision(model, clips, device)),
            tok,
            val,
            val_clips,
            device: device.clone(),
        }
    }
}

/// The judge conversation of `e` with its answer, labels on the answer.
fn encode(tok: &ChatTokenizer, clips: &Clips, e: &JudgeExample) -> Option<Encoded> {
    let clip = clips.by_video.get(&e.video)?;
    let conv = runtime::conversation(clips, e, clip, Some(&e.answer));
    let enc = tok.encode_chat(&conv, false).ok()?;
    Some(Encoded {
        ids: enc.ids,
        labels: enc.labels,
        video: e.video.clone(),
    })
}

impl<B: TrainBackend> Objective<B> for Sft<'_, B> {
    fn items(&self) -> usize {
        self.data.len()
    }

    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        _k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        let seqs: Vec<&Encoded> = items.iter().map(|&i| &self.data[i]).collect();
        let pad = self.tok.special.endoftext;
        let (batch, labels) =
            runtime::make_batch::<B>(&seqs, self.clips, pad, &self.device, self.vision.as_ref());
        let (rows, targets) = label_rows(&batch.ids, &labels);
        let n = rows.len();
        let (h, ..) = model.forward_hidden(&batch, false, None).map_err(runtime)?;
        Ok(MicroBatch {
            loss: runtime::label_nll(model, h, &rows, targets),
            backward: n > 0,
            metrics: Vec::new(),
            tokens: batch.mask.iter().flatten().filter(|m| **m).count(),
        })
    }

    fn evaluate(&mut self, model: &QwenVl<B>) -> Result<Metrics, TrainError> {
        if self.val.is_empty() {
            return Ok(Vec::new());
        }
        // On the inner backend: validation passes keep no autodiff graph.
        let v = val_loss(
            &model.valid(),
            self.tok,
            &self.val,
            self.val_clips,
            &self.device,
        )?;
        Ok(vec![("eval/loss".into(), v)])
    }
}

/// Mean SFT loss over validation examples (no gradients).
fn val_loss<B: ModelBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    exs: &[JudgeExample],
    clips: &Clips,
    device: &B::Device,
) -> Result<f64, TrainError> {
    let pad = tok.special.endoftext;
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
