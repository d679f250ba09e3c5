//! The evaluation pipeline: the judge a command names (`JudgeOptions`: a bundle, a run, an
//! adapter or a base, with overrides) is opened and loaded, judges the annotated clips of a
//! split (each clip decoded and measured once, through the decode cache), and the judgements
//! become the agreement report with the N/A table of every gate policy beside it. `evalverse
//! eval`, the quickstart and the ablations call `run_eval` (or `evaluate` and `write`).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};

use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_data::taxonomy::Taxonomy;
use evalverse_data::video::FrameSpec;
use evalverse_judge::harness::{Judgement, Verdict};
use evalverse_judge::{ClipInput, GatePolicy, Judge, JudgeError};
use evalverse_model::ModelBackend;
use evalverse_train::judge_spec::{self, JudgeSource, OpenedJudge};
use evalverse_train::recipe::{Device, Dtype};

use crate::metrics::na_gate;
use crate::pairwise::{PairJudgement, PairwiseSummary};
use crate::report::Report;
use crate::RunError;

/// Which judge a judging command runs, with its overrides.
pub struct JudgeOptions<'a> {
    /// `--judge BUNDLE`.
    pub bundle: Option<&'a Path>,
    /// `--checkpoint` (a run, an adapter, or "none").
    pub checkpoint: Option<&'a str>,
    pub base: Option<&'a str>,
    /// A fitted fusion model for a checkpoint judge (a fuse folder or its fusion_model.json).
    pub fusion: Option<&'a Path>,
    /// Re-hash every byte of a bundle's base weights.
    pub verify_base: bool,
    pub gate: Option<GatePolicy>,
    pub max_new_tokens: Option<usize>,
    /// Where it runs (the caller picks the backend; see `run_eval`).
    pub device: Device,
    pub dtype: Dtype,
}

impl JudgeOptions<'_> {
    /// The judge named, with the overrides applied (not yet loaded).
    pub fn open(&self) -> Result<OpenedJudge, RunError> {
        let source = match (self.bundle, self.checkpoint) {
            (Some(b), None) => JudgeSource::Bundle(b),
            (None, Some(c)) => JudgeSource::Checkpoint(c),
            (Some(_), Some(_)) => {
                return Err(RunError::Usage(
                    "--judge and --checkpoint name two judges; pass one".into(),
                ))
            }
            (None, None) => {
                return Err(RunError::Usage(
                    "no judge: pass --judge BUNDLE (evalverse export RUN --format judge) or \
                     --checkpoint RUN"
                        .into(),
                ))
            }
        };
        let mut o = judge_spec::open(source, self.base, self.verify_base)?;
        if let Some(f) = self.fusion {
            if o.bundle.is_some() {
                return Err(RunError::Usage(
                    "--fusion: a bundle carries its own fusion model".into(),
                ));
            }
            o.fusion = Some(crate::fusion::read_model(f)?);
        }
        if let Some(g) = self.gate {
            o.spec.gate = g;
        }
        if let Some(n) = self.max_new_tokens {
            o.spec.max_new_tokens = n;
        }
        Ok(o)
    }
}

/// Load the opened judge on backend `B`, with `taxonomy` for a checkpoint judge (a bundle
/// carries its own).
pub fn load<B: ModelBackend>(
    o: &OpenedJudge,
    taxonomy: Taxonomy,
    dtype: Dtype,
    device: &B::Device,
) -> Result<Judge<B>, RunError> {
    let tax = o.taxonomy.clone().unwrap_or(taxonomy);
    Ok(Judge::load(
        o.spec.clone(),
        tax,
        o.fusion.clone(),
        evalverse_train::runtime::dtype(dtype),
        device,
    )?)
}

/// An evaluation as `evalverse eval` asks for it.
pub struct EvalArgs<'a> {
    pub judge: JudgeOptions<'a>,
    pub data: &'a Path,
    pub split: Split,
    pub dimensions: &'a [String],
    /// Report folder (default: the judge's, e.g. `<run>/eval`).
    pub out: Option<&'a Path>,
    pub batch_size: usize,
    pub bootstrap: usize,
    pub seed: u64,
    /// Also judge every pair of clips of a prompt group in both orders (A/B and B/A).
    pub pairwise: bool,
    /// Frame sampling to judge with instead of the judge's: a base (`none`) or a bare adapter
    /// judged on the same frames as a trained run.
    pub frames: Option<&'a FrameSpec>,
    /// Progress on stderr when it is a terminal.
    pub show_progress: bool,
}

/// Open and load the judge, judge the split, write the reports; returns the evaluation and its
/// folder.
pub fn run_eval<B: ModelBackend>(
    a: &EvalArgs,
    device: &B::Device,
) -> Result<(Evaluation, PathBuf), RunError> {
    let mut opened = a.judge.open()?;
    if let Some(f) = a.frames {
        opened.spec.frames = f.clone();
    }
    let out = a
        .out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opened.default_out.clone());
    let ds = Dataset::load(a.data)?;
    if let Some(b) = &opened.bundle {
        b.check_taxonomy(&ds.taxonomy, &format!("dataset {}", a.data.display()))?;
    }
    let judge = load::<B>(&opened, ds.taxonomy.clone(), a.judge.dtype, device)?;
    let cache = DecodeCache::new(out.join("cache"));
    let tty = a.show_progress && std::io::stderr().is_terminal();
    let mut progress = |stage: &str, done: usize, total: usize| {
        if tty {
            eprint!("\r{stage} {done}/{total}");
            let _ = std::io::stderr().flush();
            if done == total {
                eprintln!();
            }
        }
    };
    let ev = evaluate(
        &judge,
        &ds,
        &EvalSettings {
            split: a.split,
            dimensions: a.dimensions,
            batch_size: a.batch_size,
            bootstrap: a.bootstrap,
            seed: a.seed,
            pairwise: a.pairwise,
            model_name: &opened.model_name,
            adapter: opened.adapter_name.as_deref(),
        },
        &cache,
        &mut progress,
    )?;
    write(&ev, &out)?;
    Ok((ev, out))
}

/// What to evaluate and how.
pub struct EvalSettings<'a> {
    pub split: Split,
    /// Dimensions to judge (all when empty).
    pub dimensions: &'a [String],
    pub batch_size: usize,
    pub bootstrap: usize,
    pub seed: u64,
    /// Also judge every pair of clips of a prompt group in both orders.
    pub pairwise: bool,
    /// The judge's name in the report.
    pub model_name: &'a str,
    pub adapter: Option<&'a str>,
}

/// An evaluation's results.
pub struct Evaluation {
    pub report: Report,
    pub judgements: Vec<Judgement>,
    pub pairs: Option<(Vec<PairJudgement>, Vec<PairwiseSummary>)>,
    /// N/A precision / recall of each gate policy against the experts (markdown).
    pub gate_table: String,
    /// Clips not judged or judged without evidence, with the reason (naming the file).
    pub warnings: Vec<String>,
}

/// Judge the `split` of `ds` with `judge` and build the report. `progress(stage, done, total)`
/// reports decoding ("decoded"), pairwise judging ("pairs") and judging ("judged").
pub fn evaluate<B: ModelBackend>(
    judge: &Judge<B>,
    ds: &Dataset,
    s: &EvalSettings,
    cache: &DecodeCache,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Evaluation, JudgeError> {
    evalverse_judge::check_dimensions(&ds.taxonomy, s.dimensions)?;
    // The clips with annotations on the dimensions asked for (questions without evidence
    // first, to know which clips to decode and measure).
    let plain =
        evalverse_data::prompts::build(ds, s.split, s.dimensions).map_err(JudgeError::Config)?;
    if plain.is_empty() {
        return Err(JudgeError::Config(format!(
            "{}: no annotated clips in the {} split",
            ds.root.display(),
            s.split
        )));
    }
    let ids: BTreeSet<&str> = plain.iter().map(|e| e.clip_id.as_str()).collect();
    let inputs: Vec<ClipInput> = ds
        .clips
        .iter()
        .map(|c| &c.record)
        .filter(|c| ids.contains(c.id.as_str()))
        .map(|c| ClipInput::of_record(ds, c))
        .collect();
    let prepared = judge.prepare(&inputs, cache, |d, t| progress("decoded", d, t));
    let mut warnings = Vec::new();
    for (id, why) in &prepared.skipped {
        warnings.push(format!("skipping clip {id}: {why}"));
    }
    for (id, why) in &prepared.no_evidence {
        warnings.push(format!("no operator evidence for clip {id}: {why}"));
    }
    let examples = evalverse_data::prompts::build_with_evidence(ds, s.split, s.dimensions, &|id| {
        prepared.prompt_evidence.get(id).cloned()
    })
    .map_err(JudgeError::Config)?;
    let pairs = if s.pairwise {
        let pairs = crate::pairwise::judge_pairs(
            &judge.model,
            &judge.tok,
            &examples,
            &prepared.clips,
            s.batch_size,
            |d, t| progress("pairs", d, t),
        )
        .map_err(JudgeError::Runtime)?;
        let summary = crate::pairwise::summaries(&pairs, 0.0);
        Some((pairs, summary))
    } else {
        None
    };
    let judgements = judge.judge(examples, &inputs, &prepared, s.batch_size, |d, t| {
        progress("judged", d, t)
    })?;
    let mut report = crate::report::build(
        ds,
        s.split,
        &judgements,
        s.model_name,
        s.adapter,
        prepared.skipped.iter().map(|(i, _)| i.clone()).collect(),
        s.bootstrap,
        s.seed,
    );
    report.frames = Some(judge.spec.frames.clone());
    let gate_table = gate_table(&judgements, judge.spec.gate);
    Ok(Evaluation {
        report,
        judgements,
        pairs,
        gate_table,
        warnings,
    })
}

/// Write report.json / .md / .html, judgements.jsonl, gate.md and (with pairwise judging)
/// pairwise.jsonl / .json / .md into `out`, each atomically.
pub fn write(ev: &Evaluation, out: &Path) -> Result<(), JudgeError> {
    let rt = |e: &dyn std::fmt::Display| JudgeError::Runtime(format!("{}: {e}", out.display()));
    crate::report::write_all(&ev.report, out).map_err(|e| rt(&e))?;
    let put = |name: &str, text: &str| {
        evalverse_data::error::write_atomic(&out.join(name), text.as_bytes())
            .map_err(|e| JudgeError::Runtime(e.to_string()))
    };
    put("judgements.jsonl", &jsonl(&ev.judgements))?;
    put("gate.md", &ev.gate_table)?;
    if let Some((pairs, summary)) = &ev.pairs {
        put("pairwise.jsonl", &jsonl(pairs))?;
        put(
            "pairwise.json",
            &serde_json::to_string_pretty(summary).expect("json"),
        )?;
        put("pairwise.md", &crate::pairwise::markdown(summary))?;
    }
    Ok(())
}

/// The judgements.jsonl of an eval folder or of a run's eval/ folder. A missing file is a usage
/// error; a line that is not a judgement is invalid data (runtime), named by file and line.
pub fn read_judgements(run: &Path) -> Result<Vec<Judgement>, RunError> {
    let file = [
        run.join("judgements.jsonl"),
        run.join("eval/judgements.jsonl"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        RunError::Usage(format!(
            "{}: no judgements.jsonl (run `evalverse eval --out {}` first)",
            run.display(),
            run.display()
        ))
    })?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| RunError::Runtime(format!("{}: {e}", file.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| RunError::Runtime(format!("{}:{}: {e}", file.display(), i + 1)))
        })
        .collect()
}

/// One JSON object per line.
pub fn jsonl<T: serde::Serialize>(rows: &[T]) -> String {
    rows.iter()
        .map(|r| serde_json::to_string(r).expect("json") + "\n")
        .collect()
}

/// Whether `policy` would answer N/A for `j` (None when it cannot tell: the gate measured
/// nothing for a policy that needs it, or the VLM gave no verdict for one that needs that).
fn policy_na(j: &Judgement, policy: GatePolicy) -> Option<bool> {
    let judge = j
        .text_verdict
        .filter(|v| *v != Verdict::Malformed)
        .map(|v| v == Verdict::NotApplicable);
    // The policy's own rule (`GatePolicy::na_source`) over every value an unknown stage could
    // take: decided when they all agree.
    let either = |x: Option<bool>| x.map_or(vec![false, true], |b| vec![b]);
    let mut outcomes = BTreeSet::new();
    for g in either(j.gate_na) {
        for v in either(judge) {
            outcomes.insert(policy.na_source(g, v).is_some());
        }
    }
    (outcomes.len() == 1).then(|| outcomes.into_iter().next().expect("one"))
}

/// N/A precision and recall of each gate policy against the experts' N/A majority, per
/// dimension and overall, the policy in use marked; "-" where undefined.
pub fn gate_table(js: &[Judgement], in_use: GatePolicy) -> String {
    let policies = [GatePolicy::Judge, GatePolicy::Operators, GatePolicy::Both];
    let mut s = String::from("| dimension |");
    let mut rule = String::from("|---|");
    for p in policies {
        let mark = if p == in_use { " (in use)" } else { "" };
        s.push_str(&format!(
            " {p}{mark} N/A precision | {p}{mark} N/A recall |"
        ));
        rule.push_str("---|---|");
    }
    s.push_str(" expert N/A |\n");
    s.push_str(&rule);
    s.push_str("---|\n");
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut dims: Vec<&str> = Vec::new();
    for j in js {
        if !dims.contains(&j.dimension.as_str()) {
            dims.push(&j.dimension);
        }
    }
    let row = |name: &str, rows: &[&Judgement]| {
        let mut line = format!("| {name} |");
        for p in policies {
            let (pred, truth): (Vec<bool>, Vec<bool>) = rows
                .iter()
                .filter_map(|j| policy_na(j, p).map(|na| (na, j.expert_na)))
                .unzip();
            let g = na_gate(&pred, &truth).ok();
            line.push_str(&format!(
                " {} | {} |",
                f(g.as_ref().and_then(|g| g.precision)),
                f(g.as_ref().and_then(|g| g.recall))
            ));
        }
        let n = rows.iter().filter(|j| j.expert_na).count();
        line.push_str(&format!(" {n}/{} |\n", rows.len()));
        line
    };
    for d in &dims {
        let rows: Vec<&Judgement> = js.iter().filter(|j| j.dimension == *d).collect();
        s.push_str(&row(d, &rows));
    }
    let all: Vec<&Judgement> = js.iter().collect();
    s.push_str(&row("overall", &all));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(dim: &str, text: Verdict, gate_na: Option<bool>, expert_na: bool) -> Judgement {
        Judgement {
            dimension: dim.into(),
            text_verdict: Some(text),
            gate_na,
            expert_na,
            ..Default::default()
        }
    }

    #[test]
    fn gate_table_scores_each_policy_against_the_experts() {
        let na = Verdict::NotApplicable;
        let s4 = Verdict::Score(4.0);
        let js = vec![
            // The experts say N/A on two vocal clips; the gate finds both, the VLM one.
            j("vocal", na, Some(true), true),
            j("vocal", s4, Some(true), true),
            j("vocal", na, Some(false), false),
            j("vocal", s4, Some(false), false),
        ];
        let t = gate_table(&js, GatePolicy::Operators);
        let vocal = t.lines().find(|l| l.starts_with("| vocal")).unwrap();
        let cells: Vec<&str> = vocal.split('|').map(str::trim).collect();
        // judge: TP 1, FP 1, FN 1 -> 0.5 / 0.5; operators: 1.0 / 1.0; both: TP 2, FP 1 -> 0.667 / 1.0
        assert_eq!(
            &cells[2..9],
            &["0.500", "0.500", "1.000", "1.000", "0.667", "1.000", "2/4"]
        );
        assert!(t.contains("operators (in use) N/A precision"), "{t}");
    }
}
