//! Fresh Qwen-VL checkpoints (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) in the Hugging Face layout
//! (config.json + model.safetensors), with random weights (normal, std `initializer_range` as
//! transformers' `_init_weights`; norms 1, biases 0). Used for tiny test and quickstart models;
//! they load through the same path as downloaded checkpoints, and in transformers (Qwen3-VL's
//! keys in its own `model.visual.*` / `model.language_model.*` layout).

use std::path::Path;

use serde_json::{json, Value};

use crate::config::{Family, QwenVlConfig};
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
    small_config_for(
        Family::Qwen2_5Vl,
        vocab_size,
        hidden,
        layers,
        heads,
        kv_heads,
        vision_hidden,
        vision_depth,
    )
}

/// A small config of `family` with the Qwen special token ids, in the form its published
/// checkpoints use: flat (Qwen2-VL, Qwen2.5-VL) or nested (Qwen3-VL, with a 48 x 48 position
/// table as the released models and DeepStack at up to three vision layers spread over the
/// tower). The M-RoPE sections keep the released proportions ([16, 24, 24] of 64; Qwen3-VL
/// [24, 20, 20]).
#[allow(clippy::too_many_arguments)]
pub fn small_config_for(
    family: Family,
    vocab_size: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vision_hidden: usize,
    vision_depth: usize,
) -> Value {
    let head_dim = hidden / heads.max(1);
    let half = head_dim / 2;
    let vision_heads = (vision_hidden / 32).max(1);
    match family {
        Family::Qwen2_5Vl => qwen2_5_config(
            vocab_size,
            hidden,
            layers,
            heads,
            kv_heads,
            vision_hidden,
            vision_depth,
        ),
        Family::Qwen2Vl => flat_config(
            ("Qwen2VLForConditionalGeneration", "qwen2_vl"),
            (vocab_size, hidden, layers, heads, kv_heads),
            json!({
                "depth": vision_depth, "embed_dim": vision_hidden, "hidden_size": hidden, "mlp_ratio": 4,
                "num_heads": vision_heads, "hidden_act": "quick_gelu", "in_chans": 3,
                "patch_size": 14, "spatial_patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2
            }),
        ),
        Family::Qwen3Vl => {
            // [24, 20, 20] of 64: t takes the remainder.
            let hw = half * 20 / 64;
            let levels = 3.min(vision_depth).min(layers);
            let deepstack: Vec<usize> = (0..levels)
                .map(|k| k * vision_depth / levels.max(1))
                .collect();
            json!({
                "architectures": ["Qwen3VLForConditionalGeneration"],
                "model_type": "qwen3_vl",
                "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
                "tie_word_embeddings": true,
                "text_config": {
                    "model_type": "qwen3_vl_text",
                    "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": hidden * 3,
                    "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                    "head_dim": head_dim, "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
                    "rope_scaling": {"rope_type": "default", "mrope_interleaved": true,
                                     "mrope_section": [half - 2 * hw, hw, hw]},
                    "max_position_embeddings": 262144, "tie_word_embeddings": true, "attention_bias": false,
                    "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
                    "bos_token_id": 151643, "eos_token_id": 151645, "dtype": "float32"
                },
                "vision_config": {
                    "model_type": "qwen3_vl",
                    "depth": vision_depth, "hidden_size": vision_hidden, "intermediate_size": vision_hidden * 4,
                    "num_heads": vision_heads, "out_hidden_size": hidden, "hidden_act": "gelu_pytorch_tanh",
                    "in_channels": 3, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                    "num_position_embeddings": 2304, "deepstack_visual_indexes": deepstack,
                    "initializer_range": 0.02
                },
                "initializer_range": 0.02,
                "dtype": "float32"
            })
        }
    }
}

fn qwen2_5_config(
    vocab_size: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vision_hidden: usize,
    vision_depth: usize,
) -> Value {
    flat_config(
        ("Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl"),
        (vocab_size, hidden, layers, heads, kv_heads),
        json!({
            "depth": vision_depth, "hidden_size": vision_hidden, "num_heads": (vision_hidden / 32).max(1),
            "intermediate_size": vision_hidden * 2, "hidden_act": "silu", "in_chans": 3, "out_hidden_size": hidden,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2
        }),
    )
}

/// The flat config of Qwen2-VL and Qwen2.5-VL (text fields at the root): the language model of
/// (vocab, hidden, layers, heads, kv heads) and the family's `vision_config`. The M-RoPE split
/// keeps the released [16, 24, 24] of 64.
fn flat_config(
    (architecture, model_type): (&str, &str),
    (vocab_size, hidden, layers, heads, kv_heads): (usize, usize, usize, usize, usize),
    vision_config: Value,
) -> Value {
    let half = hidden / heads.max(1) / 2;
    let t = half / 4;
    let hw = (half - t) / 2;
    json!({
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": hidden * 11 / 4,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
        "tie_word_embeddings": true, "initializer_range": 0.02, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151645,
        "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "rope_scaling": {"type": "mrope", "mrope_section": [t, hw, half - t - hw]},
        "torch_dtype": "float32",
        "vision_config": vision_config
    })
}

/// Names and shapes of every tensor of a checkpoint of `cfg`'s family, in the canonical (original
/// Hub) layout; module names from the same `Family` helpers the loader reads.
pub fn tensor_shapes(cfg: &QwenVlConfig) -> Vec<(String, Vec<usize>)> {
    let v = &cfg.vision;
    let t = &cfg.text;
    let family = cfg.family;
    let (d, vd, vi) = (t.hidden_size, v.hidden_size, v.intermediate_size);
    let m = v.spatial_merge_size * v.spatial_merge_size;
    let layer_norm = v.norm == crate::config::NormKind::Layer;
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
    if v.patch_bias {
        out.push(("visual.patch_embed.proj.bias".into(), vec![vd]));
    }
    if let Some(n) = v.num_position_embeddings {
        out.push(("visual.pos_embed.weight".into(), vec![n, vd]));
    }
    let norm = |out: &mut Vec<(String, Vec<usize>)>, prefix: String, dim: usize| {
        out.push((format!("{prefix}.weight"), vec![dim]));
        if layer_norm {
            out.push((format!("{prefix}.bias"), vec![dim]));
        }
    };
    let linear = |out: &mut Vec<(String, Vec<usize>)>,
                  prefix: String,
                  d_in: usize,
                  d_out: usize,
                  bias: bool| {
        out.push((format!("{prefix}.weight"), vec![d_out, d_in]));
        if bias {
            out.push((format!("{prefix}.bias"), vec![d_out]));
        }
    };
    let mlp = family.vision_mlp_names();
    for i in 0..v.depth {
        let p = format!("visual.blocks.{i}");
        norm(&mut out, format!("{p}.norm1"), vd);
        norm(&mut out, format!("{p}.norm2"), vd);
        linear(&mut out, format!("{p}.attn.qkv"), vd, 3 * vd, true);
        linear(&mut out, format!("{p}.attn.proj"), vd, vd, true);
        match v.mlp {
            crate::config::VisionMlpKind::Gated => {
                linear(&mut out, format!("{p}.mlp.{}", mlp[0]), vd, vi, true);
                linear(&mut out, format!("{p}.mlp.{}", mlp[1]), vd, vi, true);
                linear(&mut out, format!("{p}.mlp.{}", mlp[2]), vi, vd, true);
            }
            crate::config::VisionMlpKind::Plain => {
                linear(&mut out, format!("{p}.mlp.{}", mlp[0]), vd, vi, true);
                linear(&mut out, format!("{p}.mlp.{}", mlp[1]), vi, vd, true);
            }
        }
    }
    let [ln, fc1, fc2] = family.merger_names();
    let mut mergers = vec![("visual.merger".to_string(), vd)];
    mergers.extend(
        (0..v.deepstack_visual_indexes.len())
            .map(|j| (format!("visual.deepstack_merger_list.{j}"), vd * m)),
    );
    for (p, norm_dim) in mergers {
        norm(&mut out, format!("{p}.{ln}"), norm_dim);
        linear(&mut out, format!("{p}.{fc1}"), vd * m, vd * m, true);
        linear(&mut out, format!("{p}.{fc2}"), vd * m, d, true);
    }
    out.push(("model.embed_tokens.weight".into(), vec![t.vocab_size, d]));
    let (hd, nh, nkv, ti) = (
        t.head_dim(),
        t.num_attention_heads,
        t.num_key_value_heads,
        t.intermediate_size,
    );
    for i in 0..t.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![d]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        linear(
            &mut out,
            format!("{p}.self_attn.q_proj"),
            d,
            nh * hd,
            t.qkv_bias,
        );
        linear(
            &mut out,
            format!("{p}.self_attn.k_proj"),
            d,
            nkv * hd,
            t.qkv_bias,
        );
        linear(
            &mut out,
            format!("{p}.self_attn.v_proj"),
            d,
            nkv * hd,
            t.qkv_bias,
        );
        linear(
            &mut out,
            format!("{p}.self_attn.o_proj"),
            nh * hd,
            d,
            t.o_bias,
        );
        if t.qk_norm {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        }
        linear(&mut out, format!("{p}.mlp.gate_proj"), d, ti, false);
        linear(&mut out, format!("{p}.mlp.up_proj"), d, ti, false);
        linear(&mut out, format!("{p}.mlp.down_proj"), ti, d, false);
    }
    out.push(("model.norm.weight".into(), vec![d]));
    if !t.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![t.vocab_size, d]));
    }
    out
}

/// The key a checkpoint of `family` stores canonical key `key` under: Qwen3-VL's transformers
/// class has no key conversion, so its checkpoints keep the in-memory layout
/// (`model.visual.*`, `model.language_model.*`); Qwen2-VL and Qwen2.5-VL keep the original one.
pub fn stored_key(family: Family, key: &str) -> String {
    match family {
        Family::Qwen3Vl => crate::lora::peft_module_path(key),
        _ => key.to_string(),
    }
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
            || name.ends_with("q_norm.weight")
            || name.ends_with("k_norm.weight")
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
            stored_key(cfg.family, &name),
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

/// Write a random Qwen2.5-VL checkpoint of `spec` (`write_small_family`).
pub fn write_small(out: &Path, tokenizer: &Path, spec: &SmallSpec) -> Result<()> {
    write_small_family(out, tokenizer, spec, Family::Qwen2_5Vl)
}

/// Write a random checkpoint of `family` and `spec` with the tokenizer `tokenizer` (copied beside
/// it) into `out`: config.json, model.safetensors, tokenizer.json. The vocabulary is the Qwen
/// one (151,936, or the tokenizer's, if larger).
pub fn write_small_family(
    out: &Path,
    tokenizer: &Path,
    spec: &SmallSpec,
    family: Family,
) -> Result<()> {
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
    let mut cfg = small_config_for(
        family,
        vocab,
        spec.hidden,
        spec.layers,
        spec.heads,
        spec.kv_heads,
        spec.vision_hidden,
        spec.vision_depth,
    );
    cfg["initializer_range"] = json!(spec.init_std);
    if family == Family::Qwen3Vl {
        for sub in ["text_config", "vision_config"] {
            cfg[sub]["initializer_range"] = json!(spec.init_std);
        }
    }
    write_random_checkpoint_with(out, &cfg, spec.seed, spec.embed_std)?;
    std::fs::copy(tokenizer, out.join("tokenizer.json"))
        .map_err(|e| ModelError::io(tokenizer, e))?;
    Ok(())
}
