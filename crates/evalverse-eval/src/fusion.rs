//! Learned fusion of the judge's soft score with perception-operator measurements (EvalVerse §5:
//! "a small MLP fitted to expert scores fuses operator evidence with the VLM's scores").
//! Per dimension, a regressor from [VLM soft score, operator measurements] to the mean expert
//! score is fitted on the train split and compared on the held-out split with the VLM alone and
//! the operators alone, each figure with a prompt-group bootstrap interval.
//!
//! Two regressors, both pure Rust and deterministic: ridge regression (the baseline; closed form
//! on standardised features, intercept unpenalised; Hoerl & Kennard 1970) and a one-hidden-layer
//! tanh MLP trained full-batch with Adam (Kingma & Ba 2015) and L2 weight decay. A missing
//! measurement (NaN, e.g. no sync offset on a silent clip) is imputed with the train mean.

use evalverse_data::agreement::{pearson, spearman};
use evalverse_data::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{bootstrap, Clusters, ConfidenceInterval};
use crate::error::MetricError;

/// Per-column standardisation learnt on the train rows; NaN inputs become the mean (0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardiser {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardiser {
    pub fn fit(x: &[Vec<f64>]) -> Standardiser {
        let d = x.first().map_or(0, Vec::len);
        let mut mean = vec![0.0; d];
        let mut std = vec![1.0; d];
        for j in 0..d {
            let col: Vec<f64> = x.iter().map(|r| r[j]).filter(|v| v.is_finite()).collect();
            if col.is_empty() {
                continue;
            }
            let m = col.iter().sum::<f64>() / col.len() as f64;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / col.len() as f64;
            mean[j] = m;
            // A constant column carries nothing; keep it at 0 instead of dividing by 0.
            std[j] = if v > 1e-24 { v.sqrt() } else { 1.0 };
        }
        Standardiser { mean, std }
    }

    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .enumerate()
            .map(|(j, &v)| {
                if v.is_finite() {
                    (v - self.mean[j]) / self.std[j]
                } else {
                    0.0
                }
            })
            .collect()
    }
}

fn check(x: &[Vec<f64>], y: &[f64], what: &'static str) -> Result<usize, MetricError> {
    if x.is_empty() {
        return Err(MetricError::Empty { what });
    }
    if x.len() != y.len() {
        return Err(MetricError::LengthMismatch {
            what,
            left: x.len(),
            right: y.len(),
        });
    }
    let d = x[0].len();
    for (i, r) in x.iter().enumerate() {
        if r.len() != d {
            return Err(MetricError::Invalid {
                what,
                index: i,
                reason: format!("{} features, expected {d}", r.len()),
            });
        }
        if r.iter().any(|v| v.is_infinite()) {
            return Err(MetricError::Invalid {
                what,
                index: i,
                reason: "infinite feature".into(),
            });
        }
    }
    if let Some((i, &v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricError::NonFinite {
            what,
            index: i,
            value: v,
        });
    }
    Ok(d)
}

/// Solve the symmetric positive-definite system `a w = b` by Cholesky (a is d x d, row major).
fn cholesky_solve(mut a: Vec<f64>, mut b: Vec<f64>, d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        if s <= 0.0 {
            return None;
        }
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut t = a[i * d + j];
            for k in 0..j {
                t -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = t / l;
        }
    }
    for i in 0..d {
        let mut t = b[i];
        for k in 0..i {
            t -= a[i * d + k] * b[k];
        }
        b[i] = t / a[i * d + i];
    }
    for i in (0..d).rev() {
        let mut t = b[i];
        for k in i + 1..d {
            t -= a[k * d + i] * b[k];
        }
        b[i] = t / a[i * d + i];
    }
    Some(b)
}

/// Ridge regression on standardised features: w = (Z'Z + lambda I)^-1 Z'(y - mean y).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    pub scaler: Standardiser,
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub lambda: f64,
}

impl Ridge {
    pub fn fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Result<Ridge, MetricError> {
        let d = check(x, y, "ridge fit")?;
        if lambda.is_nan() || lambda < 0.0 {
            return Err(MetricError::Invalid {
                what: "ridge fit",
                index: 0,
                reason: format!("lambda must be >= 0, got {lambda}"),
            });
        }
        let scaler = Standardiser::fit(x);
        let z: Vec<Vec<f64>> = x.iter().map(|r| scaler.apply(r)).collect();
        let ym = y.iter().sum::<f64>() / y.len() as f64;
        let mut a = vec![0.0; d * d];
        let mut b = vec![0.0; d];
        for (r, &t) in z.iter().zip(y) {
            for i in 0..d {
                b[i] += r[i] * (t - ym);
                for j in 0..d {
                    a[i * d + j] += r[i] * r[j];
                }
            }
        }
        // A tiny jitter keeps constant (all-zero) columns solvable at lambda = 0.
        for i in 0..d {
            a[i * d + i] += lambda + 1e-9;
        }
        let weights = cholesky_solve(a, b, d).ok_or(MetricError::Invalid {
            what: "ridge fit",
            index: 0,
            reason: "normal equations are not positive definite".into(),
        })?;
        Ok(Ridge {
            scaler,
            weights,
            intercept: ym,
            lambda,
        })
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        let z = self.scaler.apply(row);
        self.intercept + z.iter().zip(&self.weights).map(|(a, b)| a * b).sum::<f64>()
    }
}

/// Training settings of the MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Hidden units (default 16).
    pub hidden: usize,
    /// Full-batch Adam steps (default 2000).
    pub steps: usize,
    /// Adam learning rate (default 0.01).
    pub lr: f64,
    /// L2 penalty on the weights (not biases), added to the mean squared error (default 1e-3).
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: 16,
            steps: 2000,
            lr: 0.01,
            weight_decay: 1e-3,
            seed: 0,
        }
    }
}

/// y = b2 + w2 . tanh(W1 z + b1) on standardised features z, target standardised too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub scaler: Standardiser,
    /// [hidden][inputs]
    pub w1: Vec<Vec<f64>>,
    pub b1: Vec<f64>,
    pub w2: Vec<f64>,
    pub b2: f64,
    pub y_mean: f64,
    pub y_std: f64,
}

impl Mlp {
    // Indexing parallel weight, gradient and moment arrays reads clearer than zipped iterators.
    #[allow(clippy::needless_range_loop)]
    pub fn fit(x: &[Vec<f64>], y: &[f64], cfg: &MlpConfig) -> Result<Mlp, MetricError> {
        let d = check(x, y, "mlp fit")?;
        let h = cfg.hidden.max(1);
        let scaler = Standardiser::fit(x);
        let z: Vec<Vec<f64>> = x.iter().map(|r| scaler.apply(r)).collect();
        let n = y.len() as f64;
        let y_mean = y.iter().sum::<f64>() / n;
        let y_std = (y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-12);
        let t: Vec<f64> = y.iter().map(|v| (v - y_mean) / y_std).collect();
        let mut rng = Rng::new(cfg.seed);
        // Glorot-uniform initial weights.
        let a1 = (6.0 / (d + h) as f64).sqrt();
        let a2 = (6.0 / (h + 1) as f64).sqrt();
        let mut p = Params {
            w1: (0..h)
                .map(|_| (0..d).map(|_| rng.range(-a1, a1)).collect())
                .collect(),
            b1: vec![0.0; h],
            w2: (0..h).map(|_| rng.range(-a2, a2)).collect(),
            b2: 0.0,
        };
        let mut m = p.zeros();
        let mut v = p.zeros();
        let (beta1, beta2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
        for step in 1..=cfg.steps {
            let mut g = p.zeros();
            for (zi, &ti) in z.iter().zip(&t) {
                let hid: Vec<f64> = (0..h)
                    .map(|k| (p.b1[k] + dot(&p.w1[k], zi)).tanh())
                    .collect();
                let out = p.b2 + dot(&p.w2, &hid);
                let e = 2.0 * (out - ti) / n;
                g.b2 += e;
                for k in 0..h {
                    g.w2[k] += e * hid[k];
                    let dh = e * p.w2[k] * (1.0 - hid[k] * hid[k]);
                    g.b1[k] += dh;
                    for j in 0..d {
                        g.w1[k][j] += dh * zi[j];
                    }
                }
            }
            for k in 0..h {
                g.w2[k] += 2.0 * cfg.weight_decay * p.w2[k];
                for j in 0..d {
                    g.w1[k][j] += 2.0 * cfg.weight_decay * p.w1[k][j];
                }
            }
            let (c1, c2) = (1.0 - beta1.powi(step as i32), 1.0 - beta2.powi(step as i32));
            let upd = |p: &mut f64, m: &mut f64, v: &mut f64, g: f64| {
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                *p -= cfg.lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            };
            upd(&mut p.b2, &mut m.b2, &mut v.b2, g.b2);
            for k in 0..h {
                upd(&mut p.w2[k], &mut m.w2[k], &mut v.w2[k], g.w2[k]);
                upd(&mut p.b1[k], &mut m.b1[k], &mut v.b1[k], g.b1[k]);
                for j in 0..d {
                    upd(
                        &mut p.w1[k][j],
                        &mut m.w1[k][j],
                        &mut v.w1[k][j],
                        g.w1[k][j],
                    );
                }
            }
        }
        Ok(Mlp {
            scaler,
            w1: p.w1,
            b1: p.b1,
            w2: p.w2,
            b2: p.b2,
            y_mean,
            y_std,
        })
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        let z = self.scaler.apply(row);
        let out = self.b2
            + self
                .w2
                .iter()
                .zip(self.w1.iter().zip(&self.b1))
                .map(|(w, (wk, b))| w * (b + dot(wk, &z)).tanh())
                .sum::<f64>();
        self.y_mean + self.y_std * out
    }
}

#[derive(Clone)]
struct Params {
    w1: Vec<Vec<f64>>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: f64,
}

impl Params {
    fn zeros(&self) -> Params {
        Params {
            w1: self.w1.iter().map(|r| vec![0.0; r.len()]).collect(),
            b1: vec![0.0; self.b1.len()],
            w2: vec![0.0; self.w2.len()],
            b2: 0.0,
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Which regressor fuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Regressor {
    Ridge { lambda: f64 },
    Mlp(MlpConfig),
}

/// Ridge penalties searched by `choose_penalty` (on standardised features).
pub const RIDGE_GRID: [f64; 9] = [0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
/// MLP weight decays searched by `choose_penalty`.
pub const MLP_GRID: [f64; 5] = [1e-3, 1e-2, 1e-1, 1.0, 10.0];

impl Regressor {
    /// The L2 penalty: ridge's lambda or the MLP's weight decay.
    pub fn penalty(&self) -> f64 {
        match self {
            Regressor::Ridge { lambda } => *lambda,
            Regressor::Mlp(cfg) => cfg.weight_decay,
        }
    }
    /// The same regressor with another penalty.
    pub fn with_penalty(&self, p: f64) -> Regressor {
        match self {
            Regressor::Ridge { .. } => Regressor::Ridge { lambda: p },
            Regressor::Mlp(cfg) => Regressor::Mlp(MlpConfig {
                weight_decay: p,
                ..cfg.clone()
            }),
        }
    }
    fn grid(&self) -> &'static [f64] {
        match self {
            Regressor::Ridge { .. } => &RIDGE_GRID,
            Regressor::Mlp(_) => &MLP_GRID,
        }
    }
}

/// The penalty of `how`'s grid (`RIDGE_GRID` / `MLP_GRID`) with the lowest mean squared error in
/// grouped K-fold cross-validation on (x, y): rows of one prompt group are never split between
/// fitting and validation (group i of the sorted groups is in fold i mod `folds`), so the choice
/// reflects unseen prompts as the held-out split does. Ties go to the larger penalty. With fewer
/// than two groups (nothing to validate on), `how`'s own penalty.
pub fn choose_penalty(
    x: &[Vec<f64>],
    y: &[f64],
    groups: &[&str],
    how: &Regressor,
    folds: usize,
) -> Result<f64, MetricError> {
    check(x, y, "penalty choice")?;
    let mut names: Vec<&str> = groups.to_vec();
    names.sort_unstable();
    names.dedup();
    let k = folds.min(names.len());
    if k < 2 || groups.len() != y.len() {
        return Ok(how.penalty());
    }
    let fold_of: Vec<usize> = groups
        .iter()
        .map(|g| names.binary_search(g).expect("group") % k)
        .collect();
    let mut best = (f64::INFINITY, how.penalty());
    for &p in how.grid().iter().rev() {
        let cand = how.with_penalty(p);
        let mut sq = 0.0;
        for f in 0..k {
            let (mut fx, mut fy) = (Vec::new(), Vec::new());
            for i in (0..y.len()).filter(|&i| fold_of[i] != f) {
                fx.push(x[i].clone());
                fy.push(y[i]);
            }
            let m = Fitted::fit(&fx, &fy, &cand)?;
            sq += (0..y.len())
                .filter(|&i| fold_of[i] == f)
                .map(|i| (m.predict(&x[i]) - y[i]).powi(2))
                .sum::<f64>();
        }
        let mse = sq / y.len() as f64;
        if mse < best.0 - 1e-12 {
            best = (mse, p);
        }
    }
    Ok(best.1)
}

/// A fitted regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    Ridge(Ridge),
    Mlp(Mlp),
}

impl Fitted {
    pub fn fit(x: &[Vec<f64>], y: &[f64], how: &Regressor) -> Result<Fitted, MetricError> {
        Ok(match how {
            Regressor::Ridge { lambda } => Fitted::Ridge(Ridge::fit(x, y, *lambda)?),
            Regressor::Mlp(cfg) => Fitted::Mlp(Mlp::fit(x, y, cfg)?),
        })
    }
    pub fn predict(&self, row: &[f64]) -> f64 {
        match self {
            Fitted::Ridge(r) => r.predict(row),
            Fitted::Mlp(m) => m.predict(row),
        }
    }
}

/// One clip of one dimension: the judge's soft score, the operators' measurements (NaN where
/// undefined), the experts' mean score and the prompt group (for the bootstrap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionRow {
    pub clip_id: String,
    pub prompt_group: String,
    pub vlm_soft: f64,
    pub operators: Vec<f64>,
    pub expert_mean: f64,
}

/// Held-out agreement of one predictor with the experts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FusionFigure {
    pub srcc: Option<ConfidenceInterval>,
    pub plcc: Option<ConfidenceInterval>,
    pub mae: f64,
}

/// VLM-only, operators-only and fused, side by side on the held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FusionComparison {
    pub train_rows: usize,
    pub test_rows: usize,
    /// The soft score itself (no fitting), as the harness reports it.
    pub vlm_only: FusionFigure,
    /// The regressor on the operator measurements alone.
    pub operators_only: FusionFigure,
    /// The regressor on [soft score, operator measurements].
    pub fused: FusionFigure,
    /// The penalties the two regressors were fitted with (chosen by grouped cross-validation on
    /// the train rows when `cv_folds` >= 2, else the regressor's own).
    pub operators_penalty: f64,
    pub fused_penalty: f64,
}

fn figure(pred: &[f64], rows: &[FusionRow], resamples: usize, seed: u64) -> FusionFigure {
    let truth: Vec<f64> = rows.iter().map(|r| r.expert_mean).collect();
    let groups: Vec<&str> = rows.iter().map(|r| r.prompt_group.as_str()).collect();
    let clusters = Clusters::from_labels(&groups);
    let stat = |f: fn(&[f64], &[f64]) -> Option<f64>| {
        bootstrap(clusters.len(), resamples, seed, |picked| {
            let s = clusters.sample(picked);
            let p: Vec<f64> = s.rows.iter().map(|&i| pred[i]).collect();
            let t: Vec<f64> = s.rows.iter().map(|&i| truth[i]).collect();
            f(&p, &t)
        })
    };
    let mae = pred
        .iter()
        .zip(&truth)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / pred.len().max(1) as f64;
    FusionFigure {
        srcc: stat(spearman),
        plcc: stat(pearson),
        mae,
    }
}

/// Fit on `train`, compare the three predictors on `test` (bootstrap over prompt groups).
pub fn compare(
    train: &[FusionRow],
    test: &[FusionRow],
    how: &Regressor,
    cv_folds: usize,
    resamples: usize,
    seed: u64,
) -> Result<(FusionComparison, Fitted, Fitted), MetricError> {
    if test.is_empty() {
        return Err(MetricError::Empty {
            what: "fusion test rows",
        });
    }
    let ops = |r: &FusionRow| r.operators.clone();
    let fused = |r: &FusionRow| {
        let mut v = vec![r.vlm_soft];
        v.extend_from_slice(&r.operators);
        v
    };
    let y: Vec<f64> = train.iter().map(|r| r.expert_mean).collect();
    let groups: Vec<&str> = train.iter().map(|r| r.prompt_group.as_str()).collect();
    let (x_ops, x_fused): (Vec<_>, Vec<_>) = (
        train.iter().map(ops).collect(),
        train.iter().map(fused).collect(),
    );
    let p_ops = choose_penalty(&x_ops, &y, &groups, how, cv_folds)?;
    let p_fused = choose_penalty(&x_fused, &y, &groups, how, cv_folds)?;
    let m_ops = Fitted::fit(&x_ops, &y, &how.with_penalty(p_ops))?;
    let m_fused = Fitted::fit(&x_fused, &y, &how.with_penalty(p_fused))?;
    let vlm: Vec<f64> = test.iter().map(|r| r.vlm_soft).collect();
    let pred_ops: Vec<f64> = test.iter().map(|r| m_ops.predict(&ops(r))).collect();
    let pred_fused: Vec<f64> = test.iter().map(|r| m_fused.predict(&fused(r))).collect();
    Ok((
        FusionComparison {
            train_rows: train.len(),
            test_rows: test.len(),
            vlm_only: figure(&vlm, test, resamples, seed),
            operators_only: figure(&pred_ops, test, resamples, seed),
            fused: figure(&pred_fused, test, resamples, seed),
            operators_penalty: p_ops,
            fused_penalty: p_fused,
        },
        m_ops,
        m_fused,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_without_penalty_recovers_a_linear_map() {
        // y = 1 + 2a - 3b on a small grid: exact at lambda = 0.
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![i as f64, ((i * 7) % 5) as f64])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 1.0 + 2.0 * r[0] - 3.0 * r[1]).collect();
        let m = Ridge::fit(&x, &y, 0.0).unwrap();
        for (r, t) in x.iter().zip(&y) {
            assert!((m.predict(r) - t).abs() < 1e-6, "{} vs {t}", m.predict(r));
        }
        assert!((m.predict(&[100.0, 1.0]) - 198.0).abs() < 1e-5);
    }

    #[test]
    fn ridge_penalty_shrinks_toward_the_mean() {
        let x: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let weak = Ridge::fit(&x, &y, 0.0).unwrap();
        let strong = Ridge::fit(&x, &y, 1e6).unwrap();
        assert!((weak.predict(&[9.0]) - 9.0).abs() < 1e-6);
        // Mean of y is 4.5; a huge penalty predicts it everywhere.
        assert!((strong.predict(&[9.0]) - 4.5).abs() < 1e-3);
        // Hand check of the standardised closed form at lambda = n = 10:
        // Z'Z = n (unit variance), so w = n * cov / (n + lambda) = half the unpenalised weight.
        let half = Ridge::fit(&x, &y, 10.0).unwrap();
        assert!((half.predict(&[9.0]) - (4.5 + 0.5 * 4.5)).abs() < 1e-6);
    }

    #[test]
    fn mlp_fits_a_nonlinear_relation_ridge_cannot() {
        let x: Vec<Vec<f64>> = (0..60).map(|i| vec![-3.0 + 0.1 * i as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| r[0] * r[0]).collect();
        let mlp = Mlp::fit(&x, &y, &MlpConfig::default()).unwrap();
        let ridge = Ridge::fit(&x, &y, 0.0).unwrap();
        let mse = |f: &dyn Fn(&[f64]) -> f64| {
            x.iter()
                .zip(&y)
                .map(|(r, t)| (f(r) - t).powi(2))
                .sum::<f64>()
                / y.len() as f64
        };
        let (m_mlp, m_ridge) = (mse(&|r| mlp.predict(r)), mse(&|r| ridge.predict(r)));
        assert!(m_mlp < 0.05 && m_ridge > 2.0, "mlp {m_mlp} ridge {m_ridge}");
        // Deterministic for a seed.
        assert_eq!(mlp, Mlp::fit(&x, &y, &MlpConfig::default()).unwrap());
    }

    #[test]
    fn fit_refuses_mismatched_rows_and_missing_targets() {
        let x = vec![vec![1.0], vec![2.0, 3.0]];
        assert!(matches!(
            Ridge::fit(&x, &[1.0, 2.0], 1.0),
            Err(MetricError::Invalid { index: 1, .. })
        ));
        assert!(matches!(
            Ridge::fit(&[vec![1.0]], &[1.0, 2.0], 1.0),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Mlp::fit(&[vec![1.0]], &[f64::NAN], &MlpConfig::default()),
            Err(MetricError::NonFinite { .. })
        ));
    }

    #[test]
    fn missing_measurements_are_imputed_with_the_train_mean() {
        let s = Standardiser::fit(&[vec![1.0, f64::NAN], vec![3.0, 5.0]]);
        assert_eq!(s.apply(&[f64::NAN, f64::NAN]), vec![0.0, 0.0]);
        assert_eq!(s.apply(&[3.0, 5.0]), vec![1.0, 0.0]);
    }

    /// Experts see quality = a + b; the VLM sees a (noisily), an operator measures b.
    fn rows(n: usize, seed: u64) -> Vec<FusionRow> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| {
                let (a, b) = (rng.normal(), rng.normal());
                FusionRow {
                    clip_id: format!("c{i}"),
                    prompt_group: format!("g{}", i / 4),
                    vlm_soft: 3.0 + a + 0.3 * rng.normal(),
                    operators: vec![b + 0.1 * rng.normal(), rng.normal()],
                    expert_mean: 3.0 + a + b,
                }
            })
            .collect()
    }

    #[test]
    fn cross_validation_penalises_noise_and_spares_signal() {
        let mut rng = Rng::new(3);
        let n = 60;
        let groups: Vec<String> = (0..n).map(|i| format!("g{}", i / 4)).collect();
        let g: Vec<&str> = groups.iter().map(String::as_str).collect();
        // 20 pure-noise features, 60 rows: any fit is overfitting.
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..20).map(|_| rng.normal()).collect())
            .collect();
        let noise: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let how = Regressor::Ridge { lambda: 1.0 };
        let p = choose_penalty(&x, &noise, &g, &how, 5).unwrap();
        assert!(p >= 100.0, "noise: penalty {p}");
        // y is a linear map of two features plus a little noise: keep the penalty small.
        let y: Vec<f64> = x
            .iter()
            .map(|r| 2.0 * r[0] - r[1] + 0.1 * rng.normal())
            .collect();
        let p = choose_penalty(&x, &y, &g, &how, 5).unwrap();
        assert!(p <= 1.0, "signal: penalty {p}");
        // One group: nothing to validate on, the regressor's own penalty.
        let one = vec!["g"; n];
        assert_eq!(choose_penalty(&x, &y, &one, &how, 5).unwrap(), 1.0);
    }

    #[test]
    fn fusion_beats_either_source_when_they_carry_different_signal() {
        let (train, test) = (rows(200, 1), rows(120, 2));
        for how in [
            Regressor::Ridge { lambda: 1.0 },
            Regressor::Mlp(MlpConfig {
                steps: 600,
                ..MlpConfig::default()
            }),
        ] {
            let (c, _, _) = compare(&train, &test, &how, 0, 200, 7).unwrap();
            let s = |f: &FusionFigure| f.srcc.unwrap().estimate;
            let (v, o, f) = (s(&c.vlm_only), s(&c.operators_only), s(&c.fused));
            assert!(
                f > v + 0.1 && f > o + 0.1 && f > 0.9,
                "{how:?}: vlm {v} ops {o} fused {f}"
            );
            let ci = c.fused.srcc.unwrap();
            assert!(
                ci.lower <= f && f <= ci.upper && ci.upper - ci.lower < 0.1,
                "{ci:?}"
            );
            assert!(c.fused.mae < c.operators_only.mae);
        }
    }
}
