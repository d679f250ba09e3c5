//! Correlations with two-sided p-values computed as scipy.stats 1.17 does: `pearsonr` (exact
//! beta distribution of r), `spearmanr` (Student t on ρ with n − 2 dof) and `kendalltau`
//! (tau-b, method='auto': exact null distribution for small untied samples, else the normal
//! approximation with the tie-corrected variance). The statistics themselves come from
//! `evalverse_data::agreement`; this file adds the null distributions they are tested against.
//! Special functions follow Numerical Recipes (3rd ed.) §6.1–6.4: log-gamma, the regularized
//! incomplete beta and gamma functions by series and modified-Lentz continued fractions.

use evalverse_data::agreement::{kendall_tau_b, pearson, spearman};
use serde::Serialize;

/// A correlation coefficient and its two-sided p-value under independence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Correlation {
    pub statistic: f64,
    pub p_value: f64,
}

/// Pearson's r with scipy.stats.pearsonr's two-sided p-value.
///
/// Under independence of normal data r follows a beta distribution on (−1, 1) with
/// a = b = n/2 − 1, so p = 2 · P(R ≥ |r|) = 2 · I_{(1−|r|)/2}(a, a) (scipy: `2 * betaincc(a, a,
/// (|r| + 1)/2)`, which is the same number; the argument is formed the same way so that
/// rounding matches). This equals the t-test p with t = r√((n−2)/(1−r²)) and n − 2 dof.
/// For n = 2, r is ±1 and p = 1, as scipy returns.
///
/// `None` where [`pearson`] is undefined (lengths differ, n < 2, constant or non-finite input).
pub fn pearsonr(x: &[f64], y: &[f64]) -> Option<Correlation> {
    let r = pearson(x, y)?;
    let n = x.len() as f64;
    if x.len() == 2 {
        return Some(Correlation {
            statistic: r.round(),
            p_value: 1.0,
        });
    }
    let a = n / 2.0 - 1.0;
    let upper = (r.abs() + 1.0) / 2.0;
    // 1 − upper is exact (Sterbenz): upper lies in [1/2, 1].
    let p = 2.0 * regularized_incomplete_beta(a, a, 1.0 - upper);
    Some(Correlation {
        statistic: r,
        p_value: p.min(1.0),
    })
}

/// Spearman's ρ with scipy.stats.spearmanr's two-sided p-value:
/// t = ρ √((n − 2) / ((ρ + 1)(1 − ρ))), p = 2 · P(T_{n−2} ≥ |t|) (ρ = ±1 gives t = ±∞, p = 0).
///
/// `None` where [`spearman`] is undefined, and for n < 3: with zero degrees of freedom the
/// p-value is undefined (scipy returns NaN).
pub fn spearmanr(x: &[f64], y: &[f64]) -> Option<Correlation> {
    let rho = spearman(x, y)?;
    if x.len() < 3 {
        return None;
    }
    let dof = (x.len() - 2) as f64;
    // The max(0) mirrors scipy's clip of rounding-negative values before the square root.
    let t = rho * (dof / ((rho + 1.0) * (1.0 - rho))).max(0.0).sqrt();
    Some(Correlation {
        statistic: rho,
        p_value: student_t_two_sided_p(t, dof),
    })
}

/// Kendall's tau-b with scipy.stats.kendalltau's two-sided p-value (method='auto').
///
/// Let S = n_c − n_d. Without ties in either input and with n ≤ 33, or when min(n_d, n₀ − n_d)
/// ≤ 1, the p-value is exact ([`kendall_exact_p`], Kendall 1970). Otherwise S is taken as normal
/// with mean 0 and the tie-corrected variance (Kendall 1970, eq. 4.4; scipy `_stats_py.py`):
/// Var S = (v₀ − v_x − v_y)/18 + 2·T_x·T_y / (n(n−1)) + U_x·U_y / (9·n(n−1)(n−2)), where
/// v₀ = n(n−1)(2n+5), v_x = Σ t(t−1)(2t+5), T_x = Σ t(t−1)/2 and U_x = Σ t(t−1)(t−2) over the
/// sizes t of the groups of tied x values (likewise y), and p = 2·(1 − Φ(|S| / √Var S)).
///
/// S is recovered from τ_b = S / √((n₀ − T_x)(n₀ − T_y)) by rounding to the nearest integer,
/// exact while the rounding error of τ_b times that denominator stays below 1/2 (n ≲ 10⁷).
///
/// `None` where [`kendall_tau_b`] is undefined (lengths differ, n < 2, constant or NaN input).
pub fn kendalltau(x: &[f64], y: &[f64]) -> Option<Correlation> {
    let tau = kendall_tau_b(x, y)?;
    let n = x.len() as u64;
    let total = n * (n - 1) / 2;
    let tx = TieSums::of(x);
    let ty = TieSums::of(y);
    let s = (tau * ((total - tx.pairs) as f64).sqrt() * ((total - ty.pairs) as f64).sqrt()).round();

    let p_value = if tx.pairs == 0 && ty.pairs == 0 {
        // Without ties n_c + n_d = n₀, so n_d = (n₀ − S) / 2.
        let discordant = ((total as f64 - s) / 2.0).round() as u64;
        if n <= 33 || discordant.min(total - discordant) <= 1 {
            kendall_exact_p(n, total - discordant)
        } else {
            kendall_normal_p(s, n, &tx, &ty)
        }
    } else {
        kendall_normal_p(s, n, &tx, &ty)
    };
    Some(Correlation {
        statistic: tau,
        p_value,
    })
}

/// Sums over the groups of tied values of one input, sizes t: Σ t(t−1)/2, Σ t(t−1)(t−2),
/// Σ t(t−1)(2t+5) (scipy's `count_rank_tie`).
struct TieSums {
    pairs: u64,
    cubic: f64,
    variance: f64,
}

impl TieSums {
    fn of(values: &[f64]) -> TieSums {
        // + 0.0 folds −0.0 into 0.0 so the sort groups exactly the values `==` calls equal.
        let mut sorted: Vec<f64> = values.iter().map(|v| v + 0.0).collect();
        sorted.sort_by(f64::total_cmp);
        let mut sums = TieSums {
            pairs: 0,
            cubic: 0.0,
            variance: 0.0,
        };
        let mut start = 0;
        while start < sorted.len() {
            let mut end = start + 1;
            while end < sorted.len() && sorted[end] == sorted[start] {
                end += 1;
            }
            let t = (end - start) as u64;
            if t > 1 {
                sums.pairs += t * (t - 1) / 2;
                let t = t as f64;
                sums.cubic += t * (t - 1.0) * (t - 2.0);
                sums.variance += t * (t - 1.0) * (2.0 * t + 5.0);
            }
            start = end;
        }
        sums
    }
}

fn kendall_normal_p(s: f64, n: u64, tx: &TieSums, ty: &TieSums) -> f64 {
    let n = n as f64;
    let m = n * (n - 1.0);
    let var = (m * (2.0 * n + 5.0) - tx.variance - ty.variance) / 18.0
        + 2.0 * tx.pairs as f64 * ty.pairs as f64 / m
        + tx.cubic * ty.cubic / (9.0 * m * (n - 2.0));
    normal_two_sided_p(s / var.sqrt())
}

/// Exact two-sided p-value of Kendall's tau for n untied pairs of which `concordant` are
/// concordant (scipy `mstats_basic._kendall_p_exact`, Kendall 1970 "Rank Correlation Methods",
/// §5.6): with c = min(n_c, n₀ − n_c), p = 2 · #{permutations with ≤ c inversions} / n!, the
/// counts from the recurrence N(n, k) = Σ_{j=0}^{min(k, n−1)} N(n−1, k−j) as a running sum.
/// The distribution is symmetric, so c = n₀/2 gives p = 1. Clamped to [0, 1].
pub fn kendall_exact_p(n: u64, concordant: u64) -> f64 {
    let total = n * n.saturating_sub(1) / 2;
    let c = concordant.min(total.saturating_sub(concordant)) as usize;
    let p = if n <= 2 {
        1.0
    } else if c == 0 {
        if n < 171 {
            2.0 / factorial(n)
        } else {
            0.0
        }
    } else if c == 1 {
        if n < 172 {
            2.0 / factorial(n - 1)
        } else {
            0.0
        }
    } else if 4 * c as u64 == n * (n - 1) {
        1.0
    } else {
        // counts[k] = number of permutations of j elements with k inversions, k ≤ c. Beyond
        // n = 170, n! overflows f64, so each step divides by j and the counts are probabilities.
        let normalise = n >= 171;
        let mut counts = vec![0.0f64; c + 1];
        counts[0] = 1.0;
        counts[1] = 1.0;
        for j in 3..=n as usize {
            let mut running = 0.0;
            for v in counts.iter_mut() {
                running += *v;
                *v = if normalise {
                    running / j as f64
                } else {
                    running
                };
            }
            if j <= c {
                // Subtract the cumulative sum shifted by j (the terms with more than j − 1 new
                // inversions); `previous` holds it before the in-place update, as numpy does.
                let previous = counts.clone();
                for k in j..=c {
                    counts[k] -= previous[k - j];
                }
            }
        }
        let sum: f64 = counts.iter().sum();
        if normalise {
            sum
        } else {
            2.0 * sum / factorial(n)
        }
    };
    p.clamp(0.0, 1.0)
}

fn factorial(n: u64) -> f64 {
    (2..=n).map(|k| k as f64).product()
}

/// Two-sided p-value of a Student t statistic with `dof` degrees of freedom:
/// 2 · P(T ≥ |t|) = I_{dof/(dof+t²)}(dof/2, 1/2) (Abramowitz & Stegun 26.7.1, 26.5.27).
/// t = ±∞ gives 0, t = 0 gives 1.
pub fn student_t_two_sided_p(t: f64, dof: f64) -> f64 {
    if t.is_nan() || dof.is_nan() || dof <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    regularized_incomplete_beta(dof / 2.0, 0.5, dof / (dof + t * t)).min(1.0)
}

/// Two-sided p-value of a standard normal statistic: 2 · (1 − Φ(|z|)) = erfc(|z|/√2)
/// = Q(1/2, z²/2), the regularized upper incomplete gamma function (A&S 7.1.2, 6.5.17).
pub fn normal_two_sided_p(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z.is_infinite() {
        return 0.0;
    }
    regularized_upper_gamma(0.5, z * z / 2.0).min(1.0)
}

/// ln Γ(x) for x > 0: the Stirling series to the x⁻¹¹ term at x ≥ 10 (error below 1e-16),
/// reached from smaller x by Γ(x) = Γ(x + k) / (x(x+1)…(x+k−1)).
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    let mut z = x;
    let mut shift = 1.0;
    while z < 10.0 {
        shift *= z;
        z += 1.0;
    }
    let w = 1.0 / (z * z);
    // B_{2k} / (2k(2k−1) z^{2k−1}) for k = 1..6.
    let series = (1.0 / 12.0
        + w * (-1.0 / 360.0
            + w * (1.0 / 1260.0
                + w * (-1.0 / 1680.0 + w * (1.0 / 1188.0 + w * (-691.0 / 360360.0))))))
        / z;
    let half_ln_two_pi = 0.918_938_533_204_672_8;
    (z - 0.5) * z.ln() - z + half_ln_two_pi + series - shift.ln()
}

/// Iterations allowed to the continued fractions; they converge in O(√max(a, b)) steps
/// (Numerical Recipes §6.4), far fewer than this for any sample size used here.
const MAX_ITERATIONS: usize = 100_000;
/// Relative change at which a series or continued fraction has converged.
const CONVERGED: f64 = 1e-16;
/// Lentz's guard against division by zero.
const TINY: f64 = 1e-300;

/// The regularized incomplete beta function I_x(a, b) = B(x; a, b) / B(a, b), a, b > 0.
///
/// I_x = x^a (1−x)^b / (a B(a, b)) · CF(a, b, x), with the continued fraction of NR eq. 6.4.5
/// evaluated by the modified Lentz method; for x > (a+1)/(a+b+2) it is evaluated as
/// 1 − I_{1−x}(b, a), where the fraction converges fast. Small results keep their relative
/// precision, which tiny p-values need. NaN for invalid arguments or no convergence.
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if a.is_nan() || b.is_nan() || x.is_nan() || a <= 0.0 || b <= 0.0 || !(0.0..=1.0).contains(&x) {
        return f64::NAN;
    }
    if x == 0.0 {
        return 0.0;
    }
    if x == 1.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * (-x).ln_1p() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// NR eq. 6.4.5: 1/(1+ d₁/(1+ d₂/(1+ …))) with d_{2m+1} = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1))
/// and d_{2m} = m(b−m)x / ((a+2m−1)(a+2m)).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=MAX_ITERATIONS {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() <= CONVERGED * 4.0 {
            return h;
        }
    }
    f64::NAN
}

/// The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), a > 0, x ≥ 0:
/// 1 − P(a, x) from the series NR eq. 6.2.5 for x < a + 1, else the continued fraction
/// NR eq. 6.2.7 (modified Lentz), which keeps small Q relatively precise.
pub fn regularized_upper_gamma(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let ln_front = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut ap = a;
        for _ in 0..MAX_ITERATIONS {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * CONVERGED {
                return 1.0 - sum * ln_front.exp();
            }
        }
        f64::NAN
    } else {
        let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..=MAX_ITERATIONS {
            let i = i as f64;
            let an = -i * (i - a);
            b += 2.0;
            d = 1.0 / guard(an * d + b);
            c = guard(b + an / c);
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() <= CONVERGED * 4.0 {
                return ln_front.exp() * h;
            }
        }
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_rel(actual: f64, expected: f64, tol: f64) {
        let rel = ((actual - expected) / expected).abs();
        assert!(rel < tol, "got {actual}, expected {expected}, rel {rel:e}");
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        // Γ(n) = (n−1)!; Γ(1/2) = √π; Γ(7/2) = 15√π/8.
        assert_rel(ln_gamma(5.0), 24f64.ln(), 1e-15);
        assert_rel(
            ln_gamma(30.0),
            (1..30).map(|k| (k as f64).ln()).sum(),
            1e-15,
        );
        assert_rel(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-14);
        assert_rel(
            ln_gamma(3.5),
            (15.0 * std::f64::consts::PI.sqrt() / 8.0).ln(),
            1e-14,
        );
    }

    #[test]
    fn incomplete_beta_with_unit_parameters_is_the_power_function() {
        // I_x(a, 1) = x^a and I_x(1, b) = 1 − (1 − x)^b.
        assert_rel(regularized_incomplete_beta(3.0, 1.0, 0.2), 0.008, 1e-14);
        assert_rel(
            regularized_incomplete_beta(1.0, 4.0, 0.3),
            1.0 - 0.7f64.powi(4),
            1e-14,
        );
    }

    #[test]
    fn incomplete_beta_is_one_half_at_the_centre_of_a_symmetric_beta() {
        for a in [0.5, 3.0, 99.0] {
            assert_rel(regularized_incomplete_beta(a, a, 0.5), 0.5, 1e-13);
        }
    }

    #[test]
    fn t_with_one_degree_of_freedom_is_cauchy() {
        // Cauchy: P(|T| ≥ t) = 1 − 2·atan(t)/π; at t = 1 that is 1/2.
        assert_rel(student_t_two_sided_p(1.0, 1.0), 0.5, 1e-14);
        let t = 3.0f64;
        let expected = 1.0 - 2.0 * t.atan() / std::f64::consts::PI;
        assert_rel(student_t_two_sided_p(-t, 1.0), expected, 1e-13);
    }

    #[test]
    fn t_with_two_degrees_of_freedom_has_closed_form() {
        // dof = 2: P(|T| ≥ t) = 1 − t / √(2 + t²).
        let t = 2.5f64;
        assert_rel(
            student_t_two_sided_p(t, 2.0),
            1.0 - t / (2.0 + t * t).sqrt(),
            1e-13,
        );
    }

    #[test]
    fn normal_two_sided_p_matches_tabulated_quantiles() {
        // Φ⁻¹(0.975) = 1.959963984540054; Φ⁻¹(0.995) = 2.5758293035489004.
        assert_rel(normal_two_sided_p(1.959963984540054), 0.05, 1e-12);
        assert_rel(normal_two_sided_p(-2.5758293035489004), 0.01, 1e-12);
        assert_eq!(normal_two_sided_p(0.0), 1.0);
    }

    #[test]
    fn normal_two_sided_p_keeps_relative_precision_in_the_far_tail() {
        // scipy.special.erfc(10/√2) = 1.5239706048321166e-23.
        assert_rel(normal_two_sided_p(10.0), 1.523_970_604_832_116_6e-23, 1e-12);
    }

    #[test]
    fn kendall_exact_p_of_a_perfect_ranking_of_four_is_two_over_four_factorial() {
        // One permutation of 24 has 0 inversions: one-sided 1/24, two-sided 1/12.
        assert_rel(kendall_exact_p(4, 6), 1.0 / 12.0, 1e-15);
        assert_rel(kendall_exact_p(4, 0), 1.0 / 12.0, 1e-15);
    }

    #[test]
    fn kendall_exact_p_counts_permutations_by_inversions() {
        // n = 5: inversion counts N(5, k) for k = 0..2 are 1, 4, 9; with 2 discordant pairs,
        // p = 2 · (1 + 4 + 9) / 120 = 28/120.
        assert_rel(kendall_exact_p(5, 8), 28.0 / 120.0, 1e-15);
    }

    #[test]
    fn kendall_exact_p_is_one_at_the_median() {
        // n = 4, n₀ = 6: three concordant pairs is the centre of the symmetric distribution.
        assert_eq!(kendall_exact_p(4, 3), 1.0);
    }

    #[test]
    fn pearsonr_of_two_points_has_p_one() {
        let c = pearsonr(&[1.0, 2.0], &[3.0, 1.0]).expect("defined");
        assert_eq!(
            c,
            Correlation {
                statistic: -1.0,
                p_value: 1.0
            }
        );
    }

    #[test]
    fn pearsonr_p_equals_t_test_p() {
        // r = 0.6 on n = 4 (see agreement.rs): t = 0.6·√(2/0.64) = 1.0606601717798212, dof 2,
        // p = 1 − t/√(2 + t²) = 1 − 1.0606601717798212/√3.125 = 0.4.
        let c = pearsonr(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]).expect("defined");
        assert_rel(c.statistic, 0.6, 1e-15);
        assert_rel(c.p_value, 0.4, 1e-13);
    }

    #[test]
    fn spearmanr_of_a_perfect_monotone_relation_has_vanishing_p() {
        // agreement::pearson of equal ranks is 1 − 2⁻⁵² (scipy's corrcoef rounds to 1.0), and
        // the p-value of that is 2⁻⁵²; exactly ρ = 1 gives t = ∞ and p = 0.
        let c = spearmanr(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 16.0]).expect("defined");
        assert!(1.0 - c.statistic < 1e-15 && c.p_value < 1e-15, "{c:?}");
        assert_eq!(student_t_two_sided_p(f64::INFINITY, 2.0), 0.0);
    }

    #[test]
    fn spearmanr_is_none_without_degrees_of_freedom() {
        assert_eq!(spearmanr(&[1.0, 2.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn kendalltau_without_ties_uses_the_exact_distribution() {
        // (1,1), (2,3), (3,2), (4,4), (5,5): one discordant pair of ten, τ = 0.8,
        // p = 2 · (1 + 4) / 120 = 1/12 (c = 1 branch: 2 / 4!).
        let c =
            kendalltau(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 3.0, 2.0, 4.0, 5.0]).expect("defined");
        assert_rel(c.statistic, 0.8, 1e-15);
        assert_rel(c.p_value, 1.0 / 12.0, 1e-15);
    }

    #[test]
    fn kendalltau_with_ties_uses_the_tie_corrected_normal_approximation() {
        // (1,1), (2,3), (2,2), (3,2): S = 2 (see agreement.rs). Tie groups: x {2,2}, y {2,2}.
        // n(n−1) = 12; Var S = (12·13 − 18 − 18)/18 + 2·1·1/12 + 0 = 120/18 + 1/6 = 41/6;
        // z = 2/√(41/6) = 0.76509..., p = erfc(z/√2).
        let c = kendalltau(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]).expect("defined");
        assert_rel(c.statistic, 0.4, 1e-15);
        let z = 2.0 / (41.0f64 / 6.0).sqrt();
        assert_rel(c.p_value, normal_two_sided_p(z), 1e-15);
        // scipy.stats.kendalltau on the same data: 0.44421673013860674.
        assert_rel(c.p_value, 0.444_216_730_138_606_74, 1e-12);
    }

    #[test]
    fn correlations_are_none_for_constant_input() {
        let x = [1.0, 2.0, 3.0];
        let k = [4.0, 4.0, 4.0];
        assert_eq!(pearsonr(&x, &k), None);
        assert_eq!(spearmanr(&x, &k), None);
        assert_eq!(kendalltau(&x, &k), None);
    }
}
