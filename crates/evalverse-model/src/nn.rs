//! Building blocks with Hugging Face parameter names: Linear (weight held as [in, out], loaded
//! from HF's [out, in] by transposing once), RMSNorm (computed in f32, eps from config), the
//! rotate_half rotary form, and softmax attention with an additive mask. Norms, softmax and RoPE
//! run in f32 whatever the weights' dtype (../shared/BURN_NOTES.md point 1).

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::error::Result;
use crate::weights::Weights;

/// Transpose a 2-D tensor's data [rows, cols] -> [cols, rows] on the host, for any element size.
/// Weights are stored transposed once at load: a lazily transposed view would be copied to
/// contiguous memory by every matmul (measured: 72 ms per decode step for a 32000 x 512 head).
pub fn transpose_data(data: TensorData) -> TensorData {
    let dims = data.shape.dims::<2>();
    let (rows, cols) = (dims[0], dims[1]);
    let dtype = data.dtype;
    let size = dtype.size();
    let src = data.as_bytes();
    let mut out = vec![0u8; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * size;
            let to = (c * rows + r) * size;
            out[to..to + size].copy_from_slice(&src[from..from + size]);
        }
    }
    TensorData::from_bytes_vec(out, [cols, rows], dtype)
}

#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// [in, out]
    pub weight: Param<Tensor<B, 2>>,
    /// [out]
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Low-rank adapter, when this module is a LoRA target.
    pub lora: Option<LoraAdapter<B>>,
}

/// LoRA (Hu et al. 2021): y = W x + s * B(A(dropout(x))), s = alpha / r (rsLoRA, Kalajdzievski
/// 2023: alpha / sqrt(r)). Held as A [in, r] and B [r, out] (PEFT stores lora_A [r, in] and
/// lora_B [out, r]); computed as two small matmuls, never by forming W + BA, unless merged.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// [in, r]
    pub lora_a: Param<Tensor<B, 2>>,
    /// [r, out]
    pub lora_b: Param<Tensor<B, 2>>,
    pub scale: f64,
    pub dropout: f64,
    /// Dropout is applied only while training.
    pub training: bool,
    /// True after `merge`: W already holds s * A B and the adapter path is skipped.
    pub merged: bool,
}

/// `x W (+ bias)` with every leading dimension of x folded into the rows of one 2-D matmul.
/// burn's `linear` broadcasts W over x's leading dimensions as a batched matmul, which burn-flex
/// runs as one gemm per batch element, each reading all of W: a decode step of the
/// 152k-vocabulary head over b sequences read the 39 MB head b times (measured: judging time
/// independent of the batch size).
pub fn linear_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    if D <= 2 {
        return burn::tensor::module::linear(x, w, bias);
    }
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let y = burn::tensor::module::linear(x.reshape([rows, dims[D - 1]]), w, bias); // [rows, out]
    let mut shape = dims;
    shape[D - 1] = y.dims()[1];
    y.reshape(shape)
}

impl<B: Backend> Linear<B> {
    /// Load `{prefix}.weight` ([out, in] on disk) and optionally `{prefix}.bias`.
    pub fn load(
        w: &mut Weights,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        device: &B::Device,
    ) -> Result<Self> {
        let weight = transpose_data(w.take(&format!("{prefix}.weight"), &[d_out, d_in])?);
        let weight = Tensor::<B, 2>::from_data(weight, device);
        let bias = if bias {
            let b = w.take(&format!("{prefix}.bias"), &[d_out])?;
            Some(Param::from_tensor(Tensor::<B, 1>::from_data(b, device)).set_require_grad(false))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias,
            lora: None,
        })
    }

    /// A linear from an HF-layout weight [out, in] given as data (transposed once, on the host).
    pub fn from_hf_data(
        weight: TensorData,
        bias: Option<Tensor<B, 1>>,
        device: &B::Device,
    ) -> Self {
        Linear {
            weight: Param::from_tensor(Tensor::<B, 2>::from_data(transpose_data(weight), device))
                .set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            lora: None,
        }
    }

    pub fn d_in(&self) -> usize {
        self.weight.val().dims()[0]
    }
    pub fn d_out(&self) -> usize {
        self.weight.val().dims()[1]
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = linear_rows(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match &self.lora {
            Some(l) if !l.merged => {
                let x = if l.training && l.dropout > 0.0 {
                    // Inverted dropout; the backend RNG is seeded per training step, so a resumed
                    // run draws the same masks.
                    let keep = Tensor::<B, D>::random(
                        x.shape(),
                        burn::tensor::Distribution::Bernoulli(1.0 - l.dropout),
                        &x.device(),
                    );
                    x * keep / (1.0 - l.dropout)
                } else {
                    x
                };
                let a = l.lora_a.val();
                // LoRA weights may be f32 while the base is bf16: compute the branch in A's dtype.
                let dtype = y.dtype();
                let h = linear_rows(x.cast(a.dtype()), a, None);
                y + (linear_rows(h, l.lora_b.val(), None) * l.scale).cast(dtype)
            }
            _ => y,
        }
    }

    /// Attach a fresh adapter: A kaiming-uniform (a = sqrt(5), PEFT's default init), B zero, so the
    /// adapted model starts equal to the base. `seed` makes A reproducible.
    pub fn add_lora(&mut self, rank: usize, scale: f64, dropout: f64, seed: u64) {
        let (d_in, d_out) = (self.d_in(), self.d_out());
        let device = self.weight.val().device();
        // kaiming_uniform_(a=sqrt(5)) on lora_A [r, in]: bound = sqrt(6 / ((1 + a^2) * fan_in)) = 1/sqrt(in).
        let bound = 1.0 / (d_in as f64).sqrt();
        let mut rng = evalverse_data::rng::Rng::new(seed);
        let a: Vec<f32> = (0..d_in * rank)
            .map(|_| rng.range(-bound, bound) as f32)
            .collect();
        let a = Tensor::<B, 2>::from_data(
            burn::tensor::TensorData::new(a, [d_in, rank]),
            (&device, DType::F32),
        );
        let b = Tensor::<B, 2>::zeros([rank, d_out], (&device, DType::F32));
        self.lora = Some(LoraAdapter {
            lora_a: Param::from_tensor(a.require_grad()),
            lora_b: Param::from_tensor(b.require_grad()),
            scale,
            dropout,
            training: false,
            merged: false,
        });
    }

    /// Fold s * A B into W (for export or fast inference). No-op without an adapter or if merged.
    pub fn merge(&mut self) {
        self.fold(1.0);
    }

    /// Take s * A B back out of W.
    pub fn unmerge(&mut self) {
        self.fold(-1.0);
    }

    fn fold(&mut self, sign: f64) {
        let Some(l) = self.lora.as_mut() else { return };
        if l.merged == (sign > 0.0) {
            return;
        }
        let w = self.weight.val();
        let delta = l.lora_a.val().matmul(l.lora_b.val()) * (l.scale * sign);
        let merged = (w.clone().cast(DType::F32) + delta.detach()).cast(w.dtype());
        self.weight = Param::from_tensor(merged.detach()).set_require_grad(false);
        l.merged = sign > 0.0;
    }
}

#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn load(
        w: &mut Weights,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self> {
        let weight =
            Tensor::<B, 1>::from_data(w.take(&format!("{prefix}.weight"), &[dim])?, device);
        Ok(RmsNorm {
            weight: Param::from_tensor(weight).set_require_grad(false),
            eps,
        })
    }

    /// x * rsqrt(mean(x^2) + eps) in f32, cast back, then scaled by the weight (HF Qwen2RMSNorm).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let xf = x.cast(DType::F32);
        let var = xf.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = (xf * (var + self.eps).sqrt().recip()).cast(dtype);
        let shape: [usize; D] = std::array::from_fn(|i| {
            if i == D - 1 {
                self.weight.val().dims()[0]
            } else {
                1
            }
        });
        normed * self.weight.val().reshape(shape)
    }
}

/// x * cos + rotate_half(x) * sin, in f32, cast back to x's dtype.
pub fn apply_rotary<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    cos: Tensor<B, D>,
    sin: Tensor<B, D>,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let xf = x.cast(DType::F32);
    let last = xf.dims()[D - 1];
    let x1 = xf.clone().narrow(D - 1, 0, last / 2);
    let x2 = xf.clone().narrow(D - 1, last / 2, last / 2);
    let rot = Tensor::cat(vec![x2.neg(), x1], D - 1);
    (xf * cos + rot * sin).cast(dtype)
}

/// Largest score matrix (elements, over batch x heads x query rows x keys) one attention call
/// materialises: 2^24 (64 MiB in f32). Longer inputs are computed in chunks of query rows.
pub const ATTENTION_CHUNK_ELEMS: usize = 1 << 24;

/// softmax(q k^T * scale + mask) v over [batch, heads, len, head_dim]; softmax in f32.
/// `mask` is additive ([batch or 1, 1, len_q, len_k]; -inf where not allowed). The score matrix
/// exists for at most `ATTENTION_CHUNK_ELEMS` elements at a time (chunks of query rows; each
/// row's softmax is independent of the others, so the result is the same): a long video prefill
/// (4,000 tokens x 28 heads is 1.8 GB of f32 scores per layer) stays bounded. Under autodiff each
/// chunk's scores are still kept for the backward pass (see BURN_NOTES.md).
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4>>,
    scale: f64,
) -> Tensor<B, 4> {
    attention_chunked(q, k, v, mask, scale, ATTENTION_CHUNK_ELEMS)
}

/// `attention` with at most `max_elems` score elements per chunk of query rows.
pub fn attention_chunked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4>>,
    scale: f64,
    max_elems: usize,
) -> Tensor<B, 4> {
    let [b, h, lq, _] = q.dims();
    let lk = k.dims()[2];
    let rows = (max_elems / (b * h * lk).max(1)).max(1);
    if rows >= lq {
        return attention_full(q, k, v, mask, scale);
    }
    let chunks: Vec<Tensor<B, 4>> = (0..lq)
        .step_by(rows)
        .map(|start| {
            let n = rows.min(lq - start);
            let m = mask.as_ref().map(|m| {
                if m.dims()[2] == 1 {
                    m.clone()
                } else {
                    m.clone().narrow(2, start, n)
                }
            });
            attention_full(
                q.clone().narrow(2, start, n),
                k.clone(),
                v.clone(),
                m,
                scale,
            )
        })
        .collect();
    Tensor::cat(chunks, 2)
}

fn attention_full<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4>>,
    scale: f64,
) -> Tensor<B, 4> {
    let dtype = q.dtype();
    let scores = q.matmul(k.swap_dims(2, 3)).cast(DType::F32) * scale;
    let scores = match mask {
        Some(m) => scores + m,
        None => scores,
    };
    softmax(scores, 3).cast(dtype).matmul(v)
}

/// Repeat KV heads for grouped-query attention: [b, kv, l, d] -> [b, kv*n_rep, l, d], each KV head
/// repeated n_rep times in a row (k0,k0,k1,k1), as transformers' repeat_kv.
pub fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kv, l, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, n_rep, l, d])
        .reshape([b, kv * n_rep, l, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    type B = crate::Cpu;

    fn max_diff(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn chunked_attention_equals_the_full_one() {
        let device = Default::default();
        let (b, h, l, d) = (2, 3, 11, 8);
        let r = |shape: [usize; 4]| {
            Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
        };
        let (q, k, v) = (r([b, h, l, d]), r([b, h, l, d]), r([b, h, l, d]));
        // Causal mask per row, and a key-padding mask broadcast over the query rows.
        let causal = crate::model::causal_mask::<B>(&[vec![true; l]], 0, &device);
        let pad: Vec<f32> = (0..b * l)
            .map(|i| {
                if i / l == 1 && i % l < 3 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let pad = Tensor::<B, 4>::from_data(TensorData::new(pad, [b, 1, 1, l]), &device);
        for mask in [None, Some(causal), Some(pad)] {
            let full = attention_full(q.clone(), k.clone(), v.clone(), mask.clone(), 0.35);
            // 4 query rows per chunk (b * h * l * 4 elements): chunks of 4, 4 and 3 rows.
            let chunked =
                attention_chunked(q.clone(), k.clone(), v.clone(), mask, 0.35, b * h * l * 4);
            assert_eq!(chunked.dims(), [b, h, l, d]);
            let diff = max_diff(full, chunked);
            assert!(diff < 1e-6, "max difference {diff}");
        }
    }
}
