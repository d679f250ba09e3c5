//! A dataset folder: `dataset.toml` (name, manifest file, taxonomy, split spec) and a JSONL
//! manifest. `Dataset::open` parses and checks every record against the taxonomy and the
//! file system, collecting every problem with file:line; `check_media` decodes every file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::manifest::{
    parse_jsonl_bytes, ClipRecord, Located, PairRecord, RankingRecord, Record, Score,
};
use crate::split::{Split, SplitSpec};
use crate::taxonomy::Taxonomy;

pub const DATASET_FILE: &str = "dataset.toml";

/// `dataset.toml`. Every key has a documented default so a bare folder with `manifest.jsonl` works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Display name (default: the folder name).
    #[serde(default)]
    pub name: String,
    /// Manifest file, relative to the root (default "manifest.jsonl").
    #[serde(default = "default_manifest")]
    pub manifest: String,
    /// "evalverse" (built in) or a taxonomy TOML path relative to the root (default "evalverse").
    #[serde(default = "default_taxonomy")]
    pub taxonomy: String,
    /// Prompt-group split (default seed 0, 0.6 / 0.1 / 0.3).
    #[serde(default)]
    pub splits: SplitSpec,
    /// How the dataset was made (e.g. the synth command), for reproducibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

fn default_manifest() -> String {
    "manifest.jsonl".into()
}
fn default_taxonomy() -> String {
    "evalverse".into()
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            name: String::new(),
            manifest: default_manifest(),
            taxonomy: default_taxonomy(),
            splits: SplitSpec::default(),
            provenance: None,
        }
    }
}

/// One problem found in a dataset, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Clip id or "ranking/pair of group G" when known.
    pub record: Option<String>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.record {
            write!(f, ": {r}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A parsed dataset. Records keep their manifest line for later messages.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub config: DatasetConfig,
    pub taxonomy: Taxonomy,
    pub manifest_path: PathBuf,
    pub clips: Vec<Located<ClipRecord>>,
    pub rankings: Vec<Located<RankingRecord>>,
    pub pairs: Vec<Located<PairRecord>>,
    /// Prompt group -> split.
    pub splits: BTreeMap<String, Split>,
}

/// Resolve a manifest path against the root, refusing absolute paths, `..` that climbs out of
/// the root, and symlinks that point outside it.
pub fn resolve_in_root(root: &Path, rel: &str) -> std::result::Result<PathBuf, String> {
    if rel.trim().is_empty() {
        return Err("empty path".into());
    }
    let p = Path::new(rel);
    let mut depth = 0i64;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("path '{rel}' escapes the dataset root"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "path '{rel}' is absolute; paths are relative to the dataset root"
                ))
            }
        }
    }
    let full = root.join(p);
    if let (Ok(real), Ok(real_root)) = (full.canonicalize(), root.canonicalize()) {
        if !real.starts_with(&real_root) {
            return Err(format!(
                "path '{rel}' resolves outside the dataset root (symlink to {})",
                real.display()
            ));
        }
    }
    Ok(full)
}

impl Dataset {
    /// Parse the folder and check every record. Errors only when the dataset as a whole cannot be
    /// read (no folder or manifest, bad dataset.toml or taxonomy: `DataError::Config`, what the
    /// caller named is not a dataset); record problems come back as issues.
    pub fn open(root: &Path) -> Result<(Dataset, Vec<Issue>)> {
        if !root.is_dir() {
            return Err(DataError::config(
                root,
                if root.exists() {
                    "not a dataset folder (a folder with dataset.toml and manifest.jsonl)"
                } else {
                    "no such dataset folder"
                },
            ));
        }
        let cfg_path = root.join(DATASET_FILE);
        let mut config = if cfg_path.exists() {
            let text =
                std::fs::read_to_string(&cfg_path).map_err(|e| DataError::io(&cfg_path, e))?;
            toml::from_str::<DatasetConfig>(&text)
                .map_err(|e| DataError::config(&cfg_path, e.to_string()))?
        } else {
            DatasetConfig::default()
        };
        config
            .splits
            .check()
            .map_err(|m| DataError::config(&cfg_path, format!("[splits]: {m}")))?;
        if config.name.is_empty() {
            config.name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        // Both named files are read whole: only regular files, and the manifest inside the
        // dataset folder (`manifest = "/dev/zero"` would read until memory runs out).
        let regular = |key: &str, p: &Path| -> Result<()> {
            match std::fs::metadata(p) {
                Ok(m) if !m.is_file() => Err(DataError::config(
                    &cfg_path,
                    format!("{key} = '{}': not a regular file", p.display()),
                )),
                _ => Ok(()),
            }
        };
        if config.taxonomy != "evalverse" {
            regular("taxonomy", &root.join(&config.taxonomy))?;
        }
        let taxonomy = Taxonomy::load(&config.taxonomy, root)?;
        let manifest_path = resolve_in_root(root, &config.manifest)
            .map_err(|m| DataError::config(&cfg_path, format!("manifest: {m}")))?;
        regular("manifest", &manifest_path)?;
        let bytes = std::fs::read(&manifest_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::config(
                &manifest_path,
                "no such file (the dataset's manifest: dataset.toml key `manifest`)",
            ),
            _ => DataError::io(&manifest_path, e),
        })?;
        let (records, line_errors) = parse_jsonl_bytes(&bytes);
        let (mut clips, mut rankings, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
        for Located { line, record } in records {
            match record {
                Record::Clip(c) => clips.push(Located { line, record: c }),
                Record::Ranking(r) => rankings.push(Located { line, record: r }),
                Record::Pair(p) => pairs.push(Located { line, record: p }),
            }
        }
        let splits = config
            .splits
            .assign(clips.iter().map(|c| c.record.prompt_group.as_str()));
        let ds = Dataset {
            root: root.to_path_buf(),
            config,
            taxonomy,
            manifest_path,
            clips,
            rankings,
            pairs,
            splits,
        };
        // A clip line that failed to parse is named by every ranking and pair of its group; those
        // references are counted on the line's own issue instead of being reported one by one.
        let unparsed: HashSet<&str> = line_errors
            .iter()
            .filter_map(|e| e.clip_id.as_deref())
            .collect();
        let (checked, follow_ons) = ds.check_records(&unparsed);
        let mut issues: Vec<Issue> = line_errors
            .iter()
            .map(|e| {
                let mut message = e.message.clone();
                match e.clip_id.as_deref().and_then(|id| follow_ons.get(id).map(|n| (id, n))) {
                    Some((id, 1)) => message.push_str(&format!(
                        "; 1 follow-on reference to clip '{id}' by a ranking or pair is not repeated"
                    )),
                    Some((id, n)) => message.push_str(&format!(
                        "; {n} follow-on references to clip '{id}' by rankings or pairs are not repeated"
                    )),
                    None => {}
                }
                Issue {
                    file: ds.manifest_path.clone(),
                    line: Some(e.line),
                    record: None,
                    message,
                }
            })
            .collect();
        issues.extend(checked);
        issues.sort_by_key(|i| i.line);
        Ok((ds, issues))
    }

    /// `open`, failing when any record has a problem (the error lists the first ones).
    pub fn load(root: &Path) -> Result<Dataset> {
        let (ds, issues) = Self::open(root)?;
        if issues.is_empty() {
            return Ok(ds);
        }
        let shown: Vec<String> = issues.iter().take(10).map(|i| i.to_string()).collect();
        Err(DataError::Invalid(format!(
            "{} problem(s) in {}; run `evalverse data validate {}`:\n{}",
            issues.len(),
            ds.manifest_path.display(),
            root.display(),
            shown.join("\n")
        )))
    }

    fn issue(&self, line: usize, record: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            file: self.manifest_path.clone(),
            line: Some(line),
            record: Some(record.into()),
            message: message.into(),
        }
    }

    /// Check every parsed record. A ranking or pair naming a clip in `unparsed` (ids of clip lines
    /// that failed to parse) is not reported; those references are counted per id instead.
    fn check_records(&self, unparsed: &HashSet<&str>) -> (Vec<Issue>, HashMap<String, usize>) {
        let mut issues = Vec::new();
        let mut follow_ons: HashMap<String, usize> = HashMap::new();
        let mut first_line: HashMap<&str, usize> = HashMap::new();
        let mut group_of: HashMap<&str, &str> = HashMap::new();
        for Located { line, record: c } in &self.clips {
            let who = format!("clip '{}'", c.id);
            let mut bad = |m: String| issues.push(self.issue(*line, who.clone(), m));
            if c.id.trim().is_empty() {
                bad("empty id".into());
            } else if let Some(prev) = first_line.get(c.id.as_str()) {
                bad(format!("duplicate id (first at line {prev})"));
            } else {
                first_line.insert(&c.id, *line);
                group_of.insert(&c.id, &c.prompt_group);
            }
            for (field, v) in [
                ("prompt", &c.prompt),
                ("generator", &c.generator),
                ("prompt_group", &c.prompt_group),
            ] {
                if v.trim().is_empty() {
                    bad(format!("empty {field}"));
                }
            }
            match resolve_in_root(&self.root, &c.video) {
                Err(m) => bad(format!("video: {m}")),
                Ok(p) if !p.is_file() => bad(format!("video file '{}' does not exist", c.video)),
                Ok(_) => {}
            }
            if let Some(r) = &c.reference {
                match resolve_in_root(&self.root, &r.path) {
                    Err(m) => bad(format!("reference: {m}")),
                    Ok(p) if !p.is_file() => {
                        bad(format!("reference file '{}' does not exist", r.path))
                    }
                    Ok(_) => {}
                }
            }
            let mut prev_end = 0.0;
            for (i, s) in c.shots.iter().enumerate() {
                if !(s.start.is_finite() && s.end.is_finite() && s.start >= 0.0 && s.end > s.start)
                {
                    bad(format!(
                        "shot {i}: need 0 <= start < end, got [{}, {})",
                        s.start, s.end
                    ));
                } else if s.start + 1e-9 < prev_end {
                    bad(format!(
                        "shot {i} starts at {} before the previous shot ends at {prev_end}",
                        s.start
                    ));
                }
                prev_end = s.end;
            }
            let facts = c.facts();
            let mut seen = HashSet::new();
            for a in &c.annotations {
                let Some(dim) = self.taxonomy.dimension(&a.dimension) else {
                    bad(format!(
                        "rater '{}': unknown dimension '{}'",
                        a.rater, a.dimension
                    ));
                    continue;
                };
                if a.rater.trim().is_empty() {
                    bad(format!("dimension '{}': empty rater id", a.dimension));
                }
                if !seen.insert((a.rater.as_str(), a.dimension.as_str())) {
                    bad(format!(
                        "rater '{}' annotates dimension '{}' twice",
                        a.rater, a.dimension
                    ));
                }
                let applies = dim.applicability.applies(&facts);
                match a.score {
                    Score::Value(v) => {
                        let scale = self.taxonomy.scale(dim);
                        if !scale.contains(v) {
                            bad(format!(
                                "rater '{}': score {v} for '{}' is outside the scale {}..={} (step {})",
                                a.rater, a.dimension, scale.min, scale.max, scale.step
                            ));
                        } else if applies == Some(false) {
                            bad(format!(
                                "rater '{}': scores '{}', which {}; the answer must be \"N/A\"",
                                a.rater,
                                a.dimension,
                                dim.applicability.describe()
                            ));
                        }
                    }
                    Score::NotApplicable if applies == Some(true) => bad(format!(
                        "rater '{}': answers N/A for '{}', which {} here",
                        a.rater,
                        a.dimension,
                        dim.applicability.describe()
                    )),
                    Score::NotApplicable => {}
                }
            }
        }
        for Located { line, record: r } in &self.rankings {
            let who = format!(
                "ranking of group '{}' on '{}' by '{}'",
                r.prompt_group, r.dimension, r.rater
            );
            let mut bad = |m: String| issues.push(self.issue(*line, who.clone(), m));
            if self.taxonomy.dimension(&r.dimension).is_none() {
                bad(format!("unknown dimension '{}'", r.dimension));
            }
            if r.order.iter().map(Vec::len).sum::<usize>() < 2 || r.order.iter().any(Vec::is_empty)
            {
                bad("a ranking needs at least two clips and no empty tier".into());
            }
            let mut seen = HashSet::new();
            for id in r.order.iter().flatten() {
                if !seen.insert(id.as_str()) {
                    bad(format!("clip '{id}' appears twice"));
                }
                match group_of.get(id.as_str()) {
                    None if unparsed.contains(id.as_str()) => {
                        *follow_ons.entry(id.clone()).or_default() += 1
                    }
                    None => bad(format!("names unknown clip '{id}'")),
                    Some(g) if *g != r.prompt_group => {
                        bad(format!("clip '{id}' belongs to prompt group '{g}'"))
                    }
                    _ => {}
                }
            }
        }
        for Located { line, record: p } in &self.pairs {
            let who = format!(
                "pair in group '{}' on '{}' by '{}'",
                p.prompt_group, p.dimension, p.rater
            );
            let mut bad = |m: String| issues.push(self.issue(*line, who.clone(), m));
            if self.taxonomy.dimension(&p.dimension).is_none() {
                bad(format!("unknown dimension '{}'", p.dimension));
            }
            if p.a == p.b {
                bad(format!("compares clip '{}' with itself", p.a));
            }
            for id in [&p.a, &p.b] {
                match group_of.get(id.as_str()) {
                    None if unparsed.contains(id.as_str()) => {
                        *follow_ons.entry(id.clone()).or_default() += 1
                    }
                    None => bad(format!("names unknown clip '{id}'")),
                    Some(g) if *g != p.prompt_group => {
                        bad(format!("clip '{id}' belongs to prompt group '{g}'"))
                    }
                    _ => {}
                }
            }
        }
        (issues, follow_ons)
    }

    /// Decode every video and reference file in full; report those that fail, and audio that
    /// disagrees with the record. `progress(done, total)` is called after each clip.
    pub fn check_media(&self, mut progress: impl FnMut(usize, usize)) -> Vec<Issue> {
        let mut issues = Vec::new();
        for (k, Located { line, record: c }) in self.clips.iter().enumerate() {
            let who = format!("clip '{}'", c.id);
            if let Ok(path) = resolve_in_root(&self.root, &c.video) {
                if path.is_file() {
                    match crate::media::probe(&path) {
                        Err(e) => issues.push(self.issue(
                            *line,
                            who.clone(),
                            format!("undecodable video: {e}"),
                        )),
                        Ok(info) => match (info.audio_s.is_some(), c.audio.is_some()) {
                            (true, false) => issues.push(self.issue(
                                *line,
                                who.clone(),
                                format!(
                                    "'{}' has an audio track but the record has no \"audio\" field",
                                    c.video
                                ),
                            )),
                            (false, true) => issues.push(self.issue(
                                *line,
                                who.clone(),
                                format!(
                                    "record declares audio but '{}' has no audio track",
                                    c.video
                                ),
                            )),
                            _ => {}
                        },
                    }
                }
            }
            if let Some(r) = &c.reference {
                if let Ok(path) = resolve_in_root(&self.root, &r.path) {
                    if path.is_file() {
                        if let Err(e) = crate::video::decode_frames(&path, |i| i == 0) {
                            issues.push(self.issue(
                                *line,
                                who.clone(),
                                format!("undecodable reference: {e}"),
                            ));
                        }
                    }
                }
            }
            progress(k + 1, self.clips.len());
        }
        issues
    }

    pub fn split_of(&self, clip: &ClipRecord) -> Split {
        self.splits
            .get(&clip.prompt_group)
            .copied()
            .unwrap_or(Split::Train)
    }

    pub fn clips_in(&self, split: Split) -> impl Iterator<Item = &ClipRecord> {
        self.clips
            .iter()
            .map(|c| &c.record)
            .filter(move |c| self.split_of(c) == split)
    }

    pub fn video_path(&self, clip: &ClipRecord) -> PathBuf {
        self.root.join(&clip.video)
    }
}
