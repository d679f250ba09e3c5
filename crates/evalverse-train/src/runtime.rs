//! What both training stages need, kept out of their loops: loading the base model, tokenizer and
//! adapter (`evalverse_judge::load`); decoding the clips once through the cache (skipping and
//! counting unreadable ones); judge conversations (`evalverse_judge::prompt`, the prompts the
//! judge is served with); padding a micro-batch (`evalverse_judge::collate`); and moving LoRA
//! weights and gradients between the model and the optimizer by name (on the device; the host
//! path before it is kept as the optimizer's reference).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use evalverse_data::cache::{CachedClip, DecodeCache};
use evalverse_data::dataset::Dataset;
use evalverse_judge::{collate, prompt, JudgeError};
use evalverse_model::chat::{ChatTokenizer, Message};
use evalverse_model::config::VisionConfig;
use evalverse_model::{Batch, ModelBackend, QwenVl, TrainBackend};

use crate::examples::JudgeExample;
use crate::optim::Tensors;
use crate::recipe::{Dtype, Recipe, ResponseUnit};

/// Errors of a training run; the CLI maps `Config` to exit code 2 and the rest to 1.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
    #[error(
        "step {step}: the loss is {value}; stopping. The last good checkpoint is {last_checkpoint}"
    )]
    NonFiniteLoss {
        step: usize,
        value: f64,
        last_checkpoint: String,
    },
    #[error("interrupted at step {step}; checkpoint saved to {checkpoint}")]
    Interrupted { step: usize, checkpoint: PathBuf },
}

pub fn runtime(e: impl std::fmt::Display) -> TrainError {
    TrainError::Runtime(e.to_string())
}

impl From<JudgeError> for TrainError {
    fn from(e: JudgeError) -> Self {
        match e {
            JudgeError::Config(m) => TrainError::Config(m),
            JudgeError::Runtime(m) => TrainError::Runtime(m),
        }
    }
}

/// Exclusive use of a run folder while a stage trains in it: `<output_dir>/train.lock` holds the
/// trainer's pid (created with `create_new`); a lock left by a process that is gone (no
/// `/proc/PID`, as after a kill -9) is taken over. Released when dropped. Two trainers writing one
/// run would interleave metrics and overwrite each other's checkpoints: a `--resume` started
/// while an interrupted run is still saving its last checkpoint is refused instead.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<RunLock, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| runtime(format!("{}: {e}", dir.display())))?;
        let path = dir.join("train.lock");
        let me = std::process::id();
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        };
        let written = match create() {
            Ok(mut f) => std::io::Write::write_all(&mut f, me.to_string().as_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                if let Some(pid) = holder.filter(|p| *p != me && process_alive(*p)) {
                    return Err(TrainError::Config(format!(
                        "{}: another training process (pid {pid}) is using this run folder; wait \
                         for it to exit (after Ctrl-C it first saves a checkpoint) or stop it",
                        dir.display()
                    )));
                }
                std::fs::write(&path, me.to_string())
            }
            Err(e) => Err(e),
        };
        written.map_err(|e| runtime(format!("{}: {e}", path.display())))?;
        Ok(RunLock { path })
    }
}

/// Whether a process with this pid runs (Linux: /proc/PID exists; elsewhere assumed gone, so a
/// lock is never held against a live run only by mistake of the check).
fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The start of every training stage: lock the run folder, refuse to overwrite a run that holds
/// checkpoints unless resuming, and a resume with nothing to resume from. Keep the lock for the
/// whole run. The resolved recipe is written with the first checkpoint (`save_checkpoint`), so a
/// run that fails before it leaves no `recipe.toml` making its folder look like a run.
pub fn open_run(recipe: &Recipe, resume: bool) -> Result<RunLock, TrainError> {
    let out = &recipe.run.output_dir;
    let lock = RunLock::acquire(out)?;
    match (resume, crate::checkpoint::latest(out).is_some()) {
        (false, true) => Err(TrainError::Config(format!(
            "{} already holds checkpoints; pass --resume to continue it",
            out.display()
        ))),
        (true, false) => Err(TrainError::Config(format!(
            "--resume: {} holds no checkpoint to resume from; start the run without --resume",
            out.join("checkpoints").display()
        ))),
        _ => Ok(lock),
    }
}

/// The recipe's dataset: a folder that is not a dataset (missing, bad dataset.toml or taxonomy)
/// is the recipe's fault (`Config`), records with problems are invalid data (`Runtime`).
pub fn load_dataset(recipe: &Recipe) -> Result<Dataset, TrainError> {
    Dataset::load(&recipe.data.dataset).map_err(|e| match e {
        evalverse_data::DataError::Config { .. } => {
            TrainError::Config(format!("data.dataset: {e}"))
        }
        other => runtime(other),
    })
}

pub fn dtype(d: Dtype) -> DType {
    match d {
        Dtype::F32 => DType::F32,
        Dtype::Bf16 => DType::BF16,
        Dtype::F16 => DType::F16,
    }
}

/// The base model (with the recipe's adapter or a fresh one) and the tokenizer.
pub fn load_model<B: ModelBackend>(
    recipe: &Recipe,
    device: &B::Device,
) -> Result<(QwenVl<B>, ChatTokenizer), TrainError> {
    let (mut model, tok) = evalverse_judge::load::load_base::<B>(
        &recipe.model.source,
        recipe.model.tokenizer.as_deref(),
        dtype(recipe.model.dtype),
        device,
    )
    .map_err(|e| match e {
        JudgeError::Config(m) => TrainError::Config(format!("model.source: {m}")),
        other => other.into(),
    })?;
    match &recipe.model.adapter {
        Some(dir) => {
            evalverse_model::lora::load_peft(&mut model, dir)
                .map_err(|e| TrainError::Config(format!("model.adapter: {e}")))?;
        }
        None => {
            let lora = evalverse_model::lora::LoraConfig {
                seed: recipe.run.seed,
                ..recipe.lora.clone()
            };
            evalverse_model::lora::apply_lora(&mut model, &lora)
                .map_err(|e| TrainError::Config(e.to_string()))?;
        }
    }
    Ok((model, tok))
}

/// Decoded clips by video path; `skipped` lists clip ids whose file could not be decoded.
pub struct Clips {
    pub by_video: BTreeMap<PathBuf, CachedClip>,
    pub skipped: Vec<(String, String)>,
    pub cache_hits: usize,
    /// The vision config the clips were preprocessed for (patch geometry, token count).
    pub vision: VisionConfig,
}

/// The run's decode cache (`data.cache_dir`, default `<output_dir>/cache`).
fn decode_cache(recipe: &Recipe) -> DecodeCache {
    DecodeCache::new(
        recipe
            .data
            .cache_dir
            .clone()
            .unwrap_or_else(|| recipe.run.output_dir.join("cache")),
    )
}

/// The judge examples of a split as the recipe asks: with the operators' evidence block in the
/// questions when `data.operators` names any (measured through the decode cache), and with the
/// score line alone as the answer when `data.rationale = false`.
pub fn judge_examples(
    recipe: &Recipe,
    ds: &Dataset,
    split: evalverse_data::split::Split,
) -> Result<Vec<JudgeExample>, TrainError> {
    let set = recipe.data.operator_set().map_err(TrainError::Config)?;
    let cache = decode_cache(recipe);
    let (evidence, failed) = evalverse_data::prompts::split_evidence(ds, split, &set, &cache);
    for (id, why) in &failed {
        eprintln!("warning: no operator evidence for clip {id}: {why}");
    }
    let mut all =
        evalverse_data::prompts::build_with_evidence(ds, split, &recipe.data.dimensions, &|id| {
            evidence.get(id).cloned()
        })
        .map_err(TrainError::Config)?;
    if !recipe.data.rationale {
        for e in &mut all {
            e.answer = evalverse_data::prompts::score_line(e.score);
            e.rationale.clear();
        }
    }
    if recipe.data.unit == ResponseUnit::Dimension {
        return Ok(all);
    }
    let units = evalverse_data::prompts::group_units(ds, all, recipe.data.unit, &|id| {
        evidence.get(id).cloned()
    });
    Ok(units.iter().map(|u| u.as_example()).collect())
}

/// The SFT loss of `model` at label rows `rows` (of hidden states `h` [b, len, d]) with next
/// tokens `targets`: `losses::fused_head_nll` when the head is frozen (the usual LoRA case), else
/// the head's logits at those rows through `losses::token_nll`. Same value, same gradients.
pub fn label_nll<B: TrainBackend>(
    model: &QwenVl<B>,
    h: Tensor<B, 3>,
    rows: &[usize],
    targets: Vec<i64>,
) -> Tensor<B, 1> {
    let n = rows.len();
    match model.frozen_head() {
        Some(w) => crate::losses::fused_head_nll(model.rows_of(h, rows), w, &targets),
        None => {
            let device = h.device();
            crate::losses::token_nll(
                model.head_at(h, rows),
                Tensor::<B, 1, burn::tensor::Int>::from_data(
                    TensorData::new(targets, [n]),
                    &device,
                ),
            )
        }
    }
}

/// Decode the clips of `examples` for a model with vision config `vision`.
pub fn decode_clips(
    recipe: &Recipe,
    ds: &Dataset,
    examples: &[JudgeExample],
    vision: &VisionConfig,
) -> Clips {
    let cache = decode_cache(recipe);
    let mut ids: Vec<&str> = examples.iter().map(|e| e.clip_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let clips: Vec<_> = ds
        .clips
        .iter()
        .map(|c| &c.record)
        .filter(|c| ids.binary_search(&c.id.as_str()).is_ok())
        .collect();
    let patch = prompt::patch_spec(vision);
    let loaded = cache.load_clips(ds, clips, &recipe.data.frames, &patch, false);
    Clips {
        by_video: loaded
            .clips
            .into_iter()
            .map(|(c, v)| (ds.video_path(c), v))
            .collect(),
        skipped: loaded.skipped,
        cache_hits: loaded.cache_hits,
        vision: vision.clone(),
    }
}

/// The judge conversation of an example on its clip, with the answer when given.
pub fn conversation(
    clips: &Clips,
    e: &JudgeExample,
    clip: &CachedClip,
    answer: Option<&str>,
) -> Vec<Message> {
    prompt::single(
        prompt::clip_tokens(&clips.vision, clip),
        &e.question,
        answer,
    )
}

/// A tokenised sequence with its clip.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub labels: Vec<bool>,
    pub video: PathBuf,
}

/// Vision-tower outputs per clip, computed once per run when the tower is frozen.
pub type VisionCache<B> = BTreeMap<PathBuf, Tensor<B, 2>>;

/// Encode every clip once with the (frozen) vision tower.
pub fn encode_vision<B: ModelBackend>(
    model: &QwenVl<B>,
    clips: &Clips,
    device: &B::Device,
) -> VisionCache<B> {
    clips
        .by_video
        .iter()
        .map(|(path, clip)| {
            let v = &clip.vision;
            let rows: usize = v.grid_thw.iter().product();
            let px = Tensor::<B, 2>::from_data(
                TensorData::new(v.pixel_values.clone(), [rows, v.row_len]),
                device,
            );
            (
                path.clone(),
                model.visual.forward(px, &[v.grid_thw]).detach(),
            )
        })
        .collect()
}

/// Left-pad sequences into a batch with their clips (precomputed vision tokens when `vision`
/// is given); returns the batch and the left-padded label masks.
pub fn make_batch<B: ModelBackend>(
    seqs: &[&Encoded],
    clips: &Clips,
    pad: u32,
    device: &B::Device,
    vision: Option<&VisionCache<B>>,
) -> (Batch<B>, Vec<Vec<bool>>) {
    let rows = seqs
        .iter()
        .map(|s| collate::Row {
            ids: &s.ids,
            labels: Some(&s.labels),
            clips: vec![&clips.by_video[&s.video]],
            vision: vision.map(|v| vec![v[&s.video].clone()]),
        })
        .collect();
    collate::collate(rows, pad, device)
}

/// LoRA weights by name (`<module>.lora_A` [in, r], `<module>.lora_B` [r, out]) on the device,
/// without autodiff: what the trainer's optimizer updates.
pub fn lora_tensors<B: TrainBackend>(model: &mut QwenVl<B>) -> Tensors<B::InnerBackend> {
    let mut out = BTreeMap::new();
    model.for_each_linear(|path, lin| {
        if let Some(l) = &lin.lora {
            out.insert(format!("{path}.lora_A"), l.lora_a.val().inner());
            out.insert(format!("{path}.lora_B"), l.lora_b.val().inner());
        }
    });
    out
}

/// Put LoRA weights (taken out of `params` by name) back into the model as fresh trainable
/// leaves, on the device.
pub fn set_lora_tensors<B: TrainBackend>(
    model: &mut QwenVl<B>,
    params: &mut Tensors<B::InnerBackend>,
) {
    model.for_each_linear(|path, lin| {
        if let Some(l) = lin.lora.as_mut() {
            let mut leaf = |name: String| {
                let t = params.remove(&name).expect("a trained LoRA weight");
                Param::from_tensor(Tensor::<B, 2>::from_inner(t).require_grad())
            };
            l.lora_a = leaf(format!("{path}.lora_A"));
            l.lora_b = leaf(format!("{path}.lora_B"));
        }
    });
}

/// Add the LoRA gradients of a backward pass into `acc`, on the device.
pub fn add_lora_grads<B: TrainBackend>(
    model: &mut QwenVl<B>,
    grads: &B::Gradients,
    acc: &mut Tensors<B::InnerBackend>,
) {
    model.for_each_linear(|path, lin| {
        if let Some(l) = &lin.lora {
            for (suffix, p) in [("lora_A", &l.lora_a), ("lora_B", &l.lora_b)] {
                if let Some(g) = p.val().grad(grads) {
                    add_grad_device(acc, format!("{path}.{suffix}"), g);
                }
            }
        }
    });
}

/// Add gradient `g` of tensor `name` into `acc`, on the device.
pub fn add_grad_device<B: Backend>(acc: &mut Tensors<B>, name: String, g: Tensor<B, 2>) {
    let sum = match acc.remove(&name) {
        Some(a) => a + g,
        None => g,
    };
    acc.insert(name, sum);
}

/// The host path every step took before the optimizer ran on the device, kept as the reference
/// of tests/optim_parity.rs and the "before" of examples/bench_optim.rs: LoRA weights by name as
/// host vectors with their shapes.
pub fn lora_params<B: ModelBackend>(
    model: &mut QwenVl<B>,
) -> (BTreeMap<String, Vec<f32>>, BTreeMap<String, [usize; 2]>) {
    let mut vals = BTreeMap::new();
    let mut shapes = BTreeMap::new();
    model.for_each_linear(|path, lin| {
        if let Some(l) = &lin.lora {
            for (suffix, t) in [("lora_A", l.lora_a.val()), ("lora_B", l.lora_b.val())] {
                let name = format!("{path}.{suffix}");
                shapes.insert(name.clone(), t.dims());
                vals.insert(
                    name,
                    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32"),
                );
            }
        }
    });
    (vals, shapes)
}

/// Write host LoRA weights back into the model as fresh trainable leaves (host reference path).
pub fn set_lora_params<B: ModelBackend>(
    model: &mut QwenVl<B>,
    vals: &BTreeMap<String, Vec<f32>>,
    shapes: &BTreeMap<String, [usize; 2]>,
) {
    model.for_each_linear(|path, lin| {
        if let Some(l) = lin.lora.as_mut() {
            let device = l.lora_a.val().device();
            let mk = |name: String| {
                let t = Tensor::<B, 2>::from_data(
                    TensorData::new(vals[&name].clone(), shapes[&name]),
                    (&device, DType::F32),
                );
                Param::from_tensor(t.require_grad())
            };
            l.lora_a = mk(format!("{path}.lora_A"));
            l.lora_b = mk(format!("{path}.lora_B"));
        }
    });
}

/// Add the LoRA gradients of a backward pass, times `scale`, into host vectors (host reference
/// path).
pub fn accumulate_grads<B: TrainBackend>(
    model: &mut QwenVl<B>,
    grads: &B::Gradients,
    scale: f32,
    acc: &mut BTreeMap<String, Vec<f32>>,
) {
    model.for_each_linear(|path, lin| {
        if let Some(l) = &lin.lora {
            for (suffix, p) in [("lora_A", &l.lora_a), ("lora_B", &l.lora_b)] {
                let Some(g) = p.val().grad(grads) else {
                    continue;
                };
                add_grad(acc, &format!("{path}.{suffix}"), g, scale);
            }
        }
    });
}

/// Add gradient `g` of parameter `name`, times `scale`, into `acc`.
pub fn add_grad<B: Backend, const D: usize>(
    acc: &mut BTreeMap<String, Vec<f32>>,
    name: &str,
    g: Tensor<B, D>,
    scale: f32,
) {
    let g: Vec<f32> = g.into_data().convert::<f32>().to_vec().expect("f32");
    let slot = acc
        .entry(name.to_string())
        .or_insert_with(|| vec![0.0; g.len()]);
    for (a, b) in slot.iter_mut().zip(g) {
        *a += b * scale;
    }
}

/// The run's deterministic permutation of `n` examples for `epoch`.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    evalverse_data::rng::Rng::derive(seed, &format!("epoch-{epoch}")).shuffle(&mut order);
    order
}

/// Example indices of micro-batch `k` (consecutive slices of the epoch permutations).
pub fn micro_batch(seed: u64, n: usize, batch: usize, k: usize) -> Vec<usize> {
    (k * batch..(k + 1) * batch)
        .map(|i| {
            let (epoch, pos) = (i / n, i % n);
            epoch_order(seed, epoch, n)[pos]
        })
        .collect()
}

pub fn write_text(path: &Path, text: &str) -> Result<(), TrainError> {
    evalverse_data::error::write_atomic(path, text.as_bytes()).map_err(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe_in(out: &Path) -> Recipe {
        let text = format!(
            "[run]\noutput_dir = \"{}\"\n[model]\nsource = \"base\"\n[lora]\nrank = 4\nalpha = 8\n\
             [data]\ndataset = \"data\"\n[stage]\nkind = \"sft\"\n[optim]\nlr = 1e-3\n\
             [schedule]\ndecay = \"constant\"\n[train]\nmax_steps = 2\n",
            out.display()
        );
        Recipe::parse(&text, Path::new("r.toml")).unwrap()
    }

    #[test]
    fn resume_without_a_checkpoint_is_refused_as_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let e = open_run(&recipe_in(&out), true).unwrap_err();
        assert!(matches!(e, TrainError::Config(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("no checkpoint") && e.contains("without --resume"),
            "{e}"
        );
        // A fresh start in the same folder is fine.
        drop(open_run(&recipe_in(&out), false).unwrap());
    }

    #[test]
    fn a_run_that_saved_nothing_leaves_no_recipe_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        drop(open_run(&recipe_in(&out), false).unwrap());
        assert!(
            !out.join("recipe.toml").exists(),
            "recipe.toml marks a run folder (eval --checkpoint RUN); it comes with the first checkpoint"
        );
    }

    #[test]
    fn a_live_holder_keeps_the_run_a_dead_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(dir.path().join("train.lock"), child.id().to_string()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", child.id())), "{e}");
        child.kill().unwrap();
        child.wait().unwrap();
        let lock = RunLock::acquire(dir.path()).expect("a dead holder's lock is taken over");
        let held = std::fs::read_to_string(dir.path().join("train.lock")).unwrap();
        assert_eq!(held, std::process::id().to_string());
        drop(lock);
        assert!(!dir.path().join("train.lock").exists(), "released on drop");
    }
}
