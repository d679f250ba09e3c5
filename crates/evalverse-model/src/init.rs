//! Fresh Qwen2.5-VL checkpoints in the Hugging Face layout (config.json + model.safetensors), with
//! random weights (normal, std `initializer_range` as transformers' `_init_weights`; norms 1,
//! biases 0). Used for tiny test and quickstart models; they load through the same path as
//! downloaded checkpoints.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::QwenVlConfig;
use crate::error::{ModelError, Result};

/// A small Qwen2.5-VL config (flat Hub form) with the Qwen special token ids.
pub fn small_config(
    vocab_size: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vision_hidden: usize,
    vision_depth: usize,
) -> Value {
    let head_dim = hidden / heads;
    let half = head_dim / 2;
    // Qwen2.5-VL's split is [16, 24, 24] of 64; keep the same proportions.
    let t = half / 4;
    let hw = (half - t) / 2;
    json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": hidden * 11 / 4,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
        "tie_word_embeddings": true, "initializer_range": 0.02, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151645,
        "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "rope_scaling": {"type": "mrope", "mrope_section": [t, hw, half - t - hw]},
        "torch_dtype": "float32",
        "vision_config": {
            "depth": vision_depth, "hidden_size": vision_hidden, "num_heads": (vision_hidden / 32).max(1),
            "intermediate_size": vision_hidden * 2, "hidden_act": "silu", "in_chans": 3, "out_hidden_size": hidden,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2
        }
    })
}

/// Names and shapes of every tensor of a Qwen2.5-VL checkpoint (original Hub layout).
pub fn tensor_shapes(cfg: &QwenVlConfig) -> Vec<(String, Vec<usize>)> {
    let v = &cfg.vision;
    let t = &cfg.text;
    let (d, vd, vi) = (t.hidden_size, v.hidden_size, v.intermediate_size);
    let m = v.spatial_merge_size * v.spatial_merge_size;
    let mut out = vec![(
        "visual.patch_embed.proj.weight".to_string(),
        vec![
            vd,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
    )];
    for i in 0..v.depth {
        let p = format!("visual.blocks.{i}");
        for (n, s) in [
            ("norm1.weight", vec![vd]),
            ("norm2.weight", vec![vd]),
            ("attn.qkv.weight", vec![3 * vd, vd]),
            ("attn.qkv.bias", vec![3 * vd]),
            ("attn.proj.weight", vec![vd, vd]),
            ("attn.proj.bias", vec![vd]),
            ("mlp.gate_proj.weight", vec![vi, vd]),
            ("mlp.gate_proj.bias", vec![vi]),
            ("mlp.up_proj.weight", vec![vi, vd]),
            ("mlp.up_proj.bias", vec![vi]),
            ("mlp.down_proj.weight", vec![vd, vi]),
            ("mlp.down_proj.bias", vec![vd]),
        ] {
            out.push((format!("{p}.{n}"), s));
        }
    }
    out.push(("visual.merger.ln_q.weight".into(), vec![vd]));
    out.push(("visual.merger.mlp.0.weight".into(), vec![vd * m, vd * m]));
    out.push(("visual.merger.mlp.0.bias".into(), vec![vd * m]));
    out.push(("visual.merger.mlp.2.weight".into(), vec![d, vd * m]));
    out.push(("visual.merger.mlp.2.bias".into(), vec![d]));
    out.push(("model.embed_tokens.weight".into(), vec![t.vocab_size, d]));
    let (hd, nh, nkv, ti) = (
        t.head_dim(),
        t.num_attention_heads,
        t.num_key_value_heads,
        t.intermediate_size,
    );
    for i in 0..t.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (n, s) in [
            ("input_layernorm.weight", vec![d]),
            ("post_attention_layernorm.weight", vec![d]),
            ("self_attn.q_proj.weight", vec![nh * hd, d]),
            ("self_attn.q_proj.bias", vec![nh * hd]),
            ("self_attn.k_proj.weight", vec![nkv * hd, d]),
            ("self_attn.k_proj.bias", vec![nkv * hd]),
            ("self_attn.v_proj.weight", vec![nkv * hd, d]),
            ("self_attn.v_proj.bias", vec![nkv * hd]),
            ("self_attn.o_proj.weight", vec![d, nh * hd]),
            ("mlp.gate_proj.weight", vec![ti, d]),
            ("mlp.up_proj.weight", vec![ti, d]),
            ("mlp.down_proj.weight", vec![d, ti]),
        ] {
            out.push((format!("{p}.{n}"), s));
        }
    }
    out.push(("model.norm.weight".into(), vec![d]));
    if !t.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![t.vocab_size, d]));
    }
    out
}

/// Write `config` and random weights to `dir` (created).
pub fn write_random_checkpoint(dir: &Path, config: &Value, seed: u64) -> Result<()> {
    write_random_checkpoint_with(dir, config, seed, None)
}

/// As `write_random_checkpoint`, with the token embedding (tied output head) drawn with its own
/// standard deviation. A hidden-d model's tied head reaches logits of about std x d, so
/// transformers' 0.02 caps a hidden-64 model at about 1.3 (p < 1e-4 over 152k tokens, at any
/// weights): tiny models need a wider embedding (T5 and OLMo use std 1.0 for theirs).
pub fn write_random_checkpoint_with(
    dir: &Path,
    config: &Value,
    seed: u64,
    embed_std: Option<f64>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let text = serde_json::to_string_pretty(config).expect("json");
    let cfg = QwenVlConfig::from_json_str(&text, &dir.join("config.json"))?;
    let std = config
        .get("initializer_range")
        .and_then(Value::as_f64)
        .unwrap_or(0.02);
    let mut rng = evalverse_data::rng::Rng::new(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape) in tensor_shapes(&cfg) {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = if name.ends_with("norm.weight")
            || name.ends_with("norm1.weight")
            || name.ends_with("norm2.weight")
            || name.ends_with("ln_q.weight")
        {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let std = match embed_std {
                Some(e) if name.ends_with("embed_tokens.weight") => e,
                _ => std,
            };
            (0..n).map(|_| (std * rng.normal()) as f32).collect()
        };
        tensors.push((
            name,
            shape,
            vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("sizes"),
            )
        })
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, &Some(meta))
        .map_err(|e| ModelError::Invalid(e.to_string()))?;
    crate::lora::write_atomic(&dir.join("model.safetensors"), &bytes)?;
    crate::lora::write_atomic(&dir.join("config.json"), text.as_bytes())
}

/// The shape and initialisation of a small random Qwen2.5-VL (`evalverse model init`, the
/// quickstart's `data/tiny-base/base.toml`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct SmallSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vision_hidden: usize,
    pub vision_depth: usize,
    pub seed: u64,
    /// Std of the normal initialisation (transformers' `initializer_range`).
    pub init_std: f64,
    /// Std of the token embeddings (default `init_std`).
    #[serde(default)]
    pub embed_std: Option<f64>,
}

/// Write a random checkpoint of `spec` with the tokenizer `tokenizer` (copied beside it) into
/// `out`: config.json, model.safetensors, tokenizer.json. The vocabulary is Qwen2.5-VL's (or
/// the tokenizer's, if larger).
pub fn write_small(out: &Path, tokenizer: &Path, spec: &SmallSpec) -> Result<()> {
    let bad = |m: &str| ModelError::Invalid(m.to_string());
    if spec.heads == 0
        || !spec.hidden.is_multiple_of(spec.heads)
        || !(spec.hidden / spec.heads).is_multiple_of(8)
    {
        return Err(bad(
            "the hidden size must be a multiple of the head count with a head size divisible by 8",
        ));
    }
    if !(spec.init_std.is_finite() && spec.init_std > 0.0)
        || spec.embed_std.is_some_and(|e| !(e.is_finite() && e > 0.0))
    {
        return Err(bad("the init and embedding stds must be positive numbers"));
    }
    let tok = crate::chat::ChatTokenizer::from_file(tokenizer)?;
    let vocab = 151_936.max(tok.tokenizer.get_vocab_size(true));
    let mut cfg = small_config(
        vocab,
        spec.hidden,
        spec.layers,
        spec.heads,
        spec.kv_heads,
        spec.vision_hidden,
        spec.vision_depth,
    );
    cfg["initializer_range"] = json!(spec.init_std);
    write_random_checkpoint_with(out, &cfg, spec.seed, spec.embed_std)?;
    std::fs::copy(tokenizer, out.join("tokenizer.json"))
        .map_err(|e| ModelError::io(tokenizer, e))?;
    Ok(())
}
