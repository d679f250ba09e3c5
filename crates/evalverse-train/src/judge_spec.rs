//! The judge a checkpoint argument names (`--checkpoint` of `eval`, `judge`, `export`): a
//! training run folder (recipe.toml + adapter/), a PEFT adapter folder, or "none" (a base
//! alone), resolved to the `JudgeSpec` it is judged with. A run is judged as it was trained:
//! its base, tokenizer, frame sampling, response unit and the operator evidence in its prompts
//! come from its resolved recipe.

use std::path::{Path, PathBuf};

use evalverse_data::video::FrameSpec;
use evalverse_judge::{GatePolicy, JudgeSpec};

use crate::recipe::Recipe;
use crate::runtime::TrainError;

/// Longest rationale per dimension when nothing else says (tokens).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 96;

/// A resolved checkpoint argument.
#[derive(Debug, Clone)]
pub struct ResolvedJudge {
    pub spec: JudgeSpec,
    /// Where its reports go by default (`<run>/eval`, `<adapter>/eval`, `runs/eval-base`).
    pub default_out: PathBuf,
    /// The training run folder, when the checkpoint is one (or an adapter inside one).
    pub run: Option<PathBuf>,
}

impl Recipe {
    /// The judge this run's adapter (`adapter`) is judged as.
    pub fn judge_spec(&self, adapter: PathBuf) -> Result<JudgeSpec, TrainError> {
        Ok(JudgeSpec {
            base: self.model.source.clone(),
            tokenizer: self.model.tokenizer.clone(),
            adapter: Some(adapter),
            frames: self.data.frames.clone(),
            unit: self.data.unit,
            prompt_operators: self.data.operator_set().map_err(TrainError::Config)?,
            gate: GatePolicy::default(),
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
        })
    }
}

/// Resolve `checkpoint` (a run folder, an adapter folder or "none") and `base` (overrides the
/// base the checkpoint names; required with "none").
pub fn resolve(checkpoint: &str, base: Option<&str>) -> Result<ResolvedJudge, TrainError> {
    let usage = |m: String| TrainError::Config(m);
    let bare = |base: String, adapter: Option<PathBuf>| JudgeSpec {
        base,
        tokenizer: None,
        adapter,
        frames: FrameSpec::default(),
        unit: Default::default(),
        prompt_operators: Default::default(),
        gate: GatePolicy::default(),
        max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
    };
    if checkpoint == "none" {
        let base = base.ok_or_else(|| usage("--checkpoint none needs --base MODEL".into()))?;
        return Ok(ResolvedJudge {
            spec: bare(base.to_string(), None),
            default_out: PathBuf::from("runs/eval-base"),
            run: None,
        });
    }
    let p = Path::new(checkpoint);
    if p.join("recipe.toml").is_file() && p.join("adapter").is_dir() {
        let r = Recipe::load(&p.join("recipe.toml")).map_err(|e| usage(e.to_string()))?;
        let mut spec = r.judge_spec(p.join("adapter"))?;
        if let Some(b) = base {
            spec.base = b.to_string();
        }
        return Ok(ResolvedJudge {
            spec,
            default_out: p.join("eval"),
            run: Some(p.to_path_buf()),
        });
    }
    if p.join("adapter_config.json").is_file() {
        let base = match base {
            Some(b) => b.to_string(),
            None => {
                let text = std::fs::read_to_string(p.join("adapter_config.json"))
                    .map_err(|e| usage(format!("{}: {e}", p.display())))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| usage(format!("{}: {e}", p.display())))?;
                v["base_model_name_or_path"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        usage(format!(
                            "{}: no base_model_name_or_path; pass --base",
                            p.display()
                        ))
                    })?
            }
        };
        // An adapter inside a run folder (RUN/adapter) is judged as that run.
        let run = p
            .parent()
            .filter(|r| r.join("recipe.toml").is_file())
            .map(Path::to_path_buf);
        let spec = match &run {
            Some(r) => {
                let recipe =
                    Recipe::load(&r.join("recipe.toml")).map_err(|e| usage(e.to_string()))?;
                JudgeSpec {
                    base,
                    ..recipe.judge_spec(p.to_path_buf())?
                }
            }
            None => bare(base, Some(p.to_path_buf())),
        };
        return Ok(ResolvedJudge {
            spec,
            default_out: p.join("eval"),
            run,
        });
    }
    Err(usage(format!(
        "--checkpoint {}: not a run folder (recipe.toml + adapter/), an adapter folder \
         (adapter_config.json), or \"none\"",
        p.display()
    )))
}

/// Where a judge comes from on the command line: a bundle (`--judge`) or a checkpoint
/// (`--checkpoint`: a run, an adapter or "none").
#[derive(Debug, Clone, Copy)]
pub enum JudgeSource<'a> {
    Bundle(&'a Path),
    Checkpoint(&'a str),
}

/// A judge ready to load: its spec, the taxonomy and fusion model a bundle carries (a run's
/// come from the dataset it is evaluated on), where its reports go by default, and its names
/// for reports.
#[derive(Debug)]
pub struct OpenedJudge {
    pub spec: JudgeSpec,
    pub taxonomy: Option<evalverse_data::taxonomy::Taxonomy>,
    pub fusion: Option<evalverse_judge::FusionModel>,
    pub default_out: PathBuf,
    pub run: Option<PathBuf>,
    /// The judge's name in reports (the base, or the bundle folder).
    pub model_name: String,
    /// The adapter's name in reports.
    pub adapter_name: Option<String>,
    pub bundle: Option<evalverse_judge::bundle::Bundle>,
}

/// Open the judge `source` names; `base` overrides its base model (a bundle's is checked
/// against the bundle's fingerprint, every byte with `verify_base`).
pub fn open(
    source: JudgeSource,
    base: Option<&str>,
    verify_base: bool,
) -> Result<OpenedJudge, TrainError> {
    match source {
        JudgeSource::Bundle(dir) => {
            let b = evalverse_judge::bundle::read(dir, base, verify_base)?;
            Ok(OpenedJudge {
                spec: b.spec.clone(),
                taxonomy: Some(b.taxonomy.clone()),
                fusion: b.fusion.clone(),
                default_out: dir.join("eval-run"),
                run: None,
                model_name: format!("judge bundle {}", dir.display()),
                adapter_name: b.spec.adapter.as_ref().map(|a| a.display().to_string()),
                bundle: Some(b),
            })
        }
        JudgeSource::Checkpoint(c) => {
            let r = resolve(c, base)?;
            Ok(OpenedJudge {
                model_name: r.spec.base.clone(),
                adapter_name: r.spec.adapter.as_ref().map(|a| a.display().to_string()),
                spec: r.spec,
                taxonomy: None,
                fusion: None,
                default_out: r.default_out,
                run: r.run,
                bundle: None,
            })
        }
    }
}
