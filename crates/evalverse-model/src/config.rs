//! The model configuration, read field by field from a checkpoint's config.json. Accepts the flat
//! Hub form of Qwen2-VL / Qwen2.5-VL and the nested transformers-5 form (`text_config`,
//! `vision_config`), `rope_scaling` or `rope_parameters`, `rope_theta` at either level
//! (../shared/reference/QWEN_VL.md §6.1). The family members differ only by the choices here
//! (`Family` and the flags it sets: norm, activation, biases, windows, position table, DeepStack,
//! q/k norm, M-RoPE layout); the blocks read the flags, never the model type.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// Model types this crate implements.
pub const SUPPORTED_MODEL_TYPES: [&str; 3] = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"];

/// The member of the Qwen-VL family a checkpoint is (config.json `model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    /// Qwen2-VL (VideoAlign's base): LayerNorm + QuickGELU vision blocks, full attention per
    /// temporal patch, chunked M-RoPE with the frame index as time.
    Qwen2Vl,
    /// Qwen2.5-VL: RMSNorm + SwiGLU vision blocks, window attention, chunked M-RoPE with time
    /// in seconds (`tokens_per_second`).
    Qwen2_5Vl,
    /// Qwen3-VL (dense): patch 16, learned position table, LayerNorm + GELU-tanh blocks,
    /// DeepStack, Qwen3 decoder (q/k RMSNorm, no qkv bias), interleaved M-RoPE, one vision block
    /// per frame with textual timestamps.
    Qwen3Vl,
}

impl Family {
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "qwen2_vl" => Some(Family::Qwen2Vl),
            "qwen2_5_vl" => Some(Family::Qwen2_5Vl),
            "qwen3_vl" => Some(Family::Qwen3Vl),
            _ => None,
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            Family::Qwen2Vl => "qwen2_vl",
            Family::Qwen2_5Vl => "qwen2_5_vl",
            Family::Qwen3Vl => "qwen3_vl",
        }
    }

    /// Hugging Face names of a vision block's MLP projections, in the order the block applies
    /// them (gated: gate, up, down).
    pub fn vision_mlp_names(self) -> &'static [&'static str] {
        match self {
            Family::Qwen2Vl => &["fc1", "fc2"],
            Family::Qwen2_5Vl => &["gate_proj", "up_proj", "down_proj"],
            Family::Qwen3Vl => &["linear_fc1", "linear_fc2"],
        }
    }

    /// Hugging Face names of a patch merger's norm and two projections.
    pub fn merger_names(self) -> [&'static str; 3] {
        match self {
            Family::Qwen2Vl | Family::Qwen2_5Vl => ["ln_q", "mlp.0", "mlp.2"],
            Family::Qwen3Vl => ["norm", "linear_fc1", "linear_fc2"],
        }
    }
}

/// Norm layers of the vision tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NormKind {
    /// RMSNorm, weight only (Qwen2.5-VL).
    Rms,
    /// LayerNorm with weight and bias (Qwen2-VL, Qwen3-VL).
    Layer,
}

/// Activation of the vision MLP (`vision_config.hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Activation {
    /// silu (Qwen2.5-VL's gated MLP).
    Silu,
    /// x * sigmoid(1.702 x) (Qwen2-VL).
    QuickGelu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`, Qwen3-VL).
    GeluTanh,
    /// GELU, erf form (`gelu`).
    Gelu,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Activation::Silu),
            "quick_gelu" => Some(Activation::QuickGelu),
            "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "gelu" => Some(Activation::Gelu),
            _ => None,
        }
    }
}

/// The vision MLP's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VisionMlpKind {
    /// down(act(gate(x)) * up(x)), with biases (Qwen2.5-VL).
    Gated,
    /// fc2(act(fc1(x))), with biases (Qwen2-VL, Qwen3-VL).
    Plain,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisionConfig {
    pub family: Family,
    pub depth: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    pub in_channels: usize,
    /// Width of the merger output (= text hidden size).
    pub out_hidden_size: usize,
    pub norm: NormKind,
    pub hidden_act: Activation,
    pub mlp: VisionMlpKind,
    /// Whether the patch embedding (a Conv3d) has a bias (Qwen3-VL).
    pub patch_bias: bool,
    /// Window side in pixels (112 = 4x4 merged tokens with patch 14, merge 2); None: every block
    /// attends over its whole temporal patch (Qwen2-VL, Qwen3-VL).
    pub window_size: Option<usize>,
    /// Blocks that attend over the whole frame instead of windows.
    pub fullatt_block_indexes: Vec<usize>,
    /// M-RoPE time units per second of video (Qwen2.5-VL).
    pub tokens_per_second: f64,
    /// Entries of the learned position table (a square grid, side^2; Qwen3-VL), interpolated
    /// bilinearly to each medium's patch grid.
    pub num_position_embeddings: Option<usize>,
    /// Vision blocks whose output goes through its own merger and is added to the hidden states
    /// of decoder layer j (the j-th entry) at the visual positions (Qwen3-VL's DeepStack).
    pub deepstack_visual_indexes: Vec<usize>,
    /// Eps of the vision norms (1e-6 in every family).
    pub rms_norm_eps: f64,
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Values per input patch row: C * T * p * p.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
    /// Side of the square learned position table, when there is one.
    pub fn position_grid_side(&self) -> Option<usize> {
        self.num_position_embeddings
            .map(|n| (n as f64).sqrt().round() as usize)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Width of one attention head (config `head_dim`; hidden_size / num_attention_heads when
    /// absent; Qwen3-VL-4B has 2560 / 32 = 80 but head_dim 128).
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// M-RoPE split of the rotary half-dimension into (t, h, w) sections.
    pub mrope_section: Vec<usize>,
    /// Interleaved M-RoPE (Qwen3-VL: slots 1, 4, 7, .. rotate with h, 2, 5, 8, .. with w, the
    /// rest with t) instead of contiguous sections.
    pub mrope_interleaved: bool,
    /// Bias on q_proj, k_proj, v_proj.
    pub qkv_bias: bool,
    /// Bias on o_proj.
    pub o_bias: bool,
    /// RMSNorm over each head of q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QwenVlConfig {
    pub model_type: String,
    pub family: Family,
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    pub eos_token_ids: Vec<u32>,
}

struct Fields<'a> {
    origin: &'a Path,
    /// Lookup order: first map that has the key wins.
    maps: Vec<(&'a str, &'a Map<String, Value>)>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.maps
            .iter()
            .find_map(|(_, m)| m.get(key))
            .filter(|v| !v.is_null())
    }
    fn err(&self, key: &str, what: &str) -> ModelError {
        let scopes: Vec<&str> = self.maps.iter().map(|(n, _)| *n).collect();
        ModelError::config(
            self.origin,
            format!("key '{key}' {what} (looked in: {})", scopes.join(", ")),
        )
    }
    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| self.err(key, &format!("must be a non-negative integer, got {v}")))
    }
    fn usize_any(&self, keys: &[&str]) -> Result<usize> {
        keys.iter()
            .find(|k| self.get(k).is_some())
            .map(|k| self.usize(k))
            .unwrap_or_else(|| Err(self.err(&keys.join("' or '"), "is missing")))
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }
    fn f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        v.as_f64()
            .ok_or_else(|| self.err(key, &format!("must be a number, got {v}")))
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        if self.get(key).is_some() {
            self.f64(key)
        } else {
            Ok(default)
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(key, &format!("must be true or false, got {v}"))),
        }
    }
    fn u32(&self, key: &str) -> Result<u32> {
        let v = self.usize(key)?;
        u32::try_from(v).map_err(|_| {
            self.err(
                key,
                &format!("{v} is not a token id (at most {})", u32::MAX),
            )
        })
    }
    fn usizes(&self, key: &str) -> Result<Vec<usize>> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().map(|u| u as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| self.err(key, &format!("must be a list of integers, got {v}")))
    }
}

impl QwenVlConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self> {
        let cfg = Self::parse_fields(text, origin)?;
        cfg.check().map_err(|m| ModelError::config(origin, m))?;
        Ok(cfg)
    }

    /// config.json at `path` read for the checkpoint whose tensors are `weights`: the widths
    /// the stored tensors contradict are reported as the tensor's shape (a hidden size edited
    /// alone is a weights mismatch, not the mrope_section split it would otherwise break), then
    /// the config's own consistency is checked.
    pub fn for_weights(path: &Path, weights: &crate::weights::Weights) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let cfg = Self::parse_fields(&text, path)?;
        let (t, v) = (&cfg.text, &cfg.vision);
        let mut expected = vec![
            (
                "model.embed_tokens.weight",
                vec![t.vocab_size, t.hidden_size],
                "vocab_size, hidden_size",
            ),
            (
                "visual.patch_embed.proj.weight",
                vec![
                    v.hidden_size,
                    v.in_channels,
                    v.temporal_patch_size,
                    v.patch_size,
                    v.patch_size,
                ],
                if cfg.family == Family::Qwen2Vl {
                    "vision_config embed_dim, in_channels, temporal_patch_size, patch_size"
                } else {
                    "vision_config hidden_size, in_channels, temporal_patch_size, patch_size"
                },
            ),
        ];
        if let Some(n) = v.num_position_embeddings {
            expected.push((
                "visual.pos_embed.weight",
                vec![n, v.hidden_size],
                "vision_config num_position_embeddings, hidden_size",
            ));
        }
        for (key, shape, keys) in expected {
            if let Some((file, stored)) = weights.stored_shape(key) {
                if stored != shape {
                    return Err(ModelError::Weights(format!(
                        "tensor '{key}' in {} has shape {stored:?}; {} ({keys}) makes it {shape:?}",
                        file.display(),
                        path.display()
                    )));
                }
            }
        }
        cfg.check().map_err(|m| ModelError::config(path, m))?;
        Ok(cfg)
    }

    /// The fields of config.json, each parsed and typed, not yet checked against each other.
    fn parse_fields(text: &str, origin: &Path) -> Result<Self> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::config(origin, format!("not valid JSON: {e}")))?;
        let root = root
            .as_object()
            .ok_or_else(|| ModelError::config(origin, "config.json must be a JSON object"))?;
        let model_type = root
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("<missing>")
            .to_string();
        let family = match Family::from_model_type(&model_type) {
            Some(f) => f,
            None if model_type.starts_with("qwen3_vl_moe") => {
                return Err(ModelError::config(
                    origin,
                    format!(
                        "model_type '{model_type}' (Qwen3-VL mixture of experts) is not supported: \
                         only the dense Qwen3-VL checkpoints (model_type 'qwen3_vl': 2B, 4B, 8B, 32B) are"
                    ),
                ))
            }
            None => {
                return Err(ModelError::config(
                    origin,
                    format!(
                        "unsupported model_type '{model_type}'; supported: {}",
                        SUPPORTED_MODEL_TYPES.join(", ")
                    ),
                ))
            }
        };
        let empty = Map::new();
        let text_map = root
            .get("text_config")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let vision_map = root
            .get("vision_config")
            .and_then(Value::as_object)
            .ok_or_else(|| ModelError::config(origin, "key 'vision_config' is missing"))?;
        let t = Fields {
            origin,
            maps: vec![("text_config", text_map), ("top level", root)],
        };
        let rope_map = t
            .get("rope_scaling")
            .or_else(|| t.get("rope_parameters"))
            .and_then(Value::as_object)
            .ok_or_else(|| t.err("rope_scaling' or 'rope_parameters", "is missing"))?;
        let rope = Fields {
            origin,
            maps: vec![
                ("rope_scaling/rope_parameters", rope_map),
                ("text_config", text_map),
                ("top level", root),
            ],
        };
        let qwen3 = family == Family::Qwen3Vl;
        let hidden = t.usize("hidden_size")?;
        let heads = t.usize("num_attention_heads")?;
        // Qwen3's attention_bias covers q, k, v and o; Qwen2's q, k, v always have one, o never.
        let attention_bias = if qwen3 {
            t.bool_or("attention_bias", false)?
        } else {
            true
        };
        let text = TextConfig {
            vocab_size: t.usize("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: t.usize("intermediate_size")?,
            num_hidden_layers: t.usize("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: t.usize("num_key_value_heads")?,
            // transformers' defaults where a key is absent: Qwen3-VL head_dim 128 (not
            // hidden / heads) and eps 1e-6; Qwen2/2.5-VL eps 1e-5.
            head_dim: if qwen3 {
                t.usize_or("head_dim", 128)?
            } else {
                hidden.checked_div(heads).unwrap_or(0)
            },
            rms_norm_eps: t.f64_or("rms_norm_eps", if qwen3 { 1e-6 } else { 1e-5 })?,
            rope_theta: rope.f64("rope_theta")?,
            mrope_section: rope.usizes("mrope_section")?,
            // transformers' Qwen3-VL rotary embedding interleaves whatever the flag says.
            mrope_interleaved: qwen3,
            qkv_bias: attention_bias,
            o_bias: qwen3 && attention_bias,
            qk_norm: qwen3,
            max_position_embeddings: t.usize("max_position_embeddings")?,
            tie_word_embeddings: t.bool_or("tie_word_embeddings", false)?,
        };
        let v = Fields {
            origin,
            maps: vec![("vision_config", vision_map)],
        };
        let (default_act, norm, mlp) = match family {
            Family::Qwen2Vl => ("quick_gelu", NormKind::Layer, VisionMlpKind::Plain),
            Family::Qwen2_5Vl => ("silu", NormKind::Rms, VisionMlpKind::Gated),
            Family::Qwen3Vl => ("gelu_pytorch_tanh", NormKind::Layer, VisionMlpKind::Plain),
        };
        let act_name = match vision_map.get("hidden_act") {
            None | Some(Value::Null) => default_act,
            Some(Value::String(a)) => a.as_str(),
            Some(other) => {
                return Err(v.err("hidden_act", &format!("must be a string, got {other}")))
            }
        };
        let hidden_act = match Activation::parse(act_name) {
            Some(a) if mlp == VisionMlpKind::Plain || a == Activation::Silu => a,
            _ => {
                return Err(ModelError::config(
                    origin,
                    format!(
                        "vision_config.hidden_act '{act_name}' is not supported for {model_type} \
                         (supported: {})",
                        if mlp == VisionMlpKind::Gated {
                            "silu"
                        } else {
                            "quick_gelu, gelu_pytorch_tanh, gelu, silu"
                        }
                    ),
                ))
            }
        };
        // Qwen2-VL names the ViT width `embed_dim` and its merger output `hidden_size`, with the
        // MLP width as `mlp_ratio` (transformers: int(embed_dim * mlp_ratio)).
        let (width, out_hidden_size, intermediate_size) = match family {
            Family::Qwen2Vl => {
                let width = v.usize("embed_dim")?;
                let ratio = v.f64_or("mlp_ratio", 4.0)?;
                if !(ratio.is_finite() && ratio > 0.0 && ratio * width as f64 <= 1e12) {
                    return Err(v.err(
                        "mlp_ratio",
                        &format!("must be a positive number, got {ratio}"),
                    ));
                }
                (
                    width,
                    v.usize("hidden_size")?,
                    (width as f64 * ratio) as usize,
                )
            }
            _ => (
                v.usize("hidden_size")?,
                v.usize("out_hidden_size")?,
                v.usize("intermediate_size")?,
            ),
        };
        let vision = VisionConfig {
            family,
            depth: v.usize("depth")?,
            hidden_size: width,
            num_heads: v.usize("num_heads")?,
            intermediate_size,
            patch_size: v.usize_any(&["patch_size", "spatial_patch_size"])?,
            spatial_merge_size: v.usize("spatial_merge_size")?,
            temporal_patch_size: v.usize("temporal_patch_size")?,
            in_channels: if v.get("in_channels").is_some() || v.get("in_chans").is_some() {
                v.usize_any(&["in_channels", "in_chans"])?
            } else {
                3
            },
            out_hidden_size,
            norm,
            hidden_act,
            mlp,
            patch_bias: qwen3,
            window_size: match family {
                Family::Qwen2_5Vl => Some(v.usize("window_size")?),
                _ => None,
            },
            fullatt_block_indexes: match family {
                Family::Qwen2_5Vl => v.usizes("fullatt_block_indexes")?,
                _ => vec![],
            },
            tokens_per_second: v.f64_or("tokens_per_second", 2.0)?,
            num_position_embeddings: if qwen3 {
                Some(v.usize("num_position_embeddings")?)
            } else {
                None
            },
            deepstack_visual_indexes: if qwen3 {
                v.usizes("deepstack_visual_indexes")?
            } else {
                vec![]
            },
            rms_norm_eps: 1e-6,
        };
        let ids = Fields {
            origin,
            maps: vec![("top level", root), ("text_config", text_map)],
        };
        // Token ids are u32; a value that does not fit is refused, never wrapped.
        let token_id = |x: &Value| -> Result<Option<u32>> {
            match x.as_u64() {
                None => Ok(None),
                Some(u) => u32::try_from(u).map(Some).map_err(|_| {
                    ModelError::config(origin, format!("eos_token_id: {u} is not a token id"))
                }),
            }
        };
        let eos_token_ids = match ids.get("eos_token_id") {
            Some(Value::Array(a)) => a
                .iter()
                .map(token_id)
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
            Some(n @ Value::Number(_)) => token_id(n)?.into_iter().collect(),
            _ => vec![],
        };
        let cfg = QwenVlConfig {
            model_type,
            family,
            text,
            vision,
            image_token_id: ids.u32("image_token_id")?,
            video_token_id: ids.u32("video_token_id")?,
            vision_start_token_id: ids.u32("vision_start_token_id")?,
            vision_end_token_id: ids.u32("vision_end_token_id")?,
            eos_token_ids,
        };
        Ok(cfg)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let t = &self.text;
        if t.num_attention_heads == 0 {
            return Err("num_attention_heads must be at least 1".into());
        }
        if self.family == Family::Qwen3Vl {
            if t.head_dim == 0 || !t.head_dim.is_multiple_of(2) {
                return Err(format!(
                    "head_dim {} must be a positive even number",
                    t.head_dim
                ));
            }
        } else if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if t.num_key_value_heads == 0
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let mrope_total = t
            .mrope_section
            .iter()
            .try_fold(0usize, |a, &b| a.checked_add(b))
            .and_then(|x| x.checked_mul(2));
        if mrope_total != Some(t.head_dim()) || t.mrope_section.len() != 3 {
            return Err(format!(
                "mrope_section {:?} must be three sections summing to head_dim/2 = {}",
                t.mrope_section,
                t.head_dim() / 2
            ));
        }
        let v = &self.vision;
        if v.num_heads == 0
            || !v.hidden_size.is_multiple_of(v.num_heads)
            || !v.head_dim().is_multiple_of(4)
        {
            return Err(format!(
                "vision hidden_size {} / num_heads {} must give a head_dim divisible by 4",
                v.hidden_size, v.num_heads
            ));
        }
        if v.spatial_merge_size == 0 || v.patch_size == 0 || v.temporal_patch_size == 0 {
            return Err(
                "vision_config patch_size, temporal_patch_size and spatial_merge_size must be at least 1"
                    .into(),
            );
        }
        if v.out_hidden_size != t.hidden_size {
            return Err(format!(
                "vision {} {} differs from text hidden_size {}",
                if self.family == Family::Qwen2Vl {
                    "hidden_size (the merger output)"
                } else {
                    "out_hidden_size"
                },
                v.out_hidden_size,
                t.hidden_size
            ));
        }
        if let Some(window) = v.window_size {
            if !v
                .patch_size
                .checked_mul(v.spatial_merge_size)
                .is_some_and(|f| window.is_multiple_of(f) && window >= f)
            {
                return Err(format!(
                    "window_size {window} is not a positive multiple of patch_size*spatial_merge_size",
                ));
            }
        }
        if let Some(&i) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(format!(
                "fullatt_block_indexes names block {i} but depth is {}",
                v.depth
            ));
        }
        if let Some(n) = v.num_position_embeddings {
            let side = v.position_grid_side().unwrap_or(0);
            if n == 0 || side.checked_mul(side) != Some(n) {
                return Err(format!(
                    "vision_config.num_position_embeddings {n} is not a square grid (side x side \
                     entries, e.g. 2304 = 48 x 48)"
                ));
            }
        }
        let ds = &v.deepstack_visual_indexes;
        if let Some(&i) = ds.iter().find(|&&i| i >= v.depth) {
            return Err(format!(
                "vision_config.deepstack_visual_indexes names vision layer {i} but \
                 vision_config.depth is {} (layers 0..{})",
                v.depth,
                v.depth.saturating_sub(1)
            ));
        }
        if let Some((k, &i)) = ds.iter().enumerate().find(|(k, i)| ds[..*k].contains(i)) {
            return Err(format!(
                "vision_config.deepstack_visual_indexes names vision layer {i} twice (entry {k})"
            ));
        }
        if ds.len() > t.num_hidden_layers {
            return Err(format!(
                "vision_config.deepstack_visual_indexes has {} entries but the decoder has only \
                 num_hidden_layers {} to add them to",
                ds.len(),
                t.num_hidden_layers
            ));
        }
        for id in [
            self.image_token_id,
            self.video_token_id,
            self.vision_start_token_id,
            self.vision_end_token_id,
        ] {
            if id as usize >= t.vocab_size {
                return Err(format!(
                    "special token id {id} is outside vocab_size {}",
                    t.vocab_size
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: &str = r#"{
      "model_type": "qwen2_5_vl", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
      "vocab_size": 512, "max_position_embeddings": 2048, "tie_word_embeddings": false,
      "image_token_id": 500, "video_token_id": 501, "vision_start_token_id": 502, "vision_end_token_id": 503,
      "eos_token_id": 2,
      "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
      "vision_config": {"depth": 4, "hidden_act": "silu", "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
        "in_chans": 3, "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        "window_size": 112, "fullatt_block_indexes": [1, 3], "tokens_per_second": 2}
    }"#;

    fn parse(s: &str) -> Result<QwenVlConfig> {
        QwenVlConfig::from_json_str(s, Path::new("config.json"))
    }

    #[test]
    fn huge_sizes_and_token_ids_are_refused_never_wrapped() {
        let huge = FLAT.replace("[2, 3, 3]", "[9223372036854775807, 3, 3]");
        let e = parse(&huge).unwrap_err().to_string();
        assert!(e.contains("mrope_section"), "{e}");
        let wide = FLAT.replace("\"video_token_id\": 501", "\"video_token_id\": 4294967296");
        let e = parse(&wide).unwrap_err().to_string();
        assert!(
            e.contains("video_token_id") && e.contains("4294967296"),
            "{e}"
        );
        let eos = FLAT.replace("\"eos_token_id\": 2", "\"eos_token_id\": [2, 4294967297]");
        let e = parse(&eos).unwrap_err().to_string();
        assert!(e.contains("eos_token_id"), "{e}");
        let patch = FLAT.replace("\"patch_size\": 14", "\"patch_size\": 9223372036854775807");
        assert!(parse(&patch).is_err());
    }

    #[test]
    fn flat_config_parses() {
        let c = parse(FLAT).unwrap();
        assert_eq!(c.text.head_dim(), 16);
        assert_eq!(c.text.mrope_section, vec![2, 3, 3]);
        assert_eq!(c.vision.in_channels, 3);
        assert_eq!(c.vision.patch_dim(), 1176);
        assert_eq!(c.eos_token_ids, vec![2]);
    }

    #[test]
    fn nested_config_with_rope_parameters_parses_to_the_same() {
        let mut v: Value = serde_json::from_str(FLAT).unwrap();
        let o = v.as_object_mut().unwrap();
        let mut text = Map::new();
        for k in [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "rms_norm_eps",
            "vocab_size",
            "max_position_embeddings",
        ] {
            text.insert(k.into(), o.remove(k).unwrap());
        }
        let theta = o.remove("rope_theta").unwrap();
        o.remove("rope_scaling");
        text.insert("rope_parameters".into(), serde_json::json!({"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": theta}));
        o.insert("text_config".into(), Value::Object(text));
        let nested = parse(&v.to_string()).unwrap();
        assert_eq!(nested, parse(FLAT).unwrap());
    }

    #[test]
    fn unsupported_model_type_is_refused_with_the_supported_list() {
        let e = parse(&FLAT.replace("qwen2_5_vl", "llava"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unsupported model_type 'llava'") && e.contains("qwen2_5_vl"),
            "{e}"
        );
    }

    #[test]
    fn missing_key_is_named() {
        let e = parse(&FLAT.replace("\"num_key_value_heads\": 2,", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json") && e.contains("num_key_value_heads"),
            "{e}"
        );
    }

    #[test]
    fn mrope_sections_must_cover_half_the_head() {
        let e = parse(&FLAT.replace("[2, 3, 3]", "[2, 3, 2]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mrope_section"), "{e}");
    }
}
