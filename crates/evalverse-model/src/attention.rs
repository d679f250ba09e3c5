//! Scaled dot-product attention, softmax(q k^T * scale + mask) v over [batch, heads, len, dim],
//! with scores and softmax in f32 whatever the inputs' dtype, and a memory-bounded backward.
//!
//! The scores are computed one batch element and one chunk of query rows at a time (at most
//! `ATTENTION_CHUNK_ELEMS` score elements; each row's softmax is independent of the others, so
//! the result is the same). Under autodiff, burn's composite ops would keep every chunk's scores
//! and probabilities for the backward pass: O(L^2) memory per layer (../shared/BURN_NOTES.md
//! point 4; 2,300 tokens x 28 heads is 590 MB of f32 scores per copy per layer).
//! Under `Autodiff<B, C>`, `crate::ops::ModelBackend` records it as one operation of its own instead:
//! the forward keeps only q, k, v and the output (O(L * d)); the backward recomputes each chunk's
//! probabilities P = softmax(q k^T * scale + mask) and forms, as FlashAttention's backward does,
//!
//! ```text
//! D  = rowsum(dO * O)          dV = sum over chunks P^T dO
//! dS = P * (dO V^T - D)        dQ = scale dS K        dK = sum over chunks scale dS^T q
//! ```
//!
//! (Recomputing P with burn's softmax is faster on Flex than exp(S - lse) from a saved
//! log-sum-exp: one fused pass instead of two; measured in BENCHMARKS.md.) The mask is a constant:
//! no gradient flows to it.
//!
//! Shapes are chosen for burn Flex's fast paths (measured at [8 heads, 1024 rows, 2048 keys]):
//! adding a mask broadcast over heads to [b, h, rows, keys] takes 157-186 ms on the strided
//! broadcast path and 44 ms as [h, rows * keys] + [1, rows * keys], so each batch element's
//! scores are viewed that way; the scale multiplies q ([rows, head_dim]) before the product.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};

use crate::ops::ModelBackend;

/// Largest score matrix (elements, over heads x query rows x keys of one batch element) one
/// attention call materialises: 2^24 (64 MiB in f32). Longer inputs are computed in chunks of
/// query rows.
pub const ATTENTION_CHUNK_ELEMS: usize = 1 << 24;

/// softmax(q k^T * scale + mask) v over [batch, heads, len, head_dim] (see the module docs).
pub fn attention<B: ModelBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4>>,
    scale: f64,
) -> Tensor<B, 4> {
    B::scaled_dot_attention(q, k, v, mask, scale)
}

/// Chunks of query rows, (start, rows) pairs covering 0..lq, each with at most `max_elems`
/// score elements over `heads` x rows x `lk` (one batch element's heads, or the whole batch's).
fn chunks(heads: usize, lq: usize, lk: usize, max_elems: usize) -> Vec<(usize, usize)> {
    let rows = (max_elems / (heads * lk).max(1)).clamp(1, lq.max(1));
    (0..lq)
        .step_by(rows)
        .map(|s| (s, rows.min(lq - s)))
        .collect()
}

/// Batch element `b` of a [batch, ...] tensor (a batch of 1 is shared by every element).
fn batch_item<B: Backend>(t: &Tensor<B, 4>, b: usize) -> Tensor<B, 4> {
    if t.dims()[0] == 1 {
        t.clone()
    } else {
        t.clone().narrow(0, b, 1)
    }
}

/// Rows start..start+n of a mask whose `m` rows repeat down the query rows (row r reads mask
/// row r mod m): the grouped-query layout stacks the query heads sharing a KV head as blocks of
/// len_q rows, each with the same mask rows.
fn periodic_rows<B: Backend>(mask: &Tensor<B, 4>, start: usize, n: usize) -> Tensor<B, 4> {
    let m = mask.dims()[2];
    let mut pieces = Vec::new();
    let mut r = start;
    while r < start + n {
        let take = (m - r % m).min(start + n - r);
        pieces.push(mask.clone().narrow(2, r % m, take));
        r += take;
    }
    if pieces.len() == 1 {
        pieces.pop().expect("one piece")
    } else {
        Tensor::cat(pieces, 2)
    }
}

/// The masked probabilities softmax(q k^T + mask) in f32 for one batch element's chunk: `q` is
/// [1, h, rows, d], already scaled; `k_t` [1, h, d, keys]; `mask` this element's [1, 1, m,
/// keys] (m = 1: every row; else query row r reads mask row r mod m), from query row `start`.
fn probs<B: Backend>(
    q: Tensor<B, 4>,
    k_t: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    start: usize,
) -> Tensor<B, 4> {
    let [_, h, n, _] = q.dims();
    let lk = k_t.dims()[3];
    let s = q.matmul(k_t).cast(DType::F32);
    let s = match mask {
        None => s,
        // Broadcast along the leading dimension only (Flex's fast path; see the module docs).
        Some(m) if m.dims()[2] == 1 => {
            (s.reshape([h * n, lk]) + m.clone().reshape([1, lk])).reshape([1, h, n, lk])
        }
        Some(m) => (s.reshape([h, n * lk]) + periodic_rows(m, start, n).reshape([1, n * lk]))
            .reshape([1, h, n, lk]),
    };
    softmax(s, 3)
}

/// The attention's output, one batch element and one chunk of query rows at a time (at most
/// `max_elems` score elements each): what inference runs, and the forward of the autodiff
/// operation.
pub fn attention_forward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    scale: f64,
    max_elems: usize,
) -> Tensor<B, 4> {
    let [b, h, lq, _] = q.dims();
    let lk = k.dims()[2];
    if let Some(m) = mask {
        let [mb, _, mr, mk] = m.dims();
        assert!(
            (mb == 1 || mb == b) && lq % mr == 0 && mk == lk,
            "attention mask {:?} for queries {:?} and {lk} keys",
            m.dims(),
            q.dims()
        );
    }
    let dtype = q.dtype();
    let q = q * scale;
    let k_t = k.swap_dims(2, 3);
    let rows = chunks(h, lq, lk, max_elems);
    let per_item: Vec<Tensor<B, 4>> = (0..b)
        .map(|i| {
            let (q_i, k_i, v_i) = (batch_item(&q, i), batch_item(&k_t, i), batch_item(&v, i));
            let m_i = mask.map(|m| batch_item(m, i));
            let outs: Vec<Tensor<B, 4>> = rows
                .iter()
                .map(|&(start, n)| {
                    let p = probs(
                        q_i.clone().narrow(2, start, n),
                        k_i.clone(),
                        m_i.as_ref(),
                        start,
                    );
                    p.cast(dtype).matmul(v_i.clone())
                })
                .collect();
            Tensor::cat(outs, 2)
        })
        .collect();
    Tensor::cat(per_item, 0)
}

/// The composite attention with at most `max_elems` score elements per chunk of query rows,
/// written with burn's ops only (the reference the tests and the benchmark compare with: under
/// autodiff burn records and keeps every op of it).
pub fn attention_chunked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4>>,
    scale: f64,
    max_elems: usize,
) -> Tensor<B, 4> {
    let [b, h, lq, _] = q.dims();
    let dtype = q.dtype();
    let k_t = k.swap_dims(2, 3);
    let chunks: Vec<Tensor<B, 4>> = chunks(b * h, lq, k_t.dims()[3], max_elems)
        .into_iter()
        .map(|(start, n)| {
            let s = q
                .clone()
                .narrow(2, start, n)
                .matmul(k_t.clone())
                .cast(DType::F32)
                * scale;
            let s = match &mask {
                Some(m) if m.dims()[2] == 1 => s + m.clone(),
                Some(m) => s + periodic_rows(m, start, n),
                None => s,
            };
            softmax(s, 3).cast(dtype).matmul(v.clone())
        })
        .collect();
    Tensor::cat(chunks, 2)
}

/// What the backward pass needs of the forward: O(L * d), no score matrix.
#[derive(Clone, Debug)]
pub struct AttentionSaved<B: Backend> {
    pub q: Tensor<B, 4>,
    pub k: Tensor<B, 4>,
    pub v: Tensor<B, 4>,
    pub out: Tensor<B, 4>,
    pub mask: Option<Tensor<B, 4>>,
    pub scale: f64,
    pub max_elems: usize,
}

/// Gradients of q, k and v (each only when `need` asks for it) from the output's gradient,
/// recomputing the probabilities chunk by chunk (the forward's own chunks, so the same values).
/// dK and dV are summed over the chunks in f32.
pub fn attention_backward<B: Backend>(
    s: &AttentionSaved<B>,
    grad_out: Tensor<B, 4>,
    need: [bool; 3],
) -> [Option<Tensor<B, 4>>; 3] {
    let [b, h, lq, _] = s.q.dims();
    let lk = s.k.dims()[2];
    let dtype = s.q.dtype();
    let [need_q, need_k, need_v] = need;
    let q = s.q.clone() * s.scale;
    let k_t = s.k.clone().swap_dims(2, 3);
    let v_t = s.v.clone().swap_dims(2, 3);
    let rows = chunks(h, lq, lk, s.max_elems);
    let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..b {
        let (q_i, k_i, kt_i, vt_i) = (
            batch_item(&q, i),
            batch_item(&s.k, i),
            batch_item(&k_t, i),
            batch_item(&v_t, i),
        );
        let (go_i, out_i) = (batch_item(&grad_out, i), batch_item(&s.out, i));
        let m_i = s.mask.as_ref().map(|m| batch_item(m, i));
        let (mut dq_i, mut dk_i, mut dv_i) = (Vec::new(), None, None);
        let add = |acc: Option<Tensor<B, 4>>, x: Tensor<B, 4>| {
            let x = x.cast(DType::F32);
            Some(match acc {
                Some(a) => a + x,
                None => x,
            })
        };
        for &(start, n) in &rows {
            let q_c = q_i.clone().narrow(2, start, n);
            let go = go_i.clone().narrow(2, start, n);
            let p = probs(q_c.clone(), kt_i.clone(), m_i.as_ref(), start);
            if need_v {
                dv_i = add(
                    dv_i,
                    p.clone().cast(dtype).swap_dims(2, 3).matmul(go.clone()),
                );
            }
            if need_q || need_k {
                // D_i = sum_j dO_ij O_ij = sum_j P_ij dP_ij, the softmax backward's row term,
                // per chunk: a contiguous [1, h, rows, 1] (a narrowed one is Flex's slow path).
                let o_c = out_i.clone().narrow(2, start, n).cast(DType::F32);
                let d_c = (go.clone().cast(DType::F32) * o_c).sum_dim(3);
                let dp = go.matmul(vt_i.clone()).cast(DType::F32);
                // dS without the scale: dQ = scale dS K, dK = scale dS^T q = dS^T (scale q).
                let ds = (p * (dp - d_c)).cast(dtype);
                if need_q {
                    dq_i.push(ds.clone().matmul(k_i.clone()) * s.scale);
                }
                if need_k {
                    dk_i = add(dk_i, ds.swap_dims(2, 3).matmul(q_c));
                }
            }
        }
        if need_q {
            dq.push(Tensor::cat(dq_i, 2));
        }
        dk.extend(dk_i.map(|t| t.cast(dtype)));
        dv.extend(dv_i.map(|t| t.cast(dtype)));
    }
    // K and V shared by the batch (batch dimension 1) get the sum over its elements.
    let fold = |parts: Vec<Tensor<B, 4>>, like: &Tensor<B, 4>| {
        let g = Tensor::cat(parts, 0);
        if like.dims()[0] == 1 && b > 1 {
            g.sum_dim(0)
        } else {
            g
        }
    };
    [
        need_q.then(|| Tensor::cat(dq, 0)),
        need_k.then(|| fold(dk, &s.k)),
        need_v.then(|| fold(dv, &s.v)),
    ]
}

#[derive(Debug)]
struct AttentionOp;

impl<B: Backend> Backward<B, 3> for AttentionOp {
    type State = AttentionSaved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let grad = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(grad));
        let need = [0, 1, 2].map(|i| ops.parents[i].is_some());
        let out = attention_backward(&ops.state, grad, need);
        for (parent, g) in ops.parents.into_iter().zip(out) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<B>(node.id, g.into_primitive().tensor());
            }
        }
    }
}

/// `ModelBackend::scaled_dot_attention` of `Autodiff<B, C>`: one operation whose backward is
/// `attention_backward`; untracked inputs (the frozen vision tower) take the inner forward.
pub(crate) fn autodiff_attention<B: ModelBackend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<B, C>, 4>,
    k: Tensor<Autodiff<B, C>, 4>,
    v: Tensor<Autodiff<B, C>, 4>,
    mask: Option<Tensor<Autodiff<B, C>, 4>>,
    scale: f64,
) -> Tensor<Autodiff<B, C>, 4> {
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let inner = crate::ops::inner::<B, 4>;
    let mask = mask.map(|m| inner(m.into_primitive().tensor().primitive));
    let out = match AttentionOp
        .prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (q, k, v) = (inner(q.primitive), inner(k.primitive), inner(v.primitive));
            let max_elems = ATTENTION_CHUNK_ELEMS;
            let out = attention_forward(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.as_ref(),
                scale,
                max_elems,
            );
            let saved = AttentionSaved {
                q,
                k,
                v,
                out: out.clone(),
                mask,
                scale,
                max_elems,
            };
            prep.finish(saved, out.into_primitive().tensor())
        }
        OpsKind::UnTracked(prep) => {
            let out = B::scaled_dot_attention(
                inner(q.primitive),
                inner(k.primitive),
                inner(v.primitive),
                mask,
                scale,
            );
            prep.finish(out.into_primitive().tensor())
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    type B = crate::Cpu;
    type A = Autodiff<B>;

    fn max_rel(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
        let scale: f32 = b.clone().abs().max().into_scalar();
        let diff: f32 = (a - b).abs().max().into_scalar();
        diff / scale.max(1e-12)
    }

    fn random(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
        B::seed(&Default::default(), seed);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// None, a causal mask per row, and a key-padding mask broadcast over the query rows.
    fn masks(b: usize, l: usize) -> Vec<Option<Tensor<B, 4>>> {
        let device = Default::default();
        let causal = crate::model::causal_mask::<B>(&vec![vec![true; l]; b], 0, &device);
        let pad: Vec<f32> = (0..b * l)
            .map(|i| {
                if i / l == 1 && i % l < 3 {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        let pad = Tensor::<B, 4>::from_data(TensorData::new(pad, [b, 1, 1, l]), &device);
        vec![None, Some(causal), Some(pad)]
    }

    #[test]
    fn chunked_attention_equals_the_full_one() {
        let (b, h, l, d) = (2, 3, 11, 8);
        let (q, k, v) = (
            random([b, h, l, d], 1),
            random([b, h, l, d], 2),
            random([b, h, l, d], 3),
        );
        for mask in masks(b, l) {
            let full = attention_chunked(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
                0.35,
                usize::MAX,
            );
            // 4 query rows per chunk (b * h * l * 4 elements): chunks of 4, 4 and 3 rows.
            let chunked = attention_chunked(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
                0.35,
                b * h * l * 4,
            );
            assert_eq!(chunked.dims(), [b, h, l, d]);
            assert!(max_rel(chunked, full.clone()) < 1e-6);
            // The same chunks, one batch element at a time, as inference and training run.
            let out = attention_forward(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.as_ref(),
                0.35,
                h * l * 4,
            );
            assert!(max_rel(out, full) < 1e-6);
        }
    }

    /// Gradients of sum(attention(q, k, v) * w) for q, k, v through burn's autodiff of `f`.
    fn grads(
        f: impl Fn(Tensor<A, 4>, Tensor<A, 4>, Tensor<A, 4>, Option<Tensor<A, 4>>) -> Tensor<A, 4>,
        qkv: [&Tensor<B, 4>; 3],
        mask: Option<&Tensor<B, 4>>,
        w: &Tensor<B, 4>,
    ) -> (Tensor<B, 4>, [Tensor<B, 4>; 3]) {
        let [q, k, v] = qkv.map(|t| Tensor::<A, 4>::from_inner(t.clone()).require_grad());
        let m = mask.map(|m| Tensor::<A, 4>::from_inner(m.clone()));
        let out = f(q.clone(), k.clone(), v.clone(), m);
        let g = (out.clone() * Tensor::from_inner(w.clone()))
            .sum()
            .backward();
        let grad = |t: &Tensor<A, 4>| t.grad(&g).expect("a gradient");
        (out.inner(), [grad(&q), grad(&k), grad(&v)])
    }

    #[test]
    fn the_attention_op_has_the_composite_gradients() {
        // GQA-shaped rows (lq != lk) and square ones, with every mask.
        for (b, h, lq, lk, d) in [(2, 3, 11, 11, 8), (2, 2, 14, 7, 4)] {
            let q = random([b, h, lq, d], 4);
            let (k, v) = (random([b, h, lk, d], 5), random([b, h, lk, d], 6));
            let w = random([b, h, lq, d], 7);
            let mut cases = masks(b, lk);
            if lq != lk {
                // The causal and padding masks above are [.., lk, lk]; keep those broadcast over rows.
                cases.retain(|m| m.as_ref().is_none_or(|m| m.dims()[2] == 1));
            }
            for mask in cases {
                let composite = |q, k, v, m| attention_chunked(q, k, v, m, 0.5, usize::MAX);
                let (o_ref, g_ref) = grads(composite, [&q, &k, &v], mask.as_ref(), &w);
                let (o, g) = grads(
                    |q, k, v, m| attention(q, k, v, m, 0.5),
                    [&q, &k, &v],
                    mask.as_ref(),
                    &w,
                );
                assert!(max_rel(o, o_ref) < 1e-6);
                for (name, (a, r)) in ["q", "k", "v"].iter().zip(g.into_iter().zip(g_ref.clone())) {
                    let e = max_rel(a, r);
                    assert!(e < 1e-5, "d{name}: relative difference {e}");
                }
                // The backward in chunks of 3 query rows (uneven last chunk) gives the same.
                let max_elems = h * lk * 3;
                let out = attention_forward(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    mask.as_ref(),
                    0.5,
                    max_elems,
                );
                let saved = AttentionSaved {
                    q: q.clone(),
                    k: k.clone(),
                    v: v.clone(),
                    out,
                    mask: mask.clone(),
                    scale: 0.5,
                    max_elems,
                };
                let chunked = attention_backward(&saved, w.clone(), [true; 3]);
                for (name, (a, r)) in ["q", "k", "v"].iter().zip(chunked.into_iter().zip(g_ref)) {
                    let e = max_rel(a.expect("asked for"), r);
                    assert!(e < 1e-5, "chunked d{name}: relative difference {e}");
                }
            }
        }
    }

    #[test]
    fn grouped_query_rows_read_the_mask_rows_periodically() {
        // [b, kv, rep * l, d] queries with the [b, 1, l, l] causal mask, as the decoder passes
        // them, against the composite with the mask repeated rep times down the rows; chunks of
        // 5 rows cross the blocks of l = 7.
        let (b, kv, rep, l, d) = (2, 2, 3, 7, 4);
        let q = random([b, kv, rep * l, d], 19);
        let (k, v) = (random([b, kv, l, d], 20), random([b, kv, l, d], 21));
        let w = random([b, kv, rep * l, d], 22);
        let mask = masks(b, l).remove(1).unwrap();
        let repeated = mask.clone().repeat_dim(2, rep);
        let composite = |q, k, v, _| {
            attention_chunked(
                q,
                k,
                v,
                Some(Tensor::from_inner(repeated.clone())),
                0.5,
                usize::MAX,
            )
        };
        let (o_ref, g_ref) = grads(composite, [&q, &k, &v], None, &w);
        let (o, g) = grads(
            |q, k, v, m| attention(q, k, v, m, 0.5),
            [&q, &k, &v],
            Some(&mask),
            &w,
        );
        assert!(max_rel(o, o_ref.clone()) < 1e-6);
        for (name, (a, r)) in ["q", "k", "v"].iter().zip(g.into_iter().zip(g_ref)) {
            let e = max_rel(a, r);
            assert!(e < 1e-5, "d{name}: relative difference {e}");
        }
        let chunked = attention_forward(q, k, v, Some(&mask), 0.5, kv * l * 5);
        assert!(max_rel(chunked, o_ref) < 1e-6);
    }

    #[test]
    fn keys_shared_by_the_batch_get_the_summed_gradient() {
        let q = random([2, 2, 6, 4], 15);
        let (k, v) = (random([1, 2, 6, 4], 16), random([1, 2, 6, 4], 17));
        let w = random([2, 2, 6, 4], 18);
        let composite = |q, k, v, m| attention_chunked(q, k, v, m, 0.5, usize::MAX);
        let (o_ref, g_ref) = grads(composite, [&q, &k, &v], None, &w);
        let (o, g) = grads(
            |q, k, v, m| attention(q, k, v, m, 0.5),
            [&q, &k, &v],
            None,
            &w,
        );
        assert!(max_rel(o, o_ref) < 1e-6);
        for (name, (a, r)) in ["q", "k", "v"].iter().zip(g.into_iter().zip(g_ref)) {
            assert_eq!(a.dims(), r.dims(), "d{name}");
            let e = max_rel(a, r);
            assert!(e < 1e-5, "d{name}: relative difference {e}");
        }
    }

    #[test]
    fn only_the_tracked_inputs_get_gradients() {
        let (q, k, v) = (
            random([1, 2, 5, 4], 8),
            random([1, 2, 5, 4], 9),
            random([1, 2, 5, 4], 10),
        );
        let qa = Tensor::<A, 4>::from_inner(q).require_grad();
        let (ka, va) = (
            Tensor::<A, 4>::from_inner(k),
            Tensor::<A, 4>::from_inner(v).require_grad(),
        );
        let g = attention(qa.clone(), ka.clone(), va.clone(), None, 0.5)
            .sum()
            .backward();
        assert!(qa.grad(&g).is_some() && va.grad(&g).is_some());
        assert!(ka.grad(&g).is_none());
        // Nothing tracked: the inner backend's attention, no graph.
        let (qn, kn, vn) = (qa.detach(), ka, va.detach());
        assert!(!attention(qn, kn, vn, None, 0.5).is_require_grad());
    }

    #[test]
    fn bf16_inputs_keep_bf16_gradients_near_the_f32_ones() {
        let (b, h, l, d) = (1, 2, 16, 8);
        let (q, k, v) = (
            random([b, h, l, d], 11),
            random([b, h, l, d], 12),
            random([b, h, l, d], 13),
        );
        let w = random([b, h, l, d], 14);
        let mask = masks(b, l).remove(1);
        let f = |q, k, v, m| attention(q, k, v, m, 0.35);
        let (_, g32) = grads(f, [&q, &k, &v], mask.as_ref(), &w);
        let half = |t: &Tensor<B, 4>| t.clone().cast(DType::BF16);
        let (o, g16) = grads(
            f,
            [&half(&q), &half(&k), &half(&v)],
            mask.as_ref(),
            &half(&w),
        );
        assert_eq!(o.dtype(), DType::BF16);
        for (name, (a, r)) in ["q", "k", "v"].iter().zip(g16.into_iter().zip(g32)) {
            assert_eq!(a.dtype(), DType::BF16, "d{name}");
            let e = max_rel(a.cast(DType::F32), r);
            assert!(e < 3e-2, "d{name}: bf16 vs f32 relative difference {e}");
        }
    }
}
