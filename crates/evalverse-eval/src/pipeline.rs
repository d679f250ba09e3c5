//! The evaluation pipeline: a `Judge` judges the annotated clips of a split (each clip decoded
//! and measured once, through the decode cache), and the judgements become the agreement report
//! with the N/A table of every gate policy beside it. `evalverse eval`, the quickstart and the
//! ablations call `evaluate` and `write`.

use std::collections::BTreeSet;
use std::path::Path;

use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_judge::harness::{Judgement, Verdict};
use evalverse_judge::{ClipInput, GatePolicy, Judge, JudgeError};
use evalverse_model::ModelBackend;

use crate::metrics::na_gate;
use crate::pairwise::{PairJudgement, PairwiseSummary};
use crate::report::Report;

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
    match policy {
        GatePolicy::Operators => j.gate_na,
        GatePolicy::Judge => judge,
        GatePolicy::Both => match (j.gate_na, judge) {
            (Some(g), Some(v)) => Some(g || v),
            (Some(true), None) => Some(true),
            _ => None,
        },
        GatePolicy::Off => Some(false),
    }
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
