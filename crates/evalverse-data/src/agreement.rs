//! Agreement statistics for human ratings: rank correlations, Krippendorff's alpha and
//! leave-one-rater-out consistency. Correlations follow scipy.stats (rankdata 'average',
//! pearsonr, spearmanr, kendalltau variant 'b'); alpha follows Krippendorff (2011),
//! "Computing Krippendorff's Alpha-Reliability", and the PyPI `krippendorff` package.

use serde::Serialize;

/// Distance used by [`krippendorff_alpha`] (Krippendorff 2011, section "difference functions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlphaMetric {
    /// δ²(c, k) = (c − k)².
    Interval,
    /// δ²(c, k) = (Σ_{g=c..k} n_g − (n_c + n_k)/2)², with n_g the pairable count of value g.
    Ordinal,
    /// δ²(c, k) = 0 if c = k, else 1.
    Nominal,
}

/// Result of [`leave_one_rater_out_srcc`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoroSummary {
    /// Spearman correlation of each rater against the mean of the others; `None` where undefined.
    pub per_rater: Vec<Option<f64>>,
    /// Mean of the defined `per_rater` entries; `None` if there are none.
    pub mean: Option<f64>,
}

/// 1-based ranks where each group of tied values gets the mean of the ranks it spans
/// (scipy.stats.rankdata, method='average').
///
/// A tie group occupying sorted positions s+1..=e gets rank (s + 1 + e) / 2.
/// If any value is NaN every rank is NaN, as scipy's default `nan_policy='propagate'`.
pub fn rank_average(x: &[f64]) -> Vec<f64> {
    if x.iter().any(|v| v.is_nan()) {
        return vec![f64::NAN; x.len()];
    }
    let mut order: Vec<usize> = (0..x.len()).collect();
    // total_cmp orders -0.0 just before 0.0; the `==` scan below then still groups them as a tie.
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson product-moment correlation
/// r = Σ(xᵢ − x̄)(yᵢ − ȳ) / √(Σ(xᵢ − x̄)² · Σ(yᵢ − ȳ)²).
///
/// `None` when the lengths differ, n < 2, either input is constant (zero variance), or any
/// value is non-finite. The result is clamped to [−1, 1] as scipy does.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    // Tested on the raw values: a constant input can give a tiny non-zero centred sum of
    // squares when the mean does not round back to the value, and r would be noise.
    if is_constant(x) || is_constant(y) {
        return None;
    }
    let mx = mean(x);
    let my = mean(y);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    r.is_finite().then_some(r.clamp(-1.0, 1.0))
}

/// Spearman rank correlation: Pearson correlation of the average ranks
/// ρ = r(rank(x), rank(y)), which handles ties as scipy.stats.spearmanr does.
///
/// `None` when the lengths differ, n < 2, all values of either input tie, or any value is NaN.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&rank_average(x), &rank_average(y))
}

/// Kendall's tau-b (scipy.stats.kendalltau, variant 'b'):
/// τ_b = (n_c − n_d) / √((n₀ − n₁)(n₀ − n₂)),
/// where n₀ = n(n−1)/2, n_c / n_d are concordant / discordant pairs, n₁ the pairs tied in x
/// and n₂ the pairs tied in y. Computed in O(n log n) (Knight 1966): n_c − n_d is recovered as
/// n₀ − n₁ − n₂ + n₃ − 2·n_d, with n₃ the pairs tied in both, and n_d counted as inversions.
///
/// `None` when the lengths differ, n < 2, either input is constant, or any value is NaN.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    // Adding 0.0 turns -0.0 into 0.0 so that total_cmp agrees with `==` on ties.
    let mut pairs: Vec<(f64, f64)> = x.iter().zip(y).map(|(&a, &b)| (a + 0.0, b + 0.0)).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));

    let x_ties = tied_pairs(&pairs, |a, b| a.0 == b.0);
    let joint_ties = tied_pairs(&pairs, |a, b| a == b);

    // With pairs sorted by (x, y), a pair is discordant exactly when its y values are strictly
    // inverted: pairs tied in x are already in y order, and pairs tied in y are not strict.
    let mut ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let mut scratch = vec![0.0; ys.len()];
    let discordant = sort_counting_inversions(&mut ys, &mut scratch);
    let y_ties = tied_pairs(&ys, |a, b| a == b);

    let n = x.len() as u64;
    let total = n * (n - 1) / 2;
    if x_ties == total || y_ties == total {
        return None;
    }
    let concordant_minus_discordant = total as i128 - x_ties as i128 - y_ties as i128
        + joint_ties as i128
        - 2 * discordant as i128;
    // Two square roots rather than one of the product, as scipy, so large n cannot overflow.
    let tau = concordant_minus_discordant as f64
        / ((total - x_ties) as f64).sqrt()
        / ((total - y_ties) as f64).sqrt();
    Some(tau.clamp(-1.0, 1.0))
}

/// Krippendorff's alpha from the coincidence matrix (Krippendorff 2011):
/// α = 1 − D_o / D_e = 1 − (n − 1) · Σ_{c,k} o_ck δ²(c,k) / Σ_{c,k} n_c n_k δ²(c,k),
/// where o_ck = Σ_u (number of ordered pairs of values (c, k) from different raters in unit u)
/// / (m_u − 1), m_u is the number of values in unit u, n_c = Σ_k o_ck and n = Σ_c n_c.
///
/// `data[unit][rater]` is a score or `None`; NaN is also treated as missing. Rows may have
/// different lengths. Only units with at least two values are pairable and contribute.
/// `None` when no unit is pairable or D_e = 0 (every pairable value is the same).
///
/// Never materialises the V×V coincidence matrix (V can be large for continuous scores):
/// for the interval metric, Σ_{i≠j}(vᵢ − vⱼ)² = 2m Σ(vᵢ − v̄)² within a unit and over the pooled
/// values alike. The ordinal distance equals (R_k − R_c)² where R is the average rank of a value
/// among the n pooled pairable values (R_c = Σ_{g<c} n_g + (n_c + 1)/2), so ordinal alpha is
/// interval alpha on those ranks — the same rank-based distance as the `krippendorff` package.
pub fn krippendorff_alpha(data: &[Vec<Option<f64>>], metric: AlphaMetric) -> Option<f64> {
    let units: Vec<Vec<f64>> = data
        .iter()
        .map(|row| {
            row.iter()
                .filter_map(|&v| present(v))
                // -0.0 becomes 0.0 so that nominal matching and ranking agree with `==`.
                .map(|v| v + 0.0)
                .collect::<Vec<f64>>()
        })
        .filter(|values| values.len() >= 2)
        .collect();
    let n: usize = units.iter().map(Vec::len).sum();
    let first = units.first().and_then(|u| u.first()).copied()?;
    if units.iter().flatten().all(|&v| v == first) {
        return None;
    }

    let (observed, expected) = match metric {
        AlphaMetric::Interval => squared_difference_sums(&units),
        AlphaMetric::Ordinal => squared_difference_sums(&pooled_average_ranks(&units)),
        AlphaMetric::Nominal => mismatch_sums(&units),
    };
    if expected.is_nan() || expected <= 0.0 {
        return None;
    }
    let alpha = 1.0 - (n as f64 - 1.0) * observed / expected;
    alpha.is_finite().then_some(alpha)
}

/// Leave-one-rater-out Spearman correlation (SRCC): for each rater r, over the units where r
/// has a score and at least one other rater does too, ρ_r = spearman(score_r, mean of the other
/// raters' scores). `mean` averages the raters whose ρ_r is defined.
///
/// `data[unit][rater]` as in [`krippendorff_alpha`]; the number of raters is the longest row.
/// ρ_r is `None` for fewer than two such units or when either side is constant.
pub fn leave_one_rater_out_srcc(data: &[Vec<Option<f64>>]) -> LoroSummary {
    let n_raters = data.iter().map(Vec::len).max().unwrap_or(0);
    let per_rater: Vec<Option<f64>> = (0..n_raters)
        .map(|r| {
            let mut own = Vec::new();
            let mut others_mean = Vec::new();
            let mut others = Vec::new();
            for row in data {
                let Some(score) = row.get(r).copied().and_then(present) else {
                    continue;
                };
                others.clear();
                others.extend(
                    row.iter()
                        .enumerate()
                        .filter(|&(j, _)| j != r)
                        .filter_map(|(_, &v)| present(v)),
                );
                if others.is_empty() {
                    continue;
                }
                // Summing in sorted order makes the mean depend only on the multiset of scores,
                // so units rated alike by the others tie exactly instead of differing in the last ulp.
                others.sort_by(f64::total_cmp);
                own.push(score);
                others_mean.push(mean(&others));
            }
            spearman(&own, &others_mean)
        })
        .collect();
    let defined: Vec<f64> = per_rater.iter().flatten().copied().collect();
    let mean = (!defined.is_empty()).then(|| mean(&defined));
    LoroSummary { per_rater, mean }
}

fn present(v: Option<f64>) -> Option<f64> {
    v.filter(|v| !v.is_nan())
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn is_constant(x: &[f64]) -> bool {
    x.iter().all(|&v| v == x[0])
}

/// Number of pairs within runs of adjacent equal elements: Σ t(t − 1)/2 over run lengths t.
/// `sorted` must place equal elements next to each other.
fn tied_pairs<T>(sorted: &[T], equal: impl Fn(&T, &T) -> bool) -> u64 {
    let mut pairs = 0u64;
    let mut run = 1u64;
    for w in sorted.windows(2) {
        if equal(&w[0], &w[1]) {
            run += 1;
        } else {
            pairs += run * (run - 1) / 2;
            run = 1;
        }
    }
    pairs + run * (run - 1) / 2
}

/// Sorts `v` ascending (merge sort) and returns the number of pairs i < j with v[i] > v[j].
/// Equal elements are not inversions. `scratch` must be as long as `v`; no NaN allowed.
fn sort_counting_inversions(v: &mut [f64], scratch: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut inversions = {
        let (left, right) = v.split_at_mut(mid);
        let (s_left, s_right) = scratch.split_at_mut(mid);
        sort_counting_inversions(left, s_left) + sort_counting_inversions(right, s_right)
    };
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        // Taking the left element on equality keeps ties out of the count.
        if v[j] < v[i] {
            inversions += (mid - i) as u64;
            scratch[k] = v[j];
            j += 1;
        } else {
            scratch[k] = v[i];
            i += 1;
        }
        k += 1;
    }
    scratch[k..k + mid - i].copy_from_slice(&v[i..mid]);
    k += mid - i;
    scratch[k..k + n - j].copy_from_slice(&v[j..n]);
    v.copy_from_slice(&scratch[..n]);
    inversions
}

/// (Σ_u Σ_{i≠j∈u} (vᵢ − vⱼ)² / (m_u − 1), Σ_{i≠j over all pooled values} (vᵢ − vⱼ)²),
/// i.e. the observed and expected sums of the interval alpha, each via 2m Σ(v − v̄)².
fn squared_difference_sums(units: &[Vec<f64>]) -> (f64, f64) {
    let observed = units
        .iter()
        .map(|u| {
            let m = u.len() as f64;
            2.0 * m / (m - 1.0) * centred_sum_of_squares(u)
        })
        .sum();
    let pooled: Vec<f64> = units.iter().flatten().copied().collect();
    let expected = 2.0 * pooled.len() as f64 * centred_sum_of_squares(&pooled);
    (observed, expected)
}

fn centred_sum_of_squares(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum()
}

/// Replaces every value by its average rank among all pooled pairable values, keeping the
/// unit structure (see the ordinal note on [`krippendorff_alpha`]).
fn pooled_average_ranks(units: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let pooled: Vec<f64> = units.iter().flatten().copied().collect();
    let ranks = rank_average(&pooled);
    let mut rest = ranks.as_slice();
    units
        .iter()
        .map(|u| {
            let (head, tail) = rest.split_at(u.len());
            rest = tail;
            head.to_vec()
        })
        .collect()
}

/// Observed and expected sums of the nominal alpha: Σ_u (m_u² − Σ_c n_uc²) / (m_u − 1) and
/// n² − Σ_c n_c², the number of ordered pairs with different values within units and overall.
fn mismatch_sums(units: &[Vec<f64>]) -> (f64, f64) {
    let mut pooled = Vec::new();
    let mut observed = 0.0;
    for u in units {
        let mut sorted = u.clone();
        sorted.sort_by(f64::total_cmp);
        let m = sorted.len() as f64;
        observed += (m * m - sum_squared_run_lengths(&sorted)) / (m - 1.0);
        pooled.extend_from_slice(&sorted);
    }
    pooled.sort_by(f64::total_cmp);
    let n = pooled.len() as f64;
    (observed, n * n - sum_squared_run_lengths(&pooled))
}

/// Σ t² over runs of equal adjacent values in a sorted slice (Σ_c n_c² for its value counts).
fn sum_squared_run_lengths(sorted: &[f64]) -> f64 {
    2.0 * tied_pairs(sorted, |a, b| a == b) as f64 + sorted.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn assert_close(actual: Option<f64>, expected: f64) {
        match actual {
            Some(a) => assert!(close(a, expected), "got {a}, expected {expected}"),
            None => panic!("got None, expected {expected}"),
        }
    }

    fn rows(data: &[&[Option<f64>]]) -> Vec<Vec<Option<f64>>> {
        data.iter().map(|r| r.to_vec()).collect()
    }

    /// Three pairable units, three raters. Values pooled over the pairable units:
    /// u1 = {1, 1, 2} (m = 3), u2 = {3, 3} (m = 2), u3 = {1, 2} (m = 2); n = 7,
    /// n_1 = 3, n_2 = 2, n_3 = 2.
    /// Coincidences: u1 adds 2/2 to o11 and 2/2 to o12 and o21; u2 adds 2/1 to o33;
    /// u3 adds 1 to o12 and o21. So o11 = 1, o12 = o21 = 2, o33 = 2 (row sums 3, 2, 2).
    fn three_unit_example() -> Vec<Vec<Option<f64>>> {
        rows(&[
            &[Some(1.0), Some(1.0), Some(2.0)],
            &[Some(3.0), Some(3.0), None],
            &[Some(1.0), Some(2.0), None],
        ])
    }

    /// Krippendorff (2011), the 4 coders × 12 units example with missing values.
    fn krippendorff_2011_example() -> Vec<Vec<Option<f64>>> {
        let coders: [[Option<f64>; 12]; 4] = [
            [1., 2., 3., 3., 2., 1., 4., 1., 2., -1., -1., -1.],
            [1., 2., 3., 3., 2., 2., 4., 1., 2., 5., -1., 3.],
            [-1., 3., 3., 3., 2., 3., 4., 2., 2., 5., 1., -1.],
            [1., 2., 3., 3., 2., 4., 4., 1., 2., 5., 1., -1.],
        ]
        .map(|row| row.map(|v| (v > 0.0).then_some(v)));
        (0..12)
            .map(|u| coders.iter().map(|c| c[u]).collect())
            .collect()
    }

    /// Small xorshift generator so the property test needs no extra dependency.
    fn pseudo_random_levels(seed: u64, n: usize, levels: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % levels) as f64
            })
            .collect()
    }

    fn kendall_tau_b_quadratic(x: &[f64], y: &[f64]) -> f64 {
        let (mut c, mut d, mut tx, mut ty) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                // Not f64::signum, which maps 0.0 to 1.0 and would miscount ties.
                let sign = |d: f64| (d > 0.0) as i32 - (d < 0.0) as i32;
                let s = sign(x[i] - x[j]) * sign(y[i] - y[j]);
                if x[i] == x[j] {
                    tx += 1.0;
                }
                if y[i] == y[j] {
                    ty += 1.0;
                }
                if s > 0 {
                    c += 1.0;
                } else if s < 0 {
                    d += 1.0;
                }
            }
        }
        let n0 = (x.len() * (x.len() - 1) / 2) as f64;
        (c - d) / ((n0 - tx) * (n0 - ty)).sqrt()
    }

    #[test]
    fn rank_average_assigns_one_based_ranks_without_ties() {
        assert_eq!(rank_average(&[30.0, 10.0, 20.0]), vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn rank_average_splits_ties() {
        // scipy.stats.rankdata([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
        let x = [3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5.];
        let expected = vec![4.5, 1.5, 6., 1.5, 8., 11., 3., 10., 8., 4.5, 8.];
        assert_eq!(rank_average(&x), expected);
    }

    #[test]
    fn rank_average_treats_negative_zero_as_tied_with_zero() {
        assert_eq!(rank_average(&[0.0, -1.0, -0.0]), vec![2.5, 1.0, 2.5]);
    }

    #[test]
    fn rank_average_propagates_nan_to_every_rank() {
        assert!(rank_average(&[1.0, f64::NAN, 2.0])
            .iter()
            .all(|r| r.is_nan()));
    }

    #[test]
    fn rank_average_of_empty_input_is_empty() {
        assert!(rank_average(&[]).is_empty());
    }

    #[test]
    fn pearson_of_increasing_linear_relation_is_one() {
        assert_close(pearson(&[1.0, 2.0, 3.0, 4.0], &[3.0, 5.0, 7.0, 9.0]), 1.0);
    }

    #[test]
    fn pearson_of_decreasing_linear_relation_is_minus_one() {
        assert_close(pearson(&[1.0, 2.0, 3.0], &[0.5, 0.0, -0.5]), -1.0);
    }

    #[test]
    fn pearson_matches_hand_computation() {
        // x̄ = ȳ = 2.5; dx = (−1.5, −0.5, 0.5, 1.5), dy = (−0.5, −1.5, 1.5, 0.5);
        // Σdx·dy = 0.75 · 4 = 3, Σdx² = Σdy² = 5, so r = 3 / 5.
        assert_close(pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]), 0.6);
    }

    #[test]
    fn pearson_is_none_for_constant_input() {
        // 0.1 · 3 / 3 does not round back to 0.1, so this also guards the constant check.
        assert_eq!(pearson(&[0.1, 0.1, 0.1], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn pearson_is_none_for_fewer_than_two_points() {
        assert_eq!(pearson(&[1.0], &[2.0]), None);
        assert_eq!(pearson(&[], &[]), None);
    }

    #[test]
    fn pearson_is_none_for_mismatched_lengths() {
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn pearson_is_none_for_non_finite_input() {
        assert_eq!(pearson(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[1.0, f64::INFINITY, 3.0]), None);
    }

    #[test]
    fn spearman_of_monotone_data_is_one() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| v.exp()).collect();
        assert_close(spearman(&x, &y), 1.0);
    }

    #[test]
    fn spearman_uses_average_ranks_for_ties() {
        // ranks x = (1, 2.5, 2.5, 4), ranks y = (1, 4, 2.5, 2.5), both with mean 2.5;
        // centred: (−1.5, 0, 0, 1.5) and (−1.5, 1.5, 0, 0): Σ = 2.25, Σx² = Σy² = 4.5, ρ = 0.5.
        assert_close(spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]), 0.5);
    }

    #[test]
    fn spearman_is_none_when_all_values_tie() {
        assert_eq!(spearman(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn spearman_is_none_for_nan_input() {
        assert_eq!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn kendall_tau_b_corrects_for_ties_in_both_variables() {
        // Pairs of (1,1), (2,3), (2,2), (3,2): concordant {12, 13, 14} = 3, discordant {24} = 1,
        // tied in x {23}, tied in y {34}; n₀ = 6, τ_b = (3 − 1) / √((6 − 1)(6 − 1)) = 0.4.
        assert_close(
            kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]),
            0.4,
        );
    }

    #[test]
    fn kendall_tau_b_of_reversed_order_is_minus_one() {
        assert_close(
            kendall_tau_b(&[1.0, 2.0, 3.0, 4.0], &[8.0, 6.0, 4.0, 2.0]),
            -1.0,
        );
    }

    #[test]
    fn kendall_tau_b_is_none_when_one_side_is_constant() {
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]), None);
    }

    #[test]
    fn kendall_tau_b_is_none_for_nan_or_short_input() {
        assert_eq!(kendall_tau_b(&[1.0, f64::NAN], &[1.0, 2.0]), None);
        assert_eq!(kendall_tau_b(&[1.0], &[1.0]), None);
        assert_eq!(kendall_tau_b(&[1.0, 2.0], &[1.0]), None);
    }

    #[test]
    fn kendall_tau_b_matches_quadratic_pair_count_on_heavily_tied_data() {
        for (seed, levels) in [(7u64, 3u64), (11, 5), (1234, 40)] {
            let x = pseudo_random_levels(seed, 301, levels);
            let y: Vec<f64> = pseudo_random_levels(seed ^ 0x9e37, 301, levels)
                .iter()
                .zip(&x)
                .map(|(noise, signal)| (noise + signal).floor())
                .collect();
            let fast = kendall_tau_b(&x, &y).expect("defined for non-constant data");
            let slow = kendall_tau_b_quadratic(&x, &y);
            assert!(close(fast, slow), "seed {seed}: {fast} vs {slow}");
        }
    }

    #[test]
    fn krippendorff_alpha_nominal_matches_hand_computation() {
        // Σ o_ck δ² over c ≠ k = o12 + o21 = 4; Σ n_c n_k δ² = n² − Σn_c² = 49 − 17 = 32;
        // α = 1 − (7 − 1) · 4 / 32 = 0.25.
        assert_close(
            krippendorff_alpha(&three_unit_example(), AlphaMetric::Nominal),
            0.25,
        );
    }

    #[test]
    fn krippendorff_alpha_interval_matches_hand_computation() {
        // Σ o δ² = o12·1 + o21·1 = 4; Σ n_c n_k δ² = 2(n1n2·1 + n1n3·4 + n2n3·1) = 2(6 + 24 + 4) = 68;
        // α = 1 − 6 · 4 / 68 = 11/17.
        let alpha = krippendorff_alpha(&three_unit_example(), AlphaMetric::Interval);
        assert_close(alpha, 11.0 / 17.0);
    }

    #[test]
    fn krippendorff_alpha_ordinal_matches_hand_computation() {
        // δ²(1,2) = (3 + 2 − 5/2)² = 6.25, δ²(2,3) = (2 + 2 − 4/2)² = 4, δ²(1,3) = (7 − 5/2)² = 20.25;
        // Σ o δ² = 4 · 6.25 = 25; Σ n_c n_k δ² = 2(6·6.25 + 6·20.25 + 4·4) = 350;
        // α = 1 − 6 · 25 / 350 = 4/7.
        let alpha = krippendorff_alpha(&three_unit_example(), AlphaMetric::Ordinal);
        assert_close(alpha, 4.0 / 7.0);
    }

    #[test]
    fn krippendorff_alpha_ignores_units_with_fewer_than_two_values() {
        let mut data = three_unit_example();
        // 9 would stretch the interval scale and shift the ordinal ranks if it were counted.
        data.push(vec![Some(9.0), None, None]);
        data.push(vec![None, None, None]);
        data.push(vec![]);
        assert_close(
            krippendorff_alpha(&data, AlphaMetric::Interval),
            11.0 / 17.0,
        );
        assert_close(krippendorff_alpha(&data, AlphaMetric::Ordinal), 4.0 / 7.0);
        assert_close(krippendorff_alpha(&data, AlphaMetric::Nominal), 0.25);
    }

    #[test]
    fn krippendorff_alpha_treats_nan_as_missing() {
        let mut data = three_unit_example();
        data[1][2] = Some(f64::NAN);
        assert_close(
            krippendorff_alpha(&data, AlphaMetric::Interval),
            11.0 / 17.0,
        );
    }

    #[test]
    fn krippendorff_alpha_reproduces_krippendorff_2011_published_values() {
        // Published to three decimals: nominal .743, ordinal .815, interval .849.
        let data = krippendorff_2011_example();
        let rounded = |m| krippendorff_alpha(&data, m).map(|a| (a * 1000.0).round() / 1000.0);
        assert_eq!(rounded(AlphaMetric::Nominal), Some(0.743));
        assert_eq!(rounded(AlphaMetric::Ordinal), Some(0.815));
        assert_eq!(rounded(AlphaMetric::Interval), Some(0.849));
    }

    #[test]
    fn krippendorff_alpha_of_perfect_agreement_is_one() {
        let data = rows(&[
            &[Some(1.0), Some(1.0)],
            &[Some(4.0), Some(4.0), Some(4.0)],
            &[Some(2.0), None, Some(2.0)],
        ]);
        for metric in [
            AlphaMetric::Interval,
            AlphaMetric::Ordinal,
            AlphaMetric::Nominal,
        ] {
            assert_close(krippendorff_alpha(&data, metric), 1.0);
        }
    }

    #[test]
    fn ordinal_alpha_is_invariant_to_monotone_rescaling_but_interval_is_not() {
        let data = three_unit_example();
        let stretched: Vec<Vec<Option<f64>>> = data
            .iter()
            .map(|row| row.iter().map(|v| v.map(|s| s.powi(3))).collect())
            .collect();
        let ordinal = krippendorff_alpha(&data, AlphaMetric::Ordinal);
        assert_close(
            krippendorff_alpha(&stretched, AlphaMetric::Ordinal),
            4.0 / 7.0,
        );
        assert_close(ordinal, 4.0 / 7.0);
        let interval = krippendorff_alpha(&stretched, AlphaMetric::Interval);
        assert!(interval.is_some_and(|a| !close(a, 11.0 / 17.0)));
    }

    #[test]
    fn krippendorff_alpha_is_none_without_pairable_values() {
        let data = rows(&[&[Some(1.0), None], &[None, Some(2.0)]]);
        assert_eq!(krippendorff_alpha(&data, AlphaMetric::Interval), None);
        assert_eq!(krippendorff_alpha(&[], AlphaMetric::Nominal), None);
    }

    #[test]
    fn krippendorff_alpha_is_none_when_every_pairable_value_is_identical() {
        let data = rows(&[
            &[Some(0.1), Some(0.1), Some(0.1)],
            &[Some(0.1), Some(0.1)],
            &[Some(5.0)],
        ]);
        for metric in [
            AlphaMetric::Interval,
            AlphaMetric::Ordinal,
            AlphaMetric::Nominal,
        ] {
            assert_eq!(krippendorff_alpha(&data, metric), None);
        }
    }

    #[test]
    fn leave_one_rater_out_matches_hand_computation() {
        // Rater 0: units 1–3 (unit 4 has no other score): own (1, 2, 3), others' means
        //   (1.5, 3, 2) → ranks (1, 2, 3) vs (1, 3, 2): ρ = 1 − 6·2 / (3·8) = 0.5.
        // Rater 1: own (1, 3, 2), others' means (1.5, 2.5, 3) → ranks (1, 3, 2) vs (1, 2, 3): 0.5.
        // Rater 2: units 1–2 only: own (2, 3), others' means (1, 2.5) → 1.
        // Rater 3 scores only unit 5, where nobody else does: undefined, left out of the mean.
        let data = rows(&[
            &[Some(1.0), Some(1.0), Some(2.0)],
            &[Some(2.0), Some(3.0), Some(3.0)],
            &[Some(3.0), Some(2.0), None],
            &[Some(4.0), None, None],
            &[None, None, None, Some(5.0)],
        ]);
        let summary = leave_one_rater_out_srcc(&data);
        assert_eq!(summary.per_rater.len(), 4);
        assert_close(summary.per_rater[0], 0.5);
        assert_close(summary.per_rater[1], 0.5);
        assert_close(summary.per_rater[2], 1.0);
        assert_eq!(summary.per_rater[3], None);
        assert_close(summary.mean, 2.0 / 3.0);
    }

    #[test]
    fn leave_one_rater_out_of_empty_data_has_no_raters_and_no_mean() {
        let summary = leave_one_rater_out_srcc(&[]);
        assert!(summary.per_rater.is_empty());
        assert_eq!(summary.mean, None);
    }

    #[test]
    fn loro_summary_serializes_undefined_raters_as_null() {
        let summary = LoroSummary {
            per_rater: vec![Some(0.5), None],
            mean: Some(0.5),
        };
        let json = serde_json::to_string(&summary).expect("plain data serializes");
        assert_eq!(json, r#"{"per_rater":[0.5,null],"mean":0.5}"#);
    }

    #[test]
    fn alpha_metric_serializes_in_snake_case() {
        let json = serde_json::to_string(&AlphaMetric::Ordinal).expect("unit variant serializes");
        assert_eq!(json, r#""ordinal""#);
    }
}
