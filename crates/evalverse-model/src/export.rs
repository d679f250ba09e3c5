//! Merged full weights for publishing: a base checkpoint with a PEFT LoRA adapter folded in,
//! written in the key layout its transformers class reads (the original `visual.*`, `model.*`,
//! `lm_head.*`; Qwen3-VL's `model.visual.*`, `model.language_model.*`, which its class has no
//! conversion for) and the
//! base's own dtype per tensor, as `model.safetensors` or shards with
//! `model.safetensors.index.json` (transformers' `save_pretrained` naming). The merge is PEFT's
//! `merge_and_unload`: W' = W + s * B A computed in f32, cast back to the tensor's dtype
//! (PEFT `tuners/lora/layer.py` `get_delta_weight`). Tensors stream one shard at a time, so a
//! 7B checkpoint never sits in memory whole.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{ModelError, Result};
use crate::weights::{canonical_key, CheckpointFiles};
use crate::Cpu;

/// The shard index transformers writes beside sharded weights.
pub const INDEX: &str = "model.safetensors.index.json";

/// One LoRA module of an adapter: A [r, in], B [out, r], f32.
struct Module {
    a: Vec<f32>,
    b: Vec<f32>,
    rank: usize,
    d_in: usize,
    d_out: usize,
}

/// A PEFT adapter read strictly: every key is a LoRA A or B weight, every module has both, and
/// the shapes agree with each other.
pub struct Adapter {
    modules: BTreeMap<String, Module>,
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scale: f64,
    pub rank: usize,
}

fn f32s(data: &[u8], dtype: StDtype) -> Option<Vec<f32>> {
    Some(match dtype {
        StDtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StDtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StDtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

fn to_bytes(v: &[f32], dtype: StDtype) -> Vec<u8> {
    match dtype {
        StDtype::BF16 => v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect(),
        StDtype::F16 => v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

impl Adapter {
    /// Read `adapter_config.json` + `adapter_model.safetensors` from `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(&cfg_path, format!("not valid JSON: {e}")))?;
        if v["peft_type"].as_str() != Some("LORA") {
            return Err(ModelError::config(&cfg_path, "peft_type must be \"LORA\""));
        }
        if v["use_dora"].as_bool() == Some(true) {
            return Err(ModelError::config(
                &cfg_path,
                "DoRA adapters are not supported",
            ));
        }
        let rank = v["r"].as_u64().filter(|&r| r > 0).ok_or_else(|| {
            ModelError::config(&cfg_path, "key 'r' missing or not a positive integer")
        })? as usize;
        let alpha = v["lora_alpha"]
            .as_f64()
            .ok_or_else(|| ModelError::config(&cfg_path, "key 'lora_alpha' missing"))?;
        let scale = if v["use_rslora"].as_bool() == Some(true) {
            alpha / (rank as f64).sqrt()
        } else {
            alpha / rank as f64
        };
        let st_path = dir.join("adapter_model.safetensors");
        let bytes = std::fs::read(&st_path).map_err(|e| ModelError::io(&st_path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| {
            ModelError::Weights(format!(
                "{}: corrupt safetensors header: {e}",
                st_path.display()
            ))
        })?;
        let bad = |m: String| ModelError::Weights(format!("{}: {m}", st_path.display()));
        let mut parts: BTreeMap<String, [Option<(Vec<usize>, Vec<f32>)>; 2]> = BTreeMap::new();
        for (name, view) in st.tensors() {
            let rest = name
                .strip_prefix("base_model.model.")
                .ok_or_else(|| bad(format!("unexpected key '{name}'")))?;
            let (module, which) = match (
                rest.strip_suffix(".lora_A.weight"),
                rest.strip_suffix(".lora_B.weight"),
            ) {
                (Some(m), _) => (m, 0),
                (_, Some(m)) => (m, 1),
                _ => {
                    return Err(bad(format!(
                        "unexpected key '{name}' (only LoRA A/B weights can be merged)"
                    )))
                }
            };
            let vals = f32s(view.data(), view.dtype())
                .ok_or_else(|| bad(format!("'{name}' has dtype {:?}", view.dtype())))?;
            if view.shape().len() != 2 {
                return Err(bad(format!("'{name}' has shape {:?}", view.shape())));
            }
            parts.entry(canonical_key(module)).or_insert([None, None])[which] =
                Some((view.shape().to_vec(), vals));
        }
        let mut modules = BTreeMap::new();
        for (m, p) in parts {
            let [Some((sa, a)), Some((sb, b))] = p else {
                return Err(bad(format!("module '{m}' lacks lora_A or lora_B")));
            };
            if sa[0] != rank || sb[1] != rank {
                return Err(bad(format!(
                    "module '{m}': lora_A {sa:?} and lora_B {sb:?} do not have rank r = {rank}"
                )));
            }
            modules.insert(
                m,
                Module {
                    a,
                    b,
                    rank,
                    d_in: sa[1],
                    d_out: sb[0],
                },
            );
        }
        if modules.is_empty() {
            return Err(bad("no LoRA weights".into()));
        }
        Ok(Adapter {
            modules,
            scale,
            rank,
        })
    }

    /// Adapted module paths (original layout).
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }
}

/// How the merged weights are written.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// Largest shard in bytes; a tensor larger than this gets a shard of its own (as transformers).
    pub max_shard_bytes: u64,
    /// Dtype of every floating tensor; None keeps each tensor's dtype from the base.
    pub dtype: Option<StDtype>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    pub tensors: usize,
    pub parameters: u64,
    pub merged_modules: usize,
    /// Weight file names, in order.
    pub files: Vec<String>,
    pub total_bytes: u64,
    /// Dtypes written, by name (e.g. "F32").
    pub dtypes: Vec<String>,
}

struct Source {
    file: usize,
    stored: String,
    dtype: StDtype,
    shape: Vec<usize>,
}

/// W + s * B A for weight `w` ([out, ...] with prod(...) = in) in f32.
fn merged_values(w: &[f32], m: &Module, scale: f64) -> Vec<f32> {
    let device = Default::default();
    let b = Tensor::<Cpu, 2>::from_data(TensorData::new(m.b.clone(), [m.d_out, m.rank]), &device);
    let a = Tensor::<Cpu, 2>::from_data(TensorData::new(m.a.clone(), [m.rank, m.d_in]), &device);
    let w = Tensor::<Cpu, 2>::from_data(TensorData::new(w.to_vec(), [m.d_out, m.d_in]), &device);
    (w + b.matmul(a) * scale)
        .into_data()
        .to_vec::<f32>()
        .expect("f32")
}

/// Write the base in `files` with `adapter` merged into `dir` (which must exist): weights, and
/// the index when there is more than one shard. Every adapter module must be a weight of the base
/// with the adapter's shape.
pub fn write_merged(
    files: &CheckpointFiles,
    adapter: Option<&Adapter>,
    dir: &Path,
    opts: &MergeOptions,
) -> Result<MergeSummary> {
    if let Some(d) = opts.dtype {
        if !matches!(d, StDtype::F32 | StDtype::BF16 | StDtype::F16) {
            return Err(ModelError::Invalid(format!(
                "cannot write weights as {d:?}"
            )));
        }
    }
    let mut maps = Vec::new();
    for path in &files.weights {
        let f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the base checkpoint is a read-only input; nothing in this process writes it.
        let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| ModelError::io(path, e))?;
        maps.push((path.clone(), mmap));
    }
    // canonical key -> where it is stored
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    for (i, (path, mmap)) in maps.iter().enumerate() {
        let st = SafeTensors::deserialize(mmap).map_err(|e| {
            ModelError::Weights(format!(
                "{}: corrupt safetensors header: {e}",
                path.display()
            ))
        })?;
        for (name, view) in st.tensors() {
            let key = canonical_key(&name);
            if let Some(other) = sources.get(&key) {
                return Err(ModelError::Weights(format!(
                    "tensor '{key}' appears twice ({} and {})",
                    maps[other.file].0.display(),
                    path.display()
                )));
            }
            sources.insert(
                key,
                Source {
                    file: i,
                    stored: name.clone(),
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                },
            );
        }
    }
    // Qwen3-VL's transformers class loads only its in-memory layout (no key conversion).
    let family = std::fs::read_to_string(&files.config)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(|m| m.as_str())
                .and_then(crate::config::Family::from_model_type)
        })
        .unwrap_or(crate::config::Family::Qwen2_5Vl);
    let out_key = |key: &str| crate::init::stored_key(family, key);
    let out_dtype = |s: &Source| match (opts.dtype, s.dtype) {
        (Some(d), StDtype::F32 | StDtype::BF16 | StDtype::F16) => d,
        _ => s.dtype,
    };
    if let Some(ad) = adapter {
        for (m, lora) in &ad.modules {
            let key = format!("{m}.weight");
            let s = sources.get(&key).ok_or_else(|| {
                ModelError::Weights(format!(
                    "the adapter targets '{m}', but the base has no tensor '{key}'"
                ))
            })?;
            let rest: usize = s.shape.iter().skip(1).product();
            if s.shape.len() < 2 || s.shape[0] != lora.d_out || rest != lora.d_in {
                return Err(ModelError::Weights(format!(
                    "adapter module '{m}' maps {} -> {} features, but the base's '{key}' has shape {:?}",
                    lora.d_in, lora.d_out, s.shape
                )));
            }
            if !matches!(s.dtype, StDtype::F32 | StDtype::BF16 | StDtype::F16) {
                return Err(ModelError::Weights(format!(
                    "'{key}' has dtype {:?}; only float weights can be merged",
                    s.dtype
                )));
            }
        }
    }
    // Plan shards in key order from sizes alone, so names can say "-of-N" before writing.
    let mut plan: Vec<Vec<&String>> = vec![vec![]];
    let mut size = 0u64;
    for (key, s) in &sources {
        let n = s.shape.iter().product::<usize>() as u64 * out_dtype(s).size() as u64;
        if size > 0 && size + n > opts.max_shard_bytes {
            plan.push(vec![]);
            size = 0;
        }
        plan.last_mut().expect("one shard").push(key);
        size += n;
    }
    let count = plan.len();
    let names: Vec<String> = if count == 1 {
        vec!["model.safetensors".to_string()]
    } else {
        (1..=count)
            .map(|i| format!("model-{i:05}-of-{count:05}.safetensors"))
            .collect()
    };
    let mut weight_map = BTreeMap::new();
    let mut total_bytes = 0u64;
    let mut parameters = 0u64;
    let mut merged_modules = 0;
    let mut dtypes = std::collections::BTreeSet::new();
    for (keys, file) in plan.iter().zip(&names) {
        let mut tensors: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for key in keys {
            let s = &sources[*key];
            let (path, mmap) = &maps[s.file];
            let st = SafeTensors::deserialize(mmap)
                .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
            let view = st.tensor(&s.stored).map_err(|e| {
                ModelError::Weights(format!("{}: '{}': {e}", path.display(), s.stored))
            })?;
            let to = out_dtype(s);
            let lora = key
                .strip_suffix(".weight")
                .and_then(|m| adapter.and_then(|a| a.modules.get(m).map(|l| (l, a.scale))));
            let bytes = match lora {
                Some((l, scale)) => {
                    merged_modules += 1;
                    let w = f32s(view.data(), s.dtype).expect("checked float");
                    to_bytes(&merged_values(&w, l, scale), to)
                }
                None if to == s.dtype => view.data().to_vec(),
                None => to_bytes(&f32s(view.data(), s.dtype).expect("float"), to),
            };
            total_bytes += bytes.len() as u64;
            parameters += s.shape.iter().product::<usize>() as u64;
            dtypes.insert(format!("{to:?}"));
            weight_map.insert(out_key(key), file.clone());
            tensors.push((out_key(key), to, s.shape.clone(), bytes));
        }
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(k, d, shape, b)| {
                (
                    k.clone(),
                    TensorView::new(*d, shape.clone(), b).expect("sizes agree"),
                )
            })
            .collect();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize(views, &Some(meta))
            .map_err(|e| ModelError::Invalid(format!("serialising {file}: {e}")))?;
        crate::lora::write_atomic(&dir.join(file), &bytes)?;
    }
    if count > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total_bytes, "total_parameters": parameters},
            "weight_map": weight_map,
        });
        crate::lora::write_atomic(
            &dir.join(INDEX),
            serde_json::to_string_pretty(&index)
                .expect("json")
                .as_bytes(),
        )?;
    }
    Ok(MergeSummary {
        tensors: sources.len(),
        parameters,
        merged_modules,
        files: names,
        total_bytes,
        dtypes: dtypes.into_iter().collect(),
    })
}

/// Files of a checkpoint folder beside the weights that a published model carries (tokenizer,
/// chat template, processor configs, generation config), those present in `dir`.
pub fn companion_files(dir: &Path) -> Vec<PathBuf> {
    [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "chat_template.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
        "generation_config.json",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.is_file())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_st(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| to_bytes(v, StDtype::F32))
            .collect();
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((k, s, _), b)| {
                (
                    k.to_string(),
                    TensorView::new(StDtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, &None).unwrap()).unwrap();
    }

    fn adapter_dir(dir: &Path, a: Vec<f32>, b: Vec<f32>, alpha: f64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("adapter_config.json"),
            format!(r#"{{"peft_type":"LORA","r":1,"lora_alpha":{alpha}}}"#),
        )
        .unwrap();
        write_st(
            &dir.join("adapter_model.safetensors"),
            &[
                (
                    "base_model.model.model.language_model.layers.0.mlp.up_proj.lora_A.weight",
                    vec![1, 2],
                    a,
                ),
                (
                    "base_model.model.model.language_model.layers.0.mlp.up_proj.lora_B.weight",
                    vec![3, 1],
                    b,
                ),
            ],
        );
    }

    #[test]
    fn merge_adds_scaled_b_times_a_in_the_original_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("w.safetensors");
        // New layout on disk; the merge writes the original one.
        write_st(
            &base,
            &[
                (
                    "model.language_model.layers.0.mlp.up_proj.weight",
                    vec![3, 2],
                    vec![1., 2., 3., 4., 5., 6.],
                ),
                ("model.language_model.norm.weight", vec![2], vec![1., 1.]),
            ],
        );
        // s = 2 / 1; delta = 2 * [1,0,-1]^T [0.5, 1] = [[1,2],[0,0],[-1,-2]]
        adapter_dir(
            &tmp.path().join("ad"),
            vec![0.5, 1.0],
            vec![1., 0., -1.],
            2.0,
        );
        let ad = Adapter::read(&tmp.path().join("ad")).unwrap();
        let files = CheckpointFiles {
            config: tmp.path().join("config.json"),
            weights: vec![base],
            tokenizer: None,
        };
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let opts = MergeOptions {
            max_shard_bytes: 1 << 30,
            dtype: None,
        };
        let s = write_merged(&files, Some(&ad), &out, &opts).unwrap();
        assert_eq!((s.merged_modules, s.files.len()), (1, 1));
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w = st.tensor("model.layers.0.mlp.up_proj.weight").unwrap();
        assert_eq!(w.shape(), &[3, 2]);
        assert_eq!(
            f32s(w.data(), w.dtype()).unwrap(),
            vec![2., 4., 3., 4., 4., 4.]
        );
        assert!(st.tensor("model.norm.weight").is_ok());
    }

    #[test]
    fn adapter_for_a_missing_or_misshaped_weight_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("w.safetensors");
        write_st(
            &base,
            &[("model.layers.0.mlp.up_proj.weight", vec![2, 2], vec![0.; 4])],
        );
        adapter_dir(
            &tmp.path().join("ad"),
            vec![0.5, 1.0],
            vec![1., 0., -1.],
            2.0,
        );
        let ad = Adapter::read(&tmp.path().join("ad")).unwrap();
        let files = CheckpointFiles {
            config: tmp.path().join("config.json"),
            weights: vec![base],
            tokenizer: None,
        };
        let opts = MergeOptions {
            max_shard_bytes: 1 << 30,
            dtype: None,
        };
        let e = write_merged(&files, Some(&ad), tmp.path(), &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("model.layers.0.mlp.up_proj") && e.contains("[2, 2]"),
            "{e}"
        );
    }

    #[test]
    fn adapter_with_a_lone_lora_a_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ad");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("adapter_config.json"),
            r#"{"peft_type":"LORA","r":1,"lora_alpha":1}"#,
        )
        .unwrap();
        write_st(
            &dir.join("adapter_model.safetensors"),
            &[(
                "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
                vec![1, 2],
                vec![0.; 2],
            )],
        );
        let e = Adapter::read(&dir).err().unwrap().to_string();
        assert!(e.contains("lacks lora_A or lora_B"), "{e}");
    }
}
