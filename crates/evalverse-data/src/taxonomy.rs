//! The EvalVerse taxonomy (paper §3): stages -> aspects -> dimensions -> sub-dimensions, with each
//! dimension's score scale, the expert questions used in prompts, and its applicability rule.
//! Loaded from TOML (configs/taxonomy/evalverse.toml is built in) and validated at load.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The built-in taxonomy, shipped with the crate so a dataset can name it as `"evalverse"`.
pub const BUILTIN_EVALVERSE: &str = include_str!("../../../configs/taxonomy/evalverse.toml");

/// A score scale: integer levels `min, min+step, ..., max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub min: f64,
    pub max: f64,
    /// Distance between adjacent levels (1 for a 1-5 Likert scale).
    pub step: f64,
    /// Optional names of the levels, lowest first; must have one per level when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl Scale {
    /// Number of levels on the scale.
    pub fn levels(&self) -> usize {
        ((self.max - self.min) / self.step).round() as usize + 1
    }
    /// The level values, lowest first.
    pub fn values(&self) -> Vec<f64> {
        (0..self.levels())
            .map(|i| self.min + i as f64 * self.step)
            .collect()
    }
    /// Whether `score` is one of the levels (within 1e-9).
    pub fn contains(&self, score: f64) -> bool {
        if !score.is_finite() || score < self.min - 1e-9 || score > self.max + 1e-9 {
            return false;
        }
        let k = (score - self.min) / self.step;
        (k - k.round()).abs() < 1e-9
    }
    /// Index of the level nearest to `score` (clamped), for histograms.
    pub fn level_index(&self, score: f64) -> usize {
        (((score - self.min) / self.step).round().max(0.0) as usize).min(self.levels() - 1)
    }
    fn check(&self) -> std::result::Result<(), String> {
        if !(self.min.is_finite() && self.max.is_finite() && self.step.is_finite()) {
            return Err("scale bounds must be finite".into());
        }
        if self.min >= self.max {
            return Err(format!(
                "scale min {} must be below max {}",
                self.min, self.max
            ));
        }
        if self.step <= 0.0 {
            return Err(format!("scale step {} must be positive", self.step));
        }
        let k = (self.max - self.min) / self.step;
        // The tolerance is absolute: a step far larger than the range gives k near 0, a
        // "whole number" of steps with one level.
        if k.round() < 1.0 {
            return Err(format!(
                "scale {}..{} is narrower than one step of {}",
                self.min, self.max, self.step
            ));
        }
        if (k - k.round()).abs() > 1e-9 {
            return Err(format!(
                "scale {}..{} is not a whole number of steps of {}",
                self.min, self.max, self.step
            ));
        }
        // Counted in f64: a step far smaller than the range gives more levels than a usize holds.
        let levels = k.round() + 1.0;
        if levels > 101.0 {
            return Err(format!(
                "scale has {} levels; at most 101 are supported",
                match levels < 1e9 {
                    true => levels.to_string(),
                    false => format!("{levels:e}"),
                }
            ));
        }
        if !self.labels.is_empty() && self.labels.len() != self.levels() {
            return Err(format!(
                "scale has {} levels but {} labels",
                self.levels(),
                self.labels.len()
            ));
        }
        Ok(())
    }
}

/// When "not applicable" is a valid answer for a dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "when", rename_all = "snake_case", deny_unknown_fields)]
pub enum Applicability {
    /// Applies to every clip: N/A is never valid.
    Always {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The expert decides from the content (e.g. no character on screen): score or N/A both valid.
    Context {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Applies iff the clip has at least `min_shots` shots.
    MultiShot {
        min_shots: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Applies iff the clip has an audio track.
    Audio {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Applies iff the clip's audio contains speech.
    Speech {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// What the applicability rules look at, read off a clip record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipFacts {
    pub shots: usize,
    pub has_audio: bool,
    pub has_speech: bool,
}

impl ClipFacts {
    /// What a clip outside a dataset declares: one shot, no audio, no speech. The gate reads
    /// the operators' measurements instead wherever they exist.
    pub fn unknown() -> Self {
        ClipFacts {
            shots: 1,
            has_audio: false,
            has_speech: false,
        }
    }
}

impl Applicability {
    /// `Some(true)`: the dimension applies (N/A is invalid); `Some(false)`: it does not (only N/A
    /// is valid); `None`: the expert decides from the content.
    pub fn applies(&self, facts: &ClipFacts) -> Option<bool> {
        match self {
            Applicability::Always { .. } => Some(true),
            Applicability::Context { .. } => None,
            Applicability::MultiShot { min_shots, .. } => Some(facts.shots >= *min_shots),
            Applicability::Audio { .. } => Some(facts.has_audio),
            Applicability::Speech { .. } => Some(facts.has_speech),
        }
    }
    /// A short human description, used in prompts and error messages.
    pub fn describe(&self) -> String {
        match self {
            Applicability::Always { .. } => "applies to every clip".into(),
            Applicability::Context { note } => {
                format!(
                    "may be N/A by content{}",
                    note.as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                )
            }
            Applicability::MultiShot { min_shots, .. } => {
                format!("applies only to clips with at least {min_shots} shots")
            }
            Applicability::Audio { .. } => "applies only to clips with an audio track".into(),
            Applicability::Speech { .. } => "applies only to clips with speech".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubDimension {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionKind {
    /// One of the taxonomy's cinematic dimensions (stage -> aspect -> dimension).
    Cinematic,
    /// A general "rightness" dimension (prompt following, temporal consistency, physics).
    Rightness,
}

/// One scored dimension, as it appears in the TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub id: String,
    pub name: String,
    /// Aspect id; required for cinematic dimensions, absent for rightness ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect: Option<String>,
    pub description: String,
    pub sub_dimensions: Vec<SubDimension>,
    /// Expert questions put in the judge's prompt for this dimension.
    pub questions: Vec<String>,
    /// Overrides the taxonomy's default scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    pub applicability: Applicability,
    /// Filled at load: cinematic or rightness.
    #[serde(skip_deserializing, default = "default_kind")]
    pub kind: DimensionKind,
}

fn default_kind() -> DimensionKind {
    DimensionKind::Cinematic
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aspect {
    pub id: String,
    pub name: String,
    pub stage: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxonomyFile {
    name: String,
    #[serde(default)]
    version: Option<String>,
    default_scale: Scale,
    stages: Vec<Stage>,
    aspects: Vec<Aspect>,
    dimensions: Vec<Dimension>,
    #[serde(default)]
    rightness: Vec<Dimension>,
}

/// A validated taxonomy. Dimensions keep file order: cinematic ones first, then rightness.
#[derive(Debug, Clone, Serialize)]
pub struct Taxonomy {
    pub name: String,
    pub version: Option<String>,
    pub default_scale: Scale,
    pub stages: Vec<Stage>,
    pub aspects: Vec<Aspect>,
    pub dimensions: Vec<Dimension>,
    #[serde(skip)]
    index: BTreeMap<String, usize>,
    /// The TOML text it was parsed from (a judge bundle carries it).
    #[serde(skip)]
    source: String,
}

impl Taxonomy {
    /// The built-in EvalVerse taxonomy.
    pub fn evalverse() -> Self {
        Self::from_toml_str(BUILTIN_EVALVERSE, Path::new("<builtin>/evalverse.toml"))
            .expect("the built-in taxonomy is validated by a test")
    }

    /// Load `"evalverse"` (built in) or a TOML file path.
    pub fn load(name_or_path: &str, base: &Path) -> Result<Self> {
        if name_or_path == "evalverse" {
            return Ok(Self::evalverse());
        }
        let path = base.join(name_or_path);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        Self::from_toml_str(&text, &path)
    }

    /// Parse and validate; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self> {
        let file: TaxonomyFile =
            toml::from_str(text).map_err(|e| DataError::config(origin, e.to_string()))?;
        let err = |m: String| DataError::config(origin, m);
        file.default_scale
            .check()
            .map_err(|m| err(format!("default_scale: {m}")))?;
        let mut ids = HashSet::new();
        for s in &file.stages {
            check_id(&s.id).map_err(|m| err(format!("stage '{}': {m}", s.id)))?;
            if !ids.insert(s.id.clone()) {
                return Err(err(format!("duplicate id '{}'", s.id)));
            }
        }
        let stage_ids: HashSet<&str> = file.stages.iter().map(|s| s.id.as_str()).collect();
        let mut aspect_ids = HashSet::new();
        for a in &file.aspects {
            check_id(&a.id).map_err(|m| err(format!("aspect '{}': {m}", a.id)))?;
            if !ids.insert(a.id.clone()) {
                return Err(err(format!("duplicate id '{}'", a.id)));
            }
            if !stage_ids.contains(a.stage.as_str()) {
                return Err(err(format!(
                    "aspect '{}' names unknown stage '{}'",
                    a.id, a.stage
                )));
            }
            aspect_ids.insert(a.id.as_str());
        }
        let mut dimensions = Vec::new();
        let mut index = BTreeMap::new();
        let all = file
            .dimensions
            .into_iter()
            .map(|d| (d, DimensionKind::Cinematic))
            .chain(
                file.rightness
                    .into_iter()
                    .map(|d| (d, DimensionKind::Rightness)),
            );
        for (mut d, kind) in all {
            d.kind = kind;
            let at = |m: String| err(format!("dimension '{}': {m}", d.id));
            check_id(&d.id).map_err(at)?;
            if !ids.insert(d.id.clone()) {
                return Err(err(format!("duplicate id '{}'", d.id)));
            }
            match (kind, &d.aspect) {
                (DimensionKind::Cinematic, None) => {
                    return Err(at("cinematic dimensions need an aspect".into()))
                }
                (DimensionKind::Cinematic, Some(a)) if !aspect_ids.contains(a.as_str()) => {
                    return Err(at(format!("unknown aspect '{a}'")))
                }
                (DimensionKind::Rightness, Some(_)) => {
                    return Err(at("rightness dimensions have no aspect".into()))
                }
                _ => {}
            }
            if d.questions.is_empty() || d.questions.iter().any(|q| q.trim().is_empty()) {
                return Err(at("needs at least one non-empty expert question".into()));
            }
            if let Some(s) = &d.scale {
                s.check().map_err(|m| at(format!("scale: {m}")))?;
            }
            if let Applicability::MultiShot { min_shots, .. } = d.applicability {
                if min_shots < 2 {
                    return Err(at(format!(
                        "multi_shot min_shots must be at least 2, got {min_shots}"
                    )));
                }
            }
            let mut sub_ids = HashSet::new();
            for s in &d.sub_dimensions {
                check_id(&s.id).map_err(|m| at(format!("sub-dimension '{}': {m}", s.id)))?;
                if !sub_ids.insert(s.id.as_str()) {
                    return Err(at(format!("duplicate sub-dimension '{}'", s.id)));
                }
            }
            index.insert(d.id.clone(), dimensions.len());
            dimensions.push(d);
        }
        if dimensions.is_empty() {
            return Err(err("taxonomy has no dimensions".into()));
        }
        for a in &file.aspects {
            if !dimensions
                .iter()
                .any(|d| d.aspect.as_deref() == Some(a.id.as_str()))
            {
                return Err(err(format!("aspect '{}' has no dimensions", a.id)));
            }
        }
        Ok(Taxonomy {
            name: file.name,
            version: file.version,
            default_scale: file.default_scale,
            stages: file.stages,
            aspects: file.aspects,
            dimensions,
            index,
            source: text.to_string(),
        })
    }

    /// The TOML text this taxonomy was parsed from.
    pub fn source_toml(&self) -> &str {
        &self.source
    }

    /// SHA-256 (hex) of the parsed taxonomy's canonical JSON: equal for two files that define
    /// the same stages, aspects, dimensions, questions, scales and rules, whatever their layout.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_string(self).expect("taxonomy serialises");
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn dimension(&self, id: &str) -> Option<&Dimension> {
        self.index.get(id).map(|&i| &self.dimensions[i])
    }
    pub fn scale<'a>(&'a self, dim: &'a Dimension) -> &'a Scale {
        dim.scale.as_ref().unwrap_or(&self.default_scale)
    }
    pub fn aspect(&self, id: &str) -> Option<&Aspect> {
        self.aspects.iter().find(|a| a.id == id)
    }
    /// The stage id of a dimension (None for rightness dimensions).
    pub fn stage_of(&self, dim: &Dimension) -> Option<&str> {
        dim.aspect
            .as_deref()
            .and_then(|a| self.aspect(a))
            .map(|a| a.stage.as_str())
    }
    pub fn cinematic(&self) -> impl Iterator<Item = &Dimension> {
        self.dimensions
            .iter()
            .filter(|d| d.kind == DimensionKind::Cinematic)
    }
    pub fn dimension_ids(&self) -> Vec<&str> {
        self.dimensions.iter().map(|d| d.id.as_str()).collect()
    }
}

fn check_id(id: &str) -> std::result::Result<(), String> {
    let ok = !id.is_empty()
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("ids are lowercase snake_case ([a-z][a-z0-9_]*)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_taxonomy_has_3_stages_7_aspects_18_dimensions() {
        let t = Taxonomy::evalverse();
        assert_eq!(t.stages.len(), 3);
        assert_eq!(t.aspects.len(), 7);
        assert_eq!(t.cinematic().count(), 18);
        let rightness: Vec<_> = t
            .dimensions
            .iter()
            .filter(|d| d.kind == DimensionKind::Rightness)
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(
            rightness,
            [
                "prompt_following",
                "temporal_consistency",
                "physical_plausibility"
            ]
        );
        let subs: usize = t.cinematic().map(|d| d.sub_dimensions.len()).sum();
        assert_eq!(subs, 44, "the paper's text names 44 sub-dimensions");
        assert_eq!(
            t.stage_of(t.dimension("rhythm").unwrap()),
            Some("post_production")
        );
    }

    #[test]
    fn scale_contains_only_its_levels() {
        let s = Scale {
            min: 1.0,
            max: 5.0,
            step: 1.0,
            labels: vec![],
        };
        assert!(s.contains(1.0) && s.contains(5.0) && s.contains(3.0));
        assert!(!s.contains(0.0) && !s.contains(6.0) && !s.contains(2.5) && !s.contains(f64::NAN));
        let half = Scale {
            min: 0.0,
            max: 2.0,
            step: 0.5,
            labels: vec![],
        };
        assert_eq!(half.values(), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn multi_shot_rule_applies_from_min_shots() {
        let r = Applicability::MultiShot {
            min_shots: 2,
            note: None,
        };
        let f = |shots| ClipFacts {
            shots,
            has_audio: false,
            has_speech: false,
        };
        assert_eq!(r.applies(&f(1)), Some(false));
        assert_eq!(r.applies(&f(3)), Some(true));
        assert_eq!(Applicability::Context { note: None }.applies(&f(1)), None);
    }

    fn with_builtin_replaced(from: &str, to: &str) -> Result<Taxonomy> {
        assert!(
            BUILTIN_EVALVERSE.contains(from),
            "test edit target missing: {from}"
        );
        Taxonomy::from_toml_str(
            &BUILTIN_EVALVERSE.replacen(from, to, 1),
            Path::new("user.toml"),
        )
    }

    #[test]
    fn taxonomy_rejects_duplicate_dimension_id() {
        let e = with_builtin_replaced("id = \"scene\"", "id = \"character\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("user.toml") && e.contains("duplicate id 'character'"),
            "{e}"
        );
    }

    #[test]
    fn taxonomy_rejects_inverted_scale() {
        let e = with_builtin_replaced("min = 1\nmax = 5", "min = 5\nmax = 1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("default_scale") && e.contains("below max"),
            "{e}"
        );
    }

    #[test]
    fn scale_with_more_levels_than_a_usize_holds_is_refused() {
        for (max, step) in [("1e300", "1"), ("5", "1e-300")] {
            let e = with_builtin_replaced(
                "min = 1\nmax = 5\nstep = 1",
                &format!("min = 1\nmax = {max}\nstep = {step}"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("default_scale") && e.contains("at most 101 are supported"),
                "{e}"
            );
        }
    }

    #[test]
    fn scale_narrower_than_one_step_is_refused() {
        let e = with_builtin_replaced("min = 1\nmax = 5\nstep = 1", "min = 1\nmax = 5\nstep = 4e9")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("default_scale") && e.contains("narrower than one step"),
            "{e}"
        );
    }

    #[test]
    fn taxonomy_rejects_unknown_aspect() {
        let e = with_builtin_replaced("aspect = \"acting\"", "aspect = \"dancing\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown aspect 'dancing'"), "{e}");
    }

    #[test]
    fn taxonomy_rejects_unknown_applicability_rule() {
        let e = with_builtin_replaced("{ when = \"speech\"", "{ when = \"smell\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("user.toml") && e.contains("smell"), "{e}");
    }

    #[test]
    fn user_taxonomy_with_own_scale_loads() {
        let text = r#"
name = "mine"
[default_scale]
min = 0
max = 10
step = 1
[[stages]]
id = "s"
name = "S"
[[aspects]]
id = "a"
name = "A"
stage = "s"
[[dimensions]]
id = "sharpness"
name = "Sharpness"
aspect = "a"
description = "d"
sub_dimensions = []
questions = ["Is it sharp?"]
scale = { min = 1, max = 3, step = 1 }
applicability = { when = "always" }
"#;
        let t = Taxonomy::from_toml_str(text, Path::new("mine.toml")).unwrap();
        let d = t.dimension("sharpness").unwrap();
        assert_eq!(t.scale(d).levels(), 3);
        assert_eq!(t.default_scale.levels(), 11);
    }
}
