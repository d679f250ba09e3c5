//! Importers: public video-evaluation datasets converted into our manifest, so they can train and
//! test a judge. VideoFeedback (VideoScore, He et al. 2024: five dimensions scored 1-4),
//! VideoAlign / VideoGen-RewardBench (Liu et al. 2025: pairwise A / B / same per dimension, CSV),
//! and a generic long CSV (one row per clip, dimension, rater, score).
//!
//! Source dimensions map onto taxonomy ids through a documented default that a TOML file can
//! override (`Mapping`). Scores are kept as they are and must lie on the target dimension's scale;
//! they are mapped linearly from the source scale only when asked (`rescale`). Every bad row is
//! reported as `FILE:LINE: reason`, all of them, and nothing is written when there is any.

pub mod long;
pub mod videoalign;
pub mod videofeedback;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::manifest::{Annotation, ClipRecord, PairRecord, Record, Score, Task};
use crate::taxonomy::Taxonomy;

/// A source format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    VideoFeedback,
    VideoAlign,
    Long,
}

impl Format {
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::VideoFeedback => "videofeedback",
            Format::VideoAlign => "videoalign",
            Format::Long => "long",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "videofeedback" => Ok(Format::VideoFeedback),
            "videoalign" => Ok(Format::VideoAlign),
            "long" => Ok(Format::Long),
            _ => Err(format!(
                "unknown format '{s}' (allowed: videofeedback, videoalign, long)"
            )),
        }
    }
}

/// A row that could not be converted.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub file: PathBuf,
    /// 1-based line in the input file.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// `--map FILE.toml`: entries override the format's defaults.
///
/// ```toml
/// [dimensions]              # source dimension -> taxonomy dimension id
/// "dynamic degree" = "action"
/// skip = ["Overall"]        # source dimensions left out
/// [source_scale]            # the source's score range, for --rescale
/// min = 1
/// max = 4
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
    #[serde(default)]
    skip: Vec<String>,
    #[serde(default)]
    source_scale: Option<SourceScale>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceScale {
    min: f64,
    max: f64,
}

/// Source dimension names onto taxonomy dimension ids, and the source's score range.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub dimensions: BTreeMap<String, String>,
    pub skip: BTreeSet<String>,
    /// (min, max) of the source's scores; checked on every score, used by --rescale.
    pub source_scale: Option<(f64, f64)>,
    /// Unmapped source names that are taxonomy ids map onto themselves (the long CSV).
    pub identity: bool,
}

impl Mapping {
    /// The documented default of a format (docs/MANIFEST.md, "Import").
    pub fn default_for(format: Format) -> Mapping {
        let pairs: &[(&str, &str)] = match format {
            // VideoScore's five dimensions. "dynamic degree" (how much moves) is closest to the
            // acting dimension "action"; "factual consistency" (common sense, physics) to
            // physical plausibility.
            Format::VideoFeedback => &[
                ("visual quality", "visual_quality"),
                ("temporal consistency", "temporal_consistency"),
                ("dynamic degree", "action"),
                ("text-to-video alignment", "prompt_following"),
                ("factual consistency", "physical_plausibility"),
            ],
            // VideoAlign: visual quality, motion quality (smooth, physically plausible motion),
            // text alignment; the overall preference has no dimension of its own.
            Format::VideoAlign => &[
                ("VQ", "visual_quality"),
                ("MQ", "physical_plausibility"),
                ("TA", "prompt_following"),
            ],
            Format::Long => &[],
        };
        Mapping {
            dimensions: pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            skip: match format {
                Format::VideoAlign => ["Overall".to_string()].into(),
                _ => BTreeSet::new(),
            },
            source_scale: match format {
                Format::VideoFeedback => Some((1.0, 4.0)),
                _ => None,
            },
            identity: format == Format::Long,
        }
    }

    /// Apply a `--map` file over these defaults; every target must be a taxonomy dimension.
    pub fn with_file(mut self, path: &Path, tax: &Taxonomy) -> Result<Mapping> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let f: MapFile =
            toml::from_str(&text).map_err(|e| DataError::config(path, e.to_string()))?;
        for (src, dst) in f.dimensions {
            self.skip.remove(&src);
            self.dimensions.insert(src, dst);
        }
        for s in f.skip {
            self.dimensions.remove(&s);
            self.skip.insert(s);
        }
        if let Some(s) = f.source_scale {
            if !(s.min.is_finite() && s.max.is_finite() && s.min < s.max) {
                return Err(DataError::config(
                    path,
                    format!("source_scale: min {} must be below max {}", s.min, s.max),
                ));
            }
            self.source_scale = Some((s.min, s.max));
        }
        self.check(tax).map_err(|m| DataError::config(path, m))?;
        Ok(self)
    }

    /// Every mapped target is a dimension of the taxonomy.
    pub fn check(&self, tax: &Taxonomy) -> std::result::Result<(), String> {
        for (src, dst) in &self.dimensions {
            if tax.dimension(dst).is_none() {
                return Err(format!(
                    "dimensions.\"{src}\" = \"{dst}\": not a dimension of taxonomy '{}' (known: {})",
                    tax.name,
                    tax.dimension_ids().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The taxonomy dimension of a source dimension: None when skipped, an error when unmapped.
    pub fn target<'a>(
        &'a self,
        source: &'a str,
        tax: &Taxonomy,
    ) -> Option<std::result::Result<&'a str, String>> {
        if self.skip.contains(source) {
            return None;
        }
        if let Some(d) = self.dimensions.get(source) {
            return Some(Ok(d));
        }
        if self.identity && tax.dimension(source).is_some() {
            return Some(Ok(source));
        }
        Some(Err(format!(
            "dimension '{source}' has no mapping onto taxonomy '{}' (add it to a --map file, or skip it there)",
            tax.name
        )))
    }
}

/// A score on the target dimension's scale: checked against the source range when known, kept
/// as is (and required to be a level of the target scale), or mapped linearly from the source
/// range onto the target scale and rounded to the nearest level when `rescale` is set.
pub fn convert_score(
    value: f64,
    dimension: &str,
    tax: &Taxonomy,
    mapping: &Mapping,
    rescale: bool,
) -> std::result::Result<f64, String> {
    let dim = tax
        .dimension(dimension)
        .ok_or_else(|| format!("unknown dimension '{dimension}'"))?;
    let scale = tax.scale(dim);
    if !value.is_finite() {
        return Err(format!("score {value} is not a number"));
    }
    if let Some((lo, hi)) = mapping.source_scale {
        if value < lo || value > hi {
            return Err(format!(
                "score {value} is outside the source scale {lo}-{hi}"
            ));
        }
    }
    if rescale {
        let (lo, hi) = mapping.source_scale.ok_or_else(|| {
            "--rescale needs the source scale: add [source_scale] min/max to the --map file"
                .to_string()
        })?;
        let t = scale.min + (value - lo) / (hi - lo) * (scale.max - scale.min);
        let k = ((t - scale.min) / scale.step).round();
        return Ok(scale.min + k * scale.step);
    }
    if scale.contains(value) {
        Ok(value)
    } else {
        Err(format!(
            "score {value} is not on the scale of '{dimension}' ({}-{} in steps of {}); pass --rescale to map the source scale onto it",
            scale.min, scale.max, scale.step
        ))
    }
}

/// What an import produced: records and the videos to bring into the dataset.
#[derive(Debug, Default)]
pub struct Imported {
    pub records: Vec<Record>,
    /// (source file, path relative to the new dataset's root).
    pub videos: Vec<(PathBuf, String)>,
    pub errors: Vec<BadRow>,
}

/// Clips, prompt groups and videos gathered row by row.
pub(crate) struct Builder<'a> {
    pub file: PathBuf,
    pub videos_dir: &'a Path,
    pub tax: &'a Taxonomy,
    pub mapping: &'a Mapping,
    pub rescale: bool,
    clips: Vec<ClipRecord>,
    /// clip id -> (index, line first seen, source path)
    by_id: HashMap<String, (usize, usize, String)>,
    groups: BTreeMap<String, String>,
    pairs: Vec<PairRecord>,
    videos: Vec<(PathBuf, String)>,
    /// (clip, rater, dimension) -> line
    annotated: HashMap<(usize, String, String), usize>,
    pub errors: Vec<BadRow>,
}

impl<'a> Builder<'a> {
    pub fn new(
        file: &Path,
        videos_dir: &'a Path,
        tax: &'a Taxonomy,
        mapping: &'a Mapping,
        rescale: bool,
    ) -> Self {
        Builder {
            file: file.to_path_buf(),
            videos_dir,
            tax,
            mapping,
            rescale,
            clips: Vec::new(),
            by_id: HashMap::new(),
            groups: BTreeMap::new(),
            pairs: Vec::new(),
            videos: Vec::new(),
            annotated: HashMap::new(),
            errors: Vec::new(),
        }
    }

    pub fn bad(&mut self, line: usize, reason: impl Into<String>) {
        self.errors.push(BadRow {
            file: self.file.clone(),
            line,
            reason: reason.into(),
        });
    }

    /// The prompt group of a prompt: clips made from the same prompt text share one
    /// (`pg00001`, ... in order of first appearance).
    fn group_of(&mut self, prompt: &str) -> String {
        let n = self.groups.len();
        self.groups
            .entry(prompt.to_string())
            .or_insert_with(|| format!("pg{:05}", n + 1))
            .clone()
    }

    /// The clip for a video (path relative to the videos folder), made on first sight; later
    /// rows must agree on its prompt and generator. Returns its index.
    pub fn clip(
        &mut self,
        line: usize,
        video: &str,
        prompt: &str,
        generator: &str,
        group: Option<&str>,
        id: Option<&str>,
    ) -> std::result::Result<usize, String> {
        let rel = relative_video(video)?;
        let id = match id {
            Some(i) if i.trim().is_empty() => return Err("empty clip id".into()),
            Some(i) => i.trim().to_string(),
            None => clip_id(&rel),
        };
        if let Some((i, first, src)) = self.by_id.get(&id) {
            if *src != rel {
                return Err(format!(
                    "videos '{src}' (line {first}) and '{rel}' give the same clip id '{id}'"
                ));
            }
            let c = &self.clips[*i];
            if c.prompt != prompt {
                return Err(format!("clip '{id}': prompt differs from line {first}"));
            }
            if let Some(g) = group.filter(|g| *g != c.prompt_group) {
                return Err(format!(
                    "clip '{id}': prompt_group '{g}' differs from '{}' on line {first}",
                    c.prompt_group
                ));
            }
            if c.generator != generator {
                return Err(format!(
                    "clip '{id}': generator '{generator}' differs from '{}' on line {first}",
                    c.generator
                ));
            }
            return Ok(*i);
        }
        if prompt.trim().is_empty() {
            return Err("empty prompt".into());
        }
        if generator.trim().is_empty() {
            return Err("empty generator".into());
        }
        let src = self.videos_dir.join(&rel);
        if !src.is_file() {
            return Err(format!("video '{}' does not exist", src.display()));
        }
        let prompt_group = match group {
            Some(g) if !g.trim().is_empty() => g.to_string(),
            Some(_) => return Err("empty prompt_group".into()),
            None => self.group_of(prompt),
        };
        let dest = format!("videos/{rel}");
        self.videos.push((src, dest.clone()));
        self.clips.push(ClipRecord {
            id: id.clone(),
            task: Task::T2v,
            prompt: prompt.to_string(),
            video: dest,
            reference: None,
            shots: Vec::new(),
            audio: None,
            generator: generator.to_string(),
            prompt_group,
            annotations: Vec::new(),
        });
        self.by_id.insert(id, (self.clips.len() - 1, line, rel));
        Ok(self.clips.len() - 1)
    }

    /// Add a rater's score on a dimension to clip `i`; one per rater, clip and dimension.
    pub fn annotate(
        &mut self,
        line: usize,
        i: usize,
        rater: &str,
        dimension: &str,
        score: Score,
        rationale: Option<String>,
    ) -> std::result::Result<(), String> {
        if rater.trim().is_empty() {
            return Err("empty rater".into());
        }
        let key = (i, rater.to_string(), dimension.to_string());
        if let Some(first) = self.annotated.get(&key) {
            return Err(format!(
                "clip '{}' already has a '{dimension}' score from rater '{rater}' (line {first})",
                self.clips[i].id
            ));
        }
        // The imported clips are recorded single-shot and silent; the rules follow from that.
        if let Some(dim) = self.tax.dimension(dimension) {
            let applies = dim.applicability.applies(&self.clips[i].facts());
            match (&score, applies) {
                (Score::NotApplicable, Some(true)) => {
                    return Err(format!(
                        "N/A for '{dimension}', which {}",
                        dim.applicability.describe()
                    ))
                }
                (Score::Value(_), Some(false)) => {
                    return Err(format!(
                        "a score for '{dimension}', which {}; imported clips are recorded single-shot and silent, so only N/A fits",
                        dim.applicability.describe()
                    ))
                }
                _ => {}
            }
        }
        self.annotated.insert(key, line);
        self.clips[i].annotations.push(Annotation {
            rater: rater.to_string(),
            dimension: dimension.to_string(),
            score,
            rationale,
        });
        Ok(())
    }

    pub fn clip_record(&self, i: usize) -> &ClipRecord {
        &self.clips[i]
    }

    pub fn pair(&mut self, p: PairRecord) {
        self.pairs.push(p);
    }

    pub fn finish(self) -> Imported {
        let mut records: Vec<Record> = self.clips.into_iter().map(Record::Clip).collect();
        records.extend(self.pairs.into_iter().map(Record::Pair));
        Imported {
            records,
            videos: self.videos,
            errors: self.errors,
        }
    }
}

/// A video path relative to the videos folder, '/'-separated; absolute paths and `..` refused.
fn relative_video(video: &str) -> std::result::Result<String, String> {
    let p = Path::new(video.trim());
    if video.trim().is_empty() {
        return Err("empty video path".into());
    }
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "video path '{video}' must be relative to --videos, without '..'"
                ))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("video path '{video}' names no file"));
    }
    Ok(parts.join("/"))
}

/// A clip id from a relative video path: the path without its extension, characters other than
/// letters, digits, '-' and '_' replaced by '_' ("kling1.5/x_001.mp4" -> "kling1_5_x_001").
pub fn clip_id(rel: &str) -> String {
    let stem = match rel.rfind('.') {
        Some(i) if i > rel.rfind('/').map_or(0, |j| j + 1) => &rel[..i],
        _ => rel,
    };
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Convert `input` (format `format`) with videos under `videos`; bad rows are collected in
/// `Imported::errors`. File-level problems (unreadable input, missing columns) are errors.
pub fn import(
    format: Format,
    input: &Path,
    videos: &Path,
    tax: &Taxonomy,
    mapping: &Mapping,
    rescale: bool,
) -> Result<Imported> {
    if !videos.is_dir() {
        return Err(DataError::config(videos, "--videos: not a folder"));
    }
    if rescale && mapping.source_scale.is_none() {
        return Err(DataError::config(
            input,
            "--rescale needs the source scale: add [source_scale] min/max to the --map file",
        ));
    }
    let b = Builder::new(input, videos, tax, mapping, rescale);
    let mut imported = match format {
        Format::VideoFeedback => videofeedback::convert(b)?,
        Format::VideoAlign => videoalign::convert(b)?,
        Format::Long => long::convert(b)?,
    };
    imported.errors.sort_by_key(|e| e.line);
    if imported.errors.is_empty() && imported.records.is_empty() {
        return Err(DataError::config(input, "no records"));
    }
    Ok(imported)
}

/// Write the dataset to `out` (which must not exist or be empty): dataset.toml, manifest.jsonl,
/// and the videos (hard-linked where the file system allows, else copied). Built in a temporary
/// folder beside `out` and renamed, so a failure leaves nothing behind.
pub fn write(imported: &Imported, out: &Path, name: &str, provenance: &str) -> Result<()> {
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(|e| DataError::io(out, e))?
                .next()
                .is_none();
        if !empty {
            return Err(DataError::config(out, "--out exists and is not empty"));
        }
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let leaf = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| DataError::config(out, "not a folder name"))?;
    let tmp = parent.join(format!(".{leaf}.import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let res = (|| -> Result<()> {
        std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let toml_text = format!(
            "name = {}\nmanifest = \"manifest.jsonl\"\ntaxonomy = \"evalverse\"\nprovenance = {}\n",
            toml_string(name),
            toml_string(provenance)
        );
        std::fs::write(tmp.join("dataset.toml"), toml_text)
            .map_err(|e| DataError::io(tmp.join("dataset.toml"), e))?;
        let mut lines = String::new();
        for r in &imported.records {
            lines.push_str(&serde_json::to_string(r).expect("records serialise"));
            lines.push('\n');
        }
        std::fs::write(tmp.join("manifest.jsonl"), lines)
            .map_err(|e| DataError::io(tmp.join("manifest.jsonl"), e))?;
        for (src, rel) in &imported.videos {
            let dst = tmp.join(rel);
            if let Some(d) = dst.parent() {
                std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
            }
            if std::fs::hard_link(src, &dst).is_err() {
                std::fs::copy(src, &dst).map_err(|e| DataError::io(src, e))?;
            }
        }
        if out.exists() {
            std::fs::remove_dir(out).map_err(|e| DataError::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A CSV reader over `path` with its header checked: every `required` column present, each
/// column named once, and no column outside `allowed` (a misspelt or unexpected column is
/// refused, naming it and the allowed ones and ending with `unknown_hint`, rather than dropped).
/// Returns the reader and the column index of each header name.
pub(crate) fn csv_reader(
    path: &Path,
    required: &[&str],
    allowed: &[String],
    unknown_hint: &str,
) -> Result<(csv::Reader<std::fs::File>, HashMap<String, usize>)> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    // Flexible so that a row of the wrong width reaches `for_each_row`, which reports it with
    // both counts; the strict reader's message compares it with the previous row instead.
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(f);
    let header = r
        .headers()
        .map_err(|e| DataError::config(path, format!("line 1: cannot read the header: {e}")))?
        .clone();
    let mut cols: HashMap<String, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        let name = h.trim().to_string();
        if !allowed.contains(&name) {
            return Err(DataError::config(
                path,
                format!(
                    "line 1: unknown column '{name}' (allowed: {}){unknown_hint}",
                    allowed.join(", ")
                ),
            ));
        }
        if cols.insert(name.clone(), i).is_some() {
            return Err(DataError::config(
                path,
                format!("line 1: column '{name}' appears twice"),
            ));
        }
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !cols.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(DataError::config(
            path,
            format!(
                "line 1: missing column(s) {} (header: {})",
                missing.join(", "),
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    Ok((r, cols))
}

/// Hand each row of `r` to `row` with its 1-based line. A row that cannot be read, or whose
/// field count differs from the header's (an unquoted comma, a missing field), is reported and
/// skipped: reading it by column position would shift or drop values.
pub(crate) fn for_each_row(
    b: &mut Builder,
    r: &mut csv::Reader<std::fs::File>,
    mut row: impl FnMut(&mut Builder, usize, &csv::StringRecord) -> std::result::Result<(), String>,
) {
    let width = r.headers().map(csv::StringRecord::len).unwrap_or(0);
    for rec in r.records() {
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                b.bad(line, format!("unreadable CSV row: {e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.len() != width {
            b.bad(
                line,
                format!(
                    "the row has {} fields, the header has {width} (quote a field that holds a comma)",
                    rec.len()
                ),
            );
            continue;
        }
        if let Err(m) = row(b, line, &rec) {
            b.bad(line, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_ids_come_from_the_relative_path() {
        assert_eq!(
            clip_id("kling1.5/kling1.5_00103.mp4"),
            "kling1_5_kling1_5_00103"
        );
        assert_eq!(clip_id("a.b/c"), "a_b_c");
        assert!(relative_video("../x.mp4").is_err());
        assert!(relative_video("/abs/x.mp4").is_err());
        assert_eq!(relative_video("./a/b.mp4").unwrap(), "a/b.mp4");
    }

    #[test]
    fn scores_are_kept_on_scale_and_rescaled_only_when_asked() {
        let tax = Taxonomy::evalverse();
        let m = Mapping::default_for(Format::VideoFeedback);
        // VideoFeedback 1-4 onto 1-5: kept as is unless --rescale.
        assert_eq!(
            convert_score(4.0, "visual_quality", &tax, &m, false),
            Ok(4.0)
        );
        // 1 -> 1, 2 -> 2.33 -> 2, 3 -> 3.67 -> 4, 4 -> 5
        let r: Vec<f64> = [1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|&v| convert_score(v, "visual_quality", &tax, &m, true).unwrap())
            .collect();
        assert_eq!(r, vec![1.0, 2.0, 4.0, 5.0]);
        assert!(convert_score(5.0, "visual_quality", &tax, &m, false)
            .unwrap_err()
            .contains("outside the source scale 1-4"));
        let long = Mapping::default_for(Format::Long);
        let e = convert_score(7.0, "lens", &tax, &long, false).unwrap_err();
        assert!(
            e.contains("not on the scale of 'lens'") && e.contains("--rescale"),
            "{e}"
        );
        assert!(convert_score(2.5, "lens", &tax, &long, false).is_err());
    }

    #[test]
    fn map_file_overrides_defaults_and_names_unknown_targets() {
        let tax = Taxonomy::evalverse();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("map.toml");
        std::fs::write(
            &p,
            "skip = [\"dynamic degree\"]\n[dimensions]\n\"visual quality\" = \"lighting\"\n",
        )
        .unwrap();
        let m = Mapping::default_for(Format::VideoFeedback)
            .with_file(&p, &tax)
            .unwrap();
        assert_eq!(m.target("visual quality", &tax), Some(Ok("lighting")));
        assert_eq!(m.target("dynamic degree", &tax), None);
        std::fs::write(&p, "[dimensions]\n\"visual quality\" = \"smell\"\n").unwrap();
        let e = Mapping::default_for(Format::VideoFeedback)
            .with_file(&p, &tax)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("map.toml") && e.contains("'smell'") || e.contains("\"smell\""),
            "{e}"
        );
    }
}
