//! Percentile bootstrap confidence intervals that resample prompt groups (clusters) with
//! replacement, so that clips of one prompt, which share content and are never independent,
//! stay together (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13; cluster
//! resampling as in Field & Welsh 2007), and the paired bootstrap test of two judges on the
//! same groups (Koehn 2004, "Statistical Significance Tests for Machine Translation
//! Evaluation"). Seeded with `evalverse_data::rng::Rng`, so a seed gives the same interval.

use std::collections::BTreeMap;

use evalverse_data::rng::Rng;
use serde::Serialize;

/// Coverage of every interval in this file: the 2.5th to the 97.5th percentile.
pub const CONFIDENCE_LEVEL: f64 = 0.95;

/// A statistic on all groups with its percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConfidenceInterval {
    /// The statistic on the original groups.
    pub estimate: f64,
    /// The bounds; None when no interval was drawn: no resamples asked for, fewer than two
    /// groups (every resample of one group is that group, so the "interval" would have zero
    /// width whatever the uncertainty), or no resample where the statistic is defined.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub level: f64,
    /// Resamples drawn.
    pub resamples: usize,
    /// Resamples where the statistic was undefined (`None` or non-finite, e.g. a correlation
    /// of a resample whose scores are all equal); they are left out of the percentiles.
    pub undefined: usize,
}

/// `0.512 [0.313, 0.633]`, or `0.512 (no interval)`.
impl std::fmt::Display for ConfidenceInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => write!(f, "{:.3} [{l:.3}, {u:.3}]", self.estimate),
            _ => write!(f, "{:.3} (no interval)", self.estimate),
        }
    }
}

/// Percentile bootstrap interval of `stat` over `n_groups` clusters.
///
/// Each of `n_resamples` resamples draws `n_groups` group indices uniformly with replacement
/// and calls `stat` with them (unsorted, with repeats; a repeated group counts twice). `stat`
/// receives `0..n_groups` for the estimate. The bounds are the 2.5th and 97.5th percentiles of
/// the defined resample values, interpolated linearly ([`percentile`]); with no resamples or
/// a single group none are drawn and the estimate comes without bounds.
///
/// `None` when there are no groups or the estimate is undefined.
pub fn bootstrap<F: Fn(&[usize]) -> Option<f64>>(
    n_groups: usize,
    n_resamples: usize,
    seed: u64,
    stat: F,
) -> Option<ConfidenceInterval> {
    if n_groups == 0 {
        return None;
    }
    let all: Vec<usize> = (0..n_groups).collect();
    let estimate = defined(stat(&all))?;
    let n_resamples = if n_groups < 2 { 0 } else { n_resamples };
    let mut values = Vec::with_capacity(n_resamples);
    let mut undefined = 0;
    for_each_resample(n_groups, n_resamples, seed, |picked| {
        match defined(stat(picked)) {
            Some(v) => values.push(v),
            None => undefined += 1,
        }
    });
    let bounds = percentile_interval(&mut values);
    Some(ConfidenceInterval {
        estimate,
        lower: bounds.map(|b| b.0),
        upper: bounds.map(|b| b.1),
        level: CONFIDENCE_LEVEL,
        resamples: n_resamples,
        undefined,
    })
}

/// Two judges compared on the same groups by the paired bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedComparison {
    pub estimate_a: f64,
    pub estimate_b: f64,
    /// estimate_a − estimate_b.
    pub difference: f64,
    /// Percentile interval of the difference.
    pub lower: f64,
    pub upper: f64,
    pub level: f64,
    /// Two-sided p-value of "no difference" (see [`paired_bootstrap`]).
    pub p_value: f64,
    pub resamples: usize,
    /// Resamples where either statistic was undefined; left out of the interval and p-value.
    pub undefined: usize,
}

/// Paired bootstrap of the difference of two statistics (judge A minus judge B) evaluated on
/// the same resampled groups (Koehn 2004, §4).
///
/// The interval is the percentile interval of the resample differences d*. The two-sided
/// p-value is twice the share of defined resamples whose difference does not keep the sign of
/// the observed difference d (d* ≤ 0 when d > 0, d* ≥ 0 when d < 0; a resample difference of
/// exactly zero counts against A, the conservative choice), capped at 1; d = 0 gives p = 1.
/// Koehn's one-sided "A is better with 1 − p confidence" is this share without the doubling.
///
/// `None` when there are fewer than two groups (every resample would repeat the one group, so
/// any difference would look certain) or no resamples, or either estimate is undefined.
pub fn paired_bootstrap<A, B>(
    n_groups: usize,
    n_resamples: usize,
    seed: u64,
    stat_a: A,
    stat_b: B,
) -> Option<PairedComparison>
where
    A: Fn(&[usize]) -> Option<f64>,
    B: Fn(&[usize]) -> Option<f64>,
{
    if n_groups < 2 || n_resamples == 0 {
        return None;
    }
    let all: Vec<usize> = (0..n_groups).collect();
    let estimate_a = defined(stat_a(&all))?;
    let estimate_b = defined(stat_b(&all))?;
    let difference = estimate_a - estimate_b;
    let mut differences = Vec::with_capacity(n_resamples);
    let mut undefined = 0;
    for_each_resample(n_groups, n_resamples, seed, |picked| {
        match (defined(stat_a(picked)), defined(stat_b(picked))) {
            (Some(a), Some(b)) => differences.push(a - b),
            _ => undefined += 1,
        }
    });
    let flips = differences
        .iter()
        .filter(|&&d| (difference > 0.0 && d <= 0.0) || (difference < 0.0 && d >= 0.0))
        .count();
    let p_value = if difference == 0.0 || differences.is_empty() {
        1.0
    } else {
        (2.0 * flips as f64 / differences.len() as f64).min(1.0)
    };
    let (lower, upper) = percentile_interval(&mut differences)?;
    Some(PairedComparison {
        estimate_a,
        estimate_b,
        difference,
        lower,
        upper,
        level: CONFIDENCE_LEVEL,
        p_value,
        resamples: n_resamples,
        undefined,
    })
}

fn defined(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

fn for_each_resample(
    n_groups: usize,
    n_resamples: usize,
    seed: u64,
    mut visit: impl FnMut(&[usize]),
) {
    let mut rng = Rng::new(seed);
    let mut picked = vec![0; n_groups];
    for _ in 0..n_resamples {
        for slot in picked.iter_mut() {
            *slot = rng.below(n_groups);
        }
        visit(&picked);
    }
}

fn percentile_interval(values: &mut [f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE_LEVEL) / 2.0;
    Some((percentile(values, tail), percentile(values, 1.0 - tail)))
}

/// The q-quantile (0 ≤ q ≤ 1) of ascending `sorted` values by linear interpolation between
/// order statistics at position q·(n − 1), numpy's default `percentile` method (Hyndman & Fan
/// 1996, type 7). NaN for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

/// Rows (clips) of each prompt group, to turn resampled group indices into clip rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clusters {
    members: Vec<Vec<usize>>,
}

/// The clips of a resample: `rows[k]` is a row of the original data and `groups[k]` the
/// position of its group in the resample, so two copies of one group are two distinct groups
/// (pairs and win-ratio comparisons are then formed within a copy, never across copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSample {
    pub rows: Vec<usize>,
    pub groups: Vec<usize>,
}

impl Clusters {
    /// Groups rows by label; group g is the g-th smallest label, its rows in input order.
    pub fn from_labels<L: Ord>(labels: &[L]) -> Clusters {
        let mut by_label: BTreeMap<&L, Vec<usize>> = BTreeMap::new();
        for (row, label) in labels.iter().enumerate() {
            by_label.entry(label).or_default().push(row);
        }
        Clusters {
            members: by_label.into_values().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Rows of group `g`.
    pub fn members(&self, g: usize) -> &[usize] {
        &self.members[g]
    }

    /// The rows of the groups in `picked` (as passed to a bootstrap statistic).
    pub fn sample(&self, picked: &[usize]) -> ClusterSample {
        let mut sample = ClusterSample {
            rows: Vec::new(),
            groups: Vec::new(),
        };
        for (copy, &g) in picked.iter().enumerate() {
            for &row in &self.members[g] {
                sample.rows.push(row);
                sample.groups.push(copy);
            }
        }
        sample
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn mean_of(values: &[f64], picked: &[usize]) -> Option<f64> {
        Some(picked.iter().map(|&g| values[g]).sum::<f64>() / picked.len() as f64)
    }

    #[test]
    fn percentile_interpolates_linearly_between_order_statistics() {
        // Position q·(n − 1): 0.25·3 = 0.75 → 1 + 0.75·(2 − 1); 0.5·3 = 1.5 → 2.5.
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.25), 1.75);
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 4.0);
    }

    #[test]
    fn bootstrap_is_reproducible_for_a_seed() {
        let values = [0.1, 0.5, 0.2, 0.9, 0.4, 0.3];
        let run = |seed| bootstrap(values.len(), 500, seed, |p| mean_of(&values, p));
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn bootstrap_draws_as_many_groups_as_there_are() {
        let sizes = RefCell::new(Vec::new());
        bootstrap(7, 50, 1, |picked| {
            sizes.borrow_mut().push(picked.len());
            assert!(picked.iter().all(|&g| g < 7));
            Some(0.0)
        });
        // The estimate's call plus one per resample, each with 7 groups.
        assert_eq!(sizes.borrow().len(), 51);
        assert!(sizes.borrow().iter().all(|&n| n == 7));
    }

    #[test]
    fn bootstrap_resamples_whole_groups() {
        // Group sizes 1 and 3: a resample of two groups holds 2, 4 or 6 rows, never 3 or 5.
        let clusters = Clusters::from_labels(&["b", "a", "a", "a"]);
        assert_eq!(clusters.members(0), [1, 2, 3]);
        let seen = RefCell::new(Vec::new());
        bootstrap(clusters.len(), 200, 9, |picked| {
            seen.borrow_mut().push(clusters.sample(picked).rows.len());
            Some(0.0)
        });
        let seen = seen.into_inner();
        assert!(seen.iter().all(|n| [2, 4, 6].contains(n)), "{seen:?}");
        assert!([2, 6].iter().all(|n| seen.contains(n)));
    }

    #[test]
    fn cluster_sample_keeps_copies_of_a_group_distinct() {
        let clusters = Clusters::from_labels(&[0, 0, 1]);
        let sample = clusters.sample(&[0, 0, 1]);
        assert_eq!(sample.rows, [0, 1, 0, 1, 2]);
        assert_eq!(sample.groups, [0, 0, 1, 1, 2]);
    }

    #[test]
    fn bootstrap_interval_of_two_groups_spans_both_values() {
        // Means of two draws from {0, 1}: 0 (p 1/4), 0.5 (1/2), 1 (1/4); the 2.5th and 97.5th
        // percentiles of 2000 draws are 0 and 1.
        let values = [0.0, 1.0];
        let ci = bootstrap(2, 2000, 5, |p| mean_of(&values, p)).expect("defined");
        assert_eq!(
            (ci.estimate, ci.lower, ci.upper),
            (0.5, Some(0.0), Some(1.0))
        );
        assert_eq!(ci.to_string(), "0.500 [0.000, 1.000]");
        assert_eq!(ci.undefined, 0);
    }

    #[test]
    fn bootstrap_counts_and_skips_undefined_resamples() {
        // Undefined whenever group 0 is missing from the resample: (1 − 1/2)² = 1/4 of the time.
        let ci = bootstrap(2, 4000, 2, |p| p.contains(&0).then_some(1.0)).expect("defined");
        assert_eq!((ci.lower, ci.upper), (Some(1.0), Some(1.0)));
        let share = ci.undefined as f64 / 4000.0;
        assert!((share - 0.25).abs() < 0.03, "{share}");
    }

    #[test]
    fn bootstrap_is_none_when_the_estimate_is_undefined() {
        assert_eq!(bootstrap(3, 10, 0, |_| None), None);
        assert_eq!(bootstrap(3, 10, 0, |_| Some(f64::NAN)), None);
        assert_eq!(bootstrap(0, 10, 0, |_| Some(1.0)), None);
    }

    #[test]
    fn no_resamples_keep_the_estimate_without_an_interval() {
        let values = [1.0, 2.0, 6.0];
        let ci = bootstrap(3, 0, 0, |p| mean_of(&values, p)).expect("the estimate is defined");
        assert_eq!(ci.estimate, 3.0);
        assert_eq!((ci.lower, ci.upper, ci.resamples), (None, None, 0));
    }

    #[test]
    fn one_group_gives_the_estimate_and_no_interval() {
        // Every resample of one group is that group: a zero-width "interval" would say nothing
        // about the uncertainty.
        let ci = bootstrap(1, 500, 0, |p| mean_of(&[0.872], p)).expect("defined");
        assert_eq!(ci.estimate, 0.872);
        assert_eq!((ci.lower, ci.upper, ci.resamples), (None, None, 0));
        assert_eq!(ci.to_string(), "0.872 (no interval)");
    }

    #[test]
    fn a_paired_test_needs_two_groups_and_resamples() {
        let (a, b) = ([3.0], [2.0]);
        assert_eq!(
            paired_bootstrap(1, 500, 0, |p| mean_of(&a, p), |p| mean_of(&b, p)),
            None,
            "one group would give p = 0 for any difference"
        );
        let (a, b) = ([3.0, 1.0], [2.0, 2.0]);
        assert_eq!(
            paired_bootstrap(2, 0, 0, |p| mean_of(&a, p), |p| mean_of(&b, p)),
            None
        );
    }

    #[test]
    fn paired_bootstrap_of_a_uniformly_better_judge_has_p_zero() {
        // A beats B by exactly 1 in every group, so in every resample.
        let a = [3.0, 4.0, 2.0, 5.0];
        let b = [2.0, 3.0, 1.0, 4.0];
        let cmp =
            paired_bootstrap(4, 1000, 7, |p| mean_of(&a, p), |p| mean_of(&b, p)).expect("defined");
        assert_eq!(cmp.difference, 1.0);
        assert_eq!((cmp.lower, cmp.upper), (1.0, 1.0));
        assert_eq!(cmp.p_value, 0.0);
    }

    #[test]
    fn paired_bootstrap_of_identical_judges_has_p_one() {
        let a = [3.0, 4.0, 2.0];
        let cmp =
            paired_bootstrap(3, 200, 7, |p| mean_of(&a, p), |p| mean_of(&a, p)).expect("defined");
        assert_eq!(cmp.difference, 0.0);
        assert_eq!(cmp.p_value, 1.0);
    }

    #[test]
    fn paired_bootstrap_p_is_twice_the_share_of_sign_flips() {
        // Per-group differences +3 and −1; observed mean +1. A resample of two groups has mean
        // difference 3 (p 1/4), 1 (1/2) or −1 (1/4): the sign flips a quarter of the time, so
        // p → 2 · 1/4 = 0.5, and the interval runs from −1 to 3.
        let a = [3.0, 0.0];
        let b = [0.0, 1.0];
        let cmp = paired_bootstrap(2, 20_000, 11, |p| mean_of(&a, p), |p| mean_of(&b, p))
            .expect("defined");
        assert_eq!(cmp.difference, 1.0);
        assert!((cmp.p_value - 0.5).abs() < 0.03, "{}", cmp.p_value);
        assert_eq!((cmp.lower, cmp.upper), (-1.0, 3.0));
    }
}
