//! Checkpoint loading: a local folder or `hf:ORG/NAME[@REV]` through hf-hub (its cache; offline
//! when HF_HUB_OFFLINE is set; token from HF_TOKEN or the cache, never printed), single or sharded
//! safetensors (model.safetensors.index.json), both Qwen-VL key layouts, bf16/f16/f32 on disk into
//! the dtype the run asks for. A missing, unexpected or mis-shaped tensor is an error naming the
//! key and both shapes; a corrupt header names the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{ModelError, Result};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub { repo: String, revision: String },
}

impl ModelSource {
    /// `hf:ORG/NAME[@REV]` or a folder path.
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix("hf:") {
            Some(rest) => {
                let (repo, revision) = match rest.split_once('@') {
                    Some((r, rev)) => (r, rev),
                    None => (rest, "main"),
                };
                if repo.split('/').count() != 2
                    || repo.split('/').any(str::is_empty)
                    || revision.is_empty()
                {
                    return Err(ModelError::Invalid(format!(
                        "model source '{s}': expected hf:ORG/NAME[@REV]"
                    )));
                }
                Ok(ModelSource::Hub {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                })
            }
            None => Ok(ModelSource::Local(PathBuf::from(s))),
        }
    }

    /// Fetch (or find) the files of the checkpoint and return their local paths.
    /// The checkpoint's files, with its config.json read (`CheckpointFiles::check_config`).
    pub fn resolve(&self) -> Result<CheckpointFiles> {
        let files = match self {
            ModelSource::Local(dir) => CheckpointFiles::in_folder(dir)?,
            ModelSource::Hub { repo, revision } => resolve_hub(repo, revision)?,
        };
        files.check_config()?;
        Ok(files)
    }
}

/// Local paths of a checkpoint's files.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub tokenizer: Option<PathBuf>,
}

const INDEX: &str = "model.safetensors.index.json";

fn shard_names(index_path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| ModelError::io(index_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ModelError::Weights(format!("{}: not valid JSON: {e}", index_path.display()))
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            ModelError::Weights(format!(
                "{}: no \"weight_map\" object",
                index_path.display()
            ))
        })?;
    let names: BTreeSet<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    if names.is_empty() {
        return Err(ModelError::Weights(format!(
            "{}: empty weight_map",
            index_path.display()
        )));
    }
    Ok(names.into_iter().collect())
}

impl CheckpointFiles {
    pub fn in_folder(dir: &Path) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(ModelError::config(
                &config,
                "no such file (a checkpoint folder holds config.json beside its safetensors)",
            ));
        }
        let weights = if dir.join(INDEX).is_file() {
            let names = shard_names(&dir.join(INDEX))?;
            let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
            if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
                return Err(ModelError::Weights(format!(
                    "{}: shard named in {INDEX} is missing",
                    missing.display()
                )));
            }
            paths
        } else if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else {
            return Err(ModelError::Weights(format!(
                "{}: neither model.safetensors nor {INDEX}",
                dir.display()
            )));
        };
        let tok = dir.join("tokenizer.json");
        Ok(CheckpointFiles {
            config,
            weights,
            tokenizer: tok.is_file().then_some(tok),
        })
    }
}

impl CheckpointFiles {
    /// Read config.json as loading will (`QwenVlConfig::for_weights`), so that whichever
    /// command meets a checkpoint, a config.json that is missing, unreadable, malformed or
    /// contradicts itself is the same error, `ModelError::Config`; what is wrong with the
    /// weights themselves is left to loading, which names the tensor.
    pub fn check_config(&self) -> Result<()> {
        let read = match Weights::open(&self.weights, DType::F32) {
            Ok(w) => crate::config::QwenVlConfig::for_weights(&self.config, &w),
            Err(_) => crate::config::QwenVlConfig::from_file(&self.config),
        };
        match read {
            Err(e @ ModelError::Config { .. }) => Err(e),
            Err(ModelError::Io { path, source }) if path == self.config => {
                Err(ModelError::config(path, source.to_string()))
            }
            _ => Ok(()),
        }
    }
}

fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
    )
}

fn resolve_hub(repo_id: &str, revision: &str) -> Result<CheckpointFiles> {
    use hf_hub::{api::sync::ApiBuilder, Cache, Repo, RepoType};
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
    let cache = Cache::from_env();
    let label = format!("hf:{repo_id}@{revision}");
    // Offline: only what the cache holds. Online: hf-hub downloads into (and reuses) the cache.
    let get: Box<dyn Fn(&str) -> Result<Option<PathBuf>>> = if offline() {
        let c = cache.repo(repo.clone());
        Box::new(move |f: &str| Ok(c.get(f)))
    } else {
        let token = std::env::var("HF_TOKEN").ok().or_else(|| cache.token());
        let api = ApiBuilder::from_cache(cache.clone())
            .with_token(token)
            .with_progress(false)
            .build()
            .map_err(|e| {
                ModelError::Weights(format!("{label}: cannot start the hub client: {e}"))
            })?;
        let r = api.repo(repo.clone());
        let label = label.clone();
        Box::new(move |f: &str| match r.get(f) {
            Ok(p) => Ok(Some(p)),
            Err(hf_hub::api::sync::ApiError::RequestError(e)) if e.to_string().contains("404") => {
                Ok(None)
            }
            Err(e) => Err(ModelError::Weights(format!("{label}: fetching {f}: {e}"))),
        })
    };
    let missing = |f: &str| {
        ModelError::Weights(format!(
            "{label}: {f} is not {}",
            if offline() {
                "in the local hub cache (HF_HUB_OFFLINE is set)"
            } else {
                "in the repository"
            }
        ))
    };
    let config = get("config.json")?.ok_or_else(|| missing("config.json"))?;
    let weights = match get(INDEX)? {
        Some(index) => {
            let mut paths = Vec::new();
            for name in shard_names(&index)? {
                paths.push(get(&name)?.ok_or_else(|| missing(&name))?);
            }
            paths
        }
        None => vec![get("model.safetensors")?.ok_or_else(|| missing("model.safetensors"))?],
    };
    Ok(CheckpointFiles {
        config,
        weights,
        tokenizer: get("tokenizer.json")?,
    })
}

/// Memory-mapped safetensors files with a key -> file index, in the canonical key layout
/// (`visual.*`, `model.layers.*`, `model.embed_tokens.*`, `model.norm.*`, `lm_head.*`).
pub struct Weights {
    files: Vec<(PathBuf, memmap2::Mmap)>,
    /// canonical key -> (file index, key as stored)
    index: BTreeMap<String, (usize, String)>,
    taken: BTreeSet<String>,
    /// Element dtype the run asks for.
    pub dtype: DType,
}

/// Map the transformers >= 4.52 layout (`model.visual.*`, `model.language_model.*`) onto the
/// original Hub layout, which is the one the model's field names follow.
pub fn canonical_key(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("model.visual.") {
        format!("visual.{rest}")
    } else if let Some(rest) = key.strip_prefix("model.language_model.") {
        format!("model.{rest}")
    } else {
        key.to_string()
    }
}

impl Weights {
    pub fn open(paths: &[PathBuf], dtype: DType) -> Result<Self> {
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
            // SAFETY: the checkpoint files are read-only inputs; nothing in this process writes them.
            let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| ModelError::io(path, e))?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| {
                ModelError::Weights(format!(
                    "{}: corrupt safetensors header: {e}",
                    path.display()
                ))
            })?;
            for name in st.names() {
                let canon = canonical_key(name);
                if let Some((j, _)) = index.get(&canon) {
                    let other: &(PathBuf, memmap2::Mmap) = &files[*j];
                    return Err(ModelError::Weights(format!(
                        "tensor '{name}' appears in both {} and {}",
                        other.0.display(),
                        path.display()
                    )));
                }
                index.insert(canon, (i, name.to_string()));
            }
            files.push((path.clone(), mmap));
        }
        Ok(Weights {
            files,
            index,
            taken: BTreeSet::new(),
            dtype,
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The stored shape of tensor `key` (canonical layout) and its file; None when it is
    /// missing or its file's header does not parse (`take` reports either).
    pub fn stored_shape(&self, key: &str) -> Option<(&Path, Vec<usize>)> {
        let (fi, stored) = self.index.get(key)?;
        let (path, mmap) = &self.files[*fi];
        let st = SafeTensors::deserialize(mmap).ok()?;
        let shape = st.tensor(stored).ok()?.shape().to_vec();
        Some((path, shape))
    }

    /// Take 2-D tensor `key` stored [rows, cols] as its transpose [cols, rows] (a linear's
    /// [out, in] as [in, out]), converted to the run's dtype; in the checkpoint's own dtype the
    /// transpose reads the mapped file directly, without an intermediate copy.
    pub fn take_transposed(&mut self, key: &str, shape: [usize; 2]) -> Result<TensorData> {
        let [rows, cols] = shape;
        let direct = {
            // safetensors has checked the data's length against shape and dtype.
            let (_, view) = self.stored(key, &shape)?;
            if same_dtype(view.dtype(), self.dtype) && view.shape() == shape {
                let size = self.dtype.size();
                Some(crate::nn::transpose_bytes(view.data(), rows, cols, size))
            } else {
                None
            }
        };
        match direct {
            Some(bytes) => {
                self.taken.insert(key.to_string());
                Ok(TensorData::from_bytes_vec(bytes, [cols, rows], self.dtype))
            }
            // A conversion (or a shape error, which `take` reports): convert, then transpose.
            None => Ok(crate::nn::transpose_data(self.take(key, &shape)?)),
        }
    }

    /// Tensor `key` (canonical layout) as stored, and its file.
    fn stored(&self, key: &str, shape: &[usize]) -> Result<(&Path, TensorView<'_>)> {
        let (fi, stored) = self.index.get(key).ok_or_else(|| {
            ModelError::Weights(format!(
                "missing tensor '{key}' (expected shape {shape:?}) in {}",
                self.describe_files()
            ))
        })?;
        let (path, mmap) = &self.files[*fi];
        let st = SafeTensors::deserialize(mmap).map_err(|e| {
            ModelError::Weights(format!("{}: corrupt safetensors: {e}", path.display()))
        })?;
        let view = st.tensor(stored).map_err(|e| {
            ModelError::Weights(format!("{}: tensor '{stored}': {e}", path.display()))
        })?;
        Ok((path, view))
    }

    /// Take tensor `key` (canonical layout), checking its shape, converted to the run's dtype.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Result<TensorData> {
        let (path, view) = self.stored(key, shape)?;
        if view.shape() != shape {
            let stored = &self.index[key].1;
            let alias = if stored != key {
                format!(" (stored as '{stored}')")
            } else {
                String::new()
            };
            return Err(ModelError::Weights(format!(
                "tensor '{key}'{alias} in {} has shape {:?}, the model expects {shape:?}",
                path.display(),
                view.shape()
            )));
        }
        let data = convert(view.data(), view.dtype(), self.dtype, shape).map_err(|m| {
            ModelError::Weights(format!("tensor '{key}' in {}: {m}", path.display()))
        })?;
        self.taken.insert(key.to_string());
        Ok(data)
    }

    /// Mark a tensor as deliberately ignored (e.g. a tied lm_head saved anyway).
    pub fn skip(&mut self, key: &str) {
        if self.index.contains_key(key) {
            self.taken.insert(key.to_string());
        }
    }

    /// Error if the checkpoint holds tensors the model did not take.
    pub fn finish(&self) -> Result<()> {
        let unexpected: Vec<&String> = self
            .index
            .keys()
            .filter(|k| !self.taken.contains(*k))
            .collect();
        if unexpected.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = unexpected
            .iter()
            .take(8)
            .map(|k| format!("'{k}'"))
            .collect();
        Err(ModelError::Weights(format!(
            "{} unexpected tensor(s) in {}: {}{}",
            unexpected.len(),
            self.describe_files(),
            shown.join(", "),
            if unexpected.len() > 8 { ", ..." } else { "" }
        )))
    }

    fn describe_files(&self) -> String {
        match self.files.as_slice() {
            [(p, _)] => p.display().to_string(),
            files => format!(
                "{} shards in {}",
                files.len(),
                files[0]
                    .0
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        }
    }
}

/// Convert raw little-endian bytes of `from` into TensorData of dtype `to`.
/// Whether a stored dtype is the one asked for (the bytes are used as they are).
fn same_dtype(from: StDtype, to: DType) -> bool {
    matches!(
        (from, to),
        (StDtype::F32, DType::F32) | (StDtype::BF16, DType::BF16) | (StDtype::F16, DType::F16)
    )
}

fn convert(
    bytes: &[u8],
    from: StDtype,
    to: DType,
    shape: &[usize],
) -> std::result::Result<TensorData, String> {
    let n: usize = shape.iter().product();
    let f32s = || -> std::result::Result<Vec<f32>, String> {
        Ok(match from {
            StDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StDtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StDtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(format!(
                    "dtype {other:?} is not a float type (expected F32, BF16 or F16)"
                ))
            }
        })
    };
    if same_dtype(from, to) {
        return Ok(TensorData::from_bytes_vec(
            bytes.to_vec(),
            shape.to_vec(),
            to,
        ));
    }
    let v = f32s()?;
    debug_assert_eq!(v.len(), n);
    Ok(match to {
        DType::F32 => TensorData::new(v, shape.to_vec()),
        DType::BF16 => TensorData::new(
            v.into_iter().map(half::bf16::from_f32).collect::<Vec<_>>(),
            shape.to_vec(),
        ),
        DType::F16 => TensorData::new(
            v.into_iter().map(half::f16::from_f32).collect::<Vec<_>>(),
            shape.to_vec(),
        ),
        other => return Err(format!("cannot load weights as {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_source_parses_repo_and_revision() {
        assert_eq!(
            ModelSource::parse("hf:Qwen/Qwen2.5-VL-7B-Instruct@abc123").unwrap(),
            ModelSource::Hub {
                repo: "Qwen/Qwen2.5-VL-7B-Instruct".into(),
                revision: "abc123".into()
            }
        );
        assert_eq!(
            ModelSource::parse("hf:org/name").unwrap(),
            ModelSource::Hub {
                repo: "org/name".into(),
                revision: "main".into()
            }
        );
        assert!(ModelSource::parse("hf:justname").is_err());
        assert_eq!(
            ModelSource::parse("runs/x").unwrap(),
            ModelSource::Local("runs/x".into())
        );
    }

    #[test]
    fn new_key_layout_maps_onto_the_original() {
        assert_eq!(
            canonical_key("model.visual.blocks.0.attn.qkv.weight"),
            "visual.blocks.0.attn.qkv.weight"
        );
        assert_eq!(
            canonical_key("model.language_model.layers.1.mlp.up_proj.weight"),
            "model.layers.1.mlp.up_proj.weight"
        );
        assert_eq!(
            canonical_key("model.layers.1.mlp.up_proj.weight"),
            "model.layers.1.mlp.up_proj.weight"
        );
        assert_eq!(canonical_key("lm_head.weight"), "lm_head.weight");
    }

    #[test]
    fn bf16_converts_to_f32_exactly() {
        let vals = [1.0f32, -2.5, 0.15625];
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let d = convert(&bytes, StDtype::BF16, DType::F32, &[3]).unwrap();
        assert_eq!(d.to_vec::<f32>().unwrap(), vals.to_vec());
        assert!(convert(&bytes, StDtype::I64, DType::F32, &[3]).is_err());
    }
}
