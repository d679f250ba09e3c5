//! The operations of the model that carry a backward pass of their own under autodiff, so that a
//! training step keeps only what its backward needs: attention (`crate::attention`), LoRA's
//! input projection x A, SwiGLU silu(gate) * up, and RMSNorm. Inner backends (Flex, CUDA, wgpu)
//! run the forward as burn ops; `Autodiff<B, C>` records each as one operation.
//!
//! Why, counted per token and decoder layer of a bf16 base (hidden h, MLP width i), what burn's
//! autodiff of the composite ops keeps for the backward (each op saves its inputs, as PyTorch's
//! autograd does; ../shared/BURN_NOTES.md):
//! - LoRA computes in A's dtype (f32, as PEFT does): x.cast(f32) A keeps an f32 copy of x per
//!   adapted projection, 4h bytes each for q, k, v, o, gate, up and 4i for down, although q, k, v
//!   (and gate, up) read the same x. `lora_down` keeps x in its own dtype, one buffer shared by
//!   the projections that read it, and casts it again in the backward: 24h + 4i -> 6h + 2i.
//! - silu(gate) * up keeps gate (sigmoid's input), sigmoid(gate) (the product's factor), silu and
//!   up: 8i bytes. `swiglu` keeps gate and up and recomputes the sigmoid: 4i.
//! - RMSNorm in f32 keeps the f32 copy of x: 4h per norm. `rms_norm` keeps x in its own dtype and
//!   the per-row 1 / rms: 2h.
//! At Qwen2.5-VL-7B's widths (h 3,584, i 18,944) that is 356 KB -> 164 KB per token and layer,
//! with what else a layer keeps (attention's q, k, v, output); measured on 7B-wide slices: 170 KB
//! (BENCHMARKS.md). The values are those of the composite ops (the backward of `swiglu` and
//! `rms_norm` computes in f32).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};

use crate::attention::{attention_forward, ATTENTION_CHUNK_ELEMS};

/// A backend with the operations the model runs (see the module docs). Inner backends take the
/// defaults; `Autodiff<B, C>` gives each its own backward.
pub trait ModelBackend: Backend {
    /// softmax(q k^T * scale + mask) v; `mask` is additive ([batch or 1, 1, m, len_k], f32;
    /// f32::MIN or -inf where not allowed) with m = 1 (one row for every query), len_q, or a
    /// divisor of len_q whose rows repeat: query row r reads mask row r mod m (grouped-query
    /// attention's [b, kv, rep * len, d] layout shares one [b, 1, len, len_k] mask, not `rep`
    /// copies of it kept per layer).
    fn scaled_dot_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4>>,
        scale: f64,
    ) -> Tensor<Self, 4> {
        attention_forward(q, k, v, mask.as_ref(), scale, ATTENTION_CHUNK_ELEMS)
    }

    /// LoRA's input projection x A: x [rows, in] in any float dtype, A [in, r]; computed and
    /// returned in A's dtype (f32 adapters on a bf16 base, as PEFT casts x to lora_A's dtype).
    fn lora_down(x: Tensor<Self, 2>, a: Tensor<Self, 2>) -> Tensor<Self, 2> {
        x.cast(a.dtype()).matmul(a)
    }

    /// silu(gate) * up over [rows, i], in the inputs' dtype (Qwen's MLP before down_proj).
    fn swiglu(gate: Tensor<Self, 2>, up: Tensor<Self, 2>) -> Tensor<Self, 2> {
        silu(gate) * up
    }

    /// RMSNorm over the last dimension of x [rows, d]: (x * rsqrt(mean(x^2) + eps)) in f32, cast
    /// back to x's dtype, times weight [d] (HF Qwen2RMSNorm).
    fn rms_norm(x: Tensor<Self, 2>, weight: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        let (normed, _) = rms_normed(x, eps);
        let d = weight.dims()[0];
        normed * weight.reshape([1, d])
    }
}

impl ModelBackend for burn::backend::Flex {}

#[cfg(feature = "cuda")]
impl ModelBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl ModelBackend for burn::backend::Wgpu {}

/// A training backend: autodiff over an inner backend, both with the model's operations.
pub trait TrainBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: ModelBackend> + ModelBackend
{
}

impl<T> TrainBackend for T
where
    T: burn::tensor::backend::AutodiffBackend + ModelBackend,
    T::InnerBackend: ModelBackend,
{
}

/// (x * r) cast back to x's dtype and r = 1 / sqrt(mean(x^2) + eps) [rows, 1] in f32.
fn rms_normed<B: Backend>(x: Tensor<B, 2>, eps: f64) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let dtype = x.dtype();
    let xf = x.cast(DType::F32);
    let r = (xf.clone().powi_scalar(2).mean_dim(1) + eps).sqrt().recip();
    ((xf * r.clone()).cast(dtype), r)
}

/// An inner-backend tensor from an autodiff primitive's inner one.
pub(crate) fn inner<B: Backend, const D: usize>(p: B::FloatTensorPrimitive) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

/// The output gradient of an operation's node as an inner-backend tensor.
fn consume<B: Backend, const D: usize, S, const N: usize>(
    ops: &Ops<S, N>,
    grads: &mut Gradients,
) -> Tensor<B, D> {
    inner(grads.consume::<B>(&ops.node))
}

#[derive(Debug)]
struct LoraDownOp;

/// x in its own dtype (when A needs a gradient), A (when x needs one).
type LoraDownState<B> = (Option<Tensor<B, 2>>, Option<Tensor<B, 2>>, DType);

impl<B: Backend> Backward<B, 2> for LoraDownOp {
    type State = LoraDownState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad: Tensor<B, 2> = consume(&ops, grads); // [rows, r], A's dtype
        let (x, a, x_dtype) = ops.state;
        let [px, pa] = ops.parents;
        if let (Some(node), Some(a)) = (px, a) {
            let dx = grad.clone().matmul(a.transpose()).cast(x_dtype);
            grads.register::<B>(node.id, primitive(dx));
        }
        if let (Some(node), Some(x)) = (pa, x) {
            let da = x.cast(grad.dtype()).transpose().matmul(grad);
            grads.register::<B>(node.id, primitive(da));
        }
    }
}

#[derive(Debug)]
struct SwigluOp;

impl<B: Backend> Backward<B, 2> for SwigluOp {
    /// gate and up, in their dtype.
    type State = (Tensor<B, 2>, Tensor<B, 2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad: Tensor<B, 2> = consume(&ops, grads);
        let (gate, up) = ops.state;
        let dtype = gate.dtype();
        let [pg, pu] = ops.parents;
        let g = gate.cast(DType::F32);
        let dy = grad.cast(DType::F32);
        let s = sigmoid(g.clone());
        if let Some(node) = pu {
            // d up = dy * silu(gate)
            let du = (dy.clone() * g.clone() * s.clone()).cast(dtype);
            grads.register::<B>(node.id, primitive(du));
        }
        if let Some(node) = pg {
            // d gate = dy * up * silu'(gate), silu'(g) = s (1 + g (1 - s))
            let ds = s.clone() * (g * (s.neg() + 1.0) + 1.0);
            let dg = (dy * up.cast(DType::F32) * ds).cast(dtype);
            grads.register::<B>(node.id, primitive(dg));
        }
    }
}

#[derive(Debug)]
struct RmsNormOp;

/// x in its dtype, r = 1 / rms [rows, 1] f32, the weight [d].
type RmsNormState<B> = (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1>);

impl<B: Backend> Backward<B, 2> for RmsNormOp {
    type State = RmsNormState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad: Tensor<B, 2> = consume(&ops, grads); // [rows, d], x's dtype
        let (x, r, w) = ops.state;
        let dtype = x.dtype();
        let d = w.dims()[0];
        let [px, pw] = ops.parents;
        let n = x.cast(DType::F32) * r.clone(); // [rows, d] f32
        if let Some(node) = pw {
            let dw = (grad.clone() * n.clone().cast(dtype))
                .sum_dim(0)
                .reshape([d]);
            grads.register::<B>(node.id, primitive(dw));
        }
        if let Some(node) = px {
            // n = x r, r = (mean(x^2) + eps)^(-1/2):  dx = r (dn - n mean(dn * n))
            let dn = (grad * w.reshape([1, d])).cast(DType::F32);
            let proj = (dn.clone() * n.clone()).mean_dim(1);
            let dx = ((dn - n * proj) * r).cast(dtype);
            grads.register::<B>(node.id, primitive(dx));
        }
    }
}

impl<B: ModelBackend, C: CheckpointStrategy> ModelBackend for Autodiff<B, C> {
    fn scaled_dot_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4>>,
        scale: f64,
    ) -> Tensor<Self, 4> {
        crate::attention::autodiff_attention::<B, C>(q, k, v, mask, scale)
    }

    fn lora_down(x: Tensor<Self, 2>, a: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let (x, a) = (x.into_primitive().tensor(), a.into_primitive().tensor());
        let (x_tracked, a_tracked) = (x.is_tracked(), a.is_tracked());
        let out = match LoraDownOp
            .prepare::<C>([x.node.clone(), a.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xi, ai) = (inner::<B, 2>(x.primitive), inner::<B, 2>(a.primitive));
                let x_dtype = xi.dtype();
                let out = B::lora_down(xi.clone(), ai.clone());
                let state = (a_tracked.then_some(xi), x_tracked.then_some(ai), x_dtype);
                prep.finish(state, primitive(out))
            }
            OpsKind::UnTracked(prep) => prep.finish(primitive(B::lora_down(
                inner(x.primitive),
                inner(a.primitive),
            ))),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn swiglu(gate: Tensor<Self, 2>, up: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
        let out = match SwigluOp
            .prepare::<C>([gate.node.clone(), up.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (g, u) = (inner::<B, 2>(gate.primitive), inner::<B, 2>(up.primitive));
                let out = B::swiglu(g.clone(), u.clone());
                prep.finish((g, u), primitive(out))
            }
            OpsKind::UnTracked(prep) => prep.finish(primitive(B::swiglu(
                inner(gate.primitive),
                inner(up.primitive),
            ))),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn rms_norm(x: Tensor<Self, 2>, weight: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        let (x, w) = (
            x.into_primitive().tensor(),
            weight.into_primitive().tensor(),
        );
        let out = match RmsNormOp
            .prepare::<C>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xi, wi) = (inner::<B, 2>(x.primitive), inner::<B, 1>(w.primitive));
                let (normed, r) = rms_normed(xi.clone(), eps);
                let d = wi.dims()[0];
                let out = normed * wi.clone().reshape([1, d]);
                prep.finish((xi, r, wi), primitive(out))
            }
            OpsKind::UnTracked(prep) => prep.finish(primitive(B::rms_norm(
                inner(x.primitive),
                inner(w.primitive),
                eps,
            ))),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    type B = crate::Cpu;
    type A = Autodiff<B>;

    fn random<const D: usize>(shape: [usize; D], seed: u64, dtype: DType) -> Tensor<B, D> {
        B::seed(&Default::default(), seed);
        Tensor::<B, D>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
            .cast(dtype)
    }

    fn max_rel<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
        let (a, b) = (a.cast(DType::F32), b.cast(DType::F32));
        let scale: f32 = b.clone().abs().max().into_scalar();
        let diff: f32 = (a - b).abs().max().into_scalar();
        diff / scale.max(1e-12)
    }

    /// f(x, y), and the gradients of sum(f(x, y) * w) for x and y, both tracked.
    fn grads<const DX: usize, const DY: usize>(
        f: impl Fn(Tensor<A, DX>, Tensor<A, DY>) -> Tensor<A, 2>,
        x: &Tensor<B, DX>,
        y: &Tensor<B, DY>,
        w: &Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, DX>, Tensor<B, DY>) {
        let xa = Tensor::<A, DX>::from_inner(x.clone()).require_grad();
        let ya = Tensor::<A, DY>::from_inner(y.clone()).require_grad();
        let out = f(xa.clone(), ya.clone());
        let w = Tensor::from_inner(w.clone().cast(out.dtype()));
        let g = (out.clone() * w).cast(DType::F32).sum().backward();
        let (gx, gy) = (xa.grad(&g).expect("dx"), ya.grad(&g).expect("dy"));
        (out.inner(), gx, gy)
    }

    /// RMSNorm as burn's composite ops compute it (what `rms_norm` replaces).
    fn rms_norm_composite(x: Tensor<A, 2>, w: Tensor<A, 1>, eps: f64) -> Tensor<A, 2> {
        let dtype = x.dtype();
        let xf = x.cast(DType::F32);
        let var = xf.clone().powi_scalar(2).mean_dim(1);
        let normed = (xf * (var + eps).sqrt().recip()).cast(dtype);
        let d = w.dims()[0];
        normed * w.reshape([1, d])
    }

    #[test]
    fn lora_down_has_the_composite_gradients_and_keeps_the_input_dtype() {
        let a = random([12, 3], 2, DType::F32);
        let w = random([7, 3], 3, DType::F32);
        for dtype in [DType::F32, DType::BF16] {
            let x = random([7, 12], 1, dtype);
            let composite = |x: Tensor<A, 2>, a: Tensor<A, 2>| x.cast(a.dtype()).matmul(a);
            let (o_ref, dx_ref, da_ref) = grads(composite, &x, &a, &w);
            let (o, dx, da) = grads(|x, a| A::lora_down(x, a), &x, &a, &w);
            assert_eq!(o.dtype(), DType::F32);
            assert_eq!(dx.dtype(), dtype, "dx in x's dtype");
            assert!(max_rel(o, o_ref) < 1e-6);
            assert!(max_rel(dx, dx_ref) < 1e-6, "{dtype:?} dx");
            assert!(max_rel(da, da_ref) < 1e-6, "{dtype:?} da");
        }
    }

    #[test]
    fn lora_down_gives_gradients_only_to_tracked_inputs() {
        let (x, a) = (
            random([5, 4], 4, DType::BF16),
            random([4, 2], 5, DType::F32),
        );
        let xa = Tensor::<A, 2>::from_inner(x);
        let aa = Tensor::<A, 2>::from_inner(a).require_grad();
        let g = A::lora_down(xa.clone(), aa.clone()).sum().backward();
        assert!(aa.grad(&g).is_some());
        assert!(xa.grad(&g).is_none());
        // Nothing tracked: the inner backend's product, no graph.
        assert!(!A::lora_down(xa, aa.detach()).is_require_grad());
    }

    #[test]
    fn swiglu_has_the_composite_gradients() {
        let (gate, up) = (
            random([6, 10], 6, DType::F32),
            random([6, 10], 7, DType::F32),
        );
        let w = random([6, 10], 8, DType::F32);
        let composite = |g: Tensor<A, 2>, u: Tensor<A, 2>| silu(g) * u;
        let (o_ref, dg_ref, du_ref) = grads(composite, &gate, &up, &w);
        let (o, dg, du) = grads(|g, u| A::swiglu(g, u), &gate, &up, &w);
        assert!(max_rel(o, o_ref.clone()) < 1e-6);
        assert!(max_rel(dg, dg_ref.clone()) < 1e-5, "d gate");
        assert!(max_rel(du, du_ref.clone()) < 1e-5, "d up");
        // bf16 inputs: bf16 gradients near the f32 ones.
        let half = |t: &Tensor<B, 2>| t.clone().cast(DType::BF16);
        let (o, dg, du) = grads(|g, u| A::swiglu(g, u), &half(&gate), &half(&up), &w);
        assert_eq!(
            (o.dtype(), dg.dtype(), du.dtype()),
            (DType::BF16, DType::BF16, DType::BF16)
        );
        assert!(max_rel(o, o_ref) < 2e-2);
        assert!(max_rel(dg, dg_ref) < 3e-2, "bf16 d gate");
        assert!(max_rel(du, du_ref) < 3e-2, "bf16 d up");
    }

    #[test]
    fn rms_norm_has_the_composite_gradients() {
        let x = random([5, 16], 9, DType::F32) * 3.0 + 0.5;
        let weight = random([16], 10, DType::F32);
        let w = random([5, 16], 11, DType::F32);
        let composite = |x, wt| rms_norm_composite(x, wt, 1e-6);
        let (o_ref, dx_ref, dw_ref) = grads(composite, &x, &weight, &w);
        let (o, dx, dw) = grads(|x, wt| A::rms_norm(x, wt, 1e-6), &x, &weight, &w);
        assert!(max_rel(o, o_ref.clone()) < 1e-6);
        assert!(max_rel(dx, dx_ref.clone()) < 1e-5, "dx");
        assert!(max_rel(dw, dw_ref) < 1e-5, "d weight");
        // A frozen weight (the model's case) and bf16 input: dx in bf16 near the f32 one.
        let xa = Tensor::<A, 2>::from_inner(x.cast(DType::BF16)).require_grad();
        let wa = Tensor::<A, 1>::from_inner(weight.cast(DType::BF16));
        let out = A::rms_norm(xa.clone(), wa.clone(), 1e-6);
        assert_eq!(out.dtype(), DType::BF16);
        let g = (out.clone() * Tensor::from_inner(w.cast(DType::BF16)))
            .cast(DType::F32)
            .sum()
            .backward();
        let dx = xa.grad(&g).expect("dx");
        assert!(wa.grad(&g).is_none());
        assert_eq!(dx.dtype(), DType::BF16);
        assert!(max_rel(out.inner(), o_ref) < 2e-2);
        assert!(max_rel(dx, dx_ref) < 3e-2, "bf16 dx");
    }
}
