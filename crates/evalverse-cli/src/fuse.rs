//! `evalverse fuse`: learned fusion of the judge's soft scores with perception-operator evidence
//! (docs/OPERATORS.md). Pools the judgements of one or more eval folders, measures every clip
//! with the operators (cached beside the decoded clips), fits a regressor per dimension on the
//! dataset's train split from [soft score, measurements] to the experts' mean, and reports
//! VLM-only, operators-only and fused agreement on the test split with bootstrap intervals
//! (fusion.json, and a table on stdout).

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

use crate::Failure;

pub struct FuseArgs<'a> {
    pub runs: &'a [PathBuf],
    pub data: &'a Path,
    pub regressor: &'a str,
    pub lambda: f64,
    pub operators: &'a [String],
    pub out: Option<&'a Path>,
    pub bootstrap: usize,
    pub seed: u64,
}

/// judgements.jsonl of an eval folder or of a run's eval/ folder.
fn judgements_of(run: &Path) -> Result<Vec<Judgement>, Failure> {
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

pub fn fuse(a: &FuseArgs) -> Result<ExitCode, Failure> {
    let how = match a.regressor {
        "ridge" => Regressor::Ridge { lambda: a.lambda },
        "mlp" => Regressor::Mlp(MlpConfig {
            seed: a.seed,
            ..MlpConfig::default()
        }),
        other => {
            return Err(Failure::Usage(anyhow!(
                "--regressor '{other}' (allowed: ridge, mlp)"
            )))
        }
    };
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
    let spec = AnalysisSpec::default();
    let mut evidence: BTreeMap<String, Evidence> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    for j in &judgements {
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
                    a.data.display()
                ))
            })?;
        let (ev, _) = cache.get_or_measure(&ds.video_path(clip), &set, &spec)?;
        for m in &ev.measurements {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
        evidence.insert(j.clip_id.clone(), ev);
    }
    // Rows per dimension and split; one row per (clip, dimension) (the first judgement wins when
    // runs overlap).
    let mut rows: BTreeMap<String, (Vec<FusionRow>, Vec<FusionRow>)> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for j in &judgements {
        let Some(expert) = j.expert_mean.filter(|_| !j.expert_na) else {
            continue;
        };
        if !j.soft.is_finite() || !seen.insert((j.clip_id.clone(), j.dimension.clone())) {
            continue;
        }
        let ev = &evidence[&j.clip_id];
        let row = FusionRow {
            clip_id: j.clip_id.clone(),
            prompt_group: j.prompt_group.clone(),
            vlm_soft: j.soft,
            operators: names
                .iter()
                .map(|n| ev.get(n).unwrap_or(f64::NAN))
                .collect(),
            expert_mean: expert,
        };
        let split = ds
            .splits
            .get(&j.prompt_group)
            .copied()
            .unwrap_or(Split::Train);
        let e = rows.entry(j.dimension.clone()).or_default();
        match split {
            Split::Train => e.0.push(row),
            Split::Test => e.1.push(row),
            Split::Val => {}
        }
    }
    let mut results: BTreeMap<String, FusionComparison> = BTreeMap::new();
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
        let (c, _, _) = compare(train, test, &how, a.bootstrap, a.seed)
            .map_err(|e| Failure::Runtime(anyhow!("dimension {dim}: {e}")))?;
        results.insert(dim.clone(), c);
    }
    if results.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "no dimension has judgements on both the train and test splits ({}); judge both splits \
             (`evalverse eval --split train --out A`, `--split test --out B`) and pass --run A --run B",
            skipped.join(", ")
        )));
    }
    let ci = |f: &evalverse_eval::fusion::FusionFigure| match f.srcc {
        Some(c) => format!("{:.3} [{:.3}, {:.3}]", c.estimate, c.lower, c.upper),
        None => "-".into(),
    };
    println!("| dimension | train/test rows | VLM-only SRCC | operators-only SRCC | fused SRCC |");
    println!("| --- | --- | --- | --- | --- |");
    for (dim, c) in &results {
        println!(
            "| {dim} | {}/{} | {} | {} | {} |",
            c.train_rows,
            c.test_rows,
            ci(&c.vlm_only),
            ci(&c.operators_only),
            ci(&c.fused)
        );
    }
    if !skipped.is_empty() {
        println!("skipped: {}", skipped.join(", "));
    }
    let report = serde_json::json!({
        "regressor": how, "operators": set, "features": names, "dimensions": results,
        "skipped": skipped,
    });
    let path = out.join("fusion.json");
    evalverse_data::error::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("-> {}", path.display());
    Ok(ExitCode::SUCCESS)
}
