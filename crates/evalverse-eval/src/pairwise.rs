//! Pairwise judging with both orders (the A/B protocol of VideoAlign / VideoGen-RewardBench and
//! of LLM-as-a-judge studies): two clips of one prompt group in one prompt, "Video A" then
//! "Video B", and the judge's probability that A is better, read from the next-token
//! distribution after "Better: " over the tokens "A" and "B". Every pair is judged in both
//! orders, so the figures separate what the judge sees from where the clip stands:
//! - accuracy per order and order-averaged (debiased) accuracy against the experts' mean
//!   scores (pairs the experts tie are left out);
//! - position bias: mean P(first shown wins) - 0.5 over all ordered judgements (0 is unbiased,
//!   +0.5 always picks the first);
//! - consistency: share of pairs whose hard verdict follows the clip when the order flips.

use std::collections::BTreeMap;
use std::path::PathBuf;

use evalverse_data::cache::CachedClip;
use evalverse_data::prompts::JudgeExample;
use evalverse_judge::collate;
use evalverse_judge::prompt::{self, VideoSlot};
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::generate::score_distribution;
use evalverse_model::{ModelBackend, QwenVl};
use serde::{Deserialize, Serialize};

/// One ordered judgement of a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairJudgement {
    pub prompt_group: String,
    pub dimension: String,
    /// Clip shown as "Video A".
    pub first: String,
    /// Clip shown as "Video B".
    pub second: String,
    /// P(A is better), renormalised over "A" and "B".
    pub p_first: f64,
    /// Expert mean of the first minus that of the second (None when either has no score).
    pub expert_margin: Option<f64>,
}

/// Pairwise figures of one dimension (or all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairwiseSummary {
    pub dimension: String,
    /// Unordered pairs the experts do not tie.
    pub pairs: usize,
    pub accuracy_ab: f64,
    pub accuracy_ba: f64,
    pub accuracy_debiased: f64,
    pub position_bias: f64,
    pub consistency: f64,
}

/// The pairwise question for one dimension (the pointwise question's dimension text).
pub fn pair_question(e: &JudgeExample) -> String {
    let first_line = e.question.lines().next().unwrap_or_default();
    let topic = first_line
        .strip_prefix("Evaluate the ")
        .and_then(|s| s.split(" of this clip.").next())
        .unwrap_or(&e.dimension);
    format!(
        "Compare the {topic} of Video A and Video B, two clips generated from the same prompt.\n{}\nAnswer 'Better: A', 'Better: B' or 'Better: same'.",
        e.question
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("Reason about what you see"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Ordered pairs (both orders) of the clips of each prompt group, per dimension, from
/// examples that carry an expert mean.
pub fn ordered_pairs(examples: &[JudgeExample]) -> Vec<(&JudgeExample, &JudgeExample)> {
    let mut by: BTreeMap<(&str, &str), Vec<&JudgeExample>> = BTreeMap::new();
    for e in examples {
        if e.mean.is_some() {
            by.entry((e.prompt_group.as_str(), e.dimension.as_str()))
                .or_default()
                .push(e);
        }
    }
    let mut out = Vec::new();
    for group in by.values() {
        for i in 0..group.len() {
            for j in i + 1..group.len() {
                out.push((group[i], group[j]));
                out.push((group[j], group[i]));
            }
        }
    }
    out
}

/// Judge every ordered pair of `examples` (clips in `clips`).
pub fn judge_pairs<B: ModelBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    examples: &[JudgeExample],
    clips: &BTreeMap<PathBuf, CachedClip>,
    batch_size: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<PairJudgement>, String> {
    judge_ordered(
        model,
        tok,
        &ordered_pairs(examples),
        clips,
        batch_size,
        progress,
    )
}

/// Judge the given ordered pairs (first shown as "Video A"); pairs whose clips are not in
/// `clips` are left out.
pub fn judge_ordered<B: ModelBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    ordered: &[(&JudgeExample, &JudgeExample)],
    clips: &BTreeMap<PathBuf, CachedClip>,
    batch_size: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<PairJudgement>, String> {
    let device = model.device();
    let pad = tok.special.endoftext;
    let mut ab = Vec::new();
    for t in ["A", "B"] {
        match tok.encode(t).map_err(|e| e.to_string())?.as_slice() {
            [id] => ab.push(*id),
            _ => return Err(format!("'{t}' is not a single token")),
        }
    }
    let pairs: Vec<_> = ordered
        .iter()
        .copied()
        .filter(|(a, b)| clips.contains_key(&a.video) && clips.contains_key(&b.video))
        .collect();
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let mut seqs = Vec::new();
        let mut rows = Vec::new();
        for (a, b) in chunk {
            let (ca, cb) = (&clips[&a.video], &clips[&b.video]);
            let slot = |label, c: &CachedClip| VideoSlot {
                label: Some(label),
                tokens: prompt::clip_tokens(&model.cfg.vision, c),
            };
            let conv = prompt::conversation(
                &[slot("Video A:", ca), slot("Video B:", cb)],
                &pair_question(a),
                None,
            );
            let mut ids = tok.encode_chat(&conv, true).map_err(|e| e.to_string())?.ids;
            ids.extend(tok.encode("Better: ").map_err(|e| e.to_string())?);
            seqs.push(ids);
            rows.push(vec![ca, cb]);
        }
        let dists = score_distribution(
            model,
            &collate::prompts::<B>(&seqs, &rows, pad, &device),
            &ab,
        )
        .map_err(|e| e.to_string())?;
        for ((a, b), (d, _)) in chunk.iter().zip(dists) {
            out.push(PairJudgement {
                prompt_group: a.prompt_group.clone(),
                dimension: a.dimension.clone(),
                first: a.clip_id.clone(),
                second: b.clip_id.clone(),
                p_first: d[0] as f64,
                expert_margin: a.mean.zip(b.mean).map(|(x, y)| x - y),
            });
        }
        progress(out.len(), pairs.len());
    }
    Ok(out)
}

/// Figures over `js` (both orders of each pair present), labelled `dimension`. Expert margins
/// with |margin| <= `tie` count as ties and are left out of the accuracies.
pub fn summarise(js: &[&PairJudgement], dimension: &str, tie: f64) -> Option<PairwiseSummary> {
    let mut by_pair: BTreeMap<(&str, &str), [Option<&PairJudgement>; 2]> = BTreeMap::new();
    for j in js {
        let (key, slot) = if j.first < j.second {
            ((j.first.as_str(), j.second.as_str()), 0)
        } else {
            ((j.second.as_str(), j.first.as_str()), 1)
        };
        by_pair.entry(key).or_insert([None, None])[slot] = Some(j);
    }
    let both: Vec<(&PairJudgement, &PairJudgement)> = by_pair
        .values()
        .filter_map(|[x, y]| Some(((*x)?, (*y)?)))
        .collect();
    if both.is_empty() {
        return None;
    }
    let position_bias = both
        .iter()
        .map(|(x, y)| (x.p_first + y.p_first) / 2.0)
        .sum::<f64>()
        / both.len() as f64
        - 0.5;
    let consistency = both
        .iter()
        .filter(|(x, y)| (x.p_first > 0.5) != (y.p_first > 0.5))
        .count() as f64
        / both.len() as f64;
    let decided: Vec<_> = both
        .iter()
        .filter(|(x, _)| x.expert_margin.is_some_and(|m| m.abs() > tie))
        .collect();
    let n = decided.len();
    let frac = |f: &dyn Fn(&(&PairJudgement, &PairJudgement)) -> bool| {
        if n == 0 {
            f64::NAN
        } else {
            decided.iter().filter(|p| f(p)).count() as f64 / n as f64
        }
    };
    // x shows the lexically first clip first; its margin is first minus second.
    let truth = |x: &PairJudgement| x.expert_margin.unwrap_or(0.0) > 0.0;
    Some(PairwiseSummary {
        dimension: dimension.to_string(),
        pairs: n,
        accuracy_ab: frac(&|(x, _)| (x.p_first > 0.5) == truth(x)),
        accuracy_ba: frac(&|(x, y)| (y.p_first < 0.5) == truth(x)),
        accuracy_debiased: frac(&|(x, y)| ((x.p_first + 1.0 - y.p_first) / 2.0 > 0.5) == truth(x)),
        position_bias,
        consistency,
    })
}

/// Per-dimension summaries, then "overall".
pub fn summaries(js: &[PairJudgement], tie: f64) -> Vec<PairwiseSummary> {
    let mut dims: Vec<&str> = js.iter().map(|j| j.dimension.as_str()).collect();
    dims.sort_unstable();
    dims.dedup();
    let mut out: Vec<PairwiseSummary> = dims
        .iter()
        .filter_map(|d| {
            let sel: Vec<&PairJudgement> = js.iter().filter(|j| j.dimension == *d).collect();
            summarise(&sel, d, tie)
        })
        .collect();
    // Overall: every dimension's pairs (pair keys are per dimension, so keep them apart).
    let mut all = Vec::new();
    for d in &dims {
        let sel: Vec<&PairJudgement> = js.iter().filter(|j| j.dimension == *d).collect();
        if let Some(s) = summarise(&sel, d, tie) {
            all.push((s, sel.len()));
        }
    }
    let w: usize = all.iter().map(|(s, _)| s.pairs).sum();
    let total: usize = all.iter().map(|(_, n)| n).sum();
    if !all.is_empty() {
        let avg = |f: &dyn Fn(&PairwiseSummary) -> f64, by_pairs: bool| {
            let (num, den) = all.iter().fold((0.0, 0.0), |(a, b), (s, n)| {
                let wt = if by_pairs { s.pairs as f64 } else { *n as f64 };
                let v = f(s);
                if v.is_finite() {
                    (a + v * wt, b + wt)
                } else {
                    (a, b)
                }
            });
            if den > 0.0 {
                num / den
            } else {
                f64::NAN
            }
        };
        let _ = total;
        out.push(PairwiseSummary {
            dimension: "overall".into(),
            pairs: w,
            accuracy_ab: avg(&|s| s.accuracy_ab, true),
            accuracy_ba: avg(&|s| s.accuracy_ba, true),
            accuracy_debiased: avg(&|s| s.accuracy_debiased, true),
            position_bias: avg(&|s| s.position_bias, false),
            consistency: avg(&|s| s.consistency, false),
        });
    }
    out
}

/// A markdown table of the summaries.
pub fn markdown(s: &[PairwiseSummary]) -> String {
    let mut out = String::from(
        "| dimension | pairs | acc A/B | acc B/A | acc debiased | position bias | consistency |\n|---|---|---|---|---|---|---|\n",
    );
    for r in s {
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:+.3} | {:.3} |\n",
            r.dimension,
            r.pairs,
            r.accuracy_ab,
            r.accuracy_ba,
            r.accuracy_debiased,
            r.position_bias,
            r.consistency
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(first: &str, second: &str, p: f64, margin: f64) -> PairJudgement {
        PairJudgement {
            prompt_group: "g".into(),
            dimension: "lens".into(),
            first: first.into(),
            second: second.into(),
            p_first: p,
            expert_margin: Some(margin),
        }
    }

    #[test]
    fn a_judge_that_always_picks_the_first_has_bias_half_and_no_consistency() {
        let js = [
            j("a", "b", 0.9, 1.0),
            j("b", "a", 0.9, -1.0),
            j("a", "c", 1.0, -2.0),
            j("c", "a", 1.0, 2.0),
        ];
        let refs: Vec<&PairJudgement> = js.iter().collect();
        let s = summarise(&refs, "lens", 0.0).unwrap();
        assert_eq!(s.pairs, 2);
        assert!(
            (s.position_bias - 0.45).abs() < 1e-12,
            "{}",
            s.position_bias
        );
        assert_eq!(s.consistency, 0.0);
        // A/B order: right on (a,b) (a better, picked a), wrong on (a,c).
        assert_eq!(s.accuracy_ab, 0.5);
        assert_eq!(s.accuracy_ba, 0.5);
    }

    #[test]
    fn an_order_blind_correct_judge_scores_one_and_ties_are_left_out() {
        let js = [
            j("a", "b", 0.8, 1.0),
            j("b", "a", 0.2, -1.0),
            j("a", "c", 0.3, -0.5),
            j("c", "a", 0.7, 0.5),
            j("b", "c", 0.9, 0.0),
            j("c", "b", 0.1, 0.0),
        ];
        let refs: Vec<&PairJudgement> = js.iter().collect();
        let s = summarise(&refs, "lens", 0.0).unwrap();
        assert_eq!(s.pairs, 2, "the expert tie (b, c) is left out");
        assert_eq!(s.accuracy_ab, 1.0);
        assert_eq!(s.accuracy_ba, 1.0);
        assert_eq!(s.accuracy_debiased, 1.0);
        assert_eq!(s.consistency, 1.0);
        assert!(s.position_bias.abs() < 1e-12);
        // A tie threshold of 0.5 also drops (a, c).
        assert_eq!(summarise(&refs, "lens", 0.5).unwrap().pairs, 1);
    }

    #[test]
    fn pairs_come_in_both_orders_within_a_group_and_dimension() {
        let mk = |id: &str, g: &str, d: &str| JudgeExample {
            clip_id: id.into(),
            prompt_group: g.into(),
            generator: String::new(),
            video: PathBuf::from(id),
            has_audio: false,
            dimension: d.into(),
            question: "Evaluate the Lens of this clip. x\nReason about what you see, then end."
                .into(),
            answer: String::new(),
            rationale: String::new(),
            score: Some(3.0),
            mean: Some(3.0),
            histogram: vec![],
        };
        let ex = vec![
            mk("a", "g1", "lens"),
            mk("b", "g1", "lens"),
            mk("c", "g2", "lens"),
            mk("a", "g1", "pacing"),
        ];
        let p = ordered_pairs(&ex);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].0.clip_id.as_str(), p[0].1.clip_id.as_str()),
            ("a", "b")
        );
        assert_eq!(
            (p[1].0.clip_id.as_str(), p[1].1.clip_id.as_str()),
            ("b", "a")
        );
        let q = pair_question(&ex[0]);
        assert!(
            q.starts_with("Compare the Lens of Video A and Video B"),
            "{q}"
        );
        assert!(q.ends_with("'Better: same'."), "{q}");
        assert!(!q.contains("Reason about"), "{q}");
    }
}
