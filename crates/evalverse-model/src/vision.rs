//! The Qwen2.5-VL vision tower (transformers `Qwen2_5_VisionTransformerPretrainedModel`):
//! 3D patch embedding (a Conv3d whose kernel equals its stride, i.e. a linear over the 1176-value
//! patch rows), 2D rotary position embedding over (row, column), window attention in 4x4 windows
//! of merged tokens with full attention per frame in `fullatt_block_indexes`, RMSNorm + SwiGLU
//! blocks, and the patch merger (2x2 patches -> one token of the text width).

use burn::module::Module;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::config::VisionConfig;
use crate::error::Result;
use crate::nn::{apply_rotary, attention, swiglu, Linear, RmsNorm};
use crate::ops::ModelBackend;
use crate::weights::Weights;

#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub num_heads: usize,
}

#[derive(Module, Debug)]
pub struct VisionMlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct VisionBlock<B: Backend> {
    pub norm1: RmsNorm<B>,
    pub norm2: RmsNorm<B>,
    pub attn: VisionAttention<B>,
    pub mlp: VisionMlp<B>,
}

#[derive(Module, Debug)]
pub struct PatchMerger<B: Backend> {
    pub ln_q: RmsNorm<B>,
    /// mlp.0
    pub mlp_0: Linear<B>,
    /// mlp.2 (mlp.1 is the GELU)
    pub mlp_2: Linear<B>,
}

#[derive(Module, Debug)]
pub struct VisionTower<B: Backend> {
    /// patch_embed.proj, as a linear over flattened [C, T, p, p] rows.
    pub patch_embed: Linear<B>,
    pub blocks: Vec<VisionBlock<B>>,
    pub merger: PatchMerger<B>,
    #[module(skip)]
    pub cfg: VisionConfig,
}

/// Row segments [start, end) that attend among themselves.
type Segments = Vec<(usize, usize)>;

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
        let patch_embed = Linear::from_hf_data(conv, None, device);
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let p = format!("visual.blocks.{i}");
            blocks.push(VisionBlock {
                norm1: RmsNorm::load(w, &format!("{p}.norm1"), d, eps, device)?,
                norm2: RmsNorm::load(w, &format!("{p}.norm2"), d, eps, device)?,
                attn: VisionAttention {
                    qkv: Linear::load(w, &format!("{p}.attn.qkv"), d, 3 * d, true, device)?,
                    proj: Linear::load(w, &format!("{p}.attn.proj"), d, d, true, device)?,
                    num_heads: cfg.num_heads,
                },
                mlp: VisionMlp {
                    gate_proj: Linear::load(
                        w,
                        &format!("{p}.mlp.gate_proj"),
                        d,
                        cfg.intermediate_size,
                        true,
                        device,
                    )?,
                    up_proj: Linear::load(
                        w,
                        &format!("{p}.mlp.up_proj"),
                        d,
                        cfg.intermediate_size,
                        true,
                        device,
                    )?,
                    down_proj: Linear::load(
                        w,
                        &format!("{p}.mlp.down_proj"),
                        cfg.intermediate_size,
                        d,
                        true,
                        device,
                    )?,
                },
            });
        }
        let m = cfg.spatial_merge_size * cfg.spatial_merge_size;
        let merger = PatchMerger {
            ln_q: RmsNorm::load(w, "visual.merger.ln_q", d, eps, device)?,
            mlp_0: Linear::load(w, "visual.merger.mlp.0", d * m, d * m, true, device)?,
            mlp_2: Linear::load(
                w,
                "visual.merger.mlp.2",
                d * m,
                cfg.out_hidden_size,
                true,
                device,
            )?,
        };
        Ok(VisionTower {
            patch_embed,
            blocks,
            merger,
            cfg: cfg.clone(),
        })
    }

    /// Encode patch rows `pixels` [rows, C*T*p*p] of the media in `grid_thw` (one (t, h, w) per
    /// image or video, in order) into merged tokens [rows / merge^2, out_hidden_size], in the
    /// original (row-major per frame, 2x2 merge-block) order.
    pub fn forward(&self, pixels: Tensor<B, 2>, grid_thw: &[[usize; 3]]) -> Tensor<B, 2> {
        let device = pixels.device();
        let cfg = &self.cfg;
        let unit = cfg.spatial_merge_size * cfg.spatial_merge_size;
        let rows = pixels.dims()[0];
        // Pixels in the weights' dtype, as transformers' patch embedding casts them.
        let pixels = pixels.cast(self.patch_embed.weight.val().dtype());
        let hidden = self.patch_embed.forward(pixels); // [rows, d]
        let (window_index, window_segments) = window_index(grid_thw, cfg);
        let frame_segments = frame_segments(grid_thw);
        let order: Vec<i64> = window_index
            .iter()
            .flat_map(|&g| (0..unit).map(move |u| (g * unit + u) as i64))
            .collect();
        let order_t =
            Tensor::<B, 1, Int>::from_data(TensorData::new(order.clone(), [rows]), &device);
        let mut h = hidden.select(0, order_t.clone());
        let (cos, sin) = vision_rope::<B>(grid_thw, cfg, &order, &device); // [rows, head_dim]
        for (i, blk) in self.blocks.iter().enumerate() {
            let segs = if cfg.fullatt_block_indexes.contains(&i) {
                &frame_segments
            } else {
                &window_segments
            };
            let x = blk.norm1.forward(h.clone());
            h = h + blk.attn.forward(x, &cos, &sin, segs);
            let x = blk.norm2.forward(h.clone());
            let mlp = &blk.mlp;
            h = h + mlp.down_proj.forward(swiglu(
                mlp.gate_proj.forward(x.clone()),
                mlp.up_proj.forward(x),
            ));
        }
        // Merger: groups of `unit` consecutive rows (a 2x2 block) -> one token.
        let d = cfg.hidden_size;
        let x = self.merger.ln_q.forward(h).reshape([rows / unit, d * unit]);
        let merged = self
            .merger
            .mlp_2
            .forward(gelu(self.merger.mlp_0.forward(x)));
        // Undo the window permutation (argsort of window_index).
        let mut reverse = vec![0i64; window_index.len()];
        for (pos, &g) in window_index.iter().enumerate() {
            reverse[g] = pos as i64;
        }
        let reverse =
            Tensor::<B, 1, Int>::from_data(TensorData::new(reverse, [rows / unit]), &device);
        merged.select(0, reverse)
    }
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
    let ws = cfg.window_size / sms / cfg.patch_size;
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
fn frame_segments(grid_thw: &[[usize; 3]]) -> Segments {
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
            window_size: 112,
            fullatt_block_indexes: vec![],
            tokens_per_second: 2.0,
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
