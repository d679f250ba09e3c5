//! A Qwen-VL model for conditional generation (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): the vision
//! tower's tokens replace the image/video placeholder embeddings (and, with DeepStack, its extra
//! features are added after the first decoder layers at the same positions), multimodal position
//! ids come from `position::rope_index`, the text decoder runs with a causal + padding mask, and
//! the output head (tied or untied) gives logits.

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::config::QwenVlConfig;
use crate::error::{ModelError, Result};
use crate::nn::Linear;
use crate::ops::ModelBackend;
use crate::position::{rope_index, MediaGrid};
use crate::text::{KvCache, TextModel};
use crate::vision::VisionTower;
use crate::weights::{ModelSource, Weights};

#[derive(Module, Debug)]
pub struct QwenVl<B: Backend> {
    pub visual: VisionTower<B>,
    pub model: TextModel<B>,
    /// None when the embeddings are tied.
    pub lm_head: Option<Linear<B>>,
    /// With tied embeddings: the embedding matrix transposed once ([hidden, vocab], contiguous),
    /// so the head does not copy the whole embedding on every call.
    #[module(skip)]
    pub tied_head: Option<Tensor<B, 2>>,
    #[module(skip)]
    pub cfg: QwenVlConfig,
}

/// One batch of prompts: equal-length token rows (padding marked in `mask`), the patch rows of all
/// media in order (sequence by sequence), and each sequence's media.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<bool>>,
    pub pixel_values: Option<Tensor<B, 2>>,
    pub media: Vec<Vec<MediaGrid>>,
    /// The vision tower's output for these media, when already computed (a frozen tower encodes
    /// each clip once per run); `pixel_values` is then not used.
    pub vision_embeds: Option<Tensor<B, 2>>,
}

/// What a forward pass returns.
pub struct Output<B: Backend> {
    /// [batch, len, vocab], f32.
    pub logits: Tensor<B, 3>,
    /// Embedding output, then each layer's raw output (when asked for).
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// Final normed hidden state [batch, len, hidden] (what the head reads).
    pub last_hidden: Tensor<B, 3>,
    /// Per sequence: max position + 1 - len (continues M-RoPE during generation).
    pub rope_deltas: Vec<i64>,
    /// [3][batch][len]
    pub position_ids: [Vec<Vec<i64>>; 3],
}

impl<B: Backend> QwenVl<B> {
    /// Visit every linear layer with its Hugging Face module path (original layout).
    pub fn for_each_linear(&mut self, mut f: impl FnMut(&str, &mut Linear<B>)) {
        use crate::vision::{PatchMerger, VisionMlp};
        let family = self.cfg.family;
        let mlp_names = family.vision_mlp_names();
        let [_, fc1, fc2] = family.merger_names();
        f("visual.patch_embed.proj", &mut self.visual.patch_embed);
        for (i, blk) in self.visual.blocks.iter_mut().enumerate() {
            f(&format!("visual.blocks.{i}.attn.qkv"), &mut blk.attn.qkv);
            f(&format!("visual.blocks.{i}.attn.proj"), &mut blk.attn.proj);
            let lins: Vec<&mut Linear<B>> = match &mut blk.mlp {
                VisionMlp::Gated(m) => vec![&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj],
                VisionMlp::Plain(m) => vec![&mut m.fc1, &mut m.fc2],
            };
            for (name, lin) in mlp_names.iter().zip(lins) {
                f(&format!("visual.blocks.{i}.mlp.{name}"), lin);
            }
        }
        let mut merger = |prefix: &str, m: &mut PatchMerger<B>| {
            f(&format!("{prefix}.{fc1}"), &mut m.fc1);
            f(&format!("{prefix}.{fc2}"), &mut m.fc2);
        };
        merger("visual.merger", &mut self.visual.merger);
        for (j, m) in self.visual.deepstack_merger_list.iter_mut().enumerate() {
            merger(&format!("visual.deepstack_merger_list.{j}"), m);
        }
        for (i, l) in self.model.layers.iter_mut().enumerate() {
            f(
                &format!("model.layers.{i}.self_attn.q_proj"),
                &mut l.self_attn.q_proj,
            );
            f(
                &format!("model.layers.{i}.self_attn.k_proj"),
                &mut l.self_attn.k_proj,
            );
            f(
                &format!("model.layers.{i}.self_attn.v_proj"),
                &mut l.self_attn.v_proj,
            );
            f(
                &format!("model.layers.{i}.self_attn.o_proj"),
                &mut l.self_attn.o_proj,
            );
            f(
                &format!("model.layers.{i}.mlp.gate_proj"),
                &mut l.mlp.gate_proj,
            );
            f(&format!("model.layers.{i}.mlp.up_proj"), &mut l.mlp.up_proj);
            f(
                &format!("model.layers.{i}.mlp.down_proj"),
                &mut l.mlp.down_proj,
            );
        }
        if let Some(h) = self.lm_head.as_mut() {
            f("lm_head", h);
        }
    }

    pub fn device(&self) -> B::Device {
        self.model.embed_tokens.val().device()
    }
}

impl<B: ModelBackend> QwenVl<B> {
    /// Load from a local folder or `hf:ORG/NAME[@REV]`, weights converted to `dtype`.
    pub fn from_source(source: &str, dtype: DType, device: &B::Device) -> Result<Self> {
        let files = ModelSource::parse(source)?.resolve()?;
        Self::load_files(&files.config, &files.weights, dtype, device)
    }

    pub fn load_files(
        config: &Path,
        weights: &[std::path::PathBuf],
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let mut w = Weights::open(weights, dtype)?;
        let cfg = QwenVlConfig::for_weights(config, &w)?;
        let visual = VisionTower::load(&mut w, &cfg.vision, device)?;
        let model = TextModel::load(&mut w, &cfg.text, device)?;
        let lm_head = if cfg.text.tie_word_embeddings {
            w.skip("lm_head.weight");
            None
        } else {
            Some(Linear::load(
                &mut w,
                "lm_head",
                cfg.text.hidden_size,
                cfg.text.vocab_size,
                false,
                device,
            )?)
        };
        w.finish()?;
        let tied_head = lm_head.is_none().then(|| {
            let data = crate::nn::transpose_data(model.embed_tokens.val().into_data());
            crate::nn::tensor_as_stored::<B, 2>(data, device)
        });
        Ok(QwenVl {
            visual,
            model,
            lm_head,
            tied_head,
            cfg,
        })
    }

    /// Logits from final hidden states [batch, len, hidden] -> [batch, len, vocab] in f32.
    pub fn head(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let logits = match &self.lm_head {
            Some(l) => l.forward(h),
            None => {
                let w = match &self.tied_head {
                    Some(t) => t.clone(),
                    None => self.model.embed_tokens.val().transpose(),
                };
                crate::nn::linear_rows(h, w, None)
            }
        };
        logits.cast(DType::F32)
    }

    /// Input embeddings with the media tokens in place of their placeholders.
    pub fn embed_batch(&self, batch: &Batch<B>) -> Result<Tensor<B, 3>> {
        Ok(self.embed_batch_deepstack(batch)?.0)
    }

    /// Input embeddings with the media tokens in place of their placeholders, and the DeepStack
    /// additions of each level [batch, len, hidden]: the level's features at the placeholders,
    /// zero elsewhere (none without DeepStack or media).
    #[allow(clippy::type_complexity)]
    pub fn embed_batch_deepstack(
        &self,
        batch: &Batch<B>,
    ) -> Result<(Tensor<B, 3>, Vec<Tensor<B, 3>>)> {
        let device = self.device();
        let (b, l) = (
            batch.ids.len(),
            batch.ids.first().map(Vec::len).unwrap_or(0),
        );
        let flat: Vec<i64> = batch.ids.iter().flatten().map(|&t| t as i64).collect();
        if flat.len() != b * l {
            return Err(ModelError::Invalid(
                "token rows of a batch must have equal length".into(),
            ));
        }
        if let Some(&bad) = flat
            .iter()
            .find(|&&t| t as usize >= self.cfg.text.vocab_size)
        {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.text.vocab_size
            )));
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat.clone(), [b, l]), &device);
        let text = self.model.embed(ids);
        let grids: Vec<[usize; 3]> = batch.media.iter().flatten().map(|m| m.grid_thw).collect();
        if grids.is_empty() {
            return Ok((text, vec![]));
        }
        let vis = match (&batch.vision_embeds, &batch.pixel_values) {
            (Some(v), _) => v.clone(),
            (None, Some(pixels)) => self.visual.forward(pixels.clone(), &grids),
            (None, None) => {
                return Err(ModelError::Invalid(
                    "the batch has media but neither pixel values nor vision embeddings".into(),
                ))
            }
        }
        .cast(text.dtype()); // [n_tokens, hidden * (1 + DeepStack levels)]
        let [n_vis, width] = vis.dims();
        let d = self.cfg.text.hidden_size;
        if width != self.visual.output_width() {
            return Err(ModelError::Invalid(format!(
                "vision embeddings are {width} wide; this model's vision tower gives {} \
                 (hidden {d} x (1 + {} DeepStack levels))",
                self.visual.output_width(),
                self.visual.deepstack_merger_list.len()
            )));
        }
        let is_ph =
            |t: i64| t == self.cfg.image_token_id as i64 || t == self.cfg.video_token_id as i64;
        let mut next = 0usize;
        // Row of the media token at each placeholder (counted from 1: row 0 stands for "none").
        let media_row: Vec<usize> = flat
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if is_ph(t) && batch.mask[i / l][i % l] {
                    next += 1;
                    next
                } else {
                    0
                }
            })
            .collect();
        if next != n_vis {
            return Err(ModelError::Invalid(format!(
                "the prompts hold {next} vision placeholder tokens but the media give {n_vis} tokens"
            )));
        }
        let index: Vec<i64> = media_row
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                if r > 0 {
                    (b * l + r - 1) as i64
                } else {
                    i as i64
                }
            })
            .collect();
        let all = Tensor::cat(
            vec![text.reshape([b * l, d]), vis.clone().narrow(1, 0, d)],
            0,
        );
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [b * l]), &device);
        let embeds = all.select(0, idx).reshape([b, l, d]);
        let levels = width / d - 1;
        if levels == 0 {
            return Ok((embeds, vec![]));
        }
        let rows = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                media_row.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [b * l],
            ),
            &device,
        );
        let zero = Tensor::<B, 2>::zeros([1, d], (&device, vis.dtype()));
        let deepstack = (1..=levels)
            .map(|k| {
                Tensor::cat(vec![zero.clone(), vis.clone().narrow(1, k * d, d)], 0)
                    .select(0, rows.clone())
                    .reshape([b, l, d])
            })
            .collect();
        Ok((embeds, deepstack))
    }

    /// Position ids [3][batch][len] and rope deltas for a batch.
    pub fn positions(&self, batch: &Batch<B>) -> Result<([Vec<Vec<i64>>; 3], Vec<i64>)> {
        let mut pos: [Vec<Vec<i64>>; 3] = [vec![], vec![], vec![]];
        let mut deltas = Vec::new();
        for (i, ids) in batch.ids.iter().enumerate() {
            let (p, d) = rope_index(ids, &batch.mask[i], &batch.media[i], &self.cfg)
                .map_err(|m| ModelError::Invalid(format!("sequence {i}: {m}")))?;
            for (a, axis) in p.into_iter().enumerate() {
                pos[a].push(axis);
            }
            deltas.push(d);
        }
        Ok((pos, deltas))
    }

    /// Full forward pass (prefill) over a batch.
    pub fn forward(
        &self,
        batch: &Batch<B>,
        all_hidden: bool,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Output<B>> {
        let (h, hidden_states, position_ids, rope_deltas) =
            self.forward_hidden(batch, all_hidden, cache)?;
        Ok(Output {
            logits: self.head(h.clone()),
            hidden_states,
            last_hidden: h,
            rope_deltas,
            position_ids,
        })
    }

    /// The decoder's final normed hidden states [batch, len, hidden], without the output head
    /// (training computes logits only where a loss needs them: the head over a 152k vocabulary
    /// dominates the cost of every other position).
    #[allow(clippy::type_complexity)]
    pub fn forward_hidden(
        &self,
        batch: &Batch<B>,
        all_hidden: bool,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<(
        Tensor<B, 3>,
        Vec<Tensor<B, 3>>,
        [Vec<Vec<i64>>; 3],
        Vec<i64>,
    )> {
        let device = self.device();
        let (h, deepstack) = self.embed_batch_deepstack(batch)?;
        let (position_ids, rope_deltas) = self.positions(batch)?;
        let (cos, sin) = self.model.mrope(&position_ids, &device);
        let mask = causal_mask::<B>(&batch.mask, 0, &device);
        let (h, hidden_states) =
            self.model
                .forward_deepstack(h, &cos, &sin, Some(mask), cache, all_hidden, &deepstack);
        Ok((h, hidden_states, position_ids, rope_deltas))
    }

    /// Logits [n, vocab] at the flattened positions `rows` (index b * len + t) of hidden states.
    pub fn head_at(&self, h: Tensor<B, 3>, rows: &[usize]) -> Tensor<B, 2> {
        let picked = self.rows_of(h, rows).unsqueeze_dim::<3>(0);
        let logits = self.head(picked);
        let [_, n, v] = logits.dims();
        logits.reshape([n, v])
    }

    /// The head as a [hidden, vocab] matrix when nothing in it trains (tied to the frozen
    /// embedding, or an `lm_head` without LoRA, bias or gradient): then a loss can be fused with
    /// it (`losses::fused_head_nll`). `None` when the head has trainable parts.
    pub fn frozen_head(&self) -> Option<Tensor<B, 2>> {
        match &self.lm_head {
            Some(l) if l.lora.is_none() && l.bias.is_none() && !l.weight.is_require_grad() => {
                Some(l.weight.val())
            }
            Some(_) => None,
            None => Some(match &self.tied_head {
                Some(t) => t.clone(),
                None => self.model.embed_tokens.val().transpose(),
            }),
        }
    }

    /// Rows `rows` (b * len + t) of hidden states [b, len, d], as [rows, d].
    pub fn rows_of(&self, h: Tensor<B, 3>, rows: &[usize]) -> Tensor<B, 2> {
        let [b, l, d] = h.dims();
        let idx = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &h.device(),
        );
        h.reshape([b * l, d]).select(0, idx)
    }
}

/// Additive mask [batch, 1, len, past+len]: key j visible to query i iff j <= past + i and key j
/// is not padding. Masked entries get f32::MIN (as transformers), so a fully masked row (a
/// padding query) softmaxes to uniform weights rather than NaN.
pub fn causal_mask<B: Backend>(
    key_mask: &[Vec<bool>],
    past: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let b = key_mask.len();
    let total = key_mask.first().map(Vec::len).unwrap_or(0);
    let l = total - past;
    let mut v = Vec::with_capacity(b * l * total);
    for km in key_mask {
        for i in 0..l {
            for (j, &visible) in km.iter().enumerate() {
                v.push(if j <= past + i && visible {
                    0.0
                } else {
                    f32::MIN
                });
            }
        }
    }
    Tensor::<B, 4>::from_data(TensorData::new(v, [b, 1, l, total]), (device, DType::F32))
}

/// A synthetic video prompt for benchmarks and device checks (examples bench_model and
/// gpu_check): batch 1, `text` pseudo-random text tokens (ids below 31,000), vision_start, the
/// video tokens of `grid` ([T, H, W] patches, second_per_grid 1.0), vision_end, `text` more;
/// pixel values uniform in [-1, 1). Ids from `Rng::new(0)`, pixels from `Rng::new(1)`.
pub fn synthetic_video_prompt<B: Backend>(
    cfg: &QwenVlConfig,
    grid: [usize; 3],
    text: usize,
    device: &B::Device,
) -> Batch<B> {
    use evalverse_data::rng::Rng;
    let mut rng = Rng::new(0);
    let [t, h, w] = grid;
    let sms = cfg.vision.spatial_merge_size;
    let n_video = t * (h / sms) * (w / sms);
    let mut words = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(31000) as u32).collect() };
    let mut ids = words(text);
    ids.push(cfg.vision_start_token_id);
    ids.extend(std::iter::repeat_n(cfg.video_token_id, n_video));
    ids.push(cfg.vision_end_token_id);
    ids.extend(words(text));
    let (rows, pd) = (t * h * w, cfg.vision.patch_dim());
    let mut prng = Rng::new(1);
    let px: Vec<f32> = (0..rows * pd)
        .map(|_| prng.range(-1.0, 1.0) as f32)
        .collect();
    let mask = vec![true; ids.len()];
    Batch {
        ids: vec![ids],
        mask: vec![mask],
        pixel_values: Some(Tensor::from_data(TensorData::new(px, [rows, pd]), device)),
        media: vec![vec![MediaGrid {
            is_video: true,
            grid_thw: grid,
            second_per_grid: 1.0,
        }]],
        vision_embeds: None,
    }
}
