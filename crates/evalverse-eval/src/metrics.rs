//! Agreement of a judge's scores with held-out experts on one dimension (EvalVerse §7;
//! EVAL_ANCHORS.md §3). Sample level: SRCC / PLCC / KRCC with scipy p-values, MAE, exact and
//! within-one accuracy (VideoScore2 `eval/get_acc_corr.py`), pairwise accuracy without ties
//! (VideoAlign `calc_accuracy.py`) and with calibrated ties (Deutsch et al. 2023, "Ties Matter",
//! Alg. 1, as in google-research/mt-metrics-eval `tau_optimization`), the N/A gate, and expected
//! calibration error. System level: pairwise win ratios per generator (VBench; EvalVerse §7.2)
//! and their correlation with the experts' win ratios across generators.
//!
//! Ties are exact equality. Expert means of integer (or half-point) scores are exact sums
//! divided by a count, correctly rounded, so two means that are equal as rationals are equal as
//! floats and no tolerance is needed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{finite, same_length, MetricError};
use crate::stats::{kendalltau, pearsonr, spearmanr, Correlation};

/// All sample-level metrics of one dimension, over the clips both the judge and the experts
/// scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleMetrics {
    /// Clips compared.
    pub clips: usize,
    /// Spearman ρ of judge vs mean expert score; `None` if undefined (constant side, n < 3).
    pub srcc: Option<Correlation>,
    /// Pearson r; `None` if undefined.
    pub plcc: Option<Correlation>,
    /// Kendall τ_b; `None` if undefined.
    pub krcc: Option<Correlation>,
    /// Mean |judge − mean expert|, in score points.
    pub mae: f64,
    /// Share of clips where round(judge) = round(mean expert) (see [`exact_accuracy`]).
    pub exact_accuracy: f64,
    /// Share of clips where |round(judge) − round(mean expert)| ≤ 1.
    pub within_one_accuracy: f64,
    /// Within-prompt-group clip pairs, human ties included.
    pub pairs: usize,
    /// [`pairwise_accuracy_without_ties`]; `None` when every pair is a human tie.
    pub pairwise_accuracy: Option<f64>,
    /// [`pairwise_accuracy_with_ties`]; `None` without pairs.
    pub pairwise_accuracy_with_ties: Option<TieCalibration>,
}

/// Every sample-level metric of `predicted` (judge scores) against `expert_mean` (the mean
/// expert score of the same clip); `groups[i]` is the prompt group of clip i, and pairs are
/// formed only within a group (clips of different generators on the same prompt).
pub fn sample_metrics(
    predicted: &[f64],
    expert_mean: &[f64],
    groups: &[usize],
) -> Result<SampleMetrics, MetricError> {
    validate_scores(predicted, expert_mean)?;
    same_length("prompt groups vs scores", groups.len(), predicted.len())?;
    let pairs = pairs_within_groups(predicted, expert_mean, groups)?;
    Ok(SampleMetrics {
        clips: predicted.len(),
        srcc: spearmanr(predicted, expert_mean),
        plcc: pearsonr(predicted, expert_mean),
        krcc: kendalltau(predicted, expert_mean),
        mae: mean_absolute_error(predicted, expert_mean)?,
        exact_accuracy: exact_accuracy(predicted, expert_mean)?,
        within_one_accuracy: within_one_accuracy(predicted, expert_mean)?,
        pairs: pairs.len(),
        pairwise_accuracy: pairwise_accuracy_without_ties(&pairs),
        pairwise_accuracy_with_ties: pairwise_accuracy_with_ties(&pairs),
    })
}

fn validate_scores(predicted: &[f64], expert_mean: &[f64]) -> Result<(), MetricError> {
    same_length(
        "predicted vs expert scores",
        predicted.len(),
        expert_mean.len(),
    )?;
    finite("predicted scores", predicted)?;
    finite("expert scores", expert_mean)
}

/// MAE = (1/n) Σ |pᵢ − hᵢ|.
pub fn mean_absolute_error(predicted: &[f64], expert_mean: &[f64]) -> Result<f64, MetricError> {
    validate_scores(predicted, expert_mean)?;
    let total: f64 = predicted
        .iter()
        .zip(expert_mean)
        .map(|(p, h)| (p - h).abs())
        .sum();
    Ok(total / predicted.len() as f64)
}

/// Share of clips with |round(pᵢ) − round(hᵢ)| = 0: VideoScore2's exact accuracy, where the
/// ground truth is one integer score, extended to a mean of experts by rounding it too.
/// Rounding is half away from zero (`f64::round`): expert means of 3.5 and 4.5 count as 4 and
/// 5, where numpy's `round` (half to even) gives 4 for both.
pub fn exact_accuracy(predicted: &[f64], expert_mean: &[f64]) -> Result<f64, MetricError> {
    rounded_agreement(predicted, expert_mean, 0.0)
}

/// Share of clips with |round(pᵢ) − round(hᵢ)| ≤ 1 (VideoScore2's "relaxed" accuracy).
pub fn within_one_accuracy(predicted: &[f64], expert_mean: &[f64]) -> Result<f64, MetricError> {
    rounded_agreement(predicted, expert_mean, 1.0)
}

fn rounded_agreement(
    predicted: &[f64],
    expert_mean: &[f64],
    max_gap: f64,
) -> Result<f64, MetricError> {
    validate_scores(predicted, expert_mean)?;
    let hits = predicted
        .iter()
        .zip(expert_mean)
        .filter(|(p, h)| (p.round() - h.round()).abs() <= max_gap)
        .count();
    Ok(hits as f64 / predicted.len() as f64)
}

/// Which clip of a pair the experts (or a judge) prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    First,
    Second,
    Tie,
}

impl Preference {
    /// From a score difference first − second: positive prefers the first, zero is a tie.
    pub fn from_delta(delta: f64) -> Preference {
        if delta > 0.0 {
            Preference::First
        } else if delta < 0.0 {
            Preference::Second
        } else {
            Preference::Tie
        }
    }
}

/// A clip pair with the experts' preference and the judge's score difference (first − second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct JudgedPair {
    human: Preference,
    model_delta: f64,
}

impl JudgedPair {
    /// Refuses a non-finite judge difference, which would be neither a tie nor a preference.
    pub fn new(human: Preference, model_delta: f64) -> Result<JudgedPair, MetricError> {
        if !model_delta.is_finite() {
            return Err(MetricError::NonFinite {
                what: "judge score difference",
                index: 0,
                value: model_delta,
            });
        }
        Ok(JudgedPair { human, model_delta })
    }

    pub fn human(&self) -> Preference {
        self.human
    }

    pub fn model_delta(&self) -> f64 {
        self.model_delta
    }

    /// The judge's preference when differences with |Δ| ≤ ε count as ties.
    fn model_at(&self, epsilon: f64) -> Preference {
        if self.model_delta.abs() <= epsilon {
            Preference::Tie
        } else {
            Preference::from_delta(self.model_delta)
        }
    }
}

/// Every pair (i, j), i < j, of clips in the same prompt group: the experts' preference is the
/// sign of hᵢ − hⱼ (equal means are a tie), the judge's difference is pᵢ − pⱼ. Groups are
/// visited in increasing id, clips in input order.
pub fn pairs_within_groups(
    predicted: &[f64],
    expert_mean: &[f64],
    groups: &[usize],
) -> Result<Vec<JudgedPair>, MetricError> {
    validate_scores(predicted, expert_mean)?;
    same_length("prompt groups vs scores", groups.len(), predicted.len())?;
    let mut pairs = Vec::new();
    for members in group_members(groups).values() {
        for (a, &i) in members.iter().enumerate() {
            for &j in &members[a + 1..] {
                pairs.push(JudgedPair {
                    human: Preference::from_delta(expert_mean[i] - expert_mean[j]),
                    model_delta: predicted[i] - predicted[j],
                });
            }
        }
    }
    Ok(pairs)
}

fn group_members(groups: &[usize]) -> BTreeMap<usize, Vec<usize>> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    members
}

/// Pairwise accuracy without ties (VideoAlign `calc_accuracy.py`): pairs the experts tie are
/// dropped; of the rest, C / (C + D + T_m), where C agree with the experts, D disagree and T_m
/// are exact judge ties (Δ = 0), which count as wrong. `None` when no pair is left.
pub fn pairwise_accuracy_without_ties(pairs: &[JudgedPair]) -> Option<f64> {
    let decided: Vec<&JudgedPair> = pairs
        .iter()
        .filter(|p| p.human != Preference::Tie)
        .collect();
    if decided.is_empty() {
        return None;
    }
    let correct = decided
        .iter()
        .filter(|p| Preference::from_delta(p.model_delta) == p.human)
        .count();
    Some(correct as f64 / decided.len() as f64)
}

/// Three-class pairwise accuracy {first, second, tie} at a fixed tie threshold: the judge ties
/// a pair when |Δ| ≤ ε; accuracy = (C + T_hm) / all pairs, T_hm the pairs both tie
/// (VideoScore2 `eval/get_pairwise_acc.py` with per-judge ε). `None` without pairs.
pub fn pairwise_accuracy_at_epsilon(pairs: &[JudgedPair], epsilon: f64) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let correct = pairs
        .iter()
        .filter(|p| p.model_at(epsilon) == p.human)
        .count();
    Some(correct as f64 / pairs.len() as f64)
}

/// Result of the tie-calibrated pairwise accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TieCalibration {
    /// The best three-class accuracy over all thresholds.
    pub accuracy: f64,
    /// The smallest threshold ε reaching it (judge ties are |Δ| ≤ ε).
    pub epsilon: f64,
}

/// Pairwise accuracy with ties, tie-calibrated (Deutsch, Foster & Freitag 2023, "Ties Matter",
/// Alg. 1): the candidate thresholds are 0 and every distinct |Δ|; for each, pairs with
/// |Δ| ≤ ε are judge ties and the three-class accuracy (C + T_hm) / N is scored; the maximum
/// and the smallest ε reaching it are returned. Pairs are visited in increasing |Δ| and a
/// threshold is scored only after every pair with that |Δ| has become a tie, as
/// mt-metrics-eval's `tau_optimization` does. (VideoAlign's `calc_accuracy_with_ties` scores
/// after each pair, so among pairs with equal |Δ| it can score a state no threshold produces,
/// and report a higher accuracy on data with repeated gaps.) O(N log N). `None` without pairs.
pub fn pairwise_accuracy_with_ties(pairs: &[JudgedPair]) -> Option<TieCalibration> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mut correct = pairs.iter().filter(|p| p.model_at(0.0) == p.human).count() as i64;
    let mut best = TieCalibration {
        accuracy: correct as f64 / n,
        epsilon: 0.0,
    };
    let mut order: Vec<&JudgedPair> = pairs.iter().filter(|p| p.model_delta != 0.0).collect();
    order.sort_by(|a, b| a.model_delta.abs().total_cmp(&b.model_delta.abs()));
    let mut start = 0;
    while start < order.len() {
        let gap = order[start].model_delta.abs();
        let mut end = start;
        while end < order.len() && order[end].model_delta.abs() == gap {
            let pair = order[end];
            // The pair turns from a judge preference into a judge tie.
            correct -= i64::from(Preference::from_delta(pair.model_delta) == pair.human);
            correct += i64::from(pair.human == Preference::Tie);
            end += 1;
        }
        let accuracy = correct as f64 / n;
        if accuracy > best.accuracy {
            best = TieCalibration {
                accuracy,
                epsilon: gap,
            };
        }
        start = end;
    }
    Some(best)
}

/// Whether the experts call a clip N/A on a dimension: a strict majority of the raters who
/// answered it said N/A (exactly half is not a majority, so the clip stays scored).
pub fn expert_na_majority(na_votes: usize, raters: usize) -> bool {
    2 * na_votes > raters
}

/// The N/A gate (EvalVerse §6, I_gate) scored as a detector of N/A, the positive class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NaGate {
    pub true_positive: usize,
    pub false_positive: usize,
    pub false_negative: usize,
    pub true_negative: usize,
    /// TP / (TP + FP); `None` when the judge never says N/A.
    pub precision: Option<f64>,
    /// TP / (TP + FN); `None` when the experts never say N/A.
    pub recall: Option<f64>,
}

/// Precision and recall of the judge's N/A decisions against the experts' N/A majority
/// ([`expert_na_majority`]), clip by clip.
pub fn na_gate(predicted_na: &[bool], expert_na: &[bool]) -> Result<NaGate, MetricError> {
    same_length(
        "predicted vs expert N/A",
        predicted_na.len(),
        expert_na.len(),
    )?;
    if predicted_na.is_empty() {
        return Err(MetricError::Empty {
            what: "N/A decisions",
        });
    }
    let count = |p: bool, e: bool| {
        predicted_na
            .iter()
            .zip(expert_na)
            .filter(|&(&a, &b)| a == p && b == e)
            .count()
    };
    let (tp, fp, fn_, tn) = (
        count(true, true),
        count(true, false),
        count(false, true),
        count(false, false),
    );
    let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    Ok(NaGate {
        true_positive: tp,
        false_positive: fp,
        false_negative: fn_,
        true_negative: tn,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
    })
}

/// One non-empty confidence bin of [`Calibration`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// Exclusive lower edge (the first bin also holds confidence 0).
    pub lower: f64,
    /// Inclusive upper edge.
    pub upper: f64,
    pub clips: usize,
    /// Mean probability the judge gave its top score.
    pub mean_confidence: f64,
    /// Mean share of raters who gave that score.
    pub mean_rater_frequency: f64,
}

/// Expected calibration error of a soft score distribution and its reliability bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub ece: f64,
    pub clips: usize,
    pub bins: Vec<CalibrationBin>,
}

/// Largest |Σ p − 1| accepted for a predicted score distribution.
const PROBABILITY_SUM_TOLERANCE: f64 = 1e-6;

/// Expected calibration error against the raters' score histogram.
///
/// For clip i with predicted distribution pᵢ over the score levels (e.g. the judge's softmax
/// over the score tokens 1..5) let kᵢ = argmax pᵢ (the lowest level on a tie), the confidence
/// cᵢ = pᵢ[kᵢ], and the target aᵢ = (raters who gave kᵢ) / (raters) — the raters' empirical
/// probability of the judge's top score, in place of the 0/1 correctness of Guo et al. (2017),
/// "On Calibration of Modern Neural Networks", eq. 3; soft human labels as in Baan et al.
/// (2022), "Stop Measuring Calibration When Humans Disagree". With M equal-width bins
/// B_m = ((m−1)/M, m/M] over confidence,
/// ECE = Σ_m |B_m|/n · |mean_{i∈B_m} aᵢ − mean_{i∈B_m} cᵢ|.
///
/// `predicted[i]` and `rater_counts[i]` index the same levels. Refused: mismatched lengths,
/// no clips, zero bins, a probability that is negative or non-finite, a distribution whose sum
/// is off 1 by more than 1e-6, a clip without raters.
pub fn expected_calibration_error(
    predicted: &[Vec<f64>],
    rater_counts: &[Vec<u32>],
    n_bins: usize,
) -> Result<Calibration, MetricError> {
    const WHAT: &str = "score distributions";
    same_length(
        "predicted distributions vs rater histograms",
        predicted.len(),
        rater_counts.len(),
    )?;
    if predicted.is_empty() {
        return Err(MetricError::Empty { what: WHAT });
    }
    if n_bins == 0 {
        return Err(MetricError::Invalid {
            what: WHAT,
            index: 0,
            reason: "at least one confidence bin is needed".into(),
        });
    }
    let invalid = |index: usize, reason: String| MetricError::Invalid {
        what: WHAT,
        index,
        reason,
    };
    // (confidence, rater frequency of the top level) per clip.
    let mut points = Vec::with_capacity(predicted.len());
    for (i, (probs, counts)) in predicted.iter().zip(rater_counts).enumerate() {
        if probs.is_empty() || probs.len() != counts.len() {
            return Err(invalid(
                i,
                format!(
                    "{} predicted levels vs {} rater levels",
                    probs.len(),
                    counts.len()
                ),
            ));
        }
        if let Some(p) = probs.iter().find(|p| !p.is_finite() || **p < 0.0) {
            return Err(invalid(i, format!("probability {p} is not in [0, 1]")));
        }
        let sum: f64 = probs.iter().sum();
        if (sum - 1.0).abs() > PROBABILITY_SUM_TOLERANCE {
            return Err(invalid(i, format!("probabilities sum to {sum}, not 1")));
        }
        let raters: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if raters == 0 {
            return Err(invalid(i, "no rater scored this clip".into()));
        }
        let mut top = 0;
        for (k, &p) in probs.iter().enumerate() {
            if p > probs[top] {
                top = k;
            }
        }
        points.push((probs[top], f64::from(counts[top]) / raters as f64));
    }

    let edge = |m: usize| m as f64 / n_bins as f64;
    let mut sums = vec![(0usize, 0.0f64, 0.0f64); n_bins];
    for &(confidence, frequency) in &points {
        let bin = confidence_bin(confidence, n_bins);
        sums[bin].0 += 1;
        sums[bin].1 += confidence;
        sums[bin].2 += frequency;
    }
    let n = points.len() as f64;
    let mut ece = 0.0;
    let mut bins = Vec::new();
    for (m, &(count, conf, freq)) in sums.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let mean_confidence = conf / count as f64;
        let mean_rater_frequency = freq / count as f64;
        ece += count as f64 / n * (mean_rater_frequency - mean_confidence).abs();
        bins.push(CalibrationBin {
            lower: edge(m),
            upper: edge(m + 1),
            clips: count,
            mean_confidence,
            mean_rater_frequency,
        });
    }
    Ok(Calibration {
        ece,
        clips: points.len(),
        bins,
    })
}

/// Index m of the bin (m/M, (m+1)/M] holding `confidence`, with the edges computed as m/M so
/// that a confidence equal to an edge (0.3 with M = 10) falls in the bin it closes.
fn confidence_bin(confidence: f64, n_bins: usize) -> usize {
    let edge = |m: usize| m as f64 / n_bins as f64;
    let mut m = ((confidence * n_bins as f64).ceil() as usize)
        .saturating_sub(1)
        .min(n_bins - 1);
    while m > 0 && confidence <= edge(m) {
        m -= 1;
    }
    while m + 1 < n_bins && confidence > edge(m + 1) {
        m += 1;
    }
    m
}

/// A generator's pairwise record on one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WinRatio {
    /// Wins plus half the ties.
    pub wins: f64,
    /// Comparisons against clips of other generators in the same prompt group.
    pub comparisons: usize,
    /// wins / comparisons.
    pub ratio: f64,
}

/// Pairwise win ratio per generator (VBench; EvalVerse §7.2): within each prompt group every
/// pair of clips from different generators is one comparison; the higher score wins 1, equal
/// scores give each 0.5; a generator's win ratio is its wins over its comparisons. A generator
/// with several clips in a group has each compared. Generators that were never compared (alone
/// in every group) have no win ratio and are left out of the map.
///
/// Judge and expert win ratios should be computed over the same clips, so that they differ
/// only in the scores.
pub fn win_ratios<S: AsRef<str>>(
    groups: &[usize],
    generators: &[S],
    scores: &[f64],
) -> Result<BTreeMap<String, WinRatio>, MetricError> {
    same_length("prompt groups vs scores", groups.len(), scores.len())?;
    same_length("generators vs scores", generators.len(), scores.len())?;
    finite("scores", scores)?;
    let mut record: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for members in group_members(groups).values() {
        for (a, &i) in members.iter().enumerate() {
            for &j in &members[a + 1..] {
                let (gi, gj) = (generators[i].as_ref(), generators[j].as_ref());
                if gi == gj {
                    continue;
                }
                let win_i = match Preference::from_delta(scores[i] - scores[j]) {
                    Preference::First => 1.0,
                    Preference::Second => 0.0,
                    Preference::Tie => 0.5,
                };
                let ri = record.entry(gi).or_insert((0.0, 0));
                ri.0 += win_i;
                ri.1 += 1;
                let rj = record.entry(gj).or_insert((0.0, 0));
                rj.0 += 1.0 - win_i;
                rj.1 += 1;
            }
        }
    }
    Ok(record
        .into_iter()
        .map(|(g, (wins, comparisons))| {
            let ratio = wins / comparisons as f64;
            (
                g.to_string(),
                WinRatio {
                    wins,
                    comparisons,
                    ratio,
                },
            )
        })
        .collect())
}

/// System-level agreement on one dimension: judge vs expert win ratios across generators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemAgreement {
    /// Generators with both win ratios, sorted; `judge` and `human` follow this order.
    pub generators: Vec<String>,
    pub judge: Vec<f64>,
    pub human: Vec<f64>,
    /// Generators with a win ratio on one side only, left out of the correlations.
    pub unmatched: Vec<String>,
    pub srcc: Option<Correlation>,
    pub plcc: Option<Correlation>,
    pub krcc: Option<Correlation>,
}

/// SRCC, PLCC and KRCC (scipy p-values) between judge and expert win ratios over the
/// generators both have, as EvalVerse Table `tab:correlation` (there N = 11, 5 or 4).
pub fn system_agreement(
    judge: &BTreeMap<String, WinRatio>,
    human: &BTreeMap<String, WinRatio>,
) -> SystemAgreement {
    let mut agreement = SystemAgreement {
        generators: Vec::new(),
        judge: Vec::new(),
        human: Vec::new(),
        unmatched: Vec::new(),
        srcc: None,
        plcc: None,
        krcc: None,
    };
    for (generator, j) in judge {
        match human.get(generator) {
            Some(h) => {
                agreement.generators.push(generator.clone());
                agreement.judge.push(j.ratio);
                agreement.human.push(h.ratio);
            }
            None => agreement.unmatched.push(generator.clone()),
        }
    }
    agreement
        .unmatched
        .extend(human.keys().filter(|g| !judge.contains_key(*g)).cloned());
    agreement.unmatched.sort();
    agreement.srcc = spearmanr(&agreement.judge, &agreement.human);
    agreement.plcc = pearsonr(&agreement.judge, &agreement.human);
    agreement.krcc = kendalltau(&agreement.judge, &agreement.human);
    agreement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "got {actual}, expected {expected}"
        );
    }

    fn pair(human: Preference, delta: f64) -> JudgedPair {
        JudgedPair::new(human, delta).expect("finite delta")
    }

    /// One prompt group of 4 clips. Pairs (i, j), experts' preference, judge Δ = pᵢ − pⱼ:
    /// (0,1) first, 0     → judge tie
    /// (0,2) first, +1.5  → agree
    /// (0,3) first, +1.0  → agree
    /// (1,2) tie,   +1.5  → dropped without ties
    /// (1,3) first, +1.0  → agree
    /// (2,3) first, −0.5  → disagree
    fn four_clips_with_a_judge_tie() -> (Vec<f64>, Vec<f64>, Vec<usize>) {
        (
            vec![3.5, 3.5, 2.0, 2.5],
            vec![4.0, 3.0, 3.0, 1.0],
            vec![7, 7, 7, 7],
        )
    }

    /// One prompt group of 4 clips with three expert ties. |Δ| and expert preference:
    /// (0,1) 0.75 first, (0,2) 1.0 first, (0,3) 2.0 first, (1,2) 0.25 tie, (1,3) 1.25 tie,
    /// (2,3) 1.0 tie. Three-class accuracy by threshold:
    /// ε = 0: the 3 "first" pairs agree → 3/6;  ε = 0.25: + (1,2) → 4/6;
    /// ε = 0.75: − (0,1) → 3/6;  ε = 1.0: − (0,2), + (2,3) → 3/6;  ε = 1.25: + (1,3) → 4/6;
    /// ε = 2.0: − (0,3) → 3/6. Best 4/6, first reached at ε = 0.25.
    fn four_clips_with_expert_ties() -> (Vec<f64>, Vec<f64>, Vec<usize>) {
        (
            vec![4.0, 3.25, 3.0, 2.0],
            vec![4.0, 3.0, 3.0, 3.0],
            vec![0, 0, 0, 0],
        )
    }

    #[test]
    fn pairwise_accuracy_without_ties_drops_expert_ties_and_counts_judge_ties_wrong() {
        let (p, h, g) = four_clips_with_a_judge_tie();
        let pairs = pairs_within_groups(&p, &h, &g).expect("valid");
        assert_eq!(pairs.len(), 6);
        // C = 3, D = 1, T_m = 1 → 3 / 5.
        assert_eq!(pairwise_accuracy_without_ties(&pairs), Some(0.6));
    }

    #[test]
    fn pairwise_accuracy_without_ties_is_none_when_experts_tie_everything() {
        let pairs = [pair(Preference::Tie, 1.0), pair(Preference::Tie, 0.0)];
        assert_eq!(pairwise_accuracy_without_ties(&pairs), None);
    }

    #[test]
    fn pairs_are_formed_only_within_prompt_groups() {
        // Two groups of two: one pair each; a cross-group pair (0, 2) would be a third.
        let pairs =
            pairs_within_groups(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 4.0, 3.0], &[0, 0, 1, 1])
                .expect("valid");
        assert_eq!(pairs.len(), 2);
        // Group 0 agrees, group 1 disagrees.
        assert_eq!(pairwise_accuracy_without_ties(&pairs), Some(0.5));
    }

    #[test]
    fn tie_calibration_returns_the_best_threshold_and_its_accuracy() {
        let (p, h, g) = four_clips_with_expert_ties();
        let pairs = pairs_within_groups(&p, &h, &g).expect("valid");
        let best = pairwise_accuracy_with_ties(&pairs).expect("pairs exist");
        assert_close(best.accuracy, 4.0 / 6.0);
        assert_eq!(best.epsilon, 0.25);
    }

    #[test]
    fn tie_calibration_flips_all_pairs_with_equal_gap_together() {
        // Both pairs have |Δ| = 1. ε = 0: the expert tie is missed, the preference matched → 1/2;
        // ε = 1: the reverse → 1/2. Flipping only the first pair (a state no threshold gives)
        // would score 2/2, as VideoAlign's per-pair loop does.
        let pairs = [pair(Preference::Tie, 1.0), pair(Preference::First, 1.0)];
        let best = pairwise_accuracy_with_ties(&pairs).expect("pairs exist");
        assert_eq!(
            best,
            TieCalibration {
                accuracy: 0.5,
                epsilon: 0.0
            }
        );
    }

    #[test]
    fn tie_calibration_counts_exact_judge_ties_as_ties_at_epsilon_zero() {
        // Δ = 0 with an expert tie is right at ε = 0; the preference pair stays right too.
        let pairs = [pair(Preference::Tie, 0.0), pair(Preference::Second, -2.0)];
        let best = pairwise_accuracy_with_ties(&pairs).expect("pairs exist");
        assert_eq!(
            best,
            TieCalibration {
                accuracy: 1.0,
                epsilon: 0.0
            }
        );
    }

    #[test]
    fn tie_calibration_equals_the_best_fixed_threshold_on_tied_data() {
        // Pseudo-random integer-ish scores: many repeated gaps and expert ties.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % 5
        };
        let pairs: Vec<JudgedPair> = (0..300)
            .map(|_| {
                let human = Preference::from_delta(next() as f64 - next() as f64);
                pair(human, (next() as f64 - next() as f64) / 2.0)
            })
            .collect();
        let best = pairwise_accuracy_with_ties(&pairs).expect("pairs exist");
        let mut candidates: Vec<f64> = pairs.iter().map(|p| p.model_delta().abs()).collect();
        candidates.push(0.0);
        let brute = candidates
            .iter()
            .map(|&e| pairwise_accuracy_at_epsilon(&pairs, e).expect("pairs exist"))
            .fold(f64::NEG_INFINITY, f64::max);
        assert_close(best.accuracy, brute);
        assert_close(
            pairwise_accuracy_at_epsilon(&pairs, best.epsilon).expect("pairs exist"),
            brute,
        );
    }

    #[test]
    fn fixed_threshold_accuracy_counts_both_tied_pairs_as_correct() {
        // ε = 0.5: (tie, 0.3) both tie → right; (first, 0.5) judge tie → wrong;
        // (second, −0.6) → right. 2/3.
        let pairs = [
            pair(Preference::Tie, 0.3),
            pair(Preference::First, 0.5),
            pair(Preference::Second, -0.6),
        ];
        assert_close(
            pairwise_accuracy_at_epsilon(&pairs, 0.5).expect("pairs exist"),
            2.0 / 3.0,
        );
    }

    #[test]
    fn judged_pair_refuses_non_finite_difference() {
        assert!(JudgedPair::new(Preference::First, f64::NAN).is_err());
    }

    #[test]
    fn mae_and_rounded_accuracies_match_hand_computation() {
        // |Δ| = 0.4, 0.9, 1.5, 0.5 → MAE 3.3/4. Rounded: p (1, 3, 4, 4), h (1, 4, 2, 5):
        // 3.5 and 4.5 round up (half away from zero). Exact: clip 0 → 1/4.
        // Gaps 0, 1, 2, 1 → within one: 3/4.
        let p = [1.4, 2.6, 3.5, 4.0];
        let h = [1.0, 3.5, 2.0, 4.5];
        assert_close(mean_absolute_error(&p, &h).expect("valid"), 0.825);
        assert_eq!(exact_accuracy(&p, &h), Ok(0.25));
        assert_eq!(within_one_accuracy(&p, &h), Ok(0.75));
    }

    #[test]
    fn sample_metrics_refuse_nan_scores_and_mismatched_lengths() {
        assert!(matches!(
            sample_metrics(&[1.0, f64::NAN], &[1.0, 2.0], &[0, 0]),
            Err(MetricError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            sample_metrics(&[1.0, 2.0], &[1.0, 2.0], &[0]),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            sample_metrics(&[], &[], &[]),
            Err(MetricError::Empty { .. })
        ));
    }

    #[test]
    fn sample_metrics_combine_the_individual_metrics() {
        let (p, h, g) = four_clips_with_a_judge_tie();
        let m = sample_metrics(&p, &h, &g).expect("valid");
        assert_eq!(m.clips, 4);
        assert_eq!(m.pairs, 6);
        assert_eq!(m.pairwise_accuracy, Some(0.6));
        assert_eq!(m.srcc, spearmanr(&p, &h));
        assert_eq!(m.krcc, kendalltau(&p, &h));
        // |Δ| = 0.5, 0.5, 1.0, 1.5 → 3.5 / 4.
        assert_close(m.mae, 0.875);
    }

    #[test]
    fn expert_na_needs_a_strict_majority() {
        assert!(!expert_na_majority(2, 4));
        assert!(expert_na_majority(3, 5));
        assert!(!expert_na_majority(0, 0));
    }

    #[test]
    fn na_gate_precision_and_recall_match_hand_counts() {
        // TP: 0, 4; FP: 1; FN: 2, 3; TN: 5.
        let predicted = [true, true, false, false, true, false];
        let expert = [true, false, true, true, true, false];
        let gate = na_gate(&predicted, &expert).expect("valid");
        assert_eq!(
            (
                gate.true_positive,
                gate.false_positive,
                gate.false_negative,
                gate.true_negative
            ),
            (2, 1, 2, 1)
        );
        assert_close(gate.precision.expect("judge said N/A"), 2.0 / 3.0);
        assert_close(gate.recall.expect("experts said N/A"), 0.5);
    }

    #[test]
    fn na_gate_precision_is_none_when_the_judge_never_says_na() {
        let gate = na_gate(&[false, false], &[true, false]).expect("valid");
        assert_eq!(gate.precision, None);
        assert_eq!(gate.recall, Some(0.0));
    }

    #[test]
    fn ece_matches_hand_computation() {
        // Top level, confidence, rater share of it:
        // clip 0: level 1, 0.7,  3/4   → bin (0.6, 0.7]
        // clip 1: level 2, 0.8,  2/4   → bin (0.7, 0.8]
        // clip 2: level 0, 0.6,  1/2   → bin (0.5, 0.6]
        // clip 3: level 1, 0.65, 4/4   → bin (0.6, 0.7]
        // ECE = 1/4·|0.5 − 0.6| + 2/4·|0.875 − 0.675| + 1/4·|0.5 − 0.8| = 0.025 + 0.1 + 0.075.
        let predicted = vec![
            vec![0.1, 0.7, 0.2],
            vec![0.05, 0.15, 0.8],
            vec![0.6, 0.3, 0.1],
            vec![0.2, 0.65, 0.15],
        ];
        let counts = vec![vec![0, 3, 1], vec![0, 2, 2], vec![1, 1, 0], vec![0, 4, 0]];
        let cal = expected_calibration_error(&predicted, &counts, 10).expect("valid");
        assert_close(cal.ece, 0.2);
        assert_eq!(cal.bins.len(), 3);
        assert_eq!(cal.bins[1].clips, 2);
        assert_close(cal.bins[1].mean_confidence, 0.675);
        assert_close(cal.bins[1].mean_rater_frequency, 0.875);
    }

    #[test]
    fn ece_is_zero_when_confidence_equals_rater_agreement() {
        let predicted = vec![vec![0.25, 0.75], vec![0.5, 0.5]];
        let counts = vec![vec![1, 3], vec![2, 2]];
        let cal = expected_calibration_error(&predicted, &counts, 10).expect("valid");
        assert_close(cal.ece, 0.0);
    }

    #[test]
    fn confidence_on_a_bin_edge_falls_in_the_bin_it_closes() {
        assert_eq!(confidence_bin(0.3, 10), 2);
        assert_eq!(confidence_bin(0.0, 10), 0);
        assert_eq!(confidence_bin(1.0, 10), 9);
        assert_eq!(confidence_bin(0.30000000000000004, 10), 3);
    }

    #[test]
    fn ece_refuses_distributions_that_do_not_sum_to_one_or_lack_raters() {
        let bad_sum = expected_calibration_error(&[vec![0.5, 0.4]], &[vec![1, 1]], 10);
        assert!(matches!(
            bad_sum,
            Err(MetricError::Invalid { index: 0, .. })
        ));
        let no_raters = expected_calibration_error(&[vec![0.5, 0.5]], &[vec![0, 0]], 10);
        assert!(matches!(
            no_raters,
            Err(MetricError::Invalid { index: 0, .. })
        ));
        let levels = expected_calibration_error(&[vec![1.0]], &[vec![1, 0]], 10);
        assert!(matches!(levels, Err(MetricError::Invalid { .. })));
    }

    /// Three generators A, B, C over two prompt groups.
    /// Group 0: A 5, B 3, C 3 → A beats B and C; B and C tie (0.5 each).
    /// Group 1: A 2, B 4, C 1 → B beats A and C; A beats C.
    /// A: 1 + 1 + 0 + 1 = 3 of 4; B: 0 + 0.5 + 1 + 1 = 2.5 of 4; C: 0 + 0.5 + 0 + 0 = 0.5 of 4.
    fn three_generators() -> (Vec<usize>, Vec<&'static str>, Vec<f64>) {
        (
            vec![0, 0, 0, 1, 1, 1],
            vec!["A", "B", "C", "A", "B", "C"],
            vec![5.0, 3.0, 3.0, 2.0, 4.0, 1.0],
        )
    }

    #[test]
    fn win_ratios_match_hand_computation_with_a_tie() {
        let (g, gen, s) = three_generators();
        let wr = win_ratios(&g, &gen, &s).expect("valid");
        assert_eq!(wr.len(), 3);
        assert_eq!(
            wr["A"],
            WinRatio {
                wins: 3.0,
                comparisons: 4,
                ratio: 0.75
            }
        );
        assert_eq!(wr["B"].ratio, 0.625);
        assert_eq!(wr["C"].ratio, 0.125);
    }

    #[test]
    fn win_ratios_compare_a_generator_only_where_it_appears() {
        // C is missing from group 1: it has 2 comparisons, A and B have 3.
        let wr = win_ratios(
            &[0, 0, 0, 1, 1],
            &["A", "B", "C", "A", "B"],
            &[1.0, 2.0, 3.0, 2.0, 1.0],
        )
        .expect("valid");
        assert_eq!(wr["C"].comparisons, 2);
        assert_eq!(wr["C"].ratio, 1.0);
        assert_eq!(wr["A"].comparisons, 3);
        assert_close(wr["A"].ratio, 1.0 / 3.0);
    }

    #[test]
    fn win_ratios_skip_pairs_of_the_same_generator() {
        let wr = win_ratios(&[0, 0], &["A", "A"], &[1.0, 2.0]).expect("valid");
        assert!(wr.is_empty());
    }

    #[test]
    fn system_agreement_correlates_win_ratios_across_generators() {
        let (g, gen, s) = three_generators();
        let judge = win_ratios(&g, &gen, &s).expect("valid");
        // Experts: A 0.6, B 0.7, C 0.2, plus D that the judge never saw.
        let human: BTreeMap<String, WinRatio> = [("A", 0.6), ("B", 0.7), ("C", 0.2), ("D", 0.5)]
            .into_iter()
            .map(|(g, r)| {
                (
                    g.to_string(),
                    WinRatio {
                        wins: r * 10.0,
                        comparisons: 10,
                        ratio: r,
                    },
                )
            })
            .collect();
        let agreement = system_agreement(&judge, &human);
        assert_eq!(agreement.generators, ["A", "B", "C"]);
        assert_eq!(agreement.unmatched, ["D"]);
        // Ranks judge (3, 2, 1), experts (2, 3, 1): ρ = 1 − 6·(1 + 1 + 0)/(3·8) = 0.5.
        assert_close(agreement.srcc.expect("defined").statistic, 0.5);
        // One discordant pair (A, B) of three: τ = 1/3.
        assert_close(agreement.krcc.expect("defined").statistic, 1.0 / 3.0);
    }
}
