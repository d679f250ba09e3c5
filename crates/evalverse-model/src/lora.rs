//! LoRA on the Qwen-VL model, in PEFT's format (Hu et al. 2021; PEFT `tuners/lora`): which
//! modules are adapted (names matched as PEFT does, language model only unless the vision tower
//! is asked for), rank, alpha, dropout, rsLoRA scaling; save and load `adapter_config.json` +
//! `adapter_model.safetensors` with PEFT key names (`base_model.model.<module>.lora_A.weight`
//! [r, in], `lora_B.weight` [out, r]) in transformers 4.57's module layout
//! (`model.language_model.*`, `model.visual.*`); loading accepts the original layout too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::model::QwenVl;
use crate::weights::canonical_key;

/// Language-model projections adapted by default (VideoAlign, UnifiedReward, VideoScore2 recipes).
pub const DEFAULT_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The LoRA part of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of A [r, in] and B [out, r].
    pub rank: usize,
    /// Scaling numerator: s = alpha / r (alpha / sqrt(r) with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input while training (PEFT lora_dropout).
    #[serde(default)]
    pub dropout: f64,
    /// Module names to adapt, matched like PEFT's list form: the module path equals a name or
    /// ends with "." + name. Default: the seven language-model projections.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// Also adapt matching modules of the vision tower and merger (default false).
    #[serde(default)]
    pub include_vision: bool,
    /// rsLoRA scaling alpha / sqrt(r) (Kalajdzievski 2023).
    #[serde(default)]
    pub use_rslora: bool,
    /// Seed of A's initialisation.
    #[serde(default)]
    pub seed: u64,
}

fn default_targets() -> Vec<String> {
    DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect()
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if self.rank == 0 {
            return Err("lora.rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("lora.alpha must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "lora.dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.target_modules.is_empty() {
            return Err("lora.target_modules is empty".into());
        }
        Ok(())
    }

    /// Whether the module at `path` (original layout) is a target.
    pub fn matches(&self, path: &str) -> bool {
        if path.starts_with("visual.") && !self.include_vision {
            return false;
        }
        self.target_modules
            .iter()
            .any(|t| path == t || path.ends_with(&format!(".{t}")))
    }
}

/// The module path in transformers 4.57's in-memory layout (what PEFT names adapters by).
pub fn peft_module_path(original: &str) -> String {
    if let Some(rest) = original.strip_prefix("visual.") {
        format!("model.visual.{rest}")
    } else if let Some(rest) = original.strip_prefix("model.") {
        format!("model.language_model.{rest}")
    } else {
        original.to_string()
    }
}

/// Attach fresh adapters to every matching module; returns the adapted module paths.
pub fn apply_lora<B: Backend>(model: &mut QwenVl<B>, cfg: &LoraConfig) -> Result<Vec<String>> {
    cfg.check().map_err(ModelError::Invalid)?;
    let mut adapted = Vec::new();
    let scale = cfg.scale();
    let mut k = 0u64;
    model.for_each_linear(|path, lin| {
        if cfg.matches(path) {
            lin.add_lora(
                cfg.rank,
                scale,
                cfg.dropout,
                cfg.seed.wrapping_mul(1_000_003).wrapping_add(k),
            );
            adapted.push(path.to_string());
        }
        k += 1;
    });
    if adapted.is_empty() {
        return Err(ModelError::Invalid(format!(
            "lora.target_modules {:?} match no module of the model",
            cfg.target_modules
        )));
    }
    Ok(adapted)
}

/// Switch adapter dropout on (training) or off (evaluation).
pub fn set_training<B: Backend>(model: &mut QwenVl<B>, training: bool) {
    model.for_each_linear(|_, lin| {
        if let Some(l) = lin.lora.as_mut() {
            l.training = training;
        }
    });
}

pub fn merge_all<B: Backend>(model: &mut QwenVl<B>) {
    model.for_each_linear(|_, lin| lin.merge());
}

pub fn unmerge_all<B: Backend>(model: &mut QwenVl<B>) {
    model.for_each_linear(|_, lin| lin.unmerge());
}

/// Remove all adapters (after merging, to export plain weights).
pub fn drop_adapters<B: Backend>(model: &mut QwenVl<B>) {
    model.for_each_linear(|_, lin| lin.lora = None);
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if ".^$*+?()[]{}|\\".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// PEFT `target_modules` as a regex that fullmatches exactly the adapted modules.
fn target_regex(paths: &[String]) -> String {
    let names: BTreeSet<String> = paths
        .iter()
        .map(|p| regex_escape(&peft_module_path(p)))
        .collect();
    // Collapse layer indices so the pattern stays short: layers.<n>. -> layers\.\d+\.
    let generic: BTreeSet<String> = names
        .iter()
        .map(|n| {
            let mut out = String::new();
            let mut rest = n.as_str();
            while let Some(i) = rest.find("\\.") {
                let (head, tail) = rest.split_at(i + 2);
                out.push_str(head);
                let digits: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !digits.is_empty() && tail[digits.len()..].starts_with("\\.") {
                    out.push_str("\\d+");
                    rest = &tail[digits.len()..];
                } else {
                    rest = tail;
                }
            }
            out.push_str(rest);
            out
        })
        .collect();
    format!("^({})$", generic.into_iter().collect::<Vec<_>>().join("|"))
}

fn f32_bytes(t: Tensor<impl Backend, 2>) -> Vec<u8> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32")
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// Write `adapter_config.json` and `adapter_model.safetensors` (f32) into `dir`.
pub fn save_peft<B: Backend>(
    model: &mut QwenVl<B>,
    cfg: &LoraConfig,
    dir: &Path,
    base_model: &str,
) -> Result<()> {
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let mut paths = Vec::new();
    let mut merged = false;
    model.for_each_linear(|path, lin| {
        if let Some(l) = &lin.lora {
            merged |= l.merged;
            let key = format!("base_model.model.{}", peft_module_path(path));
            let a = l.lora_a.val(); // [in, r]
            let b = l.lora_b.val(); // [r, out]
            let (din, r, dout) = (a.dims()[0], a.dims()[1], b.dims()[1]);
            tensors.insert(
                format!("{key}.lora_A.weight"),
                (vec![r, din], f32_bytes(a.transpose())),
            );
            tensors.insert(
                format!("{key}.lora_B.weight"),
                (vec![dout, r], f32_bytes(b.transpose())),
            );
            paths.push(path.to_string());
        }
    });
    if paths.is_empty() {
        return Err(ModelError::Invalid(
            "the model has no LoRA adapters to save".into(),
        ));
    }
    if merged {
        return Err(ModelError::Invalid(
            "adapters are merged into the base; unmerge before saving a PEFT adapter".into(),
        ));
    }
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "use_rslora": cfg.use_rslora,
        "target_modules": target_regex(&paths),
        "bias": "none",
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": false,
        "revision": null,
    });
    // Our recipe-level names live beside PEFT's config (PEFT warns about unknown keys in it).
    let sidecar = serde_json::json!({"target_modules": cfg.target_modules, "include_vision": cfg.include_vision, "seed": cfg.seed});
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, (shape, bytes))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .expect("sizes agree"),
            )
        })
        .collect();
    let st = safetensors::serialize(
        views,
        &Some(HashMap::from([("format".to_string(), "pt".to_string())])),
    )
    .map_err(|e| ModelError::Invalid(format!("serialising adapter: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    write_atomic(&dir.join("adapter_model.safetensors"), &st)?;
    write_atomic(
        &dir.join(SIDECAR),
        serde_json::to_string_pretty(&sidecar)
            .expect("json")
            .as_bytes(),
    )?;
    let text = serde_json::to_string_pretty(&config).expect("json");
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())
}

/// evalverse's own notes on an adapter (recipe target names, seed), beside adapter_config.json.
pub const SIDECAR: &str = "evalverse_lora.json";

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    evalverse_data::error::write_atomic(path, bytes).map_err(|e| ModelError::Invalid(e.to_string()))
}

/// Read a PEFT adapter folder (ours or Python PEFT's) and attach it to the model. Errors name the
/// file and the key: a target the model lacks, a missing A or B, a shape that does not fit.
pub fn load_peft<B: Backend>(model: &mut QwenVl<B>, dir: &Path) -> Result<LoraConfig> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::config(&cfg_path, format!("not valid JSON: {e}")))?;
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    if get("peft_type").and_then(|x| x.as_str()) != Some("LORA") {
        return Err(ModelError::config(&cfg_path, "peft_type must be \"LORA\""));
    }
    if get("use_dora").and_then(|x| x.as_bool()) == Some(true) {
        return Err(ModelError::config(
            &cfg_path,
            "DoRA adapters are not supported",
        ));
    }
    let rank = get("r")
        .and_then(|x| x.as_u64())
        .ok_or_else(|| ModelError::config(&cfg_path, "key 'r' missing"))? as usize;
    let alpha = get("lora_alpha")
        .and_then(|x| x.as_f64())
        .ok_or_else(|| ModelError::config(&cfg_path, "key 'lora_alpha' missing"))?;
    let use_rslora = get("use_rslora").and_then(|x| x.as_bool()).unwrap_or(false);
    let dropout = get("lora_dropout").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| ModelError::io(&st_path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        ModelError::Weights(format!(
            "{}: corrupt safetensors header: {e}",
            st_path.display()
        ))
    })?;
    // module path (original layout) -> (A [r, in], B [out, r])
    let mut found: BTreeMap<String, [Option<(Vec<usize>, Vec<f32>)>; 2]> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let Some(rest) = name.strip_prefix("base_model.model.") else {
            return Err(ModelError::Weights(format!(
                "{}: unexpected key '{name}'",
                st_path.display()
            )));
        };
        let (module, which) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
            (m, 0)
        } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
            (m, 1)
        } else {
            return Err(ModelError::Weights(format!(
                "{}: unexpected key '{name}' (only LoRA A/B weights are supported)",
                st_path.display()
            )));
        };
        let vals: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::BF16 => view
                .data()
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            safetensors::Dtype::F16 => view
                .data()
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            d => {
                return Err(ModelError::Weights(format!(
                    "{}: '{name}' has dtype {d:?}",
                    st_path.display()
                )))
            }
        };
        found.entry(canonical_key(module)).or_insert([None, None])[which] =
            Some((view.shape().to_vec(), vals));
    }
    let scale = if use_rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    };
    let mut err: Option<ModelError> = None;
    let mut used = BTreeSet::new();
    model.for_each_linear(|path, lin| {
        let Some(pair) = found.get(path) else { return };
        used.insert(path.to_string());
        let (din, dout) = (lin.d_in(), lin.d_out());
        let res = (|| -> Result<()> {
            let [Some((sa, a)), Some((sb, b))] = pair else {
                return Err(ModelError::Weights(format!("{}: module '{path}' lacks lora_A or lora_B", st_path.display())));
            };
            if sa != &vec![rank, din] || sb != &vec![dout, rank] {
                return Err(ModelError::Weights(format!(
                    "{}: '{path}' has lora_A {sa:?} and lora_B {sb:?}; the model needs [{rank}, {din}] and [{dout}, {rank}]",
                    st_path.display()
                )));
            }
            let device = lin.weight.val().device();
            let a = Tensor::<B, 2>::from_data(TensorData::new(a.clone(), [rank, din]), (&device, DType::F32)).transpose();
            let b = Tensor::<B, 2>::from_data(TensorData::new(b.clone(), [dout, rank]), (&device, DType::F32)).transpose();
            lin.lora = Some(crate::nn::LoraAdapter {
                lora_a: Param::from_tensor(a.require_grad()),
                lora_b: Param::from_tensor(b.require_grad()),
                scale,
                dropout,
                training: false,
                merged: false,
            });
            Ok(())
        })();
        if let (Err(e), None) = (res, &err) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if let Some(missing) = found.keys().find(|k| !used.contains(*k)) {
        return Err(ModelError::Weights(format!(
            "{}: adapter targets '{missing}', which the model does not have",
            st_path.display()
        )));
    }
    let ev: Option<serde_json::Value> = std::fs::read_to_string(dir.join(SIDECAR))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let ev = ev.as_ref();
    Ok(LoraConfig {
        rank,
        alpha,
        dropout,
        target_modules: ev
            .and_then(|e| e.get("target_modules"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_else(|| {
                found
                    .keys()
                    .filter_map(|k| k.rsplit('.').next().map(str::to_owned))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }),
        include_vision: found.keys().any(|k| k.starts_with("visual.")),
        use_rslora,
        seed: 0,
    })
}

/// Read a PEFT adapter's tensors: module (original layout) -> (A [r, in], B [out, r]) and its scale.
#[allow(clippy::type_complexity)]
pub fn read_peft(
    dir: &Path,
) -> Result<(
    BTreeMap<String, (Vec<f32>, Vec<f32>, usize, usize, usize)>,
    f64,
)> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::config(&cfg_path, e.to_string()))?;
    let r = v["r"]
        .as_f64()
        .ok_or_else(|| ModelError::config(&cfg_path, "key 'r' missing"))?;
    let alpha = v["lora_alpha"]
        .as_f64()
        .ok_or_else(|| ModelError::config(&cfg_path, "key 'lora_alpha' missing"))?;
    let scale = if v["use_rslora"].as_bool() == Some(true) {
        alpha / r.sqrt()
    } else {
        alpha / r
    };
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| ModelError::io(&st_path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::Weights(format!("{}: {e}", st_path.display())))?;
    let mut parts: BTreeMap<String, [Option<(Vec<usize>, Vec<f32>)>; 2]> = BTreeMap::new();
    for (name, t) in st.tensors() {
        let f: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let rest = name.strip_prefix("base_model.model.").unwrap_or(&name);
        let (m, k) = match (
            rest.strip_suffix(".lora_A.weight"),
            rest.strip_suffix(".lora_B.weight"),
        ) {
            (Some(m), _) => (m, 0),
            (_, Some(m)) => (m, 1),
            _ => continue,
        };
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(ModelError::Weights(format!(
                "{}: '{name}' is not f32",
                st_path.display()
            )));
        }
        parts.entry(canonical_key(m)).or_insert([None, None])[k] = Some((t.shape().to_vec(), f));
    }
    let mut out = BTreeMap::new();
    for (m, p) in parts {
        if let [Some((sa, a)), Some((sb, b))] = p {
            out.insert(m, (a, b, sa[0], sa[1], sb[0]));
        }
    }
    Ok((out, scale))
}

/// Save the sum of the adapter in `first` and the model's current adapters as one PEFT adapter
/// of rank r1 + r2: A = [A1; A2], B = [s1 B1, s2 B2], alpha = r1 + r2 (scale 1). Exact: the
/// stacked adapter adds s1 B1 A1 + s2 B2 A2, what the two adapters add one after the other.
pub fn save_stacked_peft<B: Backend>(
    first: &Path,
    model: &mut QwenVl<B>,
    dir: &Path,
    base_model: &str,
) -> Result<()> {
    let (a1s, s1) = read_peft(first)?;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let mut paths = Vec::new();
    let mut ranks = BTreeSet::new();
    model.for_each_linear(|path, lin| {
        let Some(l) = &lin.lora else { return };
        let a2: Vec<f32> = l
            .lora_a
            .val()
            .transpose()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32"); // [r2, in]
        let b2: Vec<f32> = l
            .lora_b
            .val()
            .transpose()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32"); // [out, r2]
        let (din, dout) = (lin.d_in(), lin.d_out());
        let r2 = a2.len() / din;
        let s2 = l.scale;
        let (a1, b1, r1) = match a1s.get(path) {
            Some((a, b, r, _, _)) => (a.clone(), b.clone(), *r),
            None => (vec![], vec![], 0),
        };
        let r = r1 + r2;
        ranks.insert(r);
        let mut a = a1;
        a.extend_from_slice(&a2);
        let mut b = vec![0f32; dout * r];
        for o in 0..dout {
            for k in 0..r1 {
                b[o * r + k] = (s1 * b1[o * r1 + k] as f64) as f32;
            }
            for k in 0..r2 {
                b[o * r + r1 + k] = (s2 * b2[o * r2 + k] as f64) as f32;
            }
        }
        let key = format!("base_model.model.{}", peft_module_path(path));
        tensors.insert(
            format!("{key}.lora_A.weight"),
            (
                vec![r, din],
                a.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        );
        tensors.insert(
            format!("{key}.lora_B.weight"),
            (
                vec![dout, r],
                b.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        );
        paths.push(path.to_string());
    });
    if ranks.len() != 1 {
        return Err(ModelError::Invalid(format!(
            "stacked adapters need one rank for every module, got {ranks:?}"
        )));
    }
    let r = *ranks.iter().next().expect("one rank");
    let config = serde_json::json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": r, "lora_alpha": r, "lora_dropout": 0.0, "use_rslora": false,
        "target_modules": target_regex(&paths), "bias": "none", "fan_in_fan_out": false,
        "init_lora_weights": true, "inference_mode": true, "modules_to_save": null,
        "layers_to_transform": null, "layers_pattern": null, "rank_pattern": {}, "alpha_pattern": {},
        "use_dora": false, "revision": null,
    });
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, (s, b))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("sizes"),
            )
        })
        .collect();
    let st = safetensors::serialize(
        views,
        &Some(HashMap::from([("format".to_string(), "pt".to_string())])),
    )
    .map_err(|e| ModelError::Invalid(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    write_atomic(&dir.join("adapter_model.safetensors"), &st)?;
    write_atomic(
        &dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&config)
            .expect("json")
            .as_bytes(),
    )
}
