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

/// The fitted fusion model's file in a fuse folder.
pub const MODEL_FILE: &str = "fusion_model.json";

/// The fusion model at `p`: a fuse folder (its `MODEL_FILE`) or the file itself.
pub fn read_model(p: &std::path::Path) -> Result<FusionModel, crate::RunError> {
    let file = if p.is_dir() {
        p.join(MODEL_FILE)
    } else {
        p.to_path_buf()
    };
    Ok(FusionModel::load(&file)?)
}

/// The per-dimension table: SRCC with its 95% interval for VLM-only, operators-only and fused.
pub fn table(f: &Fusion) -> String {
    let ci = |f: &FusionFigure| match f.srcc {
        Some(c) => c.to_string(),
        None => "-".into(),
    };
    let mut out = String::from(
        "| dimension | train/test rows | VLM-only SRCC | operators-only SRCC | fused SRCC | penalty (operators / fused) |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for (dim, c) in &f.results {
        out.push_str(&format!(
            "| {dim} | {}/{} | {} | {} | {} | {} / {} |\n",
            c.train_rows,
            c.test_rows,
            ci(&c.vlm_only),
            ci(&c.operators_only),
            ci(&c.fused),
            c.operators_penalty,
            c.fused_penalty
        ));
    }
    if !f.skipped.is_empty() {
        out.push_str(&format!(
            "\nnot fitted (the judge's own score is kept): {}\n",
            f.skipped.join(", ")
        ));
    }
    out
}

/// Write fusion.json (figures) and `MODEL_FILE` (the fitted model a judge bundle carries) to
/// `out`, and the fused judge's report (report.json/md/html) and judgements.jsonl to
/// `out/fused/`; returns the fused judge's report.
#[allow(clippy::too_many_arguments)]
pub fn write(
    f: &Fusion,
    ds: &Dataset,
    how: &Regressor,
    set: &OperatorSet,
    model: &str,
    out: &std::path::Path,
    bootstrap: usize,
    seed: u64,
) -> Result<crate::report::Report, crate::RunError> {
    use crate::error::Context;
    let report = serde_json::json!({
        "regressor": how, "operators": set, "features": f.features, "dimensions": f.results,
        "skipped": f.skipped,
    });
    std::fs::create_dir_all(out).ctx(|| out.display().to_string())?;
    let path = out.join("fusion.json");
    evalverse_data::error::write_atomic(
        &path,
        serde_json::to_string_pretty(&report)
            .expect("json")
            .as_bytes(),
    )?;
    f.model.save(&out.join(MODEL_FILE))?;
    let dir = out.join("fused");
    let r = crate::report::build(
        ds,
        Split::Test,
        &f.fused,
        model,
        None,
        Vec::new(),
        bootstrap,
        seed,
    );
    crate::report::write_all(&r, &dir).ctx(|| dir.display().to_string())?;
    evalverse_data::error::write_atomic(
        &dir.join("judgements.jsonl"),
        crate::pipeline::jsonl(&f.fused).as_bytes(),
    )?;
    Ok(r)
}

/// The regressor named on the command line ("ridge" with `lambda`, or "mlp").
pub fn regressor(name: &str, lambda: f64, seed: u64) -> Result<Regressor, crate::RunError> {
    match name {
        "ridge" => Ok(Regressor::Ridge { lambda }),
        "mlp" => Ok(Regressor::Mlp(MlpConfig {
            seed,
            ..MlpConfig::default()
        })),
        other => Err(crate::RunError::Usage(format!(
            "--regressor '{other}' (allowed: ridge, mlp)"
        ))),
    }
}

/// A fusion run as `evalverse fuse` asks for it.
pub struct FuseArgs<'a> {
    /// Eval folders whose judgements are pooled (judge the train and the test split).
    pub runs: &'a [std::path::PathBuf],
    pub data: &'a std::path::Path,
    pub regressor: &'a str,
    pub lambda: f64,
    /// None: 5 for ridge, 0 (the MLP's own weight decay) for the MLP.
    pub cv_folds: Option<usize>,
    /// Operators to measure (all when empty).
    pub operators: &'a [String],
    /// Output folder (default: the first run).
    pub out: Option<&'a std::path::Path>,
    pub bootstrap: usize,
    pub seed: u64,
}

/// Pool the runs' judgements, fit, compare and write (`write`); returns the fusion, the fused
/// judge's report and the output folder.
pub fn run_fuse(
    a: &FuseArgs,
) -> Result<(Fusion, crate::report::Report, std::path::PathBuf), crate::RunError> {
    let how = regressor(a.regressor, a.lambda, a.seed)?;
    let set = if a.operators.is_empty() {
        OperatorSet::all()
    } else {
        OperatorSet::parse(a.operators)
            .map_err(|m| crate::RunError::Usage(format!("--operators: {m}")))?
    };
    let ds = Dataset::load(a.data)?;
    let mut judgements = Vec::new();
    for run in a.runs {
        judgements.extend(crate::pipeline::read_judgements(run)?);
    }
    let out = a
        .out
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| a.runs[0].clone());
    let cache = DecodeCache::new(out.join("cache"));
    let folds = a.cv_folds.unwrap_or(match how {
        Regressor::Ridge { .. } => 5,
        Regressor::Mlp(_) => 0,
    });
    let f = fit_judgements(
        &ds,
        &judgements,
        &set,
        &how,
        folds,
        &cache,
        a.bootstrap,
        a.seed,
    )?;
    let model = format!(
        "fused ({}) of {}",
        a.regressor,
        a.runs
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let r = write(&f, &ds, &how, &set, &model, &out, a.bootstrap, a.seed)?;
    Ok((f, r, out))
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
