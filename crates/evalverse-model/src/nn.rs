//! Building blocks with Hugging Face parameter names: Linear (weight held as [in, out], loaded
//! from HF's [out, in] by transposing once) with its LoRA adapter, RMSNorm (computed in f32, eps
//! from config), SwiGLU, the rotate_half rotary form and grouped-query KV repetition (attention
//! itself: `crate::attention`). Norms and RoPE run in f32 whatever the weights' dtype
//! (../shared/BURN_NOTES.md point 1). LoRA's input projection, RMSNorm and SwiGLU go through
//! `crate::ops::ModelBackend`, which gives them a backward of their own under autodiff.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

pub use crate::attention::{attention, attention_chunked, ATTENTION_CHUNK_ELEMS};
use crate::config::{Activation, NormKind};
use crate::error::Result;
use crate::ops::ModelBackend;
use crate::weights::Weights;

/// A tensor holding `data` in the data's own dtype. burn's `Tensor::from_data(data, device)`
/// converts to the device's default float dtype (f32): a bf16 checkpoint loaded that way is held
/// and computed in f32.
pub fn tensor_as_stored<B: Backend, const D: usize>(
    data: TensorData,
    device: &B::Device,
) -> Tensor<B, D> {
    let dtype = data.dtype;
    Tensor::from_data(data, (device, dtype))
}

/// Transpose a 2-D tensor's data [rows, cols] -> [cols, rows] on the host, for any element size.
/// Weights are stored transposed once at load: a lazily transposed view would be copied to
/// contiguous memory by every matmul (measured: 72 ms per decode step for a 32000 x 512 head).
pub fn transpose_data(data: TensorData) -> TensorData {
    let [rows, cols] = data.shape.dims::<2>();
    let dtype = data.dtype;
    TensorData::from_bytes_vec(
        transpose_bytes(data.as_bytes(), rows, cols, dtype.size()),
        [cols, rows],
        dtype,
    )
}

/// The bytes of a [rows, cols] matrix of `size`-byte elements, transposed to [cols, rows]: in
/// 64 x 64 tiles (both sides stay in cache), the output's rows split over the machine's cores.
/// A per-element `copy_from_slice` of a run-time size is one memmove call per element: with it
/// and a second host copy per weight, loading a 1.64B-parameter 7B-wide slice took 16.8-18.6 s
/// (4.1-4.8 s now; BENCHMARKS.md).
pub fn transpose_bytes(src: &[u8], rows: usize, cols: usize, size: usize) -> Vec<u8> {
    assert_eq!(
        src.len(),
        rows * cols * size,
        "transpose of [{rows}, {cols}] x {size} bytes"
    );
    match size {
        1 => transpose_elems::<1>(src, rows, cols),
        2 => transpose_elems::<2>(src, rows, cols),
        4 => transpose_elems::<4>(src, rows, cols),
        8 => transpose_elems::<8>(src, rows, cols),
        other => panic!("transpose of {other}-byte elements"),
    }
}

fn transpose_elems<const S: usize>(src: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    const TILE: usize = 64;
    // Zeroed by the allocator (fresh pages), not by a pass over the buffer.
    let mut out = vec![0u8; rows * cols * S];
    if out.is_empty() {
        return out;
    }
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(cols.div_ceil(TILE))
        .max(1);
    // Output rows (the input's columns) per thread, a whole number of tiles.
    let per = cols.div_ceil(threads).div_ceil(TILE) * TILE;
    std::thread::scope(|scope| {
        for (t, part) in out.chunks_mut(per * rows * S).enumerate() {
            scope.spawn(move || {
                let c_start = t * per;
                let c_end = (c_start + per).min(cols);
                for c0 in (c_start..c_end).step_by(TILE) {
                    for r0 in (0..rows).step_by(TILE) {
                        for c in c0..(c0 + TILE).min(c_end) {
                            let o = (c - c_start) * rows;
                            for r in r0..(r0 + TILE).min(rows) {
                                let i = (r * cols + c) * S;
                                let j = (o + r) * S;
                                part[j..j + S].copy_from_slice(&src[i..i + S]);
                            }
                        }
                    }
                }
            });
        }
    });
    out
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
    let (x, dims) = fold_rows(x);
    unfold_rows(burn::tensor::module::linear(x, w, bias), dims) // [rows, out] -> [.., out]
}

/// x [.., cols] as [rows, cols] (every leading dimension folded into the rows), with x's shape.
fn fold_rows<B: Backend, const D: usize>(x: Tensor<B, D>) -> (Tensor<B, 2>, [usize; D]) {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    (x.reshape([rows, dims[D - 1]]), dims)
}

/// y [rows, cols'] back to the leading dimensions of `dims`, with cols' last.
fn unfold_rows<B: Backend, const D: usize>(y: Tensor<B, 2>, mut dims: [usize; D]) -> Tensor<B, D> {
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// silu(gate) * up (Qwen's MLP before down_proj), through `ModelBackend::swiglu`.
pub fn swiglu<B: ModelBackend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    let (gate, dims) = fold_rows(gate);
    let (up, _) = fold_rows(up);
    unfold_rows(B::swiglu(gate, up), dims)
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
        let weight = w.take_transposed(&format!("{prefix}.weight"), [d_out, d_in])?;
        let weight = tensor_as_stored::<B, 2>(weight, device);
        let bias = if bias {
            let b = w.take(&format!("{prefix}.bias"), &[d_out])?;
            Some(Param::from_tensor(tensor_as_stored::<B, 1>(b, device)).set_require_grad(false))
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
            weight: Param::from_tensor(tensor_as_stored::<B, 2>(transpose_data(weight), device))
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

impl<B: ModelBackend> Linear<B> {
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
                // LoRA weights may be f32 while the base is bf16: the branch runs in A's dtype;
                // `lora_down` keeps x in its own dtype for the backward, not an f32 copy per
                // projection (crate::ops).
                let dtype = y.dtype();
                let (x, dims) = fold_rows(x);
                let h = unfold_rows(B::lora_down(x, l.lora_a.val()), dims);
                y + (linear_rows(h, l.lora_b.val(), None) * l.scale).cast(dtype)
            }
            _ => y,
        }
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
        let weight = tensor_as_stored::<B, 1>(w.take(&format!("{prefix}.weight"), &[dim])?, device);
        Ok(RmsNorm {
            weight: Param::from_tensor(weight).set_require_grad(false),
            eps,
        })
    }
}

impl<B: ModelBackend> RmsNorm<B> {
    /// x * rsqrt(mean(x^2) + eps) in f32, cast back, then scaled by the weight (HF Qwen2RMSNorm),
    /// through `ModelBackend::rms_norm`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let (x, dims) = fold_rows(x);
        unfold_rows(B::rms_norm(x, self.weight.val(), self.eps), dims)
    }
}

/// LayerNorm with weight and bias (torch.nn.LayerNorm, biased variance): computed in f32 and
/// cast back to x's dtype, as torch does for a bf16 input.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn load(
        w: &mut Weights,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self> {
        let weight = tensor_as_stored::<B, 1>(w.take(&format!("{prefix}.weight"), &[dim])?, device);
        let bias = tensor_as_stored::<B, 1>(w.take(&format!("{prefix}.bias"), &[dim])?, device);
        Ok(LayerNorm {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: Param::from_tensor(bias).set_require_grad(false),
            eps,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let xf = x.cast(DType::F32);
        let mean = xf.clone().mean_dim(D - 1);
        let centred = xf - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = centred / (var + self.eps).sqrt();
        let w = self.weight.val().cast(DType::F32).unsqueeze::<D>();
        let b = self.bias.val().cast(DType::F32).unsqueeze::<D>();
        (normed * w + b).cast(dtype)
    }
}

/// The norm of a vision block or merger: RMSNorm (Qwen2.5-VL) or LayerNorm (Qwen2-VL, Qwen3-VL).
#[derive(Module, Debug)]
pub enum Norm<B: Backend> {
    Rms(RmsNorm<B>),
    Layer(LayerNorm<B>),
}

impl<B: Backend> Norm<B> {
    pub fn load(
        w: &mut Weights,
        prefix: &str,
        dim: usize,
        kind: NormKind,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self> {
        Ok(match kind {
            NormKind::Rms => Norm::Rms(RmsNorm::load(w, prefix, dim, eps, device)?),
            NormKind::Layer => Norm::Layer(LayerNorm::load(w, prefix, dim, eps, device)?),
        })
    }
}

impl<B: ModelBackend> Norm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}

/// The activation `act` applied to x, in x's dtype (transformers' ACT2FN entries).
pub fn activate<B: Backend, const D: usize>(x: Tensor<B, D>, act: Activation) -> Tensor<B, D> {
    use burn::tensor::activation::{gelu, sigmoid, silu};
    match act {
        Activation::Silu => silu(x),
        Activation::Gelu => gelu(x),
        Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
        Activation::GeluTanh => {
            // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715)
                * (2.0 / std::f64::consts::PI).sqrt();
            x * (inner.tanh() + 1.0) * 0.5
        }
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

    #[test]
    fn transpose_bytes_puts_element_r_c_at_c_r() {
        // Shapes around the 64-element tiles and the per-thread split, 2- and 4-byte elements.
        for (rows, cols) in [(1, 1), (3, 130), (130, 67), (65, 64), (64, 129)] {
            for size in [2usize, 4] {
                let src: Vec<u8> = (0..rows * cols * size)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect();
                let out = transpose_bytes(&src, rows, cols, size);
                for r in 0..rows {
                    for c in 0..cols {
                        let i = (r * cols + c) * size;
                        let j = (c * rows + r) * size;
                        assert_eq!(
                            out[j..j + size],
                            src[i..i + size],
                            "[{rows}, {cols}] x {size}"
                        );
                    }
                }
            }
        }
    }
}
