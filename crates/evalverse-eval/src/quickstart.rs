//! `evalverse quickstart`: the whole pipeline on CPU with a tiny Qwen2.5-VL. Rebuilds the
//! caption-pretrained tiny base (random init + the shipped pretraining adapter, merged), runs
//! chain-of-thought LoRA SFT and preference calibration from recipes/quickstart/, judges the
//! held-out split with the base, the SFT judge and the calibrated judge, fuses the calibrated
//! judge's scores with the perception operators (a ridge regression per dimension fitted on the
//! train split, its penalty chosen by cross-validation over the train split's prompt groups,
//! `evalverse fuse`), and prints their agreement with the experts per aspect beside the human
//! ceiling. Stages whose output exists
//! are reused; an interrupted stage resumes from its checkpoint.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use evalverse_data::split::Split;
use serde::Deserialize;

use crate::error::{Context, RunError};
use crate::pipeline::{EvalArgs, Evaluation, JudgeOptions};
use crate::report::Report;

pub struct QuickstartArgs<'a> {
    pub data: &'a Path,
    pub out: &'a Path,
    pub tokenizer: &'a Path,
    pub base_spec: &'a Path,
    pub recipes: &'a Path,
    pub dimensions: &'a [String],
    pub max_new_tokens: usize,
    pub bootstrap: usize,
    /// Asked after every training step; true stops the stage with a checkpoint (Ctrl-C).
    pub stop: &'a dyn Fn(usize) -> bool,
    /// Progress lines ("[quickstart] sft: ...").
    pub log: &'a dyn Fn(&str),
}

/// How a quickstart ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every stage ran: the printed summary (tables, where the reports and the bundle are).
    Done(String),
    /// A training stage was stopped (its checkpoint saved); run again to resume.
    Interrupted,
}

/// `<base_spec>/base.toml`: how the tiny base is rebuilt.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSpec {
    #[serde(flatten)]
    model: evalverse_model::init::SmallSpec,
    /// Caption-pretraining adapter folder, relative to the spec's folder, merged into the
    /// random init; absent: the base is the random init itself.
    #[serde(default)]
    adapter: Option<PathBuf>,
    /// The recipe that trained the adapter (documentation; not run here).
    #[serde(default)]
    #[allow(dead_code)]
    recipe: Option<PathBuf>,
}

fn usage(m: impl std::fmt::Display) -> RunError {
    RunError::Usage(m.to_string())
}

/// Make `<out>/base` from the spec unless it is there.
fn build_base(a: &QuickstartArgs) -> Result<PathBuf, RunError> {
    let base = a.out.join("base");
    if base.join("config.json").is_file() {
        (a.log)(&format!("[quickstart] base: reusing {}", base.display()));
        return Ok(base);
    }
    let spec_path = a.base_spec.join("base.toml");
    let text = std::fs::read_to_string(&spec_path)
        .map_err(|e| usage(format!("{}: {e}", spec_path.display())))?;
    let spec: BaseSpec =
        toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", spec_path.display())))?;
    let random = a.out.join("base-random");
    let _ = std::fs::remove_dir_all(&random);
    evalverse_model::init::write_small(&random, a.tokenizer, &spec.model)
        .map_err(|e| usage(format!("{}: {e}", spec_path.display())))?;
    let Some(rel) = &spec.adapter else {
        std::fs::rename(&random, &base).ctx(|| base.display().to_string())?;
        (a.log)(&format!(
            "[quickstart] base: random init (seed {}, embedding std {:?}) -> {}",
            spec.model.seed,
            spec.model.embed_std,
            base.display()
        ));
        return Ok(base);
    };
    let adapter = a.base_spec.join(rel);
    crate::publish::export(&crate::publish::ExportArgs {
        checkpoint: &adapter.display().to_string(),
        base: Some(&random.display().to_string()),
        format: crate::publish::Format::Merged,
        out: Some(&base),
        max_shard_size: "2GB",
        dtype: crate::publish::ExportDtype::Base,
        eval: None,
        base_name: None,
        force: false,
        fusion: None,
        gate: None,
        max_new_tokens: None,
    })?;
    std::fs::remove_dir_all(&random).ctx(|| random.display().to_string())?;
    (a.log)(&format!(
        "[quickstart] base: random init (seed {}) + caption-pretrained adapter {} merged -> {}",
        spec.model.seed,
        adapter.display(),
        base.display()
    ));
    Ok(base)
}

/// Write `<out>/recipes/<name>.toml`: the shipped recipe pointed at this run's folders.
fn stage_recipe(
    a: &QuickstartArgs,
    name: &str,
    base: &Path,
    adapter: Option<PathBuf>,
) -> Result<PathBuf, RunError> {
    let src = a.recipes.join(format!("{name}.toml"));
    let mut r = evalverse_train::recipe::Recipe::load(&src).map_err(usage)?;
    r.run.output_dir = a.out.join(name);
    r.model.source = base.display().to_string();
    r.model.adapter = adapter;
    r.data.dataset = a.data.to_path_buf();
    r.data.cache_dir = Some(a.out.join("cache"));
    if !a.dimensions.is_empty() {
        r.data.dimensions = a.dimensions.to_vec();
    }
    r.validate()
        .map_err(|m| usage(format!("{}: {m}", src.display())))?;
    let dir = a.out.join("recipes");
    std::fs::create_dir_all(&dir).ctx(|| dir.display().to_string())?;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, r.to_toml()).ctx(|| path.display().to_string())?;
    Ok(path)
}

/// Train a stage unless its adapter exists; resume when it has checkpoints.
fn stage(a: &QuickstartArgs, name: &str, recipe: &Path) -> Result<bool, RunError> {
    let dir = a.out.join(name);
    if dir.join("adapter/adapter_config.json").is_file() {
        (a.log)(&format!("[quickstart] {name}: reusing {}", dir.display()));
        return Ok(true);
    }
    let resume = evalverse_train::checkpoint::latest(&dir).is_some();
    (a.log)(&format!(
        "[quickstart] {name}: evalverse train {}{}",
        recipe.display(),
        if resume { " --resume" } else { "" }
    ));
    let r = evalverse_train::recipe::Recipe::load(recipe).map_err(usage)?;
    match evalverse_train::run_stage::<evalverse_model::Cpu>(
        &r,
        resume,
        &Default::default(),
        a.stop,
    ) {
        Ok(s) => {
            let first = s.losses.first().map(|l| l.1).unwrap_or(f64::NAN);
            let last = s.losses.last().map(|l| l.1).unwrap_or(f64::NAN);
            (a.log)(&format!(
                "[quickstart] {name}: trained {} steps on {} examples: loss {first:.4} -> {last:.4}{}",
                s.steps,
                s.examples,
                if s.skipped_clips.is_empty() {
                    String::new()
                } else {
                    format!(" ({} unreadable clips skipped)", s.skipped_clips.len())
                }
            ));
            Ok(true)
        }
        Err(e @ evalverse_train::runtime::TrainError::Interrupted { .. }) => {
            (a.log)(&format!(
                "[quickstart] {name}: {e}; run the quickstart again to resume"
            ));
            Ok(false)
        }
        Err(evalverse_train::runtime::TrainError::Config(m)) => {
            Err(usage(format!("{}: {m}", recipe.display())))
        }
        Err(e) => Err(RunError::Runtime(e.to_string())),
    }
}

/// The options of a checkpoint judge on CPU.
fn options<'a>(
    checkpoint: &'a str,
    base: Option<&'a str>,
    gate: evalverse_judge::GatePolicy,
    max_new_tokens: usize,
    fusion: Option<&'a Path>,
) -> JudgeOptions<'a> {
    JudgeOptions {
        bundle: None,
        checkpoint: Some(checkpoint),
        base,
        fusion,
        verify_base: false,
        gate: Some(gate),
        max_new_tokens: Some(max_new_tokens),
        device: Default::default(),
        dtype: evalverse_train::recipe::Dtype::F32,
    }
}

/// `evalverse eval` of one split into `out`; every judge sees the frames the SFT stage trained
/// on (`frames`), the untrained base included (alone it would get the Qwen defaults: other
/// frames, other pixels).
fn judge_split(
    a: &QuickstartArgs,
    out: &Path,
    judge: JudgeOptions,
    split: evalverse_data::split::Split,
    frames: &evalverse_data::video::FrameSpec,
) -> Result<Evaluation, RunError> {
    let (ev, _) = crate::pipeline::run_eval::<evalverse_model::Cpu>(
        &EvalArgs {
            judge,
            data: a.data,
            split,
            dimensions: a.dimensions,
            out: Some(out),
            batch_size: 16,
            bootstrap: a.bootstrap,
            seed: 0,
            pairwise: false,
            frames: Some(frames),
            show_progress: true,
        },
        &Default::default(),
    )?;
    for w in &ev.warnings {
        (a.log)(&format!("warning: {w}"));
    }
    Ok(ev)
}

/// The VLM alone (its own N/A answers, no gate, no fusion) on the test split.
fn judge_vlm(
    a: &QuickstartArgs,
    label: &str,
    checkpoint: &str,
    base: &Path,
    frames: &evalverse_data::video::FrameSpec,
) -> Result<Report, RunError> {
    let base = base.display().to_string();
    (a.log)(&format!(
        "[quickstart] eval {label}: judging the test split"
    ));
    let opts = options(
        checkpoint,
        (checkpoint == "none").then_some(base.as_str()),
        evalverse_judge::GatePolicy::Judge,
        a.max_new_tokens,
        None,
    );
    Ok(judge_split(
        a,
        &a.out.join(format!("eval-{label}")),
        opts,
        Split::Test,
        frames,
    )?
    .report)
}

/// The fusion stage (the paper's last step): the calibrated judge's reward head scores the
/// train split (no rationale: one prefill per prompt), a ridge regression per dimension (penalty
/// by 5-fold cross-validation over prompt groups) is fitted there from [head score, operator
/// measurements] to the experts' mean, and predicts the test split (`evalverse fuse`; the model
/// in fusion/fusion_model.json). None when the calibrated run has no reward head to score the
/// train split with.
fn fused(
    a: &QuickstartArgs,
    frames: &evalverse_data::video::FrameSpec,
) -> Result<Option<(Report, String)>, RunError> {
    let cal = a.out.join("calibrated");
    let head = evalverse_model::reward::RewardHead::load(&cal.join("adapter"))
        .map_err(|e| RunError::Usage(e.to_string()))?;
    if head.is_none() {
        (a.log)(&format!(
            "[quickstart] fused: skipped ({} has no reward head to score the train split with)",
            cal.display()
        ));
        return Ok(None);
    }
    let train_out = a.out.join("eval-calibrated-train");
    let cal_path = cal.display().to_string();
    (a.log)(&format!(
        "[quickstart] fused: reward-head scores of the train split (no rationale)"
    ));
    let opts = options(&cal_path, None, evalverse_judge::GatePolicy::Judge, 0, None);
    judge_split(a, &train_out, opts, Split::Train, frames)?;
    let mut judgements = crate::pipeline::read_judgements(&a.out.join("eval-calibrated"))?;
    judgements.extend(crate::pipeline::read_judgements(&train_out)?);
    let ds = evalverse_data::dataset::Dataset::load(a.data)?;
    let set = evalverse_data::operators::OperatorSet::all();
    let how = crate::fusion::regressor("ridge", 1.0, 0)?;
    (a.log)(&format!(
        "[quickstart] fused: operators on every clip, a ridge regression per dimension on the train split"
    ));
    let cache = evalverse_data::cache::DecodeCache::new(a.out.join("cache"));
    let f = match crate::fusion::fit_judgements(
        &ds,
        &judgements,
        &set,
        &how,
        5,
        &cache,
        a.bootstrap,
        0,
    ) {
        Ok(f) => f,
        // Too few judged rows on one side for any dimension (a cut-down run): no fused judge.
        Err(crate::fusion::FusionError::Usage(e)) => {
            (a.log)(&format!("[quickstart] fused: skipped: {e}"));
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let out = a.out.join("fusion");
    let model = format!(
        "fused (ridge, penalty by 5-fold CV) of {} and the operators",
        cal.display()
    );
    let report = crate::fusion::write(&f, &ds, &how, &set, &model, &out, a.bootstrap, 0)?;
    Ok(Some((report, crate::fusion::table(&f))))
}

/// The composed judge (calibrated VLM + fusion + the default context gate) measured on the
/// test split, then exported as the bundle `<out>/judge` with those figures.
fn composed(
    a: &QuickstartArgs,
    frames: &evalverse_data::video::FrameSpec,
    with_fusion: bool,
) -> Result<(Evaluation, PathBuf), RunError> {
    let cal = a.out.join("calibrated").display().to_string();
    let fusion = a.out.join("fusion");
    let gate = evalverse_judge::GatePolicy::default();
    (a.log)(&format!("[quickstart] judge: the composed judge (calibrated + fusion + {gate} gate) on the test split"));
    let eval_out = a.out.join("eval-judge");
    let opts = options(
        &cal,
        None,
        gate,
        a.max_new_tokens,
        with_fusion.then_some(fusion.as_path()),
    );
    let ev = judge_split(a, &eval_out, opts, Split::Test, frames)?;
    let bundle = a.out.join("judge");
    crate::publish::export(&crate::publish::ExportArgs {
        checkpoint: &cal,
        base: None,
        format: crate::publish::Format::Judge,
        out: Some(&bundle),
        max_shard_size: "2GB",
        dtype: crate::publish::ExportDtype::Base,
        eval: Some(&eval_out),
        base_name: None,
        force: true,
        fusion: with_fusion.then_some(fusion.as_path()),
        gate: Some(gate),
        max_new_tokens: Some(a.max_new_tokens),
    })?;
    Ok((ev, bundle))
}

fn cell(ci: &Option<crate::bootstrap::ConfidenceInterval>) -> String {
    match ci {
        Some(c) if c.estimate.is_finite() => format!("{:.3}", c.estimate),
        _ => "-".into(),
    }
}

/// The per-aspect table: SRCC, PLCC and pairwise accuracy of each judge, and the human ceiling.
pub fn table(judges: &[(&str, &Report)]) -> String {
    let Some((_, first)) = judges.first() else {
        return String::new();
    };
    let mut head = String::from("| aspect |");
    let mut rule = String::from("|---|");
    for (name, _) in judges {
        head.push_str(&format!(" {name} SRCC | {name} PLCC | {name} pair acc |"));
        rule.push_str("---|---|---|");
    }
    head.push_str(" human ceiling SRCC |");
    rule.push_str("---|");
    let mut out = format!("{head}\n{rule}\n");
    let rows = first
        .aspects
        .iter()
        .map(|g| g.name.clone())
        .chain(std::iter::once(first.overall.name.clone()));
    for name in rows {
        out.push_str(&format!("| {name} |"));
        for (_, r) in judges {
            let g = r
                .aspects
                .iter()
                .chain(std::iter::once(&r.overall))
                .find(|g| g.name == name);
            match g {
                Some(g) => out.push_str(&format!(
                    " {} | {} | {} |",
                    cell(&g.srcc),
                    cell(&g.plcc),
                    cell(&g.pairwise_accuracy)
                )),
                None => out.push_str(" - | - | - |"),
            }
        }
        let ceiling = first
            .aspects
            .iter()
            .chain(std::iter::once(&first.overall))
            .find(|g| g.name == name)
            .and_then(|g| g.human_ceiling_srcc);
        out.push_str(&match ceiling {
            Some(c) => format!(" {c:.3} |\n"),
            None => " - |\n".into(),
        });
    }
    out
}

/// The composed judge's N/A decisions against the experts' N/A majority, over every judgement.
fn na_line(ev: &Evaluation) -> String {
    use evalverse_judge::harness::Verdict;
    let js: Vec<_> = ev
        .judgements
        .iter()
        .filter(|j| j.verdict != Verdict::Malformed)
        .collect();
    let pred: Vec<bool> = js
        .iter()
        .map(|j| j.verdict == Verdict::NotApplicable)
        .collect();
    let truth: Vec<bool> = js.iter().map(|j| j.expert_na).collect();
    let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.3}"));
    match crate::metrics::na_gate(&pred, &truth) {
        Ok(g) => format!(
            "judge N/A against the experts' N/A: precision {} recall {} ({} of {} judgements are expert N/A; gate.md has every policy)\n",
            f(g.precision),
            f(g.recall),
            truth.iter().filter(|t| **t).count(),
            truth.len()
        ),
        Err(e) => format!("judge N/A: {e}\n"),
    }
}

/// Run every stage (reusing finished ones) and return the printed summary.
pub fn quickstart(a: &QuickstartArgs) -> Result<Outcome, RunError> {
    let started = Instant::now();
    if !a.tokenizer.is_file() {
        return Err(usage(format!(
            "{}: the Qwen tokenizer is missing; run scripts/fetch_test_assets.sh (or pass --tokenizer)",
            a.tokenizer.display()
        )));
    }
    std::fs::create_dir_all(a.out).ctx(|| a.out.display().to_string())?;
    let base = build_base(a)?;
    let sft_recipe = stage_recipe(a, "sft", &base, None)?;
    if !stage(a, "sft", &sft_recipe)? {
        return Ok(Outcome::Interrupted);
    }
    let sft_adapter = a.out.join("sft/adapter");
    let pref_recipe = stage_recipe(a, "calibrated", &base, Some(sft_adapter))?;
    if !stage(a, "calibrated", &pref_recipe)? {
        return Ok(Outcome::Interrupted);
    }
    let frames = evalverse_train::recipe::Recipe::load(&sft_recipe)
        .map_err(usage)?
        .data
        .frames;
    let base_report = judge_vlm(a, "base", "none", &base, &frames)?;
    let sft_path = a.out.join("sft").display().to_string();
    let sft_report = judge_vlm(a, "sft", &sft_path, &base, &frames)?;
    let cal_path = a.out.join("calibrated").display().to_string();
    let cal_report = judge_vlm(a, "calibrated", &cal_path, &base, &frames)?;
    let fusion = fused(a, &frames)?;
    let (judge_eval, bundle) = composed(a, &frames, fusion.is_some())?;
    let mut judges = vec![
        ("base", &base_report),
        ("SFT", &sft_report),
        ("calibrated", &cal_report),
    ];
    if let Some((r, _)) = &fusion {
        judges.push(("fused", r));
    }
    judges.push(("judge", &judge_eval.report));
    let t = table(&judges);
    let na = na_line(&judge_eval);
    let fusion_note = match &fusion {
        Some((_, per_dim)) => format!(
            "\nfused = the calibrated judge's score and the perception operators' measurements, \
             through a ridge regression per dimension fitted on the train split, its penalty chosen \
             by 5-fold cross-validation over the train split's prompt groups (`evalverse fuse`); SRCC per \
             dimension with 95% intervals:\n\n{per_dim}"
        ),
        None => String::new(),
    };
    let summary = a.out.join("summary.md");
    std::fs::write(
        &summary,
        format!(
            "# evalverse quickstart\n\nHeld-out split of {}: soft scores (expected value over the score tokens, or the reward head's score) against the mean expert score, over the clips both the judge and the experts scored; the human ceiling is leave-one-rater-out SRCC. base, SFT and calibrated are the VLM alone (its own N/A answers); judge is the composed judge (calibrated + fusion + context gate), the bundle {}.\n\n{t}\n{na}\n{fusion_note}",
            a.data.display(),
            bundle.display()
        ),
    )
    .ctx(|| summary.display().to_string())?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nHeld-out agreement with the experts (test split of {}):\n",
        a.data.display()
    );
    let _ = writeln!(o, "{t}\n{na}\n{fusion_note}");
    let mut evals: Vec<PathBuf> = ["base", "sft", "calibrated"]
        .iter()
        .map(|l| a.out.join(format!("eval-{l}")))
        .collect();
    if fusion.is_some() {
        evals.push(a.out.join("fusion/fused"));
    }
    evals.push(a.out.join("eval-judge"));
    let list = |f: &dyn Fn(&PathBuf) -> PathBuf, sep: &str| {
        evals
            .iter()
            .map(|e| f(e).display().to_string())
            .collect::<Vec<_>>()
            .join(sep)
    };
    let _ = writeln!(o, "reports:     {}", list(&|e| e.join("report.html"), "  "));
    let _ = writeln!(o, "tensorboard: tensorboard --logdir {}", a.out.display());
    let _ = writeln!(o, "summary:     {}", summary.display());
    let _ = writeln!(
        o,
        "compare:     evalverse leaderboard {}",
        list(&|e| e.clone(), " ")
    );
    let _ = writeln!(o, "judge:       {}", bundle.display());
    if let Some(c) = evalverse_data::dataset::Dataset::load(a.data)?
        .clips_in(Split::Test)
        .next()
    {
        let ds_root = a.data;
        let _ = writeln!(
            o,
            "try it:      evalverse judge {} --prompt {:?} --judge {}",
            ds_root.join(&c.video).display(),
            c.prompt,
            bundle.display()
        );
    }
    let _ = writeln!(
        o,
        "done in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(Outcome::Done(o))
}
