//! `evalverse fuse`: learned fusion of the judge's soft scores with perception-operator evidence
//! (docs/OPERATORS.md). Pools the judgements of one or more eval folders, measures every clip
//! with the operators (cached beside the decoded clips), fits a regressor per dimension on the
//! dataset's train split from [soft score, measurements] to the experts' mean, and reports
//! VLM-only, operators-only and fused agreement on the test split with bootstrap intervals
//! (fusion.json, and a table on stdout). The fused predictions are also written as a judge of
//! their own (fused/judgements.jsonl and fused/report.*), the same report `evalverse eval` makes,
//! so the fused judge sits in a leaderboard beside the others, and the fitted model is saved
//! (fusion_model.json) for `evalverse export RUN --format judge --fusion DIR`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::operators::OperatorSet;
use evalverse_data::split::Split;
use evalverse_eval::fusion::{fit_judgements, Fusion, FusionError, MlpConfig, Regressor};
use evalverse_eval::report::Report;
use evalverse_judge::harness::Judgement;

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

/// `evalverse_eval::fusion::fit_judgements`, its errors as the CLI reports them.
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
    fit_judgements(ds, judgements, set, how, cv_folds, cache, bootstrap, seed).map_err(
        |e| match e {
            FusionError::Usage(m) => Failure::Usage(anyhow!(m)),
            other => Failure::Runtime(anyhow!(other.to_string())),
        },
    )
}

/// The per-dimension table: SRCC with its 95% interval for VLM-only, operators-only and fused.
pub fn table(f: &Fusion) -> String {
    let ci = |f: &evalverse_eval::fusion::FusionFigure| match f.srcc {
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

/// Write fusion.json (figures) and fusion_model.json (the fitted model a judge bundle carries)
/// to `out`, and the fused judge's report (report.json/md/html) and judgements.jsonl to
/// `out/fused/`; returns the fused judge's report.
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
    f.model.save(&out.join(MODEL_FILE))?;
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
    let lines = evalverse_eval::pipeline::jsonl(&f.fused);
    evalverse_data::error::write_atomic(&dir.join("judgements.jsonl"), lines.as_bytes())?;
    Ok(r)
}

/// The fitted fusion model's file in a fuse folder.
pub const MODEL_FILE: &str = "fusion_model.json";

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
        println!("\nfused judge, all test dimensions: SRCC {o}");
    }
    println!(
        "-> {} and {}",
        out.join("fusion.json").display(),
        out.join("fused/report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}
