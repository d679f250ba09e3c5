//! `evalverse quickstart`: the whole pipeline on CPU with a tiny Qwen2.5-VL. Rebuilds the
//! caption-pretrained tiny base (random init + the shipped pretraining adapter, merged), runs
//! chain-of-thought LoRA SFT and preference calibration from recipes/quickstart/, judges the
//! held-out split with the base, the SFT judge and the calibrated judge, fuses the calibrated
//! judge's scores with the perception operators (a ridge regression per dimension fitted on the
//! train split, its penalty chosen by cross-validation over the train split's prompt groups,
//! `evalverse fuse`), and prints their agreement with the experts per aspect beside the human
//! ceiling. Stages whose output exists
//! are reused; an interrupted stage resumes from its checkpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context};
use evalverse_eval::report::Report;
use serde::Deserialize;

use evalverse_data::split::Split;
use evalverse_eval::pipeline::Evaluation;

use crate::eval::EvalArgs;
use crate::judging::JudgeOptions;
use crate::Failure;

pub struct QuickstartArgs<'a> {
    pub data: &'a Path,
    pub out: &'a Path,
    pub tokenizer: &'a Path,
    pub base_spec: &'a Path,
    pub recipes: &'a Path,
    pub dimensions: &'a [String],
    pub max_new_tokens: usize,
    pub bootstrap: usize,
}

/// `<base_spec>/base.toml`: how the tiny base is rebuilt.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSpec {
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vision_hidden: usize,
    vision_depth: usize,
    seed: u64,
    init_std: f64,
    embed_std: Option<f64>,
    /// Caption-pretraining adapter folder, relative to the spec's folder, merged into the
    /// random init; absent: the base is the random init itself.
    #[serde(default)]
    adapter: Option<PathBuf>,
    /// The recipe that trained the adapter (documentation; not run here).
    #[serde(default)]
    #[allow(dead_code)]
    recipe: Option<PathBuf>,
}

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure::Usage(anyhow!("{m}"))
}

/// Make `<out>/base` from the spec unless it is there.
fn build_base(a: &QuickstartArgs) -> Result<PathBuf, Failure> {
    let base = a.out.join("base");
    if base.join("config.json").is_file() {
        eprintln!("[quickstart] base: reusing {}", base.display());
        return Ok(base);
    }
    let spec_path = a.base_spec.join("base.toml");
    let text = std::fs::read_to_string(&spec_path)
        .map_err(|e| usage(format!("{}: {e}", spec_path.display())))?;
    let spec: BaseSpec =
        toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", spec_path.display())))?;
    let random = a.out.join("base-random");
    let _ = std::fs::remove_dir_all(&random);
    crate::model::init(&crate::model::InitArgs {
        out: &random,
        tokenizer: a.tokenizer,
        hidden: spec.hidden,
        layers: spec.layers,
        heads: spec.heads,
        kv_heads: spec.kv_heads,
        vision_hidden: spec.vision_hidden,
        vision_depth: spec.vision_depth,
        seed: spec.seed,
        init_std: spec.init_std,
        embed_std: spec.embed_std,
    })?;
    let Some(rel) = &spec.adapter else {
        std::fs::rename(&random, &base).with_context(|| base.display().to_string())?;
        eprintln!(
            "[quickstart] base: random init (seed {}, embedding std {:?}) -> {}",
            spec.seed,
            spec.embed_std,
            base.display()
        );
        return Ok(base);
    };
    let adapter = a.base_spec.join(rel);
    crate::export::export(&crate::export::ExportArgs {
        checkpoint: &adapter.display().to_string(),
        base: Some(&random.display().to_string()),
        format: crate::export::Format::Merged,
        out: Some(&base),
        max_shard_size: "2GB",
        dtype: crate::export::ExportDtype::Base,
        eval: None,
        base_name: None,
        force: false,
        fusion: None,
        gate: None,
        max_new_tokens: None,
    })?;
    std::fs::remove_dir_all(&random).with_context(|| random.display().to_string())?;
    eprintln!(
        "[quickstart] base: random init (seed {}) + caption-pretrained adapter {} merged -> {}",
        spec.seed,
        adapter.display(),
        base.display()
    );
    Ok(base)
}

/// Write `<out>/recipes/<name>.toml`: the shipped recipe pointed at this run's folders.
fn stage_recipe(
    a: &QuickstartArgs,
    name: &str,
    base: &Path,
    adapter: Option<PathBuf>,
) -> Result<PathBuf, Failure> {
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
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, r.to_toml()).with_context(|| path.display().to_string())?;
    Ok(path)
}

/// Train a stage unless its adapter exists; resume when it has checkpoints.
fn stage(a: &QuickstartArgs, name: &str, recipe: &Path) -> Result<bool, Failure> {
    let dir = a.out.join(name);
    if dir.join("adapter/adapter_config.json").is_file() {
        eprintln!("[quickstart] {name}: reusing {}", dir.display());
        return Ok(true);
    }
    let resume = evalverse_train::checkpoint::latest(&dir).is_some();
    eprintln!(
        "[quickstart] {name}: evalverse train {}{}",
        recipe.display(),
        if resume { " --resume" } else { "" }
    );
    crate::train::run_stage(recipe, resume)
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
) -> Result<Evaluation, Failure> {
    let (ev, _) = crate::eval::run(&EvalArgs {
        judge,
        data: a.data,
        split,
        dimensions: a.dimensions,
        out: Some(out),
        batch_size: 16,
        bootstrap: a.bootstrap,
        seed: 0,
        pairwise: false,
        gate: false,
        frames: Some(frames),
        show_progress: true,
    })?;
    Ok(ev)
}

/// The VLM alone (its own N/A answers, no gate, no fusion) on the test split.
fn judge_vlm(
    a: &QuickstartArgs,
    label: &str,
    checkpoint: &str,
    base: &Path,
    frames: &evalverse_data::video::FrameSpec,
) -> Result<Report, Failure> {
    let base = base.display().to_string();
    eprintln!("[quickstart] eval {label}: judging the test split");
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
) -> Result<Option<(Report, String)>, Failure> {
    let cal = a.out.join("calibrated");
    let head = evalverse_model::reward::RewardHead::load(&cal.join("adapter"))
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    if head.is_none() {
        eprintln!(
            "[quickstart] fused: skipped ({} has no reward head to score the train split with)",
            cal.display()
        );
        return Ok(None);
    }
    let train_out = a.out.join("eval-calibrated-train");
    let cal_path = cal.display().to_string();
    eprintln!("[quickstart] fused: reward-head scores of the train split (no rationale)");
    let opts = options(&cal_path, None, evalverse_judge::GatePolicy::Judge, 0, None);
    judge_split(a, &train_out, opts, Split::Train, frames)?;
    let mut judgements = crate::fuse::judgements_of(&a.out.join("eval-calibrated"))?;
    judgements.extend(crate::fuse::judgements_of(&train_out)?);
    let ds = evalverse_data::dataset::Dataset::load(a.data)?;
    let set = evalverse_data::operators::OperatorSet::all();
    let how = crate::fuse::regressor("ridge", 1.0, 0)?;
    eprintln!(
        "[quickstart] fused: operators on every clip, a ridge regression per dimension on the train split"
    );
    let cache = evalverse_data::cache::DecodeCache::new(a.out.join("cache"));
    let f = match crate::fuse::fit(&ds, &judgements, &set, &how, 5, &cache, a.bootstrap, 0) {
        Ok(f) => f,
        // Too few judged rows on one side for any dimension (a cut-down run): no fused judge.
        Err(Failure::Usage(e)) => {
            eprintln!("[quickstart] fused: skipped: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let out = a.out.join("fusion");
    let model = format!(
        "fused (ridge, penalty by 5-fold CV) of {} and the operators",
        cal.display()
    );
    let report = crate::fuse::write(&f, &ds, &how, &set, &model, &out, a.bootstrap, 0)?;
    Ok(Some((report, crate::fuse::table(&f))))
}

/// The composed judge (calibrated VLM + fusion + the default context gate) measured on the
/// test split, then exported as the bundle `<out>/judge` with those figures.
fn composed(
    a: &QuickstartArgs,
    frames: &evalverse_data::video::FrameSpec,
    with_fusion: bool,
) -> Result<(Evaluation, PathBuf), Failure> {
    let cal = a.out.join("calibrated").display().to_string();
    let fusion = a.out.join("fusion");
    let gate = evalverse_judge::GatePolicy::default();
    eprintln!("[quickstart] judge: the composed judge (calibrated + fusion + {gate} gate) on the test split");
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
    crate::export::export(&crate::export::ExportArgs {
        checkpoint: &cal,
        base: None,
        format: crate::export::Format::Judge,
        out: Some(&bundle),
        max_shard_size: "2GB",
        dtype: crate::export::ExportDtype::Base,
        eval: Some(&eval_out),
        base_name: None,
        force: true,
        fusion: with_fusion.then_some(fusion.as_path()),
        gate: Some(gate),
        max_new_tokens: Some(a.max_new_tokens),
    })?;
    Ok((ev, bundle))
}

fn cell(ci: &Option<evalverse_eval::bootstrap::ConfidenceInterval>) -> String {
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
    match evalverse_eval::metrics::na_gate(&pred, &truth) {
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

pub fn quickstart(a: &QuickstartArgs) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    if !a.tokenizer.is_file() {
        return Err(usage(format!(
            "{}: the Qwen tokenizer is missing; run scripts/fetch_test_assets.sh (or pass --tokenizer)",
            a.tokenizer.display()
        )));
    }
    std::fs::create_dir_all(a.out).with_context(|| a.out.display().to_string())?;
    let base = build_base(a)?;
    let sft_recipe = stage_recipe(a, "sft", &base, None)?;
    if !stage(a, "sft", &sft_recipe)? {
        return Ok(ExitCode::from(1));
    }
    let sft_adapter = a.out.join("sft/adapter");
    let pref_recipe = stage_recipe(a, "calibrated", &base, Some(sft_adapter))?;
    if !stage(a, "calibrated", &pref_recipe)? {
        return Ok(ExitCode::from(1));
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
    .with_context(|| summary.display().to_string())?;
    println!(
        "\nHeld-out agreement with the experts (test split of {}):\n",
        a.data.display()
    );
    println!("{t}\n{na}\n{fusion_note}");
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
    println!("reports:     {}", list(&|e| e.join("report.html"), "  "));
    println!("tensorboard: tensorboard --logdir {}", a.out.display());
    println!("summary:     {}", summary.display());
    println!(
        "compare:     evalverse leaderboard {}",
        list(&|e| e.clone(), " ")
    );
    println!("judge:       {}", bundle.display());
    if let Some(c) = evalverse_data::dataset::Dataset::load(a.data)?
        .clips_in(Split::Test)
        .next()
    {
        let ds_root = a.data;
        println!(
            "try it:      evalverse judge {} --prompt {:?} --judge {}",
            ds_root.join(&c.video).display(),
            c.prompt,
            bundle.display()
        );
    }
    println!("done in {:.1} min", started.elapsed().as_secs_f64() / 60.0);
    Ok(ExitCode::SUCCESS)
}
