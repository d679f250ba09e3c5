//! `evalverse fuse`: learned fusion of the judge's soft scores with perception-operator evidence
//! (docs/OPERATORS.md). Pools the judgements of one or more eval folders, measures every clip
//! with the operators (cached beside the decoded clips), fits a regressor per dimension on the
//! dataset's train split from [soft score, measurements] to the experts' mean, and reports
//! VLM-only, operators-only and fused agreement on the test split with bootstrap intervals
//! (fusion.json, and a table on stdout). The fused predictions are also written as a judge of
//! their own (fused/judgements.jsonl and fused/report.*), the same report `evalverse eval` makes,
//! so the fused judge sits in a leaderboard beside the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::operators::{AnalysisSpec, Evidence, OperatorSet};
use evalverse_data::split::Split;
use evalverse_eval::fusion::{compare, FusionComparison, FusionRow, MlpConfig, Regressor};
use evalverse_eval::harness::Judgement;
use evalverse_eval::report::Report;

use crate::Failure;

pub struct FuseArgs<'a> {
    pub runs: &'a [PathBuf],
    pub data: &'a Path,
    pub regressor: &'a str,
    pub lambda: f64,
    /// None: 5 for ridge, 0 (the MLP's own weight decay) for the MLP.
    pub cv_folds: Option<usize>,
    pub operators: &'a [String],
    pub out: Option<&'a Path>,
    pub bootstrap: usize,
    pub seed: u64,
}

/// judgements.jsonl of an eval folder or of a run's eval/ folder.
pub fn judgements_of(run: &Path) -> Result<Vec<Judgement>, Failure> {
    let file = [
        run.join("judgements.jsonl"),
        run.join("eval/judgements.jsonl"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Failure::Usage(anyhow!(
            "{}: no judgements.jsonl (run `evalverse eval --out {}` first)",
            run.display(),
            run.display()
        ))
    })?;
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Failure::Usage(anyhow!("{}:{}: {e}", file.display(), i + 1)))
        })
        .collect()
}

/// The regressor named on the command line.
pub fn regressor(name: &str, lambda: f64, seed: u64) -> Result<Regressor, Failure> {
    match name {
        "ridge" => Ok(Regressor::Ridge { lambda }),
        "mlp" => Ok(Regressor::Mlp(MlpConfig {
            seed,
            ..MlpConfig::default()
        })),
        other => Err(Failure::Usage(anyhow!(
            "--regressor '{other}' (allowed: ridge, mlp)"
        ))),
    }
}

/// What fitting gave: the per-dimension comparison, the dimensions left out, the feature names,
/// and the fused judge's test-split judgements.
pub struct Fusion {
    pub results: BTreeMap<String, FusionComparison>,
    pub skipped: Vec<String>,
    pub features: Vec<String>,
    /// The test split's judgements with `soft` replaced by the fused prediction (and the
    /// verdict's level and the distribution by the prediction clamped to the scale); dimensions
    /// without a fit keep the judge's own score, and an N/A answer stays N/A.
    pub fused: Vec<Judgement>,
}

/// Measure the judged clips with `set` (cached in `cache`), fit `how` per dimension on the train
/// split's judgements (its penalty chosen by `cv_folds`-fold cross-validation over the train
/// split's prompt groups; < 2: `how`'s own) and compare VLM-only, operators-only and fused on the
/// test split.
pub fn fit(
    ds: &Dataset,
    judgements: &[Judgement],
    set: &OperatorSet,
    how: &Regressor,
    cv_folds: usize,
    cache: &DecodeCache,
    bootstrap: usize,
    seed: u64,
) -> Result<Fusion, Failure> {
    let spec = AnalysisSpec::default();
    let mut evidence: BTreeMap<String, Evidence> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
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
                Failure::Usage(anyhow!(
                    "clip '{}' of the judgements is not in {}",
                    j.clip_id,
                    ds.root.display()
                ))
            })?;
        let (ev, _) = cache.get_or_measure(&ds.video_path(clip), set, &spec)?;
        for m in &ev.measurements {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
        evidence.insert(j.clip_id.clone(), ev);
    }
    let split_of = |j: &Judgement| {
        ds.splits
            .get(&j.prompt_group)
            .copied()
            .unwrap_or(Split::Train)
    };
    let features = |j: &Judgement| -> Vec<f64> {
        let ev = &evidence[&j.clip_id];
        names
            .iter()
            .map(|n| ev.get(n).unwrap_or(f64::NAN))
            .collect()
    };
    // Rows per dimension and split; one row per (clip, dimension) (the first judgement wins when
    // runs overlap).
    let mut rows: BTreeMap<String, (Vec<FusionRow>, Vec<FusionRow>)> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
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
        if !j.soft.is_finite() {
            continue;
        }
        let row = FusionRow {
            clip_id: j.clip_id.clone(),
            prompt_group: j.prompt_group.clone(),
            vlm_soft: j.soft,
            operators: features(j),
            expert_mean: expert,
        };
        let e = rows.entry(j.dimension.clone()).or_default();
        match split_of(j) {
            Split::Train => e.0.push(row),
            Split::Test => e.1.push(row),
            Split::Val => {}
        }
    }
    let mut results: BTreeMap<String, FusionComparison> = BTreeMap::new();
    let mut models = BTreeMap::new();
    let mut skipped = Vec::new();
    for (dim, (train, test)) in &rows {
        if train.len() < 4 || test.len() < 3 {
            skipped.push(format!(
                "{dim} ({} train, {} test rows)",
                train.len(),
                test.len()
            ));
            continue;
        }
        let (c, _, m_fused) = compare(train, test, how, cv_folds, bootstrap, seed)
            .map_err(|e| Failure::Runtime(anyhow!("dimension {dim}: {e}")))?;
        results.insert(dim.clone(), c);
        models.insert(dim.clone(), m_fused);
    }
    if results.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "no dimension has judgements on both the train and test splits ({}); judge both splits \
             (`evalverse eval --split train --out A`, `--split test --out B`) and pass --run A --run B",
            skipped.join(", ")
        )));
    }
    let fused = test_judgements
        .into_iter()
        .map(|mut j| {
            if let Some(m) = models.get(&j.dimension).filter(|_| j.soft.is_finite()) {
                let mut x = vec![j.soft];
                x.extend(features(&j));
                // The soft score is the prediction itself, unclamped: clamping would tie the
                // clips beyond the scale's ends, and the figures would differ from fusion.json's.
                j.rescore(m.predict(&x), &ds.taxonomy.default_scale);
            }
            j
        })
        .collect();
    Ok(Fusion {
        results,
        skipped,
        features: names,
        fused,
    })
}

/// The per-dimension table: SRCC with its 95% interval for VLM-only, operators-only and fused.
pub fn table(f: &Fusion) -> String {
    let ci = |f: &evalverse_eval::fusion::FusionFigure| match f.srcc {
        Some(c) => format!("{:.3} [{:.3}, {:.3}]", c.estimate, c.lower, c.upper),
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

/// Write fusion.json to `out` and the fused judge's report (report.json/md/html) and
/// judgements.jsonl to `out/fused/`; returns the fused judge's report.
pub fn write(
    f: &Fusion,
    ds: &Dataset,
    how: &Regressor,
    set: &OperatorSet,
    model: &str,
    out: &Path,
    bootstrap: usize,
    seed: u64,
) -> Result<Report, Failure> {
    let report = serde_json::json!({
        "regressor": how, "operators": set, "features": f.features, "dimensions": f.results,
        "skipped": f.skipped,
    });
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let path = out.join("fusion.json");
    evalverse_data::error::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let dir = out.join("fused");
    let r = evalverse_eval::report::build(
        ds,
        Split::Test,
        &f.fused,
        model,
        None,
        Vec::new(),
        bootstrap,
        seed,
    );
    evalverse_eval::report::write_all(&r, &dir)
        .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", dir.display())))?;
    let lines: String = f
        .fused
        .iter()
        .map(|j| serde_json::to_string(j).expect("json") + "\n")
        .collect();
    evalverse_data::error::write_atomic(&dir.join("judgements.jsonl"), lines.as_bytes())?;
    Ok(r)
}

pub fn fuse(a: &FuseArgs) -> Result<ExitCode, Failure> {
    let how = regressor(a.regressor, a.lambda, a.seed)?;
    let set = if a.operators.is_empty() {
        OperatorSet::all()
    } else {
        OperatorSet::parse(a.operators).map_err(|m| Failure::Usage(anyhow!("--operators: {m}")))?
    };
    let ds = Dataset::load(a.data)?;
    let mut judgements = Vec::new();
    for run in a.runs {
        judgements.extend(judgements_of(run)?);
    }
    let out = a
        .out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| a.runs[0].clone());
    let cache = DecodeCache::new(out.join("cache"));
    let f = fit(
        &ds,
        &judgements,
        &set,
        &how,
        a.cv_folds.unwrap_or(match how {
            Regressor::Ridge { .. } => 5,
            Regressor::Mlp(_) => 0,
        }),
        &cache,
        a.bootstrap,
        a.seed,
    )?;
    print!("{}", table(&f));
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
    if let Some(o) = r.overall.srcc {
        println!(
            "\nfused judge, all test dimensions: SRCC {:.3} [{:.3}, {:.3}]",
            o.estimate, o.lower, o.upper
        );
    }
    println!(
        "-> {} and {}",
        out.join("fusion.json").display(),
        out.join("fused/report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}
