//! The model configuration, read field by field from a checkpoint's config.json. Accepts the flat
//! Hub form of Qwen2-VL / Qwen2.5-VL and the nested transformers-5 form (`text_config`,
//! `vision_config`), `rope_scaling` or `rope_parameters`, `rope_theta` at either level
//! (../shared/reference/QWEN_VL.md §6.1). Differences between family members are flags here.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// Model types this crate implements.
pub const SUPPORTED_MODEL_TYPES: [&str; 1] = ["qwen2_5_vl"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisionConfig {
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
    /// Window side in pixels (112 = 4x4 merged tokens with patch 14, merge 2).
    pub window_size: usize,
    /// Blocks that attend over the whole frame instead of windows.
    pub fullatt_block_indexes: Vec<usize>,
    /// M-RoPE time units per second of video.
    pub tokens_per_second: f64,
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// M-RoPE split of the rotary half-dimension into (t, h, w) sections.
    pub mrope_section: Vec<usize>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QwenVlConfig {
    pub model_type: String,
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
        let expected = [
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
                "vision_config hidden_size, in_channels, temporal_patch_size, patch_size",
            ),
        ];
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
        if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(ModelError::config(
                origin,
                format!(
                    "unsupported model_type '{model_type}'; supported: {}",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            ));
        }
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
        let text = TextConfig {
            vocab_size: t.usize("vocab_size")?,
            hidden_size: t.usize("hidden_size")?,
            intermediate_size: t.usize("intermediate_size")?,
            num_hidden_layers: t.usize("num_hidden_layers")?,
            num_attention_heads: t.usize("num_attention_heads")?,
            num_key_value_heads: t.usize("num_key_value_heads")?,
            rms_norm_eps: t.f64_or("rms_norm_eps", 1e-6)?,
            rope_theta: rope.f64("rope_theta")?,
            mrope_section: rope.usizes("mrope_section")?,
            max_position_embeddings: t.usize("max_position_embeddings")?,
            tie_word_embeddings: t.bool_or("tie_word_embeddings", false)?,
        };
        let v = Fields {
            origin,
            maps: vec![("vision_config", vision_map)],
        };
        let vision = VisionConfig {
            depth: v.usize("depth")?,
            hidden_size: v.usize_any(&["hidden_size", "embed_dim"])?,
            num_heads: v.usize("num_heads")?,
            intermediate_size: v.usize("intermediate_size")?,
            patch_size: v.usize_any(&["patch_size", "spatial_patch_size"])?,
            spatial_merge_size: v.usize("spatial_merge_size")?,
            temporal_patch_size: v.usize("temporal_patch_size")?,
            in_channels: v.usize_any(&["in_channels", "in_chans"])?,
            out_hidden_size: v.usize_any(&["out_hidden_size"])?,
            window_size: v.usize("window_size")?,
            fullatt_block_indexes: v.usizes("fullatt_block_indexes")?,
            tokens_per_second: v.f64_or("tokens_per_second", 2.0)?,
            rms_norm_eps: 1e-6,
        };
        let act = vision_map
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("silu");
        if act != "silu" {
            return Err(ModelError::config(
                origin,
                format!("vision_config.hidden_act '{act}' is not supported (qwen2_5_vl uses silu)"),
            ));
        }
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
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
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
        if mrope_total != Some(t.head_dim()) {
            return Err(format!(
                "mrope_section {:?} must sum to head_dim/2 = {}",
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
        if v.out_hidden_size != t.hidden_size {
            return Err(format!(
                "vision out_hidden_size {} differs from text hidden_size {}",
                v.out_hidden_size, t.hidden_size
            ));
        }
        if !v
            .patch_size
            .checked_mul(v.spatial_merge_size)
            .is_some_and(|f| v.window_size.is_multiple_of(f))
        {
            return Err(format!(
                "window_size {} is not a multiple of patch_size*spatial_merge_size",
                v.window_size
            ));
        }
        if let Some(&i) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(format!(
                "fullatt_block_indexes names block {i} but depth is {}",
                v.depth
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
