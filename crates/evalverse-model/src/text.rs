//! The Qwen2 text decoder of Qwen2.5-VL: token embedding, decoder layers (grouped-query attention
//! with q/k/v bias, multimodal RoPE with sections from config, RMSNorm, SwiGLU MLP), final norm.
//! A per-layer KV cache serves generation.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::config::TextConfig;
use crate::error::Result;
use crate::nn::{apply_rotary, attention, swiglu, tensor_as_stored, Linear, RmsNorm};
use crate::ops::ModelBackend;
use crate::weights::Weights;

#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: SelfAttention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

#[derive(Module, Debug)]
pub struct TextModel<B: Backend> {
    /// [vocab, hidden]
    pub embed_tokens: Param<Tensor<B, 2>>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    #[module(skip)]
    pub cfg: TextConfig,
}

/// Keys and values of past positions, per layer: [batch, kv_heads, past_len, head_dim].
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
        }
    }
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dims()[2])
            .unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<B: ModelBackend> TextModel<B> {
    pub fn load(w: &mut Weights, cfg: &TextConfig, device: &B::Device) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let eps = cfg.rms_norm_eps;
        let embed = tensor_as_stored::<B, 2>(
            w.take("model.embed_tokens.weight", &[cfg.vocab_size, d])?,
            device,
        );
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), d, eps, device)?,
                self_attn: SelfAttention {
                    q_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.q_proj"),
                        d,
                        nh * hd,
                        true,
                        device,
                    )?,
                    k_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.k_proj"),
                        d,
                        nkv * hd,
                        true,
                        device,
                    )?,
                    v_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.v_proj"),
                        d,
                        nkv * hd,
                        true,
                        device,
                    )?,
                    o_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.o_proj"),
                        nh * hd,
                        d,
                        false,
                        device,
                    )?,
                    num_heads: nh,
                    num_kv_heads: nkv,
                },
                post_attention_layernorm: RmsNorm::load(
                    w,
                    &format!("{p}.post_attention_layernorm"),
                    d,
                    eps,
                    device,
                )?,
                mlp: Mlp {
                    gate_proj: Linear::load(
                        w,
                        &format!("{p}.mlp.gate_proj"),
                        d,
                        cfg.intermediate_size,
                        false,
                        device,
                    )?,
                    up_proj: Linear::load(
                        w,
                        &format!("{p}.mlp.up_proj"),
                        d,
                        cfg.intermediate_size,
                        false,
                        device,
                    )?,
                    down_proj: Linear::load(
                        w,
                        &format!("{p}.mlp.down_proj"),
                        cfg.intermediate_size,
                        d,
                        false,
                        device,
                    )?,
                },
            });
        }
        Ok(TextModel {
            embed_tokens: Param::from_tensor(embed).set_require_grad(false),
            layers,
            norm: RmsNorm::load(w, "model.norm", d, eps, device)?,
            cfg: cfg.clone(),
        })
    }

    /// Embeddings of token ids [batch, len] -> [batch, len, hidden].
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        burn::tensor::module::embedding(self.embed_tokens.val(), ids)
    }

    /// M-RoPE (cos, sin) for position ids [3][batch][len]: [batch, 1, len, head_dim] in f32.
    /// Dimension j of the head rotates with the axis of its section in `mrope_section * 2`.
    pub fn mrope(
        &self,
        pos: &[Vec<Vec<i64>>; 3],
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let hd = self.cfg.head_dim();
        let half = hd / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / self.cfg.rope_theta.powf((2 * i) as f64 / hd as f64))
            .collect();
        let mut axis_of = Vec::with_capacity(hd);
        for rep in 0..2 {
            let _ = rep;
            for (a, &n) in self.cfg.mrope_section.iter().enumerate() {
                axis_of.extend(std::iter::repeat_n(a, n));
            }
        }
        let (b, l) = (pos[0].len(), pos[0].first().map(Vec::len).unwrap_or(0));
        let mut cos = Vec::with_capacity(b * l * hd);
        let mut sin = Vec::with_capacity(b * l * hd);
        for bi in 0..b {
            for li in 0..l {
                for j in 0..hd {
                    let p = pos[axis_of[j]][bi][li] as f64;
                    // f32 product as transformers computes (inv_freq f32 @ positions f32).
                    let angle = (inv_freq[j % half] as f32) * (p as f32);
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let mk = |v: Vec<f32>| {
            Tensor::<B, 4>::from_data(TensorData::new(v, [b, 1, l, hd]), (device, DType::F32))
        };
        (mk(cos), mk(sin))
    }

    /// Run the decoder on embeddings [batch, len, hidden]; `mask` is additive [batch, 1, len, past+len].
    /// Returns the final-normed hidden states, and (when `all_hidden`) the embeddings followed by
    /// every layer's raw output.
    pub fn forward(
        &self,
        mut h: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        mut cache: Option<&mut KvCache<B>>,
        all_hidden: bool,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        let mut hidden = Vec::new();
        if all_hidden {
            hidden.push(h.clone());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let x = layer.input_layernorm.forward(h.clone());
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = h + layer.self_attn.forward(x, cos, sin, mask.clone(), slot);
            let x = layer.post_attention_layernorm.forward(h.clone());
            let m = &layer.mlp;
            h = h + m
                .down_proj
                .forward(swiglu(m.gate_proj.forward(x.clone()), m.up_proj.forward(x)));
            if all_hidden {
                hidden.push(h.clone());
            }
        }
        (self.norm.forward(h), hidden)
    }
}

impl<B: ModelBackend> SelfAttention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let [b, l, _] = x.dims();
        let (nh, nkv) = (self.num_heads, self.num_kv_heads);
        let hd = self.q_proj.d_out() / nh;
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, l, nh, hd])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, l, nkv, hd])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, l, nkv, hd])
            .swap_dims(1, 2);
        let q = apply_rotary(q, cos.clone(), sin.clone());
        let k = apply_rotary(k, cos.clone(), sin.clone());
        let (k, v) = match cache {
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                *slot = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        let rep = nh / nkv;
        let scale = (hd as f64).powf(-0.5);
        let o = if rep == 1 {
            attention(q, k, v, mask, scale)
        } else {
            // Grouped-query attention without repeating K and V (transformers' repeat_kv copies
            // the whole cache every decode step): the `rep` query heads sharing a KV head become
            // rows of one matrix, [b, kv, rep * l, hd]; the attention reads the [b, 1, l, keys]
            // mask's rows periodically (not `rep` copies kept by every layer for the backward).
            // Query head h reads KV head h / rep, as with repeat_kv.
            let qg = q.reshape([b, nkv, rep * l, hd]);
            attention(qg, k, v, mask, scale).reshape([b, nh, l, hd])
        };
        self.o_proj
            .forward(o.swap_dims(1, 2).reshape([b, l, nh * hd]))
    }
}
