//! The VLM stage of the judge: a base model + adapter judges response units (one clip, one
//! dimension or one aspect). For each, it generates the rationale and score (greedy), parses the
//! score robustly (a malformed answer is counted, never guessed), and reads the soft score: the
//! expected value over the score tokens after "Score: " (Q-Align / VideoScore2 style), with the
//! distribution kept for calibration, or the reward head's calibrated scalar. The later stages
//! (context gate, fusion) are applied by `crate::compose`; every field a stage sets is kept in
//! the `Judgement`, so a user can see why a verdict is what it is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use evalverse_data::cache::CachedClip;
use evalverse_data::prompts::{parse_score, split_unit_answer, JudgeExample, UnitExample};
use evalverse_data::taxonomy::{Scale, Taxonomy};
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::generate::{generate, score_distribution, GenerationConfig};
use evalverse_model::reward::{self, RewardHead};
use evalverse_model::{ModelBackend, QwenVl};
use serde::{Deserialize, Serialize};

use crate::collate;
use crate::prompt;

/// What the judge answered, parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Verdict {
    Score(f64),
    NotApplicable,
    #[default]
    Malformed,
}

/// Which stage answered N/A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NaSource {
    /// The context gate (the operators' evidence and the taxonomy's applicability rule).
    Gate,
    /// The VLM's own "Score: N/A".
    Judge,
}

/// One clip x dimension, every stage of the judge recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Judgement {
    pub clip_id: String,
    pub prompt_group: String,
    pub generator: String,
    pub dimension: String,
    /// The VLM's rationale for this dimension (empty when judged by the reward head alone).
    pub answer: String,
    /// The final verdict: a level of the scale, N/A (`na_source` says which stage), or
    /// malformed (no score line and nothing else to score with).
    pub verdict: Verdict,
    /// The final soft score: `fused_soft` when fusion covers the dimension, else `vlm_soft`.
    pub soft: f64,
    /// Distribution over the scale levels: the score tokens' (renormalised), or the two levels
    /// around a head or fused score.
    pub distribution: Vec<f64>,
    /// The verdict the rationale's own score line states, before gate and fusion.
    #[serde(default)]
    pub text_verdict: Option<Verdict>,
    /// Expected score over the score tokens (None when judged by the reward head alone).
    #[serde(default)]
    pub token_soft: Option<f64>,
    /// The reward head's calibrated scalar, clamped to the scale (when the judge has a head
    /// covering the dimension).
    #[serde(default)]
    pub head_soft: Option<f64>,
    /// The VLM's score that enters fusion: `head_soft` when present, else `token_soft`.
    #[serde(default)]
    pub vlm_soft: Option<f64>,
    /// The fusion model's prediction from `vlm_soft` and the operators' measurements, on the
    /// scale (when the judge has a fusion model for the dimension).
    #[serde(default)]
    pub fused_soft: Option<f64>,
    /// The context gate's decision on this clip and dimension: N/A or not (None: no
    /// evidence was measured), whatever the policy made of it, and why.
    #[serde(default)]
    pub gate_na: Option<bool>,
    #[serde(default)]
    pub gate_reason: Option<String>,
    /// Which stage answered N/A, when the verdict is N/A.
    #[serde(default)]
    pub na_source: Option<NaSource>,
    pub expert_mean: Option<f64>,
    pub expert_na: bool,
}

impl Judgement {
    /// The judgement of `e` with this answer, verdict and score distribution.
    fn of(
        e: &JudgeExample,
        answer: String,
        verdict: Verdict,
        soft: f64,
        distribution: Vec<f64>,
    ) -> Judgement {
        Judgement {
            clip_id: e.clip_id.clone(),
            prompt_group: e.prompt_group.clone(),
            generator: e.generator.clone(),
            dimension: e.dimension.clone(),
            answer,
            verdict,
            soft,
            distribution,
            text_verdict: None,
            token_soft: None,
            head_soft: None,
            vlm_soft: None,
            fused_soft: None,
            gate_na: None,
            gate_reason: None,
            na_source: None,
            expert_mean: e.mean,
            // A clip outside a dataset has no annotations (an empty histogram): not an expert N/A.
            expert_na: e.score.is_none() && !e.histogram.is_empty(),
        }
    }

    /// Replace the score by `soft` from another scorer (a reward head, a fused prediction):
    /// `soft` as given; the distribution (the two levels around it) and a `Score` verdict's level
    /// from `soft` clamped to the scale. N/A and malformed verdicts stay.
    pub fn rescore(&mut self, soft: f64, scale: &Scale) {
        let levels = scale.values();
        let on_scale = soft.clamp(scale.min, scale.max);
        self.soft = soft;
        self.distribution = two_point(on_scale, &levels);
        if let Verdict::Score(_) = self.verdict {
            self.verdict = Verdict::Score(levels[scale.level_index(on_scale)]);
        }
    }
}

pub struct JudgeSettings<'a> {
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// A reward head (Bradley-Terry `readout = "head"`): when given, each dimension it covers
    /// is scored by it (calibrated to the scale, clamped) instead of by the score tokens; the
    /// rationale is still generated, and an N/A answer stays N/A. With `max_new_tokens` 0 the
    /// head alone scores (no generation, no N/A answers): every dimension must be covered.
    pub head: Option<&'a RewardHead>,
}

/// A score on the scale as a distribution over the two levels around it (expectation = score).
fn two_point(score: f64, levels: &[f64]) -> Vec<f64> {
    let mut d = vec![0.0; levels.len()];
    let Some(last) = levels.len().checked_sub(1) else {
        return d;
    };
    if score <= levels[0] {
        d[0] = 1.0;
    } else if score >= levels[last] {
        d[last] = 1.0;
    } else {
        let j = levels
            .iter()
            .rposition(|&v| v <= score)
            .unwrap_or(0)
            .min(last - 1);
        let t = (score - levels[j]) / (levels[j + 1] - levels[j]);
        d[j] = 1.0 - t;
        d[j + 1] = t;
    }
    d
}

/// Judge response units (`prompts::group_units`): one generation per unit, with
/// `max_new_tokens` per member dimension; each member's verdict and soft score are read from its
/// part of the answer (`split_unit_answer`). A member whose heading the answer lacks is
/// malformed, and its soft score is read after a forced "Heading: Score: ".
pub fn judge_units<B: ModelBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    tax: &Taxonomy,
    units: &[UnitExample],
    clips: &BTreeMap<PathBuf, CachedClip>,
    settings: &JudgeSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Judgement>, String> {
    if settings.max_new_tokens == 0 && settings.head.is_none() {
        return Err(
            "max_new_tokens 0 (no rationale) needs a reward head to score with; this judge has none"
                .into(),
        );
    }
    let scale = &tax.default_scale;
    let device = model.device();
    let pad = tok.special.endoftext;
    let levels = scale.values();
    let mut score_ids = Vec::new();
    for v in &levels {
        match tok
            .encode(&format!("{}", *v as i64))
            .map_err(|e| e.to_string())?
            .as_slice()
        {
            [id] => score_ids.push(*id),
            _ => return Err(format!("score level {v} is not a single token")),
        }
    }
    let usable: Vec<&UnitExample> = units
        .iter()
        .filter(|u| clips.contains_key(&u.members[0].video))
        .collect();
    let total: usize = usable.iter().map(|u| u.members.len()).sum();
    let mut out = Vec::with_capacity(total);
    for chunk in usable.chunks(settings.batch_size.max(1)) {
        let cl: Vec<&CachedClip> = chunk.iter().map(|u| &clips[&u.members[0].video]).collect();
        let rows: Vec<Vec<&CachedClip>> = cl.iter().map(|c| vec![*c]).collect();
        let mut prompts = Vec::new();
        for (u, c) in chunk.iter().zip(&cl) {
            let tokens = prompt::clip_tokens(&model.cfg.vision, c);
            prompts.push(
                tok.encode_chat(&prompt::single(tokens, &u.question, None), true)
                    .map_err(|e| e.to_string())?
                    .ids,
            );
        }
        // The reward head reads the prompt: one prefill per unit, a scalar per covered member.
        let mut head_scores: Vec<Option<f64>> = Vec::new();
        if let Some(head) = settings.head {
            let batch = collate::prompts::<B>(&prompts, &rows, pad, &device);
            let (h, ..) = model
                .forward_hidden(&batch, false, None)
                .map_err(|e| e.to_string())?;
            let feats: Vec<f32> = reward::features(model, &batch, h)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| format!("{e:?}"))?;
            let w = head.feature_len();
            for (i, u) in chunk.iter().enumerate() {
                for m in &u.members {
                    head_scores.push(head.index(&m.dimension).map(|d| {
                        let raw = head.raw_host(&feats[i * w..(i + 1) * w], &[d])[0];
                        head.calibrated(d, raw).clamp(scale.min, scale.max)
                    }));
                }
            }
        }
        if settings.max_new_tokens == 0 {
            // Head-only scoring: no rationale, one prefill per unit.
            let members = chunk.iter().flat_map(|u| &u.members);
            for (m, hs) in members.zip(&head_scores) {
                let hs = hs.ok_or_else(|| {
                    format!(
                        "max_new_tokens 0 scores with the reward head alone, and the head does \
                         not cover dimension '{}'",
                        m.dimension
                    )
                })?;
                finite(hs, m, "the reward head's score")?;
                let mut j = Judgement::of(m, String::new(), Verdict::Score(hs), hs, Vec::new());
                j.rescore(hs, scale);
                j.head_soft = Some(hs);
                j.vlm_soft = Some(hs);
                out.push(j);
            }
            progress(out.len(), total);
            continue;
        }
        let widest = chunk.iter().map(|u| u.members.len()).max().unwrap_or(1);
        let gen = generate(
            model,
            &collate::prompts::<B>(&prompts, &rows, pad, &device),
            &GenerationConfig::greedy(
                settings.max_new_tokens * widest,
                vec![tok.special.im_end, pad],
            ),
        )
        .map_err(|e| e.to_string())?;
        // Soft scores: the prompt, the member's part of the answer up to its last "Score:" (or
        // the part and a forced score line), then "Score: " -> distribution over the score tokens.
        let mut parts = Vec::new();
        let mut soft_prompts = Vec::new();
        let mut soft_rows = Vec::new();
        for (i, (u, p)) in chunk.iter().zip(&prompts).enumerate() {
            let answer = tok
                .decode(&gen.tokens[i], true)
                .map_err(|e| e.to_string())?;
            let headings = u.headings(tax);
            for (m, (part, heading)) in u.members.iter().zip(
                split_unit_answer(&answer, &headings)
                    .into_iter()
                    .zip(&headings),
            ) {
                let prefix = match part {
                    Some((at, text)) => match text.rfind("Score:") {
                        Some(s) => format!("{}Score: ", &answer[..at + s]),
                        None => format!("{}\nScore: ", answer[..at + text.len()].trim_end()),
                    },
                    None => format!(
                        "{}\n{} Score: ",
                        answer.trim_end(),
                        heading.as_deref().unwrap_or_default()
                    ),
                };
                let mut ids = p.clone();
                ids.extend(tok.encode(&prefix).map_err(|e| e.to_string())?);
                soft_prompts.push(ids);
                soft_rows.push(rows[i].clone());
                let text = match (headings.len(), part) {
                    (1, _) if heading.is_none() => answer.clone(),
                    (_, Some((_, t))) => t.trim().to_string(),
                    (_, None) => String::new(),
                };
                parts.push((m, text, part.is_some()));
            }
        }
        let mut dists = Vec::with_capacity(soft_prompts.len());
        for (ps, rs) in soft_prompts
            .chunks(settings.batch_size.max(1))
            .zip(soft_rows.chunks(settings.batch_size.max(1)))
        {
            dists.extend(
                score_distribution(
                    model,
                    &collate::prompts::<B>(ps, rs, pad, &device),
                    &score_ids,
                )
                .map_err(|e| e.to_string())?,
            );
        }
        for (k, ((e, answer, found), (dist, _mass))) in parts.into_iter().zip(dists).enumerate() {
            let text_verdict = match found.then(|| parse_score(&answer, scale)).flatten() {
                Some(Some(v)) => Verdict::Score(v),
                Some(None) => Verdict::NotApplicable,
                None => Verdict::Malformed,
            };
            let mut verdict = text_verdict;
            let distribution: Vec<f64> = dist.iter().map(|&p| p as f64).collect();
            let soft: f64 = distribution.iter().zip(&levels).map(|(p, v)| p * v).sum();
            finite(soft, e, "the expected score over the score tokens")?;
            let head = head_scores.get(k).copied().flatten();
            if let Some(hs) = head {
                finite(hs, e, "the reward head's score")?;
            }
            if head.is_some() && verdict == Verdict::Malformed {
                // The head scores a malformed answer too (its level is set by `rescore`).
                verdict = Verdict::Score(soft);
            }
            let mut j = Judgement::of(e, answer, verdict, soft, distribution);
            if let Some(hs) = head {
                j.rescore(hs, scale);
            }
            j.text_verdict = Some(text_verdict);
            j.token_soft = Some(soft);
            j.head_soft = head;
            j.vlm_soft = Some(head.unwrap_or(soft));
            out.push(j);
        }
        progress(out.len(), total);
    }
    Ok(out)
}

/// Refuse a non-finite score: NaN weights or activations must never become a verdict.
fn finite(v: f64, e: &JudgeExample, what: &str) -> Result<(), String> {
    if v.is_finite() {
        return Ok(());
    }
    Err(format!(
        "clip {} ({}), dimension {}: {what} is {v}; the model's weights or activations are not \
         finite (a damaged checkpoint or an overflow in this dtype), so no verdict is reported",
        e.clip_id,
        e.video.display(),
        e.dimension
    ))
}

#[cfg(test)]
mod tests {
    use super::two_point;

    #[test]
    fn a_head_score_becomes_the_two_levels_around_it() {
        let levels = [1.0, 2.0, 3.0, 4.0, 5.0];
        let d = two_point(3.25, &levels);
        assert_eq!(d, vec![0.0, 0.0, 0.75, 0.25, 0.0]);
        let mean: f64 = d.iter().zip(&levels).map(|(p, v)| p * v).sum();
        assert!((mean - 3.25).abs() < 1e-12);
        assert_eq!(two_point(5.0, &levels), vec![0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(two_point(0.2, &levels), vec![1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(two_point(2.0, &levels), vec![0.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
