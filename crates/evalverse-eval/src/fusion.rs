//! Fitting the judge's fusion stage (EvalVerse §5): per dimension, a regressor from [VLM soft
//! score, operator measurements] to the mean expert score (`evalverse_judge::fusion`) is fitted
//! on the train split, its penalty chosen by cross-validation over prompt groups, and compared on
//! the held-out split with the VLM alone and the operators alone, each figure with a
//! prompt-group bootstrap interval. `fit_judgements` turns eval judgements into the persisted
//! `FusionModel` a judge bundle carries.

use std::collections::{BTreeMap, BTreeSet};

use evalverse_data::agreement::{pearson, spearman};
use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::operators::{AnalysisSpec, Evidence, OperatorSet};
use evalverse_data::split::Split;
pub use evalverse_judge::fusion::{
    DimensionFusion, FitError, Fitted, FusionModel, Mlp, MlpConfig, Regressor, Ridge, Standardiser,
    FUSION_FORMAT, MLP_GRID, RIDGE_GRID, VLM_FEATURE,
};
use evalverse_judge::harness::Judgement;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{bootstrap, Clusters, ConfidenceInterval};
use crate::error::MetricError;

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
    evalverse_judge::fusion::check(x, y, "penalty choice")?;
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

/// Fit on `train`, compare the three predictors on `test` (bootstrap over prompt groups); the
/// fitted predictions are clamped to `bounds` (the dimension's scale), as a judge applies them.
pub fn compare(
    train: &[FusionRow],
    test: &[FusionRow],
    how: &Regressor,
    cv_folds: usize,
    bounds: (f64, f64),
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
    let clamp = |v: f64| v.clamp(bounds.0, bounds.1);
    let pred_ops: Vec<f64> = test.iter().map(|r| clamp(m_ops.predict(&ops(r)))).collect();
    let pred_fused: Vec<f64> = test
        .iter()
        .map(|r| clamp(m_fused.predict(&fused(r))))
        .collect();
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

/// What fitting a judge's fusion gave: the per-dimension comparison, the dimensions left out,
/// the feature names, the fitted model, and the fused judge's test-split judgements.
pub struct Fusion {
    pub results: BTreeMap<String, FusionComparison>,
    pub skipped: Vec<String>,
    pub features: Vec<String>,
    pub model: FusionModel,
    /// The test split's judgements with the fused prediction applied (`Judgement::fuse`);
    /// dimensions without a fit keep the judge's own score, and an N/A stays N/A.
    pub fused: Vec<Judgement>,
}

/// Why fitting failed: nothing to fit on (usage), or a numerical failure.
#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Data(#[from] evalverse_data::DataError),
    #[error("dimension {dimension}: {source}")]
    Fit {
        dimension: String,
        source: MetricError,
    },
}

/// Measure every clip of `ds` with `set` through `cache`, keyed by clip id. A clip named by
/// the judgements but absent from the dataset is an error.
pub fn evidence_of(
    ds: &Dataset,
    judgements: &[Judgement],
    set: &OperatorSet,
    cache: &DecodeCache,
) -> Result<BTreeMap<String, Evidence>, FusionError> {
    let spec = AnalysisSpec::default();
    let mut evidence = BTreeMap::new();
    for j in judgements {
        if evidence.contains_key(&j.clip_id) {
            continue;
        }
        let clip = ds
            .clips
            .iter()
            .map(|c| &c.record)
            .find(|c| c.id == j.clip_id)
            .ok_or_else(|| {
                FusionError::Usage(format!(
                    "clip '{}' of the judgements is not in {}",
                    j.clip_id,
                    ds.root.display()
                ))
            })?;
        let (ev, _) = cache.get_or_measure(&ds.video_path(clip), set, &spec)?;
        evidence.insert(j.clip_id.clone(), ev);
    }
    Ok(evidence)
}

/// Fit `how` per dimension on the train split's judgements, from [the VLM's score, the
/// operators' measurements of `set`] to the experts' mean (its penalty chosen by `cv_folds`-fold
/// cross-validation over the train split's prompt groups; < 2: `how`'s own), compare VLM-only,
/// operators-only and fused on the test split, and return the fitted `FusionModel` a judge
/// applies to new clips.
pub fn fit_judgements(
    ds: &Dataset,
    judgements: &[Judgement],
    set: &OperatorSet,
    how: &Regressor,
    cv_folds: usize,
    cache: &DecodeCache,
    resamples: usize,
    seed: u64,
) -> Result<Fusion, FusionError> {
    let evidence = evidence_of(ds, judgements, set, cache)?;
    let mut names: Vec<String> = Vec::new();
    for ev in evidence.values() {
        for m in &ev.measurements {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
    }
    let split_of = |j: &Judgement| {
        ds.splits
            .get(&j.prompt_group)
            .copied()
            .unwrap_or(Split::Train)
    };
    let measured = |j: &Judgement| -> Vec<f64> {
        let ev = &evidence[&j.clip_id];
        names
            .iter()
            .map(|n| ev.get(n).unwrap_or(f64::NAN))
            .collect()
    };
    // Rows per dimension and split; one row per (clip, dimension) (the first judgement wins
    // when runs overlap).
    let mut rows: BTreeMap<String, (Vec<FusionRow>, Vec<FusionRow>)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut test_judgements = Vec::new();
    for j in judgements {
        if !seen.insert((j.clip_id.clone(), j.dimension.clone())) {
            continue;
        }
        if split_of(j) == Split::Test {
            test_judgements.push(j.clone());
        }
        let Some(expert) = j.expert_mean.filter(|_| !j.expert_na) else {
            continue;
        };
        let vlm = j.vlm_input();
        if !vlm.is_finite() {
            continue;
        }
        let row = FusionRow {
            clip_id: j.clip_id.clone(),
            prompt_group: j.prompt_group.clone(),
            vlm_soft: vlm,
            operators: measured(j),
            expert_mean: expert,
        };
        let e = rows.entry(j.dimension.clone()).or_default();
        match split_of(j) {
            Split::Train => e.0.push(row),
            Split::Test => e.1.push(row),
            Split::Val => {}
        }
    }
    let mut results = BTreeMap::new();
    let mut dims = BTreeMap::new();
    let mut skipped = Vec::new();
    let features: Vec<String> = std::iter::once(VLM_FEATURE.to_string())
        .chain(names.iter().cloned())
        .collect();
    for (dim, (train, test)) in &rows {
        if train.len() < 4 || test.len() < 3 {
            skipped.push(format!(
                "{dim} ({} train, {} test rows)",
                train.len(),
                test.len()
            ));
            continue;
        }
        let scale = match ds.taxonomy.dimension(dim) {
            Some(d) => ds.taxonomy.scale(d).clone(),
            None => ds.taxonomy.default_scale.clone(),
        };
        let (c, _, fitted) = compare(
            train,
            test,
            how,
            cv_folds,
            (scale.min, scale.max),
            resamples,
            seed,
        )
        .map_err(|source| FusionError::Fit {
            dimension: dim.clone(),
            source,
        })?;
        dims.insert(
            dim.clone(),
            DimensionFusion {
                features: features.clone(),
                model: fitted,
                penalty: c.fused_penalty,
                train_rows: c.train_rows,
                scale_min: scale.min,
                scale_max: scale.max,
            },
        );
        results.insert(dim.clone(), c);
    }
    if results.is_empty() {
        return Err(FusionError::Usage(format!(
            "no dimension has judgements on both the train and test splits ({}); judge both splits \
             (`evalverse eval --split train --out A`, `--split test --out B`) and pass --run A --run B",
            skipped.join(", ")
        )));
    }
    let model = FusionModel {
        format: FUSION_FORMAT,
        operators: set.clone(),
        operators_version: evalverse_data::operators::OPERATORS_VERSION,
        regressor: how.clone(),
        dimensions: dims,
    };
    let fused = test_judgements
        .into_iter()
        .map(|mut j| {
            let scale = ds.taxonomy.default_scale.clone();
            j.fuse(&model, &evidence[&j.clip_id], &scale);
            j
        })
        .collect();
    Ok(Fusion {
        results,
        skipped,
        features: names,
        model,
        fused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use evalverse_data::rng::Rng;
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
            let (c, _, _) = compare(
                &train,
                &test,
                &how,
                0,
                (f64::NEG_INFINITY, f64::INFINITY),
                200,
                7,
            )
            .unwrap();
            let s = |f: &FusionFigure| f.srcc.unwrap().estimate;
            let (v, o, f) = (s(&c.vlm_only), s(&c.operators_only), s(&c.fused));
            assert!(
                f > v + 0.1 && f > o + 0.1 && f > 0.9,
                "{how:?}: vlm {v} ops {o} fused {f}"
            );
            let ci = c.fused.srcc.unwrap();
            let (lower, upper) = (ci.lower.unwrap(), ci.upper.unwrap());
            assert!(lower <= f && f <= upper && upper - lower < 0.1, "{ci:?}");
            assert!(c.fused.mae < c.operators_only.mae);
        }
    }
}
