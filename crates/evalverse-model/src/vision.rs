//! The Qwen-VL vision tower (transformers `Qwen2VisionTransformerPretrainedModel`,
//! `Qwen2_5_VisionTransformerPretrainedModel`, `Qwen3VLVisionModel`): 3D patch embedding (a
//! Conv3d whose kernel equals its stride, i.e. a linear over the C*T*p*p patch rows), the learned
//! position table interpolated to the grid (Qwen3-VL), 2D rotary position embedding over (row,
//! column), attention per temporal patch or in windows (Qwen2.5-VL's 4x4 merged-token windows,
//! full attention in `fullatt_block_indexes`), norm + MLP blocks of the family's kind, the patch
//! merger (2x2 patches -> one token of the text width) and Qwen3-VL's DeepStack mergers.

use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::config::{Activation, VisionConfig, VisionMlpKind};
use crate::error::Result;
use crate::nn::{activate, apply_rotary, attention, swiglu, tensor_as_stored, Linear, Norm};
use crate::ops::ModelBackend;
use crate::weights::Weights;

#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub num_heads: usize,
}

/// down_proj(silu(gate_proj(x)) * up_proj(x)) (Qwen2.5-VL).
#[derive(Module, Debug)]
pub struct GatedMlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

/// fc2(act(fc1(x))) (Qwen2-VL `fc1`/`fc2`, Qwen3-VL `linear_fc1`/`linear_fc2`).
#[derive(Module, Debug)]
pub struct PlainMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    pub act: Activation,
}

// One per vision block: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum VisionMlp<B: Backend> {
    Gated(GatedMlp<B>),
    Plain(PlainMlp<B>),
}

#[derive(Module, Debug)]
pub struct VisionBlock<B: Backend> {
    pub norm1: Norm<B>,
    pub norm2: Norm<B>,
    pub attn: VisionAttention<B>,
    pub mlp: VisionMlp<B>,
}

/// norm -> view 2x2 blocks as one row -> fc1 -> GELU (erf) -> fc2. The norm runs before the view
/// over the ViT width, or after it over 4x the width (`postshuffle`: Qwen3-VL's DeepStack
/// mergers). HF names: `ln_q`, `mlp.0`, `mlp.2` (Qwen2/2.5-VL); `norm`, `linear_fc1`,
/// `linear_fc2` (Qwen3-VL).
#[derive(Module, Debug)]
pub struct PatchMerger<B: Backend> {
    pub norm: Norm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    pub postshuffle: bool,
}

#[derive(Module, Debug)]
pub struct VisionTower<B: Backend> {
    /// patch_embed.proj, as a linear over flattened [C, T, p, p] rows.
    pub patch_embed: Linear<B>,
    /// pos_embed [side^2, width] (Qwen3-VL).
    pub pos_embed: Option<Param<Tensor<B, 2>>>,
    pub blocks: Vec<VisionBlock<B>>,
    pub merger: PatchMerger<B>,
    /// deepstack_merger_list.{j}, one per entry of `deepstack_visual_indexes` (Qwen3-VL).
    pub deepstack_merger_list: Vec<PatchMerger<B>>,
    #[module(skip)]
    pub cfg: VisionConfig,
}

/// Row segments [start, end) that attend among themselves.
type Segments = Vec<(usize, usize)>;

impl<B: ModelBackend> PatchMerger<B> {
    fn load(
        w: &mut Weights,
        prefix: &str,
        cfg: &VisionConfig,
        postshuffle: bool,
        device: &B::Device,
    ) -> Result<Self> {
        let [norm, fc1, fc2] = cfg.family.merger_names();
        let wide = cfg.hidden_size * cfg.spatial_merge_size * cfg.spatial_merge_size;
        let norm_dim = if postshuffle { wide } else { cfg.hidden_size };
        Ok(PatchMerger {
            norm: Norm::load(
                w,
                &format!("{prefix}.{norm}"),
                norm_dim,
                cfg.norm,
                cfg.rms_norm_eps,
                device,
            )?,
            fc1: Linear::load(w, &format!("{prefix}.{fc1}"), wide, wide, true, device)?,
            fc2: Linear::load(
                w,
                &format!("{prefix}.{fc2}"),
                wide,
                cfg.out_hidden_size,
                true,
                device,
            )?,
            postshuffle,
        })
    }

    /// Rows [n * unit, width] in merge-block order -> merged tokens [n, out_hidden_size].
    fn forward(&self, h: Tensor<B, 2>, unit: usize) -> Tensor<B, 2> {
        let [rows, d] = h.dims();
        let x = if self.postshuffle {
            self.norm.forward(h.reshape([rows / unit, d * unit]))
        } else {
            self.norm.forward(h).reshape([rows / unit, d * unit])
        };
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

impl<B: ModelBackend> VisionMlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            VisionMlp::Gated(m) => m
                .down_proj
                .forward(swiglu(m.gate_proj.forward(x.clone()), m.up_proj.forward(x))),
            VisionMlp::Plain(m) => m.fc2.forward(activate(m.fc1.forward(x), m.act)),
        }
    }
}

impl<B: ModelBackend> VisionTower<B> {
    pub fn load(w: &mut Weights, cfg: &VisionConfig, device: &B::Device) -> Result<Self> {
        let d = cfg.hidden_size;
        let eps = cfg.rms_norm_eps;
        let pd = cfg.patch_dim();
        let conv = w.take(
            "visual.patch_embed.proj.weight",
            &[
                d,
                cfg.in_channels,
                cfg.temporal_patch_size,
                cfg.patch_size,
                cfg.patch_size,
            ],
        )?;
        // A Conv3d whose kernel equals its stride is a linear over the flattened [C, T, p, p] rows.
        let conv = TensorData::from_bytes_vec(conv.as_bytes().to_vec(), [d, pd], conv.dtype);
        let bias = if cfg.patch_bias {
            Some(tensor_as_stored::<B, 1>(
                w.take("visual.patch_embed.proj.bias", &[d])?,
                device,
            ))
        } else {
            None
        };
        let patch_embed = Linear::from_hf_data(conv, bias, device);
        let pos_embed = match cfg.num_position_embeddings {
            Some(n) => Some(
                Param::from_tensor(tensor_as_stored::<B, 2>(
                    w.take("visual.pos_embed.weight", &[n, d])?,
                    device,
                ))
                .set_require_grad(false),
            ),
            None => None,
        };
        let names = cfg.family.vision_mlp_names();
        let inter = cfg.intermediate_size;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let p = format!("visual.blocks.{i}");
            let mut lin = |name: &str, d_in: usize, d_out: usize| {
                Linear::load(w, &format!("{p}.mlp.{name}"), d_in, d_out, true, device)
            };
            let mlp = match cfg.mlp {
                VisionMlpKind::Gated => VisionMlp::Gated(GatedMlp {
                    gate_proj: lin(names[0], d, inter)?,
                    up_proj: lin(names[1], d, inter)?,
                    down_proj: lin(names[2], inter, d)?,
                }),
                VisionMlpKind::Plain => VisionMlp::Plain(PlainMlp {
                    fc1: lin(names[0], d, inter)?,
                    fc2: lin(names[1], inter, d)?,
                    act: cfg.hidden_act,
                }),
            };
            blocks.push(VisionBlock {
                norm1: Norm::load(w, &format!("{p}.norm1"), d, cfg.norm, eps, device)?,
                norm2: Norm::load(w, &format!("{p}.norm2"), d, cfg.norm, eps, device)?,
                attn: VisionAttention {
                    qkv: Linear::load(w, &format!("{p}.attn.qkv"), d, 3 * d, true, device)?,
                    proj: Linear::load(w, &format!("{p}.attn.proj"), d, d, true, device)?,
                    num_heads: cfg.num_heads,
                },
                mlp,
            });
        }
        let merger = PatchMerger::load(w, "visual.merger", cfg, false, device)?;
        let deepstack_merger_list = (0..cfg.deepstack_visual_indexes.len())
            .map(|j| {
                PatchMerger::load(
                    w,
                    &format!("visual.deepstack_merger_list.{j}"),
                    cfg,
                    true,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(VisionTower {
            patch_embed,
            pos_embed,
            blocks,
            merger,
            deepstack_merger_list,
            cfg: cfg.clone(),
        })
    }

    /// Width of one merged token of `forward`'s output: the merger's tokens, then each DeepStack
    /// merger's, side by side (out_hidden_size * (1 + DeepStack levels)).
    pub fn output_width(&self) -> usize {
        self.cfg.out_hidden_size * (1 + self.deepstack_merger_list.len())
    }

    /// Encode patch rows `pixels` [rows, C*T*p*p] of the media in `grid_thw` (one (t, h, w) per
    /// image or video, in order) into merged tokens [rows / merge^2, output_width()], in the
    /// original (row-major per frame, 2x2 merge-block) order. Columns [0, out_hidden_size) are
    /// the merger's output (what replaces the placeholders); with DeepStack, the next
    /// out_hidden_size columns are the first DeepStack merger's, and so on.
    pub fn forward(&self, pixels: Tensor<B, 2>, grid_thw: &[[usize; 3]]) -> Tensor<B, 2> {
        let device = pixels.device();
        let cfg = &self.cfg;
        let unit = cfg.spatial_merge_size * cfg.spatial_merge_size;
        let rows = pixels.dims()[0];
        // Pixels in the weights' dtype, as transformers' patch embedding casts them.
        let pixels = pixels.cast(self.patch_embed.weight.val().dtype());
        let mut hidden = self.patch_embed.forward(pixels); // [rows, d]
        if let Some(table) = &self.pos_embed {
            hidden = hidden + self.position_embeddings(table.val(), grid_thw);
        }
        let frame_segments = frame_segments(grid_thw);
        let windowed = cfg.window_size.is_some();
        let (window_index, window_segments) = if windowed {
            window_index(grid_thw, cfg)
        } else {
            ((0..rows / unit).collect(), frame_segments.clone())
        };
        let order: Vec<i64> = window_index
            .iter()
            .flat_map(|&g| (0..unit).map(move |u| (g * unit + u) as i64))
            .collect();
        let mut h = if windowed {
            let order_t =
                Tensor::<B, 1, Int>::from_data(TensorData::new(order.clone(), [rows]), &device);
            hidden.select(0, order_t)
        } else {
            hidden
        };
        let (cos, sin) = vision_rope::<B>(grid_thw, cfg, &order, &device); // [rows, head_dim]
        let mut deepstack = Vec::new();
        for (i, blk) in self.blocks.iter().enumerate() {
            let segs = if windowed && !cfg.fullatt_block_indexes.contains(&i) {
                &window_segments
            } else {
                &frame_segments
            };
            let x = blk.norm1.forward(h.clone());
            h = h + blk.attn.forward(x, &cos, &sin, segs);
            let x = blk.norm2.forward(h.clone());
            h = h + blk.mlp.forward(x);
            if let Some(j) = cfg.deepstack_visual_indexes.iter().position(|&k| k == i) {
                deepstack.push(self.deepstack_merger_list[j].forward(h.clone(), unit));
            }
        }
        // Merger: groups of `unit` consecutive rows (a 2x2 block) -> one token.
        let merged = self.merger.forward(h, unit);
        let merged = if deepstack.is_empty() {
            merged
        } else {
            Tensor::cat([vec![merged], deepstack].concat(), 1)
        };
        if !windowed {
            return merged;
        }
        // Undo the window permutation (argsort of window_index).
        let mut reverse = vec![0i64; window_index.len()];
        for (pos, &g) in window_index.iter().enumerate() {
            reverse[g] = pos as i64;
        }
        let reverse =
            Tensor::<B, 1, Int>::from_data(TensorData::new(reverse, [rows / unit]), &device);
        merged.select(0, reverse)
    }

    /// The learned position table [side^2, d] interpolated bilinearly (align_corners) to each
    /// medium's patch grid, repeated over its temporal patches, rows in merge-block order:
    /// [rows, d] (transformers `Qwen3VLVisionModel.fast_pos_embed_interpolate`, its f32
    /// arithmetic: torch.linspace's two-sided formula, truncated floor, the four corner weights
    /// and the sum in corner order).
    fn position_embeddings(&self, table: Tensor<B, 2>, grid_thw: &[[usize; 3]]) -> Tensor<B, 2> {
        let device = table.device();
        let side = self.cfg.position_grid_side().unwrap_or(1);
        let sms = self.cfg.spatial_merge_size;
        let mut idx: [Vec<i64>; 4] = Default::default();
        let mut wts: [Vec<f32>; 4] = Default::default();
        for &[t, h, w] in grid_thw {
            let hs = linspace_f32(0.0, (side - 1) as f32, h);
            let ws = linspace_f32(0.0, (side - 1) as f32, w);
            let corner = |v: f32| {
                let lo = v as usize; // truncation, as tensor.int()
                (lo, (lo + 1).min(side - 1), v - lo as f32)
            };
            let mut frame: Vec<([i64; 4], [f32; 4])> = Vec::with_capacity(h * w);
            for &hv in &hs {
                let (h0, h1, dh) = corner(hv);
                for &wv in &ws {
                    let (w0, w1, dw) = corner(wv);
                    frame.push((
                        [
                            (h0 * side + w0) as i64,
                            (h0 * side + w1) as i64,
                            (h1 * side + w0) as i64,
                            (h1 * side + w1) as i64,
                        ],
                        [
                            (1.0 - dh) * (1.0 - dw),
                            (1.0 - dh) * dw,
                            dh * (1.0 - dw),
                            dh * dw,
                        ],
                    ));
                }
            }
            for _ in 0..t {
                for bh in 0..h / sms {
                    for bw in 0..w / sms {
                        for mh in 0..sms {
                            for mw in 0..sms {
                                let (i, wt) = frame[(bh * sms + mh) * w + bw * sms + mw];
                                for k in 0..4 {
                                    idx[k].push(i[k]);
                                    wts[k].push(wt[k]);
                                }
                            }
                        }
                    }
                }
            }
        }
        let rows = idx[0].len();
        let dtype = table.dtype();
        let mut sum: Option<Tensor<B, 2>> = None;
        for k in 0..4 {
            let i = Tensor::<B, 1, Int>::from_data(
                TensorData::new(std::mem::take(&mut idx[k]), [rows]),
                &device,
            );
            let wt = Tensor::<B, 2>::from_data(
                TensorData::new(std::mem::take(&mut wts[k]), [rows, 1]),
                (&device, DType::F32),
            )
            .cast(dtype);
            let term = table.clone().select(0, i) * wt;
            sum = Some(match sum {
                None => term,
                Some(s) => s + term,
            });
        }
        sum.expect("four corners")
    }
}

/// torch.linspace(start, end, steps) in f32: the first half counts up from `start`, the second
/// half down from `end` (ATen's kernel), so both ends are exact.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

impl<B: ModelBackend> VisionAttention<B> {
    /// Attention within each segment of rows. Segments of equal length are batched together.
    fn forward(
        &self,
        x: Tensor<B, 2>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
        segs: &Segments,
    ) -> Tensor<B, 2> {
        let [rows, d] = x.dims();
        let nh = self.num_heads;
        let hd = d / nh;
        let device = x.device();
        let qkv = self.qkv.forward(x).reshape([rows, 3, nh, hd]);
        let rope = |t: Tensor<B, 3>| -> Tensor<B, 3> {
            apply_rotary(
                t,
                cos.clone().unsqueeze_dim(1),
                sin.clone().unsqueeze_dim(1),
            )
        };
        let q = rope(qkv.clone().narrow(1, 0, 1).reshape([rows, nh, hd]));
        let k = rope(qkv.clone().narrow(1, 1, 1).reshape([rows, nh, hd]));
        let v = qkv.narrow(1, 2, 1).reshape([rows, nh, hd]);
        let scale = (hd as f64).powf(-0.5);
        // Group segments by length: one batched attention per distinct length.
        let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for &(s, e) in segs {
            if e > s {
                by_len.entry(e - s).or_default().push(s);
            }
        }
        let mut outs = Vec::new();
        let mut placed: Vec<i64> = Vec::with_capacity(rows);
        for (len, starts) in by_len {
            let idx: Vec<i64> = starts
                .iter()
                .flat_map(|&s| (s..s + len).map(|r| r as i64))
                .collect();
            placed.extend(&idx);
            let n = starts.len();
            let it = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n * len]), &device);
            let take = |t: &Tensor<B, 3>| {
                t.clone()
                    .select(0, it.clone())
                    .reshape([n, len, nh, hd])
                    .swap_dims(1, 2)
            };
            let o = attention(take(&q), take(&k), take(&v), None, scale); // [n, nh, len, hd]
            outs.push(o.swap_dims(1, 2).reshape([n * len, d]));
        }
        let out = Tensor::cat(outs, 0);
        let mut inverse = vec![0i64; rows];
        for (pos, &r) in placed.iter().enumerate() {
            inverse[r as usize] = pos as i64;
        }
        let inverse = Tensor::<B, 1, Int>::from_data(TensorData::new(inverse, [rows]), &device);
        self.proj.forward(out.select(0, inverse))
    }
}

/// transformers `get_window_index`: the order of merged tokens that makes each window contiguous,
/// and the window segments in rows (merged tokens x merge unit). Windows are `window_size /
/// (patch * merge)` merged tokens square, padded at the bottom/right; empty windows are dropped.
pub fn window_index(grid_thw: &[[usize; 3]], cfg: &VisionConfig) -> (Vec<usize>, Segments) {
    let sms = cfg.spatial_merge_size;
    let unit = sms * sms;
    let Some(window) = cfg.window_size else {
        // No windows: merged tokens in order, one segment per temporal patch.
        let n = grid_thw
            .iter()
            .map(|g| g[0] * (g[1] / sms) * (g[2] / sms))
            .sum();
        return ((0..n).collect(), frame_segments(grid_thw));
    };
    let ws = window / sms / cfg.patch_size;
    let mut index = Vec::new();
    let mut segs = Vec::new();
    let mut offset = 0usize;
    let mut row = 0usize;
    for &[t, h, w] in grid_thw {
        let (lh, lw) = (h / sms, w / sms);
        let nwh = (lh + ws - lh % ws) / ws;
        let nww = (lw + ws - lw % ws) / ws;
        for ti in 0..t {
            for wy in 0..nwh {
                for wx in 0..nww {
                    let mut n = 0;
                    for y in wy * ws..(wy + 1) * ws {
                        for x in wx * ws..(wx + 1) * ws {
                            if y < lh && x < lw {
                                index.push(offset + ti * lh * lw + y * lw + x);
                                n += 1;
                            }
                        }
                    }
                    if n > 0 {
                        segs.push((row, row + n * unit));
                        row += n * unit;
                    }
                }
            }
        }
        offset += t * lh * lw;
    }
    (index, segs)
}

/// Full-attention segments: one per temporal patch of each medium (h*w rows each).
pub fn frame_segments(grid_thw: &[[usize; 3]]) -> Segments {
    let mut segs = Vec::new();
    let mut row = 0;
    for &[t, h, w] in grid_thw {
        for _ in 0..t {
            segs.push((row, row + h * w));
            row += h * w;
        }
    }
    segs
}

/// 2D rotary embedding of the vision tower: per patch, frequencies (row * inv_freq, col *
/// inv_freq) with inv_freq over head_dim/2 (theta 10000), duplicated to head_dim; rows in the
/// merge-block order of the patch rows, then permuted by `order`. Returns (cos, sin) [rows, head_dim] in f32.
fn vision_rope<B: Backend>(
    grid_thw: &[[usize; 3]],
    cfg: &VisionConfig,
    order: &[i64],
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let hd = cfg.head_dim();
    let dim = hd / 2;
    let inv_freq: Vec<f32> = (0..dim / 2)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / dim as f32))
        .collect();
    let sms = cfg.spatial_merge_size;
    let mut freqs: Vec<Vec<f32>> = Vec::new();
    for &[t, h, w] in grid_thw {
        let mut frame = Vec::with_capacity(h * w);
        for bh in 0..h / sms {
            for bw in 0..w / sms {
                for mh in 0..sms {
                    for mw in 0..sms {
                        let (r, c) = ((bh * sms + mh) as f32, (bw * sms + mw) as f32);
                        let mut f: Vec<f32> = inv_freq.iter().map(|&i| r * i).collect();
                        f.extend(inv_freq.iter().map(|&i| c * i));
                        frame.push(f);
                    }
                }
            }
        }
        for _ in 0..t {
            freqs.extend(frame.iter().cloned());
        }
    }
    let rows = order.len();
    let mut cos = Vec::with_capacity(rows * hd);
    let mut sin = Vec::with_capacity(rows * hd);
    for &r in order {
        let f = &freqs[r as usize];
        for k in 0..hd {
            let a = f[k % dim];
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let mk = |v: Vec<f32>| {
        Tensor::<B, 2>::from_data(TensorData::new(v, [rows, hd]), (device, DType::F32))
    };
    (mk(cos), mk(sin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Family, NormKind};

    fn cfg() -> VisionConfig {
        VisionConfig {
            depth: 1,
            hidden_size: 32,
            num_heads: 2,
            intermediate_size: 64,
            patch_size: 14,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
            in_channels: 3,
            out_hidden_size: 64,
            family: Family::Qwen2_5Vl,
            norm: NormKind::Rms,
            hidden_act: Activation::Silu,
            mlp: VisionMlpKind::Gated,
            patch_bias: false,
            window_size: Some(112),
            fullatt_block_indexes: vec![],
            tokens_per_second: 2.0,
            num_position_embeddings: None,
            deepstack_visual_indexes: vec![],
            rms_norm_eps: 1e-6,
        }
    }

    #[test]
    fn window_index_pads_and_drops_empty_windows() {
        // grid 8x12 patches -> 4x6 merged tokens; windows of 4x4 merged: one full (4x4) and one
        // partial (4x2) per row of windows, plus a fully padded row of windows (dropped).
        let (idx, segs) = window_index(&[[1, 8, 12]], &cfg());
        assert_eq!(idx.len(), 24);
        assert_eq!(segs, vec![(0, 64), (64, 96)]);
        // First window: merged tokens (0..4) x (0..4) row-major.
        assert_eq!(&idx[..5], &[0, 1, 2, 3, 6]);
        // Second window starts at column 4.
        assert_eq!(&idx[16..18], &[4, 5]);
    }

    #[test]
    fn window_index_offsets_temporal_patches() {
        let (idx, segs) = window_index(&[[2, 4, 4]], &cfg());
        assert_eq!(idx, (0..8).collect::<Vec<_>>());
        assert_eq!(segs, vec![(0, 16), (16, 32)]);
    }
}
