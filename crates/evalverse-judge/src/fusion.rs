//! Fusion models: per dimension, a regressor from [the VLM's score, operator measurements] to
//! the experts' mean score (EvalVerse §5: "a small MLP fitted to expert scores fuses operator
//! evidence with the VLM's scores"), and `FusionModel`, the fitted set a judge carries and
//! applies to new clips. Fitting with penalty choice and the held-out comparison live in
//! `evalverse_eval::fusion`.
//!
//! Two regressors, both pure Rust and deterministic: ridge regression (the baseline; closed form
//! on standardised features, intercept unpenalised; Hoerl & Kennard 1970) and a one-hidden-layer
//! tanh MLP trained full-batch with Adam (Kingma & Ba 2015) and L2 weight decay. A missing
//! measurement (NaN, e.g. no sync offset on a silent clip) is imputed with the train mean. Every
//! input is clipped to its train range and every prediction to the dimension's scale: fused
//! scores stay on the scale whatever a new clip measures.

use std::collections::BTreeMap;
use std::path::Path;

use evalverse_data::operators::{Evidence, OperatorSet};
use evalverse_data::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::JudgeError;

/// Why a regressor could not be fitted (the statistics' error type).
pub use evalverse_data::error::MetricError as FitError;

/// Per-column standardisation learnt on the train rows; NaN inputs become the mean (0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardiser {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// The smallest and largest finite train value of each column: an input is clipped to
    /// this range before standardising, so a measurement far outside what the fit saw (a 4K
    /// clip's sharpness, a silent clip's loudness) cannot move a linear prediction without
    /// bound. Empty: no clipping.
    #[serde(default)]
    pub lo: Vec<f64>,
    #[serde(default)]
    pub hi: Vec<f64>,
}

impl Standardiser {
    pub fn fit(x: &[Vec<f64>]) -> Standardiser {
        let d = x.first().map_or(0, Vec::len);
        let mut mean = vec![0.0; d];
        let mut std = vec![1.0; d];
        let mut lo = vec![f64::NEG_INFINITY; d];
        let mut hi = vec![f64::INFINITY; d];
        for j in 0..d {
            let col: Vec<f64> = x.iter().map(|r| r[j]).filter(|v| v.is_finite()).collect();
            if col.is_empty() {
                // Never measured in training: the column carries nothing, and an input is
                // clipped to its mean (0). An infinite range would be written as null.
                (lo[j], hi[j]) = (0.0, 0.0);
                continue;
            }
            lo[j] = col.iter().copied().fold(f64::INFINITY, f64::min);
            hi[j] = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let m = col.iter().sum::<f64>() / col.len() as f64;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / col.len() as f64;
            mean[j] = m;
            // A constant column carries nothing; keep it at 0 instead of dividing by 0.
            std[j] = if v > 1e-24 { v.sqrt() } else { 1.0 };
        }
        Standardiser { mean, std, lo, hi }
    }

    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .enumerate()
            .map(|(j, &v)| {
                if v.is_finite() {
                    let v = match (self.lo.get(j), self.hi.get(j)) {
                        (Some(&lo), Some(&hi)) if lo <= hi => v.clamp(lo, hi),
                        _ => v,
                    };
                    (v - self.mean[j]) / self.std[j]
                } else {
                    0.0
                }
            })
            .collect()
    }
}

pub fn check(x: &[Vec<f64>], y: &[f64], what: &'static str) -> Result<usize, FitError> {
    if x.is_empty() {
        return Err(FitError::Empty { what });
    }
    if x.len() != y.len() {
        return Err(FitError::LengthMismatch {
            what,
            left: x.len(),
            right: y.len(),
        });
    }
    let d = x[0].len();
    for (i, r) in x.iter().enumerate() {
        if r.len() != d {
            return Err(FitError::Invalid {
                what,
                index: i,
                reason: format!("{} features, expected {d}", r.len()),
            });
        }
        if r.iter().any(|v| v.is_infinite()) {
            return Err(FitError::Invalid {
                what,
                index: i,
                reason: "infinite feature".into(),
            });
        }
    }
    if let Some((i, &v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(FitError::NonFinite {
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
    pub fn fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Result<Ridge, FitError> {
        let d = check(x, y, "ridge fit")?;
        if lambda.is_nan() || lambda < 0.0 {
            return Err(FitError::Invalid {
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
        let weights = cholesky_solve(a, b, d).ok_or(FitError::Invalid {
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
    pub fn fit(x: &[Vec<f64>], y: &[f64], cfg: &MlpConfig) -> Result<Mlp, FitError> {
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
    pub fn grid(&self) -> &'static [f64] {
        match self {
            Regressor::Ridge { .. } => &RIDGE_GRID,
            Regressor::Mlp(_) => &MLP_GRID,
        }
    }
}

/// A fitted regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    Ridge(Ridge),
    Mlp(Mlp),
}

impl Fitted {
    pub fn fit(x: &[Vec<f64>], y: &[f64], how: &Regressor) -> Result<Fitted, FitError> {
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

/// Name of the VLM-score feature (the first of every dimension's features).
pub const VLM_FEATURE: &str = "vlm_soft";

/// Version of the fusion file's layout.
pub const FUSION_FORMAT: u32 = 1;

/// The fitted fusion of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionFusion {
    /// Feature names in input order: `VLM_FEATURE`, then operator measurements by name.
    pub features: Vec<String>,
    /// The regressor (its standardiser holds each feature's mean, std and train range).
    pub model: Fitted,
    /// The L2 penalty it was fitted with (chosen by grouped cross-validation).
    pub penalty: f64,
    /// Rows it was fitted on.
    pub train_rows: usize,
    /// The dimension's scale: predictions are clamped to [min, max].
    pub scale_min: f64,
    pub scale_max: f64,
}

impl DimensionFusion {
    /// The fused score from the VLM's score and the clip's evidence (a measurement the
    /// evidence lacks is imputed with the train mean), clamped to the scale.
    pub fn predict(&self, vlm_soft: f64, ev: &Evidence) -> f64 {
        let x: Vec<f64> = self
            .features
            .iter()
            .map(|n| {
                if n == VLM_FEATURE {
                    vlm_soft
                } else {
                    ev.get(n).unwrap_or(f64::NAN)
                }
            })
            .collect();
        self.model.predict(&x).clamp(self.scale_min, self.scale_max)
    }
}

/// A judge's fusion stage: the operators it needs measured and a fitted model per dimension
/// (dimensions without one keep the VLM's score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionModel {
    pub format: u32,
    /// The operators measured for the features, and their version: a bundle's fusion is
    /// refused by a build whose operators measure differently.
    pub operators: OperatorSet,
    pub operators_version: u32,
    /// How the models were fitted.
    pub regressor: Regressor,
    pub dimensions: BTreeMap<String, DimensionFusion>,
}

impl FusionModel {
    pub fn predict(&self, dimension: &str, vlm_soft: f64, ev: &Evidence) -> Option<f64> {
        self.dimensions
            .get(dimension)
            .map(|d| d.predict(vlm_soft, ev))
    }

    /// Write as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), JudgeError> {
        let text = serde_json::to_string_pretty(self).expect("fusion model serialises");
        evalverse_data::error::write_atomic(path, text.as_bytes())
            .map_err(|e| JudgeError::Runtime(e.to_string()))
    }

    /// Read and check a fusion file: its format, operator version and every dimension's
    /// feature count against its weights.
    pub fn load(path: &Path) -> Result<FusionModel, JudgeError> {
        let bad = |m: String| JudgeError::Config(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let m: FusionModel =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a fusion model: {e}")))?;
        if m.format != FUSION_FORMAT {
            return Err(bad(format!(
                "format {} (this build reads {FUSION_FORMAT})",
                m.format
            )));
        }
        let version = evalverse_data::operators::OPERATORS_VERSION;
        if m.operators_version != version {
            return Err(bad(format!(
                "fitted on operators version {}, this build measures version {version}; refit \
                 the fusion (`evalverse fuse`)",
                m.operators_version
            )));
        }
        for (dim, d) in &m.dimensions {
            let n = d.features.len();
            let (scaler, ok) = match &d.model {
                Fitted::Ridge(r) => (&r.scaler, r.weights.len() == n),
                Fitted::Mlp(p) => (
                    &p.scaler,
                    !p.w1.is_empty()
                        && p.w1.iter().all(|r| r.len() == n)
                        && p.b1.len() == p.w1.len()
                        && p.w2.len() == p.w1.len(),
                ),
            };
            let sizes = [&scaler.mean, &scaler.std, &scaler.lo, &scaler.hi];
            if !ok
                || sizes.iter().any(|v| v.len() != n)
                || d.features.first().map(String::as_str) != Some(VLM_FEATURE)
            {
                return Err(bad(format!(
                    "dimension {dim}: {n} features do not match the fitted weights and scaler"
                )));
            }
            if !(d.scale_min < d.scale_max) {
                return Err(bad(format!("dimension {dim}: empty scale")));
            }
            let bound = prediction_bound(&d.model);
            if !bound.is_finite() {
                return Err(bad(format!(
                    "dimension {dim}: a scaler std that is not positive, an input range with lo \
                     above hi, or weights so large that a prediction overflows ({bound})"
                )));
            }
        }
        Ok(m)
    }
}

/// The largest |prediction| a fitted model can make on inputs clipped to its train range, NaN
/// or infinite when it can make a non-finite one (a std that is not positive, a range with lo
/// above hi, weights that overflow): checked at load, so no fused score is ever NaN.
fn prediction_bound(model: &Fitted) -> f64 {
    let s = match model {
        Fitted::Ridge(r) => &r.scaler,
        Fitted::Mlp(p) => &p.scaler,
    };
    // The largest |z| of each standardised input (a missing input is 0).
    let z: Vec<f64> = (0..s.mean.len())
        .map(|j| {
            if !(s.std[j] > 0.0 && s.lo[j] <= s.hi[j]) {
                return f64::NAN;
            }
            (s.lo[j] - s.mean[j]).abs().max((s.hi[j] - s.mean[j]).abs()) / s.std[j]
        })
        .collect();
    let dot_bound = |w: &[f64]| w.iter().zip(&z).map(|(w, z)| w.abs() * z).sum::<f64>();
    match model {
        Fitted::Ridge(r) => r.intercept.abs() + dot_bound(&r.weights),
        Fitted::Mlp(p) => {
            // tanh is bounded; its inputs must still be finite (inf - inf is NaN).
            let hidden =
                p.w1.iter()
                    .zip(&p.b1)
                    .map(|(w, b)| b.abs() + dot_bound(w))
                    .fold(0.0, f64::max);
            let out = p.b2.abs() + p.w2.iter().map(|w| w.abs()).sum::<f64>();
            let y = p.y_mean.abs() + p.y_std.abs() * out;
            if hidden.is_finite() {
                y
            } else {
                hidden
            }
        }
    }
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
            Err(FitError::Invalid { index: 1, .. })
        ));
        assert!(matches!(
            Ridge::fit(&[vec![1.0]], &[1.0, 2.0], 1.0),
            Err(FitError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Mlp::fit(&[vec![1.0]], &[f64::NAN], &MlpConfig::default()),
            Err(FitError::NonFinite { .. })
        ));
    }

    #[test]
    fn missing_measurements_are_imputed_with_the_train_mean() {
        let s = Standardiser::fit(&[vec![1.0, f64::NAN], vec![3.0, 5.0]]);
        assert_eq!(s.apply(&[f64::NAN, f64::NAN]), vec![0.0, 0.0]);
        assert_eq!(s.apply(&[3.0, 5.0]), vec![1.0, 0.0]);
    }

    #[test]
    fn inputs_are_clipped_to_the_train_range_and_outputs_to_the_scale() {
        // y = x on x in [0, 4]: a new x of 100 predicts as x = 4, not 100.
        let x: Vec<Vec<f64>> = (0..=4).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..=4).map(|i| 1.0 + i as f64).collect();
        let r = Ridge::fit(&x, &y, 0.0).unwrap();
        assert!(
            (r.predict(&[100.0]) - 5.0).abs() < 1e-6,
            "{}",
            r.predict(&[100.0])
        );
        assert!((r.predict(&[-7.0]) - 1.0).abs() < 1e-6);
        assert!((r.predict(&[2.5]) - 3.5).abs() < 1e-6);
        let d = DimensionFusion {
            features: vec![VLM_FEATURE.into()],
            model: Fitted::Ridge(Ridge {
                weights: vec![10.0],
                ..r
            }),
            penalty: 0.0,
            train_rows: 5,
            scale_min: 1.0,
            scale_max: 5.0,
        };
        let ev = Evidence {
            version: evalverse_data::operators::OPERATORS_VERSION,
            operators: OperatorSet::all(),
            measurements: vec![],
            shots: vec![],
        };
        assert_eq!(d.predict(4.0, &ev), 5.0);
        assert_eq!(d.predict(0.0, &ev), 1.0);
    }

    /// A one-dimension fusion model around `model`, saved to `dir` and loaded back.
    fn save_and_load(model: Fitted, dir: &Path) -> Result<FusionModel, JudgeError> {
        let m = FusionModel {
            format: FUSION_FORMAT,
            operators: OperatorSet::default(),
            operators_version: evalverse_data::operators::OPERATORS_VERSION,
            regressor: Regressor::Ridge { lambda: 1.0 },
            dimensions: BTreeMap::from([(
                "lens".to_string(),
                DimensionFusion {
                    features: vec![VLM_FEATURE.into(), "sharpness".into()],
                    model,
                    penalty: 1.0,
                    train_rows: 4,
                    scale_min: 1.0,
                    scale_max: 5.0,
                },
            )]),
        };
        let path = dir.join("fusion.json");
        m.save(&path).unwrap();
        FusionModel::load(&path)
    }

    fn ridge() -> Ridge {
        let x: Vec<Vec<f64>> = (0..8).map(|i| vec![i as f64, (i % 3) as f64]).collect();
        let y: Vec<f64> = (0..8).map(|i| 1.0 + (i % 5) as f64).collect();
        Ridge::fit(&x, &y, 1.0).unwrap()
    }

    #[test]
    fn load_refuses_a_scaler_shorter_than_the_features() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ridge();
        r.scaler.std.pop();
        let e = save_and_load(Fitted::Ridge(r), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fusion.json") && e.contains("dimension lens") && e.contains("scaler"),
            "{e}"
        );
    }

    #[test]
    fn load_refuses_weights_whose_prediction_overflows() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ridge();
        r.weights = vec![1e308, -1e308];
        let e = save_and_load(Fitted::Ridge(r), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dimension lens") && e.contains("overflows"),
            "{e}"
        );
    }

    #[test]
    fn a_model_fitted_with_a_feature_never_measured_saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<Vec<f64>> = (0..8).map(|i| vec![i as f64, f64::NAN]).collect();
        let y: Vec<f64> = (0..8).map(|i| 1.0 + (i % 5) as f64).collect();
        let r = Ridge::fit(&x, &y, 1.0).unwrap();
        let m = save_and_load(Fitted::Ridge(r), dir.path()).unwrap();
        let ev = Evidence {
            version: evalverse_data::operators::OPERATORS_VERSION,
            operators: OperatorSet::all(),
            measurements: vec![],
            shots: vec![],
        };
        let y = m.predict("lens", 3.0, &ev).unwrap();
        assert!((1.0..=5.0).contains(&y), "{y}");
    }
}
