//! Generation with a KV cache: prefill the (left-padded) batch once, then one token per step for
//! every sequence; greedy or temperature + nucleus (top-p) sampling; stop tokens; per-token
//! log-probabilities under the model's distribution (temperature 1). New tokens continue the
//! M-RoPE positions at `index + rope_delta` on all three axes, as transformers does.
//! `score_distribution` reads the probability over score tokens at the next position (soft scores).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use evalverse_data::rng::Rng;

use crate::error::{ModelError, Result};
use crate::model::{causal_mask, Batch, QwenVl};
use crate::ops::ModelBackend;
use crate::text::KvCache;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling mass (1.0 keeps the whole distribution).
    pub top_p: f64,
    /// Generation of a sequence stops after it emits one of these.
    pub stop_tokens: Vec<u32>,
    /// Token appended to finished sequences while others continue.
    pub pad_token: u32,
    pub seed: u64,
}

impl GenerationConfig {
    pub fn greedy(max_new_tokens: usize, stop_tokens: Vec<u32>) -> Self {
        let pad = stop_tokens.first().copied().unwrap_or(0);
        GenerationConfig {
            max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            stop_tokens,
            pad_token: pad,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New tokens per sequence (up to and including the stop token).
    pub tokens: Vec<Vec<u32>>,
    /// log p(token) under the model at temperature 1, per new token.
    pub logprobs: Vec<Vec<f32>>,
    /// Whether each sequence ended with a stop token.
    pub stopped: Vec<bool>,
}

fn last_logits<B: Backend>(logits: Tensor<B, 3>) -> Vec<Vec<f32>> {
    let [b, l, v] = logits.dims();
    let last: Vec<f32> = logits
        .narrow(1, l - 1, 1)
        .reshape([b, v])
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 logits");
    last.chunks(v).map(<[f32]>::to_vec).collect()
}

/// Rows of a [n, vocab] logits tensor as vectors.
fn rows_to_vec<B: Backend>(logits: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let v = logits.dims()[1];
    let all: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 logits");
    all.chunks(v).map(<[f32]>::to_vec).collect()
}

/// log sum_i exp(x_i), without allocating (a decode step needs one per sequence over the
/// whole vocabulary).
fn log_sum_exp(x: &[f32]) -> f32 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    m + x.iter().map(|v| (v - m).exp()).sum::<f32>().ln()
}

fn log_softmax_vec(x: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(x);
    x.iter().map(|v| v - lse).collect()
}

/// Choose the next token from logits: argmax, or a sample at `temperature` within the top-p nucleus.
pub fn pick(logits: &[f32], temperature: f64, top_p: f64, rng: &mut Rng) -> u32 {
    if temperature <= 0.0 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let scaled: Vec<f32> = logits.iter().map(|&v| v / temperature as f32).collect();
    let lp = log_softmax_vec(&scaled);
    let mut order: Vec<usize> = (0..lp.len()).collect();
    order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
    let mut kept = Vec::new();
    let mut mass = 0.0f64;
    for &i in &order {
        kept.push(i);
        mass += (lp[i] as f64).exp();
        if mass >= top_p {
            break;
        }
    }
    let total: f64 = kept.iter().map(|&i| (lp[i] as f64).exp()).sum();
    let mut u = rng.uniform() * total;
    for &i in &kept {
        u -= (lp[i] as f64).exp();
        if u <= 0.0 {
            return i as u32;
        }
    }
    *kept.last().expect("nucleus is never empty") as u32
}

/// Generate continuations for a left-padded batch.
pub fn generate<B: ModelBackend>(
    model: &QwenVl<B>,
    batch: &Batch<B>,
    cfg: &GenerationConfig,
) -> Result<Generated> {
    let b = batch.ids.len();
    if batch.mask.iter().any(|m| m.last() != Some(&true)) {
        return Err(ModelError::Invalid(
            "generation needs left-padded prompts (each ends with a real token)".into(),
        ));
    }
    let device = model.device();
    let mut cache = KvCache::new(model.cfg.text.num_hidden_layers);
    // Prefill; the output head runs on the last position only (a 152k-vocabulary head over every
    // prompt position costs more than the rest of the model on small judges).
    let (h, _, _, rope_deltas) = model.forward_hidden(batch, false, Some(&mut cache))?;
    let prompt_len = batch.ids[0].len();
    let last_rows: Vec<usize> = (0..b).map(|i| i * prompt_len + prompt_len - 1).collect();
    let mut logits = rows_to_vec(model.head_at(h, &last_rows));
    let mut key_mask = batch.mask.clone();
    let mut rng = Rng::new(cfg.seed);
    let mut gen = Generated {
        tokens: vec![vec![]; b],
        logprobs: vec![vec![]; b],
        stopped: vec![false; b],
    };
    for step in 0..cfg.max_new_tokens {
        let mut next = Vec::with_capacity(b);
        for i in 0..b {
            if gen.stopped[i] {
                next.push(cfg.pad_token);
                continue;
            }
            let tok = pick(&logits[i], cfg.temperature, cfg.top_p, &mut rng);
            let lp = logits[i][tok as usize] - log_sum_exp(&logits[i]);
            gen.tokens[i].push(tok);
            gen.logprobs[i].push(lp);
            if cfg.stop_tokens.contains(&tok) {
                gen.stopped[i] = true;
            }
            next.push(tok);
        }
        if gen.stopped.iter().all(|&s| s) || step + 1 == cfg.max_new_tokens {
            break;
        }
        // One new position per sequence: index prompt_len + step, M-RoPE position index + delta.
        for m in &mut key_mask {
            m.push(true);
        }
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(next.iter().map(|&t| t as i64).collect::<Vec<_>>(), [b, 1]),
            &device,
        );
        let h = model.model.embed(ids);
        let p: Vec<Vec<i64>> = rope_deltas
            .iter()
            .map(|d| vec![(prompt_len + step) as i64 + d])
            .collect();
        let (cos, sin) = model.model.mrope(&[p.clone(), p.clone(), p], &device);
        let mask = causal_mask::<B>(&key_mask, prompt_len + step, &device);
        let (h, _) = model
            .model
            .forward(h, &cos, &sin, Some(mask), Some(&mut cache), false);
        logits = last_logits(model.head(h));
    }
    Ok(gen)
}

/// Probability over `score_tokens` (e.g. the ids of "1".."5") for the token after each prompt,
/// renormalised over those tokens, and the mass the model puts on them before renormalising.
pub fn score_distribution<B: ModelBackend>(
    model: &QwenVl<B>,
    batch: &Batch<B>,
    score_tokens: &[u32],
) -> Result<Vec<(Vec<f32>, f32)>> {
    if batch.mask.iter().any(|m| m.last() != Some(&true)) {
        return Err(ModelError::Invalid(
            "score readout needs left-padded prompts".into(),
        ));
    }
    let (h, ..) = model.forward_hidden(batch, false, None)?;
    let [b, l, _] = h.dims();
    let last_rows: Vec<usize> = (0..b).map(|i| i * l + l - 1).collect();
    let logits = model.head_at(h, &last_rows);
    let v = logits.dims()[1];
    let lp = log_softmax(logits, 1)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32");
    Ok(lp
        .chunks(v)
        .map(|row| {
            let p: Vec<f32> = score_tokens
                .iter()
                .map(|&t| row[t as usize].exp())
                .collect();
            let mass: f32 = p.iter().sum();
            (p.iter().map(|x| x / mass).collect(), mass)
        })
        .collect())
}
