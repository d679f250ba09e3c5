//! Training recipes: a typed TOML file, one struct per table, every field documented with its unit,
//! default and source. Validated at load with messages that name the file, the key and the allowed
//! values; the resolved recipe (defaults filled in) is written into the run folder.

use std::path::{Path, PathBuf};

use evalverse_data::video::FrameSpec;
use evalverse_model::lora::LoraConfig;
use serde::{Deserialize, Serialize};

use crate::losses::{BtTies, DpoKind};
use crate::optim::{AdamWConfig, ScheduleConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub run: RunConfig,
    pub model: ModelConfig,
    pub lora: LoraConfig,
    pub data: DataConfig,
    pub stage: StageConfig,
    pub optim: AdamWConfig,
    pub schedule: ScheduleConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Output folder of the run (checkpoints, logs, the resolved recipe).
    pub output_dir: PathBuf,
    /// Seed of data order, LoRA init and dropout.
    #[serde(default)]
    pub seed: u64,
    /// Where the stage trains: "cpu" (burn Flex, default) or "cuda" (burn-cuda, device 0; needs
    /// a binary built with `--features cuda`).
    #[serde(default)]
    pub device: Device,
}

/// The training device (`run.device`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    Bf16,
    F16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Base checkpoint: a local folder or hf:ORG/NAME[@REV].
    pub source: String,
    /// tokenizer.json (default: the checkpoint's own).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Dtype of the frozen base weights (LoRA weights are always f32). Default f32.
    #[serde(default = "default_dtype")]
    pub dtype: Dtype,
    /// Start from this PEFT adapter (e.g. the SFT adapter for the preference stage).
    #[serde(default)]
    pub adapter: Option<PathBuf>,
}

fn default_dtype() -> Dtype {
    Dtype::F32
}

pub use evalverse_data::prompts::ResponseUnit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset folder (dataset.toml + manifest).
    pub dataset: PathBuf,
    /// Dimensions to train on (default: every dimension of the taxonomy).
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// "dimension" (default): one prompt and response per clip and dimension. "aspect": one per
    /// clip and aspect, the response walking through the aspect's dimensions in order ("Lens:
    /// ... Score: 4"); rightness dimensions stay one per prompt. Evaluation of a run follows its
    /// recipe's unit. Preference calibration needs "dimension".
    #[serde(default)]
    pub unit: ResponseUnit,
    /// Train on the expert rationale then the score (chain of thought, default true), or on the
    /// score line alone (direct scoring, for ablations).
    #[serde(default = "default_true")]
    pub rationale: bool,
    /// Frame sampling and resizing (Qwen2.5-VL rule).
    #[serde(default)]
    pub frames: FrameSpec,
    /// Decode cache folder (default: <output_dir>/../cache).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Perception operators whose evidence block goes into the judge prompt (docs/OPERATORS.md):
    /// any of shots, motion, exposure, sharpness, colour, flicker, continuity, audio, sync.
    /// Default empty: pixel-only prompts, the ablation baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
}

impl DataConfig {
    /// The operator set named by `operators` (validated at load).
    pub fn operator_set(&self) -> Result<evalverse_data::operators::OperatorSet, String> {
        evalverse_data::operators::OperatorSet::parse(&self.operators)
            .map_err(|m| format!("data.operators: {m}"))
    }
}

fn default_true() -> bool {
    true
}

/// The stage and, for preference calibration, its strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StageConfig {
    /// Caption pretraining of a base: the same LoRA loop as `sft` on (clip, dense caption) pairs
    /// from the dataset's captions.jsonl (written by `evalverse data synth`); merge the result
    /// into the base with `evalverse model merge`.
    Caption,
    /// Chain-of-thought SFT: loss on the assistant's rationale and score.
    Sft,
    /// Preference calibration.
    Preference { strategy: Strategy },
}

/// Preference-calibration strategy (EvalVerse §6.2 and the DPO family).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Bradley-Terry on the expected score over the score tokens, pairs of clips of a prompt
    /// group ranked by the experts' mean score.
    Bt {
        /// What the answer holds before the "Score: " where the scalar is read: `generated`
        /// (default), the starting policy's own greedy rationale, generated once before training
        /// and kept in the run folder (rationales.jsonl, reused by --resume), so the scalar is
        /// M_θ(V, X) read where evaluation reads the soft score; or `expert`, the consensus
        /// rationale, which states the verdict ("so I give 4"), so the score can be copied from
        /// the text without looking at the clip; kept for ablations.
        #[serde(default)]
        rationale: BtRationale,
        /// Where the scalar comes from: `score_tokens` (default), the expected score over the
        /// score tokens after the rationale; or `head`, a reward head (one output per dimension,
        /// evalverse_model::reward) on the final hidden states pooled over the video positions
        /// and at the end of the prompt, trained with the LoRA and then calibrated to the scale
        /// by least squares on the train split. With `head` no rationale is generated (the
        /// head reads the prompt) and `rationale` / `max_new_tokens` are not used; the head is
        /// saved beside the adapter and evaluation scores with it.
        #[serde(default)]
        readout: BtReadout,
        /// With `readout = "head"`: train the LoRA with the head (default true), or the head
        /// alone on the frozen starting policy, whose rationales then stay the SFT judge's
        /// (the LoRA, trained for the head only, unlearns the language).
        #[serde(default = "default_true")]
        train_lora: bool,
        /// Longest generated rationale in tokens, for `rationale = "generated"` (default 64).
        #[serde(default = "default_bt_max_new_tokens")]
        max_new_tokens: usize,
        /// ignore | rao_kupper | davidson (default ignore: ties dropped).
        #[serde(default = "default_ties")]
        ties: TieModel,
        /// Rao-Kupper theta >= 1 (default 1.5).
        #[serde(default = "default_theta")]
        theta: f64,
        /// Davidson nu > 0 (default 1.0).
        #[serde(default = "default_nu")]
        nu: f64,
    },
    /// DPO family: chosen = the experts' consensus answer, rejected = the same rationale with a
    /// score at least `perturb` levels away. Reference = the frozen starting policy, log-probs
    /// computed once and cached.
    Dpo {
        loss: DpoKind,
        /// DPO beta (TRL default 0.1).
        #[serde(default = "default_beta")]
        beta: f64,
        /// cDPO / robust label smoothing (default 0).
        #[serde(default)]
        label_smoothing: f64,
        /// How far the rejected score is from the consensus (default 2 levels).
        #[serde(default = "default_perturb")]
        perturb: f64,
    },
    /// KL between the raters' score histogram and the score-token distribution.
    Distribution,
    /// GRPO on sampled answers rewarded against the experts (objective/grpo.rs; TRL's
    /// GRPOTrainer's loss): `group` answers per item, rewards from `rewards` (weighted by
    /// `reward_weights`, default all 1), the clipped ratio objective with the k3 KL to the
    /// starting policy (beta), `loss_type` grpo | bnpo | dr_grpo, `scale_rewards` group | none
    /// (Dr. GRPO), `filter_wrong`: train only on items the starting judge gets wrong.
    Grpo {
        #[serde(default = "default_group")]
        group: usize,
        #[serde(default = "default_grpo_temperature")]
        temperature: f64,
        #[serde(default = "default_top_p")]
        top_p: f64,
        #[serde(default = "default_bt_max_new_tokens")]
        max_new_tokens: usize,
        #[serde(default = "default_rewards")]
        rewards: Vec<crate::grpo::RewardFn>,
        #[serde(default)]
        reward_weights: Vec<f64>,
        /// KL coefficient (VideoScore2: 0.04).
        #[serde(default = "default_grpo_beta")]
        beta: f64,
        #[serde(default = "default_epsilon")]
        epsilon: f64,
        /// Upper clip (DAPO's clip-higher); default `epsilon`.
        #[serde(default)]
        epsilon_high: Option<f64>,
        #[serde(default)]
        loss_type: crate::grpo::LossType,
        #[serde(default)]
        scale_rewards: crate::grpo::AdvantageScale,
        /// TRL's use_bias_correction_kl (default true, as TRL 1.16).
        #[serde(default = "default_true")]
        kl_ratio_correction: bool,
        #[serde(default)]
        filter_wrong: bool,
    },
}

fn default_group() -> usize {
    8
}
fn default_grpo_temperature() -> f64 {
    1.0
}
fn default_top_p() -> f64 {
    1.0
}
fn default_rewards() -> Vec<crate::grpo::RewardFn> {
    vec![crate::grpo::RewardFn::Graded, crate::grpo::RewardFn::Format]
}
fn default_grpo_beta() -> f64 {
    0.04
}
fn default_epsilon() -> f64 {
    0.2
}

/// Where the Bradley-Terry scalar is read (`stage.strategy.readout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BtReadout {
    #[default]
    ScoreTokens,
    Head,
}

/// The rationale before the Bradley-Terry score position (`stage.strategy.rationale`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BtRationale {
    #[default]
    Generated,
    Expert,
}

fn default_bt_max_new_tokens() -> usize {
    64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieModel {
    Ignore,
    RaoKupper,
    Davidson,
}

fn default_ties() -> TieModel {
    TieModel::Ignore
}
fn default_theta() -> f64 {
    1.5
}
fn default_nu() -> f64 {
    1.0
}

impl Strategy {
    /// The settings of a `grpo` strategy.
    pub fn grpo_settings(&self) -> Option<crate::objective::grpo::GrpoSettings> {
        match self {
            Strategy::Grpo {
                group,
                temperature,
                top_p,
                max_new_tokens,
                rewards,
                reward_weights,
                beta,
                epsilon,
                epsilon_high,
                loss_type,
                scale_rewards,
                kl_ratio_correction,
                filter_wrong,
            } => Some(crate::objective::grpo::GrpoSettings {
                group: *group,
                temperature: *temperature,
                top_p: *top_p,
                max_new_tokens: *max_new_tokens,
                rewards: rewards
                    .iter()
                    .enumerate()
                    .map(|(k, f)| (*f, reward_weights.get(k).copied().unwrap_or(1.0)))
                    .collect(),
                scale: *scale_rewards,
                loss: crate::grpo::LossConfig {
                    beta: *beta,
                    epsilon_low: *epsilon,
                    epsilon_high: epsilon_high.unwrap_or(*epsilon),
                    loss_type: *loss_type,
                    max_completion_length: *max_new_tokens,
                    kl_ratio_correction: *kl_ratio_correction,
                },
                filter_wrong: *filter_wrong,
            }),
            _ => None,
        }
    }

    /// The Bradley-Terry tie model of a `bt` strategy.
    pub fn bt_ties(&self) -> Option<BtTies> {
        match self {
            Strategy::Bt {
                ties, theta, nu, ..
            } => Some(match ties {
                TieModel::Ignore => BtTies::Ignore,
                TieModel::RaoKupper => BtTies::RaoKupper { theta: *theta },
                TieModel::Davidson => BtTies::Davidson { nu: *nu },
            }),
            _ => None,
        }
    }
}

fn default_beta() -> f64 {
    0.1
}
fn default_perturb() -> f64 {
    2.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Examples per micro-batch.
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Optimizer steps (set this or `epochs`).
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Passes over the training examples (set this or `max_steps`).
    #[serde(default)]
    pub epochs: Option<f64>,
    /// Evaluate on the validation split every this many steps (0: never).
    #[serde(default)]
    pub eval_every: usize,
    /// Save a checkpoint every this many steps (0: only at the end).
    #[serde(default)]
    pub save_every: usize,
    /// Checkpoints kept (older ones deleted), default 2.
    #[serde(default = "two")]
    pub keep_last: usize,
    /// Train on burn's `BalancedCheckpointing` autodiff: memory-bound operations are recomputed
    /// in the backward pass instead of keeping their outputs (same losses; measured at 3,540
    /// tokens per step: peak memory -14%, step time +5%; BENCHMARKS.md). Default false.
    #[serde(default)]
    pub gradient_checkpointing: bool,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Write metrics.jsonl (default true).
    #[serde(default = "yes")]
    pub jsonl: bool,
    /// Write TensorBoard event files under tb/ (default true).
    #[serde(default = "yes")]
    pub tensorboard: bool,
    /// Progress bar on a terminal (default true).
    #[serde(default = "yes")]
    pub progress: bool,
}

fn yes() -> bool {
    true
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            jsonl: true,
            tensorboard: true,
            progress: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RecipeError {
    pub path: PathBuf,
    pub message: String,
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let err = |m: String| RecipeError {
            path: path.to_path_buf(),
            message: m,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text, path)
    }

    /// Parse and validate recipe text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
        let err = |m: String| RecipeError {
            path: path.to_path_buf(),
            message: m,
        };
        let mut r: Recipe = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        // Relative paths in a recipe are relative to the working directory (where runs start),
        // as in TRL / LLaMA-Factory configs.
        r.validate().map_err(err)?;
        if r.data.cache_dir.is_none() {
            r.data.cache_dir = Some(r.run.output_dir.join("cache"));
        }
        Ok(r)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.lora.check()?;
        self.optim.check()?;
        self.data
            .frames
            .check()
            .map_err(|m| format!("data.frames: {m}"))?;
        self.data.operator_set()?;
        if self.data.unit == ResponseUnit::Aspect
            && matches!(self.stage, StageConfig::Preference { .. })
        {
            return Err("data.unit = \"aspect\" is for stage sft: preference calibration scores one dimension per prompt; use data.unit = \"dimension\"".into());
        }
        let t = &self.train;
        match (t.max_steps, t.epochs) {
            (None, None) => return Err("train: set max_steps or epochs".into()),
            (Some(_), Some(_)) => return Err("train: set only one of max_steps and epochs".into()),
            (Some(0), _) => return Err("train.max_steps must be at least 1".into()),
            (_, Some(e)) if !(e > 0.0) => {
                return Err(format!("train.epochs must be positive, got {e}"))
            }
            _ => {}
        }
        if t.batch_size == 0 || t.grad_accum == 0 {
            return Err("train.batch_size and train.grad_accum must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.schedule.min_lr_ratio) {
            return Err(format!(
                "schedule.min_lr_ratio must be in [0, 1], got {}",
                self.schedule.min_lr_ratio
            ));
        }
        if let StageConfig::Preference { strategy } = &self.stage {
            match strategy {
                Strategy::Dpo {
                    beta,
                    label_smoothing,
                    perturb,
                    loss,
                } => {
                    if !(*beta > 0.0) {
                        return Err(format!("stage.strategy.beta must be positive, got {beta}"));
                    }
                    if !(0.0..0.5).contains(label_smoothing) {
                        return Err(format!("stage.strategy.label_smoothing must be in [0, 0.5), got {label_smoothing}"));
                    }
                    if *label_smoothing > 0.0 && matches!(loss, DpoKind::Ipo | DpoKind::Hinge) {
                        return Err("stage.strategy.label_smoothing applies to the sigmoid and robust losses only".into());
                    }
                    if !(*perturb >= 1.0) {
                        return Err(format!(
                            "stage.strategy.perturb must be at least 1 level, got {perturb}"
                        ));
                    }
                }
                Strategy::Bt {
                    theta,
                    nu,
                    max_new_tokens,
                    readout,
                    train_lora,
                    ..
                } => {
                    if !*train_lora && *readout != BtReadout::Head {
                        return Err("stage.strategy.train_lora = false needs readout = \"head\" (nothing else would train)".into());
                    }
                    if *max_new_tokens == 0 {
                        return Err("stage.strategy.max_new_tokens must be at least 1".into());
                    }
                    if !(*theta >= 1.0) {
                        return Err(format!(
                            "stage.strategy.theta must be >= 1 (Rao-Kupper), got {theta}"
                        ));
                    }
                    if !(*nu > 0.0) {
                        return Err(format!(
                            "stage.strategy.nu must be positive (Davidson), got {nu}"
                        ));
                    }
                }
                Strategy::Distribution => {}
                Strategy::Grpo {
                    group,
                    temperature,
                    top_p,
                    max_new_tokens,
                    rewards,
                    reward_weights,
                    beta,
                    epsilon,
                    epsilon_high,
                    ..
                } => {
                    if *group < 2 {
                        return Err(format!("stage.strategy.group must be at least 2 (advantages compare answers within a group), got {group}"));
                    }
                    if !(*temperature > 0.0 && temperature.is_finite()) {
                        return Err(format!("stage.strategy.temperature must be positive (GRPO samples), got {temperature}"));
                    }
                    if !(*top_p > 0.0 && *top_p <= 1.0) {
                        return Err(format!(
                            "stage.strategy.top_p must be in (0, 1], got {top_p}"
                        ));
                    }
                    if *max_new_tokens == 0 {
                        return Err("stage.strategy.max_new_tokens must be at least 1".into());
                    }
                    if rewards.is_empty() {
                        return Err("stage.strategy.rewards is empty: name at least one of graded, abs_error, format, na_correct".into());
                    }
                    if !reward_weights.is_empty() && reward_weights.len() != rewards.len() {
                        return Err(format!(
                            "stage.strategy.reward_weights has {} weights for {} rewards",
                            reward_weights.len(),
                            rewards.len()
                        ));
                    }
                    if reward_weights.iter().any(|w| !w.is_finite()) {
                        return Err("stage.strategy.reward_weights must be finite".into());
                    }
                    if !(*beta >= 0.0 && beta.is_finite()) {
                        return Err(format!("stage.strategy.beta must be >= 0, got {beta}"));
                    }
                    for (k, e) in [("epsilon", Some(*epsilon)), ("epsilon_high", *epsilon_high)] {
                        if let Some(e) = e {
                            if !(e > 0.0 && e < 1.0) {
                                return Err(format!(
                                    "stage.strategy.{k} must be in (0, 1), got {e}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The resolved recipe as TOML, written beside every checkpoint.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("recipes serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SFT: &str = r#"
[run]
output_dir = "runs/x"
seed = 3
[model]
source = "runs/base"
[lora]
rank = 8
alpha = 16
[data]
dataset = "data/sample"
[data.frames]
fps = 2.0
min_frames = 4
max_frames = 8
min_pixels = 3136
max_pixels = 12544
[stage]
kind = "sft"
[optim]
lr = 2e-4
[schedule]
decay = "cosine"
warmup_steps = 2
[train]
max_steps = 10
"#;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, text).unwrap();
        Recipe::load(&p)
    }

    #[test]
    fn sft_recipe_loads_with_documented_defaults() {
        let r = parse(SFT).unwrap();
        assert_eq!(r.optim.betas, (0.9, 0.999));
        assert_eq!(r.optim.eps, 1e-8);
        assert_eq!(r.train.grad_accum, 1);
        assert_eq!(r.lora.target_modules.len(), 7);
        assert_eq!(r.data.cache_dir, Some(PathBuf::from("runs/x/cache")));
        // The resolved recipe parses back to itself.
        let again: Recipe = toml::from_str(&r.to_toml()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn preference_strategies_parse() {
        let dpo = SFT.replace(
            "kind = \"sft\"",
            "kind = \"preference\"\nstrategy = { name = \"dpo\", loss = \"ipo\", beta = 0.5 }",
        );
        let r = parse(&dpo).unwrap();
        assert_eq!(
            r.stage,
            StageConfig::Preference {
                strategy: Strategy::Dpo {
                    loss: DpoKind::Ipo,
                    beta: 0.5,
                    label_smoothing: 0.0,
                    perturb: 2.0
                }
            }
        );
        let bt = SFT.replace("kind = \"sft\"", "kind = \"preference\"\nstrategy = { name = \"bt\", ties = \"rao_kupper\", theta = 1.5 }");
        let StageConfig::Preference { strategy } = parse(&bt).unwrap().stage else {
            panic!("not preference")
        };
        assert_eq!(strategy.bt_ties(), Some(BtTies::RaoKupper { theta: 1.5 }));
    }

    #[test]
    fn operators_default_to_none_and_unknown_names_are_refused() {
        assert!(parse(SFT).unwrap().data.operator_set().unwrap().is_empty());
        let with = SFT.replace(
            "[data.frames]",
            "operators = [\"sync\", \"shots\"]\n[data.frames]",
        );
        let set = parse(&with).unwrap().data.operator_set().unwrap();
        assert_eq!(
            set.iter().map(|o| o.name()).collect::<Vec<_>>(),
            ["shots", "sync"]
        );
        let e = parse(&SFT.replace("[data.frames]", "operators = [\"shake\"]\n[data.frames]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.toml")
                && e.contains("data.operators")
                && e.contains("'shake'")
                && e.contains("motion"),
            "{e}"
        );
    }

    #[test]
    fn aspect_unit_is_for_sft_only() {
        let aspect = SFT.replace("[data.frames]", "unit = \"aspect\"\n[data.frames]");
        assert_eq!(parse(&aspect).unwrap().data.unit, ResponseUnit::Aspect);
        assert_eq!(parse(SFT).unwrap().data.unit, ResponseUnit::Dimension);
        let pref = aspect.replace(
            "kind = \"sft\"",
            "kind = \"preference\"\nstrategy = { name = \"bt\" }",
        );
        let e = parse(&pref).unwrap_err().to_string();
        assert!(
            e.contains("data.unit") && e.contains("\"dimension\""),
            "{e}"
        );
        let e = parse(&SFT.replace("[data.frames]", "unit = \"shot\"\n[data.frames]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("shot") && e.contains("aspect"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let e = parse(&SFT.replace("rank = 8", "rank = 8\nrnak = 4"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.toml") && e.contains("rnak"), "{e}");
    }

    #[test]
    fn bad_choice_names_the_allowed_values() {
        let e = parse(&SFT.replace("decay = \"cosine\"", "decay = \"exponential\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exponential") && e.contains("cosine") && e.contains("linear"),
            "{e}"
        );
    }

    #[test]
    fn steps_and_epochs_are_exclusive() {
        let e = parse(&SFT.replace("max_steps = 10", "max_steps = 10\nepochs = 1.0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only one of max_steps and epochs"), "{e}");
    }

    #[test]
    fn label_smoothing_on_ipo_is_refused() {
        let t = SFT.replace("kind = \"sft\"", "kind = \"preference\"\nstrategy = { name = \"dpo\", loss = \"ipo\", label_smoothing = 0.1 }");
        assert!(parse(&t)
            .unwrap_err()
            .to_string()
            .contains("sigmoid and robust"));
    }

    #[test]
    fn the_shipped_grpo_recipe_reads_and_bad_grpo_settings_are_refused() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../recipes/qwen2_5_vl_7b/grpo.toml");
        let r = Recipe::load(&path).unwrap();
        let StageConfig::Preference { strategy } = &r.stage else {
            panic!("preference stage")
        };
        let g = strategy.grpo_settings().expect("grpo");
        assert_eq!((g.group, g.loss.beta, g.loss.epsilon_high), (8, 0.04, 0.2));
        assert_eq!(
            g.rewards,
            vec![
                (crate::grpo::RewardFn::Graded, 1.0),
                (crate::grpo::RewardFn::Format, 0.1)
            ]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to, needle) in [
            ("group = 8", "group = 1", "group must be at least 2"),
            (
                "temperature = 1.0",
                "temperature = 0.0",
                "temperature must be positive",
            ),
            (
                "reward_weights = [1.0, 0.1]",
                "reward_weights = [1.0]",
                "1 weights for 2 rewards",
            ),
            (
                "epsilon = 0.2",
                "epsilon = 1.5",
                "epsilon must be in (0, 1)",
            ),
            (
                "rewards = [\"graded\", \"format\"]",
                "rewards = []",
                "rewards is empty",
            ),
        ] {
            let bad = text.replace(from, to);
            assert_ne!(bad, text, "{from}");
            let e = Recipe::parse(&bad, &path).unwrap_err().to_string();
            assert!(e.contains(needle), "{to}: {e}");
        }
    }
}
