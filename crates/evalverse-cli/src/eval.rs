//! `evalverse eval`: judge a split with a base model + adapter and write the agreement report
//! (report.json, report.md, report.html).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use burn::tensor::DType;
use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_data::video::{FrameSpec, PatchSpec};
use evalverse_eval::harness::{judge_units, JudgeSettings};
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::reward::RewardHead;
use evalverse_model::weights::ModelSource;
use evalverse_model::{Cpu, ModelBackend, QwenVl};
use evalverse_train::recipe::Device;

use crate::Failure;

pub struct EvalArgs<'a> {
    pub checkpoint: &'a str,
    pub base: Option<&'a str>,
    pub data: &'a Path,
    pub split: Split,
    pub dimensions: &'a [String],
    pub out: Option<&'a Path>,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub bootstrap: usize,
    pub seed: u64,
    /// Also judge every pair of clips of a prompt group in both orders (A/B and B/A).
    pub pairwise: bool,
    /// Also run the operators' context gate and report its N/A precision and recall beside the
    /// judge's, against the experts' N/A labels.
    pub gate: bool,
    /// Frame sampling to judge with instead of the checkpoint's (a run's recipe, else the Qwen
    /// defaults): a base (`none`) or a bare adapter judged on the same frames as a trained run.
    pub frames: Option<&'a FrameSpec>,
    /// Where the judge runs (`cuda` needs a `--features cuda` build).
    pub device: Device,
    /// Dtype of the base weights (an adapter folded in takes it too).
    pub dtype: evalverse_train::recipe::Dtype,
}

/// Base model, adapter and frame spec named by `--checkpoint` (a run folder, an adapter folder, or
/// "none") and `--base`.
/// `--checkpoint` and `--base` resolved to (base model, adapter folder, frame spec, default report
/// folder); shared with `evalverse export`, so an export holds exactly what eval judges with.
pub fn resolve_checkpoint(
    checkpoint: &str,
    base: Option<&str>,
) -> Result<(String, Option<PathBuf>, FrameSpec, PathBuf), Failure> {
    let usage = |m: String| Failure::Usage(anyhow!(m));
    if checkpoint == "none" {
        let base = base.ok_or_else(|| usage("--checkpoint none needs --base MODEL".into()))?;
        return Ok((
            base.to_string(),
            None,
            FrameSpec::default(),
            PathBuf::from("runs/eval-base"),
        ));
    }
    let p = Path::new(checkpoint);
    if p.join("recipe.toml").is_file() && p.join("adapter").is_dir() {
        let r = evalverse_train::recipe::Recipe::load(&p.join("recipe.toml"))
            .map_err(|e| usage(e.to_string()))?;
        let base = base.map(str::to_owned).unwrap_or(r.model.source.clone());
        return Ok((
            base,
            Some(p.join("adapter")),
            r.data.frames.clone(),
            p.join("eval"),
        ));
    }
    if p.join("adapter_config.json").is_file() {
        let base = match base {
            Some(b) => b.to_string(),
            None => {
                let text = std::fs::read_to_string(p.join("adapter_config.json"))
                    .map_err(|e| usage(format!("{}: {e}", p.display())))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| usage(format!("{}: {e}", p.display())))?;
                v["base_model_name_or_path"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        usage(format!(
                            "{}: no base_model_name_or_path; pass --base",
                            p.display()
                        ))
                    })?
            }
        };
        return Ok((
            base,
            Some(p.to_path_buf()),
            FrameSpec::default(),
            p.join("eval"),
        ));
    }
    Err(usage(format!("--checkpoint {}: not a run folder (recipe.toml + adapter/), an adapter folder (adapter_config.json), or \"none\"", p.display())))
}

pub fn eval(a: &EvalArgs) -> Result<ExitCode, Failure> {
    let (report, out) = run(a, true)?;
    let md = evalverse_eval::report::markdown(&report);
    let aspect_table: String = md
        .split("\n\n")
        .filter(|b| b.starts_with("| aspect"))
        .collect();
    println!("{aspect_table}\n");
    println!(
        "{} judgements ({} malformed) -> {}",
        report.judged,
        report.malformed,
        out.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The base model with the adapter folded in, its tokenizer, and the reward head saved beside
/// the adapter if the run trained one.
pub fn load_judge<B: ModelBackend>(
    base: &str,
    adapter: Option<&Path>,
    dtype: DType,
    device: &B::Device,
) -> Result<(QwenVl<B>, ChatTokenizer, Option<RewardHead>), Failure> {
    let files = ModelSource::parse(base)
        .and_then(|s| s.resolve())
        .map_err(|e| Failure::Usage(anyhow!("--base {base}: {e}")))?;
    let tok_path = files
        .tokenizer
        .clone()
        .ok_or_else(|| Failure::Usage(anyhow!("{base} has no tokenizer.json")))?;
    let tok = ChatTokenizer::from_file(&tok_path).map_err(|e| Failure::Usage(anyhow!(e)))?;
    let mut model = QwenVl::<B>::load_files(&files.config, &files.weights, dtype, device)
        .map_err(|e| Failure::Runtime(anyhow!(e)))?;
    tok.check_model(&model.cfg)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    if let Some(dir) = adapter {
        evalverse_model::lora::load_peft(&mut model, dir).map_err(|e| {
            Failure::Usage(anyhow!(
                "adapter {} does not fit base {base}: {e}",
                dir.display()
            ))
        })?;
        // Folded in for speed: identical outputs, one matmul per layer.
        evalverse_model::lora::merge_all(&mut model);
    }
    // Beside the adapter, or in the model folder of a merged export.
    let head_dir = adapter
        .map(Path::to_path_buf)
        .or_else(|| Path::new(base).is_dir().then(|| PathBuf::from(base)));
    let head = match &head_dir {
        Some(dir) => RewardHead::load(dir).map_err(|e| Failure::Usage(anyhow!(e)))?,
        None => None,
    };
    if let Some(h) = &head {
        if h.config.hidden_size != model.cfg.text.hidden_size {
            return Err(Failure::Usage(anyhow!(
                "{}: the reward head is for hidden size {}, base {base} has {}",
                head_dir
                    .expect("head")
                    .join(evalverse_model::reward::CONFIG)
                    .display(),
                h.config.hidden_size,
                model.cfg.text.hidden_size
            )));
        }
    }
    Ok((model, tok, head))
}

/// Judge the split and write the reports; returns the report and its folder.
pub fn run(
    a: &EvalArgs,
    show_progress: bool,
) -> Result<(evalverse_eval::report::Report, PathBuf), Failure> {
    match a.device {
        Device::Cpu => run_on::<Cpu>(a, show_progress, &Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda => run_on::<burn::backend::Cuda>(
            a,
            show_progress,
            &burn::backend::cuda::CudaDevice::new(0),
        ),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => Err(Failure::Usage(anyhow!(
            "--device cuda: this evalverse was built without CUDA \
             (cargo build --release -p evalverse-cli --features cuda)"
        ))),
    }
}

/// `run` on backend B.
fn run_on<B: ModelBackend>(
    a: &EvalArgs,
    show_progress: bool,
    device: &B::Device,
) -> Result<(evalverse_eval::report::Report, PathBuf), Failure> {
    let (base, adapter, frames, default_out) = resolve_checkpoint(a.checkpoint, a.base)?;
    let frames = a.frames.cloned().unwrap_or(frames);
    let out = a.out.map(Path::to_path_buf).unwrap_or(default_out);
    let ds = Dataset::load(a.data).map_err(|e| Failure::Usage(anyhow!(e)))?;
    // A run is judged as it was trained: with the same operator evidence in its prompts and
    // the same response unit (one prompt per dimension or per aspect).
    let (operators, unit) = match Path::new(a.checkpoint).join("recipe.toml") {
        r if r.is_file() => {
            let recipe = evalverse_train::recipe::Recipe::load(&r)
                .map_err(|e| Failure::Usage(anyhow!("{e}")))?;
            (
                recipe
                    .data
                    .operator_set()
                    .map_err(|m| Failure::Usage(anyhow!(m)))?,
                recipe.data.unit,
            )
        }
        _ => Default::default(),
    };
    let cache = DecodeCache::new(out.join("cache"));
    let (evidence, failed) =
        evalverse_data::prompts::split_evidence(&ds, a.split, &operators, &cache);
    for (id, why) in &failed {
        eprintln!("warning: no operator evidence for clip {id}: {why}");
    }
    let examples =
        evalverse_data::prompts::build_with_evidence(&ds, a.split, a.dimensions, &|id| {
            evidence.get(id).cloned()
        })
        .map_err(|m| Failure::Usage(anyhow!(m)))?;
    if examples.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "{}: no annotated clips in the {} split",
            a.data.display(),
            a.split
        )));
    }
    let dtype = evalverse_train::runtime::dtype(a.dtype);
    let (model, tok, head) = load_judge::<B>(&base, adapter.as_deref(), dtype, device)?;
    if a.max_new_tokens == 0 && head.is_none() {
        return Err(Failure::Usage(anyhow!(
            "--max-new-tokens 0 scores with the run's reward head alone, and {} has none \
             (a Bradley-Terry run with readout = \"head\" has one)",
            a.checkpoint
        )));
    }
    let mut ids: Vec<&str> = examples.iter().map(|e| e.clip_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let clips: Vec<_> = ds
        .clips
        .iter()
        .map(|c| &c.record)
        .filter(|c| ids.binary_search(&c.id.as_str()).is_ok())
        .collect();
    let loaded = cache.load_clips(&ds, clips, &frames, &PatchSpec::default(), false);
    for (id, why) in &loaded.skipped {
        eprintln!("warning: skipping clip {id}: {why}");
    }
    let by_video = loaded
        .clips
        .into_iter()
        .map(|(c, v)| (ds.video_path(c), v))
        .collect();
    let tty = show_progress && std::io::stderr().is_terminal();
    if a.pairwise {
        let pairs = evalverse_eval::pairwise::judge_pairs(
            &model,
            &tok,
            &examples,
            &by_video,
            a.batch_size,
            |done, total| {
                if tty {
                    eprint!("\rpairs {done}/{total}");
                    let _ = std::io::stderr().flush();
                }
            },
        )
        .map_err(|m| Failure::Runtime(anyhow!(m)))?;
        if tty {
            eprintln!();
        }
        let summary = evalverse_eval::pairwise::summaries(&pairs, 0.0);
        std::fs::create_dir_all(&out)
            .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", out.display())))?;
        let write = |name: &str, text: String| {
            std::fs::write(out.join(name), text)
                .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", out.join(name).display())))
        };
        write(
            "pairwise.jsonl",
            pairs
                .iter()
                .map(|j| serde_json::to_string(j).expect("json") + "\n")
                .collect(),
        )?;
        write(
            "pairwise.json",
            serde_json::to_string_pretty(&summary).expect("json"),
        )?;
        let md = evalverse_eval::pairwise::markdown(&summary);
        write("pairwise.md", md.clone())?;
        println!("Pairwise, both orders (A/B, B/A):\n\n{md}");
    }
    let units =
        evalverse_data::prompts::group_units(&ds, examples, unit, &|id| evidence.get(id).cloned());
    let judgements = judge_units(
        &model,
        &tok,
        &ds.taxonomy,
        &units,
        &by_video,
        &JudgeSettings {
            max_new_tokens: a.max_new_tokens,
            batch_size: a.batch_size,
            head,
        },
        |done, total| {
            if tty {
                eprint!("\rjudged {done}/{total}");
                let _ = std::io::stderr().flush();
            }
        },
    )
    .map_err(|m| Failure::Runtime(anyhow!(m)))?;
    if tty {
        eprintln!();
    }
    let mut report = evalverse_eval::report::build(
        &ds,
        a.split,
        &judgements,
        &base,
        adapter.as_ref().map(|p| p.display().to_string()).as_deref(),
        loaded.skipped.iter().map(|(i, _)| i.clone()).collect(),
        a.bootstrap,
        a.seed,
    );
    report.frames = Some(frames.clone());
    evalverse_eval::report::write_all(&report, &out)
        .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", out.display())))?;
    std::fs::write(
        out.join("judgements.jsonl"),
        judgements
            .iter()
            .map(|j| serde_json::to_string(j).expect("json") + "\n")
            .collect::<String>(),
    )
    .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", out.display())))?;
    if a.gate {
        let md = gate_report(&ds, a.split, &judgements, &report, &cache)?;
        std::fs::write(out.join("gate.md"), &md)
            .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", out.display())))?;
        println!("N/A decisions against the experts' N/A labels:\n\n{md}");
    }
    Ok((report, out))
}

/// The operators' context gate on every judged clip x dimension, scored against the experts' N/A
/// majority beside the judge's own N/A answers; a markdown table per dimension and overall.
fn gate_report(
    ds: &Dataset,
    split: Split,
    judgements: &[evalverse_eval::harness::Judgement],
    report: &evalverse_eval::report::Report,
    cache: &DecodeCache,
) -> Result<String, Failure> {
    use evalverse_eval::metrics::na_gate;
    let (evidence, failed) = evalverse_data::prompts::split_evidence(
        ds,
        split,
        &evalverse_data::operators::OperatorSet::all(),
        cache,
    );
    for (id, why) in &failed {
        eprintln!("warning: gate: no evidence for clip {id}: {why}");
    }
    let mut rows = String::from(
        "| dimension | judge N/A precision | judge N/A recall | gate N/A precision | gate N/A recall |\n|---|---|---|---|---|\n",
    );
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let (mut all_pred, mut all_truth) = (Vec::new(), Vec::new());
    for d in &report.dimensions {
        let Some(dim) = ds.taxonomy.dimension(&d.dimension) else {
            continue;
        };
        let (mut pred, mut truth) = (Vec::new(), Vec::new());
        for j in judgements.iter().filter(|j| j.dimension == d.dimension) {
            let clip = ds
                .clips
                .iter()
                .map(|c| &c.record)
                .find(|c| c.id == j.clip_id);
            if let (Some(clip), Some(ev)) = (clip, evidence.get(&j.clip_id)) {
                pred.push(!evalverse_data::operators::gate(dim, clip, ev).applies);
                truth.push(j.expert_na);
            }
        }
        let g = na_gate(&pred, &truth).ok();
        rows.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            d.dimension,
            f(d.na_gate.as_ref().and_then(|g| g.precision)),
            f(d.na_gate.as_ref().and_then(|g| g.recall)),
            f(g.as_ref().and_then(|g| g.precision)),
            f(g.as_ref().and_then(|g| g.recall)),
        ));
        all_pred.extend(pred);
        all_truth.extend(truth);
    }
    let g = na_gate(&all_pred, &all_truth).ok();
    let judged: Vec<_> = judgements
        .iter()
        .filter(|j| j.verdict != evalverse_eval::harness::Verdict::Malformed)
        .collect();
    let jg = na_gate(
        &judged
            .iter()
            .map(|j| j.verdict == evalverse_eval::harness::Verdict::NotApplicable)
            .collect::<Vec<_>>(),
        &judged.iter().map(|j| j.expert_na).collect::<Vec<_>>(),
    )
    .ok();
    rows.push_str(&format!(
        "| overall | {} | {} | {} | {} |\n",
        f(jg.as_ref().and_then(|g| g.precision)),
        f(jg.as_ref().and_then(|g| g.recall)),
        f(g.as_ref().and_then(|g| g.precision)),
        f(g.as_ref().and_then(|g| g.recall)),
    ));
    Ok(rows)
}
