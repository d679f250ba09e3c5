//! The text decoder of the Qwen-VL family: token embedding, decoder layers (grouped-query
//! attention, multimodal RoPE with sections from config, RMSNorm, SwiGLU MLP), final norm. The
//! Qwen2 decoder (Qwen2-VL, Qwen2.5-VL) has q/k/v biases and chunked M-RoPE; the Qwen3 decoder
//! (Qwen3-VL) has no biases, an RMSNorm over each head of q and k before RoPE, interleaved M-RoPE
//! and DeepStack features added after its first layers. A per-layer KV cache serves generation.

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
    /// RMSNorm over each query / key head before RoPE (Qwen3).
    pub q_norm: Option<RmsNorm<B>>,
    pub k_norm: Option<RmsNorm<B>>,
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
            let head_norm = |w: &mut Weights, name: &str| -> Result<Option<RmsNorm<B>>> {
                if cfg.qk_norm {
                    Ok(Some(RmsNorm::load(
                        w,
                        &format!("{p}.self_attn.{name}"),
                        hd,
                        eps,
                        device,
                    )?))
                } else {
                    Ok(None)
                }
            };
            let q_norm = head_norm(w, "q_norm")?;
            let k_norm = head_norm(w, "k_norm")?;
            layers.push(DecoderLayer {
                input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), d, eps, device)?,
                self_attn: SelfAttention {
                    q_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.q_proj"),
                        d,
                        nh * hd,
                        cfg.qkv_bias,
                        device,
                    )?,
                    k_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.k_proj"),
                        d,
                        nkv * hd,
                        cfg.qkv_bias,
                        device,
                    )?,
                    v_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.v_proj"),
                        d,
                        nkv * hd,
                        cfg.qkv_bias,
                        device,
                    )?,
                    o_proj: Linear::load(
                        w,
                        &format!("{p}.self_attn.o_proj"),
                        nh * hd,
                        d,
                        cfg.o_bias,
                        device,
                    )?,
                    q_norm,
                    k_norm,
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
    /// Frequency j < head_dim/2 (and its copy j + head_dim/2) rotates with the axis `mrope_axes`
    /// gives it.
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
        let axes = mrope_axes(&self.cfg);
        let axis_of: Vec<usize> = axes.iter().chain(&axes).copied().collect();
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
        h: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        cache: Option<&mut KvCache<B>>,
        all_hidden: bool,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        self.forward_deepstack(h, cos, sin, mask, cache, all_hidden, &[])
    }

    /// `forward` with DeepStack (Qwen3-VL): `deepstack[i]` [batch, len, hidden] (zero away from
    /// the visual positions) is added to the output of layer i, and the hidden states returned
    /// for layer i include it (what layer i + 1 reads).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_deepstack(
        &self,
        mut h: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        mut cache: Option<&mut KvCache<B>>,
        all_hidden: bool,
        deepstack: &[Tensor<B, 3>],
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
            if let Some(extra) = deepstack.get(i) {
                let dtype = h.dtype();
                h = h + extra.clone().cast(dtype);
            }
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
        let head_norm = |t: Tensor<B, 4>, n: &Option<RmsNorm<B>>| match n {
            Some(n) => n.forward(t),
            None => t,
        };
        let q = head_norm(
            self.q_proj.forward(x.clone()).reshape([b, l, nh, hd]),
            &self.q_norm,
        )
        .swap_dims(1, 2);
        let k = head_norm(
            self.k_proj.forward(x.clone()).reshape([b, l, nkv, hd]),
            &self.k_norm,
        )
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

/// The position axis (0 t, 1 h, 2 w) of each rotary frequency j < head_dim / 2. Chunked (Qwen2,
/// Qwen2.5-VL): `mrope_section` consecutive runs. Interleaved (Qwen3-VL, transformers
/// `apply_interleaved_mrope`): slots 1, 4, 7, .. below 3 * section[1] take h, slots 2, 5, 8, ..
/// below 3 * section[2] take w, every other slot t.
pub fn mrope_axes(cfg: &TextConfig) -> Vec<usize> {
    let half = cfg.head_dim() / 2;
    let sec = &cfg.mrope_section;
    if cfg.mrope_interleaved {
        (0..half)
            .map(|j| match j % 3 {
                1 if j < 3 * sec[1] => 1,
                2 if j < 3 * sec[2] => 2,
                _ => 0,
            })
            .collect()
    } else {
        sec.iter()
            .enumerate()
            .flat_map(|(a, &n)| std::iter::repeat_n(a, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(section: Vec<usize>, interleaved: bool) -> TextConfig {
        TextConfig {
            vocab_size: 8,
            hidden_size: 64,
            intermediate_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 1,
            num_key_value_heads: 1,
            head_dim: 2 * section.iter().sum::<usize>(),
            rms_norm_eps: 1e-6,
            rope_theta: 1e4,
            mrope_section: section,
            mrope_interleaved: interleaved,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            max_position_embeddings: 16,
            tie_word_embeddings: true,
        }
    }

    #[test]
    fn chunked_mrope_gives_each_axis_a_run_of_frequencies() {
        assert_eq!(
            mrope_axes(&text(vec![2, 3, 3], false)),
            [0, 0, 1, 1, 1, 2, 2, 2]
        );
    }

    #[test]
    fn interleaved_mrope_cycles_t_h_w_and_leaves_the_tail_to_t() {
        // Qwen3-VL's [24, 20, 20]: h at 1, 4, .., 58; w at 2, 5, .., 59; t elsewhere (60..64 too).
        let axes = mrope_axes(&text(vec![24, 20, 20], true));
        assert_eq!(&axes[..7], &[0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(&axes[57..], &[0, 1, 2, 0, 0, 0, 0]);
        assert_eq!(axes.iter().filter(|&&a| a == 0).count(), 24);
        assert_eq!(axes.iter().filter(|&&a| a == 1).count(), 20);
        // The fixture's [6, 3, 3]: h 1, 4, 7; w 2, 5, 8; t 0, 3, 6, 9, 10, 11.
        assert_eq!(
            mrope_axes(&text(vec![6, 3, 3], true)),
            [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0]
        );
    }
}
