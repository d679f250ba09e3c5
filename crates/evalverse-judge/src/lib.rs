//! evalverse-judge: the EvalVerse judge as one object (EvalVerse §6). Per clip and dimension:
//! perception-operator evidence (in the prompt when the judge was trained with it) -> the VLM's
//! rationale and score (score tokens or a reward head) -> the context gate (N/A when the
//! dimension does not apply) -> a learned fusion of the VLM's score with the operators'
//! measurements -> the final score, every stage recorded in the `Judgement`.
//!
//! Everything that judges goes through here: training builds its conversations and batches
//! with `prompt` and `collate`, and loads its model with `load`; `eval`, `judge`, `score` and the
//! server build a `Judge` (from a run, an adapter, a base, or a bundle) and call
//! `Judge::prepare` + `Judge::judge`. A `bundle` is the judge on disk.

pub mod bundle;
pub mod collate;
pub mod compose;
pub mod fusion;
pub mod harness;
pub mod load;
pub mod prompt;
pub mod score;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use evalverse_data::cache::{CachedClip, DecodeCache, Lookup};
use evalverse_data::dataset::Dataset;
use evalverse_data::manifest::ClipRecord;
use evalverse_data::operators::{gate_on, AnalysisSpec, Evidence, OperatorSet};
use evalverse_data::prompts::{JudgeExample, ResponseUnit};
use evalverse_data::taxonomy::{ClipFacts, Taxonomy};
use evalverse_data::video::FrameSpec;
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::reward::RewardHead;
use evalverse_model::{ModelBackend, QwenVl};
use serde::{Deserialize, Serialize};

pub use compose::GatePolicy;
pub use fusion::FusionModel;
pub use harness::{Judgement, NaSource, Verdict};

/// Errors of loading or running a judge: `Config` is the user's to fix (a path, a setting, a
/// bundle that does not match: exit code 2), `Runtime` is what went wrong while running
/// (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

/// What a judge is, besides its weights: which base and adapter, how clips are sampled, how
/// prompts are built and how N/A is decided. A bundle records it; a training run's recipe
/// determines it (`evalverse_train::judge_spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    /// Base model: a folder or `hf:ORG/NAME[@REV]`.
    pub base: String,
    /// tokenizer.json to use instead of the base's own.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// PEFT adapter folder (with the reward head beside it when the judge has one); None:
    /// the base alone.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
    /// Frame sampling and resizing of the clips.
    pub frames: FrameSpec,
    /// One prompt per dimension or per aspect.
    pub unit: ResponseUnit,
    /// Operators whose evidence is written into the prompts (the run's `data.operators`).
    pub prompt_operators: OperatorSet,
    /// Who decides N/A.
    pub gate: GatePolicy,
    /// Longest rationale per dimension, in tokens; 0 scores with the reward head alone.
    pub max_new_tokens: usize,
}

/// One clip to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInput {
    pub id: String,
    pub video: PathBuf,
    /// The prompt the clip was generated from.
    pub prompt: String,
    /// Facts declared for the clip (a manifest's shots, audio, speech); the gate prefers what
    /// the operators measure.
    pub declared: ClipFacts,
    pub prompt_group: String,
    pub generator: String,
}

impl ClipInput {
    /// A clip of a dataset.
    pub fn of_record(ds: &Dataset, c: &ClipRecord) -> Self {
        ClipInput {
            id: c.id.clone(),
            video: ds.video_path(c),
            prompt: c.prompt.clone(),
            declared: c.facts(),
            prompt_group: c.prompt_group.clone(),
            generator: c.generator.clone(),
        }
    }

    /// A clip outside a dataset, identified by `id`.
    pub fn new(
        id: impl Into<String>,
        video: impl Into<PathBuf>,
        prompt: impl Into<String>,
    ) -> Self {
        ClipInput {
            id: id.into(),
            video: video.into(),
            prompt: prompt.into(),
            declared: ClipFacts::unknown(),
            prompt_group: String::new(),
            generator: String::new(),
        }
    }
}

/// Clips decoded and measured for judging.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Model-ready clips by video path.
    pub clips: BTreeMap<PathBuf, CachedClip>,
    /// Evidence written into prompts, by clip id (when the judge uses any).
    pub prompt_evidence: BTreeMap<String, Evidence>,
    /// Evidence the gate and fusion read, by clip id.
    pub stage_evidence: BTreeMap<String, Evidence>,
    /// (clip id, error naming the file) of clips that could not be decoded: not judged.
    pub skipped: Vec<(String, String)>,
    /// (clip id, error) of clips whose evidence could not be measured: judged without it
    /// (no evidence in the prompt, the gate abstains, no fusion).
    pub no_evidence: Vec<(String, String)>,
    pub cache_hits: usize,
}

impl Prepared {
    /// Why clip `id` could not be decoded (the error naming its file), if it could not.
    pub fn skip_reason(&self, id: &str) -> Option<&str> {
        self.skipped
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, w)| w.as_str())
    }
}

/// The composed judge, loaded and ready.
pub struct Judge<B: ModelBackend> {
    pub model: QwenVl<B>,
    pub tok: ChatTokenizer,
    pub head: Option<RewardHead>,
    pub spec: JudgeSpec,
    pub taxonomy: Taxonomy,
    pub fusion: Option<FusionModel>,
}

impl<B: ModelBackend> Judge<B> {
    /// Load the base, fold the adapter in, read the reward head beside it (or in a merged base
    /// folder), and check that the head covers what head-only scoring needs.
    pub fn load(
        spec: JudgeSpec,
        taxonomy: Taxonomy,
        fusion: Option<FusionModel>,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self, JudgeError> {
        let (mut model, tok) =
            load::load_base::<B>(&spec.base, spec.tokenizer.as_deref(), dtype, device)?;
        if let Some(dir) = &spec.adapter {
            load::fold_adapter(&mut model, dir, &spec.base)?;
        }
        let head_dir = spec.adapter.clone().or_else(|| {
            Path::new(&spec.base)
                .is_dir()
                .then(|| PathBuf::from(&spec.base))
        });
        let head = match head_dir {
            Some(d) => load::load_head(&d, model.cfg.text.hidden_size)?,
            None => None,
        };
        if spec.max_new_tokens == 0 && head.is_none() {
            return Err(JudgeError::Config(
                "max_new_tokens 0 scores with the reward head alone, and this judge has none \
                 (a Bradley-Terry run with readout = \"head\" has one)"
                    .into(),
            ));
        }
        Ok(Judge {
            model,
            tok,
            head,
            spec,
            taxonomy,
            fusion,
        })
    }

    /// Load a bundle read by `bundle::read`.
    pub fn from_bundle(
        b: bundle::Bundle,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self, JudgeError> {
        Judge::load(b.spec, b.taxonomy, b.fusion, dtype, device)
    }

    /// The operators the gate and fusion read (None: neither needs evidence).
    pub fn stage_operators(&self) -> Option<OperatorSet> {
        if self.spec.gate.uses_operators() {
            Some(OperatorSet::all())
        } else {
            self.fusion.as_ref().map(|f| f.operators.clone())
        }
    }

    /// Decode every clip (through the cache) and measure the evidence the judge needs. A clip
    /// that cannot be decoded is recorded in `skipped` and the rest go on.
    pub fn prepare(
        &self,
        inputs: &[ClipInput],
        cache: &DecodeCache,
        mut progress: impl FnMut(usize, usize),
    ) -> Prepared {
        let patch = prompt::patch_spec(&self.model.cfg.vision);
        let analysis = AnalysisSpec::default();
        let stage_ops = self.stage_operators();
        let mut p = Prepared::default();
        for (i, c) in inputs.iter().enumerate() {
            progress(i, inputs.len());
            if p.clips.contains_key(&c.video) {
                // The same file under another id: decoded once, measured once.
            } else {
                match cache.get_or_decode(&c.video, &self.spec.frames, &patch, false) {
                    Ok((clip, lookup)) => {
                        p.cache_hits += usize::from(lookup == Lookup::Hit);
                        p.clips.insert(c.video.clone(), clip);
                    }
                    Err(e) => {
                        p.skipped.push((c.id.clone(), e.to_string()));
                        continue;
                    }
                }
            }
            let mut measure = |set: &OperatorSet, into: &mut BTreeMap<String, Evidence>| {
                if set.is_empty() {
                    return;
                }
                match cache.get_or_measure(&c.video, set, &analysis) {
                    Ok((ev, _)) => {
                        into.insert(c.id.clone(), ev);
                    }
                    Err(e) => p.no_evidence.push((c.id.clone(), e.to_string())),
                }
            };
            measure(&self.spec.prompt_operators, &mut p.prompt_evidence);
            if let Some(set) = &stage_ops {
                measure(set, &mut p.stage_evidence);
            }
        }
        progress(inputs.len(), inputs.len());
        p
    }

    /// The judge's questions on a clip outside a dataset, one per dimension (all of the
    /// taxonomy's when `dimensions` is empty), with the clip's evidence when the judge was
    /// trained with it.
    pub fn examples_for(
        &self,
        input: &ClipInput,
        dimensions: &[String],
        prepared: &Prepared,
    ) -> Result<Vec<JudgeExample>, JudgeError> {
        check_dimensions(&self.taxonomy, dimensions)?;
        Ok(self
            .taxonomy
            .dimensions
            .iter()
            .filter(|d| dimensions.is_empty() || dimensions.contains(&d.id))
            .map(|d| {
                evalverse_data::prompts::unannotated_example(
                    &self.taxonomy,
                    d,
                    &input.id,
                    &input.video,
                    &input.prompt,
                    prepared.prompt_evidence.get(&input.id),
                )
            })
            .collect())
    }

    /// Judge `examples` (of the clips in `inputs`, decoded in `prepared`) through every stage:
    /// response units as the judge was trained, the VLM (rationale, score tokens or head),
    /// fusion, the gate. Examples of skipped clips are left out.
    pub fn judge(
        &self,
        examples: Vec<JudgeExample>,
        inputs: &[ClipInput],
        prepared: &Prepared,
        batch_size: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Judgement>, JudgeError> {
        let by_id: BTreeMap<&str, &ClipInput> = inputs.iter().map(|c| (c.id.as_str(), c)).collect();
        for e in &examples {
            if !by_id.contains_key(e.clip_id.as_str()) {
                return Err(JudgeError::Runtime(format!(
                    "example of clip '{}' has no clip input",
                    e.clip_id
                )));
            }
        }
        let units = evalverse_data::prompts::group_units_with(
            &self.taxonomy,
            examples,
            self.spec.unit,
            &|id| {
                (
                    by_id[id].prompt.clone(),
                    prepared.prompt_evidence.get(id).cloned(),
                )
            },
        );
        let mut js = harness::judge_units(
            &self.model,
            &self.tok,
            &self.taxonomy,
            &units,
            &prepared.clips,
            &harness::JudgeSettings {
                max_new_tokens: self.spec.max_new_tokens,
                batch_size,
                head: self.head.as_ref(),
            },
            progress,
        )
        .map_err(JudgeError::Runtime)?;
        for j in &mut js {
            self.compose(j, by_id[j.clip_id.as_str()], prepared);
        }
        Ok(js)
    }

    /// Fusion, then the gate, on one VLM judgement.
    fn compose(&self, j: &mut Judgement, input: &ClipInput, prepared: &Prepared) {
        let scale = &self.taxonomy.default_scale;
        let ev = prepared.stage_evidence.get(&j.clip_id);
        if let (Some(f), Some(ev)) = (&self.fusion, ev) {
            j.fuse(f, ev, scale);
        }
        let decision = ev.and_then(|ev| {
            self.taxonomy
                .dimension(&j.dimension)
                .map(|d| gate_on(d, &input.prompt, &input.declared, ev))
        });
        j.gate_na = decision.as_ref().map(|d| !d.applies);
        j.gate_reason = decision.as_ref().map(|d| d.reason.clone());
        j.gate(self.spec.gate, decision.as_ref(), scale);
    }
}

/// Refuse dimension ids the taxonomy does not define, listing the known ones.
pub fn check_dimensions(tax: &Taxonomy, dimensions: &[String]) -> Result<(), JudgeError> {
    for d in dimensions {
        if tax.dimension(d).is_none() {
            return Err(JudgeError::Config(format!(
                "dimension '{d}' is not in taxonomy '{}' (known: {})",
                tax.name,
                tax.dimension_ids().join(", ")
            )));
        }
    }
    Ok(())
}
