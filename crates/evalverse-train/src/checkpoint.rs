//! Checkpoints of a LoRA run: the adapter (PEFT format), the optimizer moments, the trainer state
//! (step, data position, the seed everything random is derived from, losses so far) and the
//! resolved recipe. Written into a temporary folder and renamed, so a crash never leaves half a
//! checkpoint; the last `keep_last` are kept.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::optim::AdamWState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Micro-batches consumed so far (the data position; the order is a function of the seed).
    pub micro_batches: usize,
    pub seed: u64,
    /// (step, loss) of every step so far.
    pub losses: Vec<(usize, f64)>,
    /// Clips skipped because they could not be decoded.
    pub skipped_clips: Vec<String>,
}

pub fn checkpoint_dir(output: &Path, step: usize) -> PathBuf {
    output.join("checkpoints").join(format!("step-{step:06}"))
}

/// The newest complete checkpoint of a run.
pub fn latest(output: &Path) -> Option<PathBuf> {
    let mut steps: Vec<(usize, PathBuf)> = std::fs::read_dir(output.join("checkpoints"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("step-")
                .and_then(|s| s.parse().ok())
                .map(|s| (s, e.path()))
        })
        .filter(|(_, p)| p.join("trainer_state.json").is_file())
        .collect();
    steps.sort();
    steps.pop().map(|(_, p)| p)
}

fn io(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

pub fn save_optimizer(path: &Path, state: &AdamWState) -> Result<(), String> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (kind, map) in [("m", &state.m), ("v", &state.v)] {
        for (name, v) in map {
            bufs.push((
                format!("{kind}.{name}"),
                vec![v.len()],
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = bufs
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("sizes"),
            )
        })
        .collect();
    let meta = HashMap::from([("step".to_string(), state.step.to_string())]);
    let bytes = safetensors::serialize(views, &Some(meta)).map_err(|e| io(path, e))?;
    std::fs::write(path, bytes).map_err(|e| io(path, e))
}

pub fn load_optimizer(path: &Path) -> Result<AdamWState, String> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| io(path, e))?;
    let step = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("step"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io(path, "no step in the optimizer state"))?;
    let mut m = BTreeMap::new();
    let mut v = BTreeMap::new();
    for (name, t) in st.tensors() {
        let vals: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        match name.split_once('.') {
            Some(("m", rest)) => m.insert(rest.to_string(), vals),
            Some(("v", rest)) => v.insert(rest.to_string(), vals),
            _ => return Err(io(path, format!("unexpected tensor '{name}'"))),
        };
    }
    Ok(AdamWState { step, m, v })
}

/// Write a checkpoint atomically: `write(tmp_dir)` fills a temporary folder, which is then renamed
/// to `step-NNNNNN`; older checkpoints beyond `keep_last` are removed.
pub fn commit(
    output: &Path,
    step: usize,
    keep_last: usize,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let root = output.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
    let tmp = root.join(format!(".tmp-step-{step:06}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = checkpoint_dir(output, step);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| io(&root, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    all.sort();
    while all.len() > keep_last.max(1) {
        let old = all.remove(0);
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(dest)
}
