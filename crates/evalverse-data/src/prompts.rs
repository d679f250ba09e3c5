//! Judge prompts and examples from an annotated dataset (shared by training and evaluation): for each clip and dimension, the question put to
//! the judge (the dimension's definition, sub-dimensions and expert questions, and the generation
//! prompt) and the expert-agreeing answer: the consensus rationale, then `Score: N` (the rounded
//! mean of the raters) or `Score: N/A` (when most raters said N/A). Also the raters' score
//! histogram, for distribution matching and calibration.

use std::path::PathBuf;

use crate::dataset::Dataset;
use crate::manifest::{ClipRecord, Score};
use crate::split::Split;
use crate::taxonomy::{Dimension, Taxonomy};

pub const SYSTEM_PROMPT: &str = "You are an expert film critic who evaluates AI-generated video the way professional filmmakers do.";

#[derive(Debug, Clone, PartialEq)]
pub struct JudgeExample {
    pub clip_id: String,
    pub prompt_group: String,
    pub generator: String,
    pub video: PathBuf,
    pub has_audio: bool,
    pub dimension: String,
    /// The user's text after the video.
    pub question: String,
    /// The consensus answer (rationale + score line).
    pub answer: String,
    /// Rationale alone.
    pub rationale: String,
    /// Consensus score (rounded mean), None when the experts say N/A.
    pub score: Option<f64>,
    /// Mean of the raters' scores (None if all said N/A).
    pub mean: Option<f64>,
    /// Share of raters per scale level (sums to 1 over the raters who scored).
    pub histogram: Vec<f64>,
}

/// The question for one dimension.
pub fn judge_question(tax: &Taxonomy, dim: &Dimension, clip_prompt: &str) -> String {
    judge_question_with_evidence(tax, dim, clip_prompt, None)
}

/// The question for one dimension with the operators' evidence block (`operators::evidence_block`)
/// on its own line before the generation prompt. `None` gives exactly `judge_question`'s text, so
/// pixel-only prompts are unchanged.
pub fn judge_question_with_evidence(
    tax: &Taxonomy,
    dim: &Dimension,
    clip_prompt: &str,
    evidence: Option<&crate::operators::Evidence>,
) -> String {
    let scale = tax.scale(dim);
    let mut q = format!(
        "Evaluate the {} of this clip. {}",
        dim.name,
        dimension_body(dim)
    );
    if let Some(ev) = evidence {
        q.push_str(&crate::operators::evidence_block(ev));
        q.push('\n');
    }
    q.push_str(&format!(
        "The clip was generated from the prompt: \"{}\"\nReason about what you see, then end with 'Score: N' where N is from {} to {}, or 'Score: N/A' if the dimension {}.",
        clip_prompt,
        scale.min,
        scale.max,
        na_clause(dim)
    ));
    q
}

/// A dimension's description, sub-dimensions and numbered expert questions, each line ended.
fn dimension_body(dim: &Dimension) -> String {
    let subs: Vec<&str> = dim.sub_dimensions.iter().map(|s| s.name.as_str()).collect();
    let mut q = format!(
        "{}\nSub-dimensions: {}.\n",
        dim.description,
        if subs.is_empty() {
            "none".to_string()
        } else {
            subs.join(", ")
        }
    );
    for (i, question) in dim.questions.iter().enumerate() {
        q.push_str(&format!("{}. {}\n", i + 1, question));
    }
    q
}

/// When a judge may answer N/A for `dim`.
fn na_clause(dim: &Dimension) -> String {
    let facts = crate::taxonomy::ClipFacts {
        shots: 1,
        has_audio: false,
        has_speech: false,
    };
    match dim.applicability.applies(&facts) {
        Some(true) => "cannot be judged".to_string(),
        _ => format!("does not apply ({})", dim.applicability.describe()),
    }
}

/// How judge responses are grouped (recipe key `data.unit`): one prompt and answer per
/// dimension, or one per aspect covering all of its dimensions in taxonomy order (dimensions
/// outside any aspect, the rightness ones, stay one per prompt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseUnit {
    #[default]
    Dimension,
    Aspect,
}

/// One prompt and its expert answer, covering the dimensions in `members` (one for
/// `ResponseUnit::Dimension`). Metrics stay per member dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitExample {
    /// The aspect id, or the dimension id for a one-dimension unit.
    pub unit: String,
    pub question: String,
    pub answer: String,
    /// Per-dimension examples of the same clip, in taxonomy order.
    pub members: Vec<JudgeExample>,
}

impl UnitExample {
    /// The unit as one trainable example: the first member's clip fields with the unit's
    /// question and answer (`dimension` is the unit id).
    pub fn as_example(&self) -> JudgeExample {
        let first = &self.members[0];
        JudgeExample {
            dimension: self.unit.clone(),
            question: self.question.clone(),
            answer: self.answer.clone(),
            rationale: String::new(),
            score: None,
            mean: None,
            histogram: vec![],
            ..first.clone()
        }
    }
    /// The heading each member's part of the answer starts with ("Lens: "), or none for a
    /// one-dimension unit.
    pub fn headings(&self, tax: &Taxonomy) -> Vec<Option<String>> {
        if self.members.len() == 1 && self.unit == self.members[0].dimension {
            return vec![None];
        }
        self.members
            .iter()
            .map(|m| {
                Some(format!(
                    "{}:",
                    tax.dimension(&m.dimension)
                        .map_or(m.dimension.as_str(), |d| d.name.as_str())
                ))
            })
            .collect()
    }
}

/// The question covering several dimensions of one aspect.
pub fn aspect_question(
    tax: &Taxonomy,
    aspect: &crate::taxonomy::Aspect,
    dims: &[&Dimension],
    clip_prompt: &str,
    evidence: Option<&crate::operators::Evidence>,
) -> String {
    let names: Vec<&str> = dims.iter().map(|d| d.name.as_str()).collect();
    let mut q = format!(
        "Evaluate the {} of this clip on {} dimension{}.\n",
        aspect.name,
        dims.len(),
        if dims.len() == 1 { "" } else { "s" }
    );
    for d in dims {
        q.push_str(&format!("{}: {}", d.name, dimension_body(d)));
    }
    if let Some(ev) = evidence {
        q.push_str(&crate::operators::evidence_block(ev));
        q.push('\n');
    }
    let scale = &tax.default_scale;
    q.push_str(&format!(
        "The clip was generated from the prompt: \"{}\"\nFor each dimension in this order ({}), write its name and a colon, reason about what you see, then end with 'Score: N' where N is from {} to {}, or 'Score: N/A' if the dimension {}.",
        clip_prompt,
        names.join(", "),
        scale.min,
        scale.max,
        dims.iter()
            .map(|d| format!("{}: {}", d.name, na_clause(d)))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    q
}

impl From<JudgeExample> for UnitExample {
    /// The one-dimension unit.
    fn from(e: JudgeExample) -> Self {
        UnitExample {
            unit: e.dimension.clone(),
            question: e.question.clone(),
            answer: e.answer.clone(),
            members: vec![e],
        }
    }
}

/// Group per-dimension examples of `ds` (as `build_with_evidence` returns them: clip by clip,
/// taxonomy order) into response units; `evidence` is each clip's operator evidence, as given to
/// `build_with_evidence`.
pub fn group_units(
    ds: &Dataset,
    examples: Vec<JudgeExample>,
    unit: ResponseUnit,
    evidence: &dyn Fn(&str) -> Option<crate::operators::Evidence>,
) -> Vec<UnitExample> {
    group_units_with(&ds.taxonomy, examples, unit, &|id| {
        let prompt = ds
            .clips
            .iter()
            .find(|c| c.record.id == id)
            .map(|c| c.record.prompt.clone())
            .unwrap_or_default();
        (prompt, evidence(id))
    })
}

/// `group_units` for clips outside a dataset: `context` gives a clip's generation prompt and
/// operator evidence by clip id.
pub fn group_units_with(
    tax: &Taxonomy,
    examples: Vec<JudgeExample>,
    unit: ResponseUnit,
    context: &dyn Fn(&str) -> (String, Option<crate::operators::Evidence>),
) -> Vec<UnitExample> {
    if unit == ResponseUnit::Dimension {
        return examples.into_iter().map(UnitExample::from).collect();
    }
    let key = |e: &JudgeExample| {
        let aspect = tax.dimension(&e.dimension).and_then(|d| d.aspect.clone());
        (
            e.clip_id.clone(),
            aspect.unwrap_or_else(|| e.dimension.clone()),
        )
    };
    let mut groups: Vec<((String, String), Vec<JudgeExample>)> = Vec::new();
    for e in examples {
        let k = key(&e);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(e),
            None => groups.push((k, vec![e])),
        }
    }
    groups
        .into_iter()
        .map(|((clip, unit), members)| match tax.aspect(&unit) {
            Some(aspect) => {
                let dims: Vec<&Dimension> = members
                    .iter()
                    .filter_map(|m| tax.dimension(&m.dimension))
                    .collect();
                let (prompt, evidence) = context(&clip);
                let answer = dims
                    .iter()
                    .zip(&members)
                    .map(|(d, m)| format!("{}: {}", d.name, m.answer.trim()))
                    .collect::<Vec<_>>()
                    .join("\n");
                UnitExample {
                    question: aspect_question(tax, aspect, &dims, &prompt, evidence.as_ref()),
                    answer,
                    unit,
                    members,
                }
            }
            None => UnitExample {
                question: members[0].question.clone(),
                answer: members[0].answer.clone(),
                unit,
                members,
            },
        })
        .collect()
}

/// The part of a unit's answer that belongs to each heading (`UnitExample::headings`): from the
/// end of the heading's first line-start occurrence to the next found heading, or the whole
/// answer for `None`. A heading the answer lacks gives `None`.
pub fn split_unit_answer<'a>(
    answer: &'a str,
    headings: &[Option<String>],
) -> Vec<Option<(usize, &'a str)>> {
    let starts: Vec<Option<(usize, usize)>> = headings
        .iter()
        .map(|h| match h {
            None => Some((0, 0)),
            Some(h) => answer
                .match_indices(h.as_str())
                .find(|(at, _)| *at == 0 || answer[..*at].ends_with('\n'))
                .map(|(at, _)| (at, at + h.len())),
        })
        .collect();
    starts
        .iter()
        .map(|s| {
            let (_, body) = (*s)?;
            let end = starts
                .iter()
                .flatten()
                .map(|(at, _)| *at)
                .filter(|at| *at >= body && *at > 0)
                .min()
                .unwrap_or(answer.len());
            Some((body, &answer[body..end]))
        })
        .collect()
}

pub fn score_line(score: Option<f64>) -> String {
    match score {
        Some(s) => format!("Score: {}", s.round() as i64),
        None => "Score: N/A".into(),
    }
}

/// The expert-agreeing example of one clip on one dimension, if any rater annotated it.
pub fn example_for(
    tax: &Taxonomy,
    ds: &Dataset,
    clip: &ClipRecord,
    dim: &Dimension,
) -> Option<JudgeExample> {
    example_with_evidence(tax, ds, clip, dim, None)
}

/// `example_for` with the operators' evidence in the question (see `judge_question_with_evidence`).
pub fn example_with_evidence(
    tax: &Taxonomy,
    ds: &Dataset,
    clip: &ClipRecord,
    dim: &Dimension,
    evidence: Option<&crate::operators::Evidence>,
) -> Option<JudgeExample> {
    let anns: Vec<_> = clip
        .annotations
        .iter()
        .filter(|a| a.dimension == dim.id)
        .collect();
    if anns.is_empty() {
        return None;
    }
    let scale = tax.scale(dim);
    let scores: Vec<f64> = anns.iter().filter_map(|a| a.score.value()).collect();
    let na = anns
        .iter()
        .filter(|a| a.score == Score::NotApplicable)
        .count();
    let mean = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
    let consensus = if na * 2 > anns.len() {
        None
    } else {
        mean.map(|m| scale.values()[scale.level_index(m)])
    };
    // The rationale of the rater closest to the consensus (first in manifest order on ties).
    let pick = anns
        .iter()
        .filter(|a| a.rationale.is_some())
        .min_by(|a, b| {
            let d = |x: &Score| match (x.value(), consensus) {
                (Some(v), Some(c)) => (v - c).abs(),
                (None, None) => 0.0,
                _ => f64::INFINITY,
            };
            d(&a.score).total_cmp(&d(&b.score))
        });
    let rationale = pick.and_then(|a| a.rationale.clone()).unwrap_or_default();
    let mut histogram = vec![0.0; scale.levels()];
    for s in &scores {
        histogram[scale.level_index(*s)] += 1.0 / scores.len() as f64;
    }
    Some(JudgeExample {
        clip_id: clip.id.clone(),
        prompt_group: clip.prompt_group.clone(),
        generator: clip.generator.clone(),
        video: ds.video_path(clip),
        has_audio: clip.audio.is_some(),
        dimension: dim.id.clone(),
        question: judge_question_with_evidence(tax, dim, &clip.prompt, evidence),
        answer: format!("{}\n{}", rationale.trim(), score_line(consensus)),
        rationale,
        score: consensus,
        mean,
        histogram,
    })
}

/// The question on one dimension of a clip outside a dataset (no annotations: no answer, no
/// expert score, an empty histogram).
pub fn unannotated_example(
    tax: &Taxonomy,
    dim: &Dimension,
    clip_id: &str,
    video: &std::path::Path,
    clip_prompt: &str,
    evidence: Option<&crate::operators::Evidence>,
) -> JudgeExample {
    JudgeExample {
        clip_id: clip_id.to_string(),
        prompt_group: String::new(),
        generator: String::new(),
        video: video.to_path_buf(),
        has_audio: false,
        dimension: dim.id.clone(),
        question: judge_question_with_evidence(tax, dim, clip_prompt, evidence),
        answer: String::new(),
        rationale: String::new(),
        score: None,
        mean: None,
        histogram: vec![],
    }
}

/// Examples of a split for the given dimensions (all when empty), in manifest order.
pub fn build(
    ds: &Dataset,
    split: Split,
    dimensions: &[String],
) -> Result<Vec<JudgeExample>, String> {
    build_with_evidence(ds, split, dimensions, &|_| None)
}

/// `build` with each clip's operator evidence (by clip id) in its questions.
pub fn build_with_evidence(
    ds: &Dataset,
    split: Split,
    dimensions: &[String],
    evidence: &dyn Fn(&str) -> Option<crate::operators::Evidence>,
) -> Result<Vec<JudgeExample>, String> {
    let tax = &ds.taxonomy;
    for d in dimensions {
        if tax.dimension(d).is_none() {
            return Err(format!(
                "dimension '{d}' is not in taxonomy '{}' (known: {})",
                tax.name,
                tax.dimension_ids().join(", ")
            ));
        }
    }
    let dims: Vec<&Dimension> = if dimensions.is_empty() {
        tax.dimensions.iter().collect()
    } else {
        dimensions.iter().filter_map(|d| tax.dimension(d)).collect()
    };
    let mut out = Vec::new();
    for clip in ds.clips_in(split) {
        let ev = evidence(&clip.id);
        for dim in &dims {
            if let Some(e) = example_with_evidence(tax, ds, clip, dim, ev.as_ref()) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// The question of caption pretraining.
pub const CAPTION_QUESTION: &str =
    "Describe this clip: what it shows, then its framing, camera, light, colour, texture, motion, cuts and sound.";

/// One line of a dataset's `captions.jsonl` (written by `evalverse data synth`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionLine {
    pub clip: String,
    pub caption: String,
}

/// Caption examples (question `CAPTION_QUESTION`, answer the caption) of the clips of `split`,
/// read from `captions.jsonl` in the dataset folder. Errors name the file and line.
pub fn caption_examples(ds: &Dataset, split: Split) -> Result<Vec<JudgeExample>, String> {
    let path = ds.root.join("captions.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut captions = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let c: CaptionLine =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if !ds.clips.iter().any(|r| r.record.id == c.clip) {
            return Err(format!(
                "{}:{}: clip '{}' is not in the manifest",
                path.display(),
                i + 1,
                c.clip
            ));
        }
        captions.insert(c.clip, c.caption);
    }
    Ok(ds
        .clips_in(split)
        .filter_map(|clip| {
            let caption = captions.get(&clip.id)?;
            Some(JudgeExample {
                clip_id: clip.id.clone(),
                prompt_group: clip.prompt_group.clone(),
                generator: clip.generator.clone(),
                video: ds.video_path(clip),
                has_audio: clip.audio.is_some(),
                dimension: "caption".into(),
                question: CAPTION_QUESTION.into(),
                answer: caption.clone(),
                rationale: caption.clone(),
                score: None,
                mean: None,
                histogram: vec![],
            })
        })
        .collect())
}

/// Operator evidence of every clip of `split`, through the decode cache (measured once per file
/// and operator set). A clip whose evidence cannot be measured is left out of the map (its
/// prompts go without evidence) and reported in the second list with the error.
pub fn split_evidence(
    ds: &Dataset,
    split: Split,
    set: &crate::operators::OperatorSet,
    cache: &crate::cache::DecodeCache,
) -> (
    std::collections::BTreeMap<String, crate::operators::Evidence>,
    Vec<(String, String)>,
) {
    let spec = crate::operators::AnalysisSpec::default();
    let mut map = std::collections::BTreeMap::new();
    let mut failed = Vec::new();
    if set.is_empty() {
        return (map, failed);
    }
    for clip in ds.clips_in(split) {
        match cache.get_or_measure(&ds.video_path(clip), set, &spec) {
            Ok((ev, _)) => {
                map.insert(clip.id.clone(), ev);
            }
            Err(e) => failed.push((clip.id.clone(), e.to_string())),
        }
    }
    (map, failed)
}

/// Parse a judge's answer: the last `Score: N` (a level of `scale`) or `Score: N/A`.
/// `None` when the answer has no well-formed score line: such outputs are counted as malformed,
/// never guessed.
pub fn parse_score(answer: &str, scale: &crate::taxonomy::Scale) -> Option<Option<f64>> {
    let at = answer.rfind("Score:")?;
    let rest = answer[at + "Score:".len()..].trim_start();
    if rest.starts_with("N/A") {
        return Some(None);
    }
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v: f64 = num.trim_end_matches('.').parse().ok()?;
    scale.contains(v).then_some(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::{Evidence, Measurement, OperatorSet, OPERATORS_VERSION};
    use crate::taxonomy::Scale;

    #[test]
    fn evidence_goes_on_its_own_line_and_none_changes_nothing() {
        let tax = Taxonomy::evalverse();
        let dim = tax.dimension("rhythm").unwrap();
        let plain = judge_question(&tax, dim, "a cat");
        assert_eq!(
            judge_question_with_evidence(&tax, dim, "a cat", None),
            plain
        );
        let ev = Evidence {
            version: OPERATORS_VERSION,
            operators: OperatorSet::all(),
            measurements: vec![Measurement {
                name: "shot_count".into(),
                value: 2.0,
                unit: "count".into(),
            }],
            shots: vec![[0.0, 1.0], [1.0, 2.5]],
        };
        let with = judge_question_with_evidence(&tax, dim, "a cat", Some(&ev));
        let at = plain.find("The clip was generated").unwrap();
        assert_eq!(
            with,
            format!(
                "{}Evidence: shots=2 (1s, 1.5s)\n{}",
                &plain[..at],
                &plain[at..]
            )
        );
    }

    #[test]
    fn parse_score_reads_the_last_score_line() {
        let s = Scale {
            min: 1.0,
            max: 5.0,
            step: 1.0,
            labels: vec![],
        };
        assert_eq!(parse_score("Soft image. Score: 2", &s), Some(Some(2.0)));
        assert_eq!(
            parse_score("Score: 5 first, then Score: 3.", &s),
            Some(Some(3.0))
        );
        assert_eq!(parse_score("Silent clip.\nScore: N/A", &s), Some(None));
        assert_eq!(
            parse_score("Score: 7", &s),
            None,
            "off the scale is malformed"
        );
        assert_eq!(parse_score("no verdict", &s), None);
        assert_eq!(parse_score("Score: great", &s), None);
    }
}
