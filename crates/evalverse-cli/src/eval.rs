//! `evalverse eval`: judge a split with a judge (a bundle, a run, an adapter or a base) and
//! write the agreement report (`evalverse_eval::pipeline::run_eval`).

use std::path::PathBuf;
use std::process::ExitCode;

use evalverse_eval::pipeline::{EvalArgs, Evaluation};
use evalverse_model::ModelBackend;

use crate::judging::OnBackend;
use crate::Failure;

/// Evaluate and print the aspect table (and, with `print_gate`, every gate policy's N/A
/// precision and recall; with pairwise judging, the pairwise table).
pub fn eval(a: &EvalArgs, print_gate: bool) -> Result<ExitCode, Failure> {
    let (ev, out) = run(a)?;
    let md = evalverse_eval::report::markdown(&ev.report);
    let aspect_table: String = md
        .split("\n\n")
        .filter(|b| b.starts_with("| aspect"))
        .collect();
    if let Some((_, summary)) = &ev.pairs {
        println!(
            "Pairwise, both orders (A/B, B/A):\n\n{}",
            evalverse_eval::pairwise::markdown(summary)
        );
    }
    if print_gate {
        println!(
            "N/A decisions of each gate policy against the experts' N/A labels:\n\n{}",
            ev.gate_table
        );
    }
    println!("{aspect_table}\n");
    println!(
        "{} judgements ({} malformed) -> {}",
        ev.report.judged,
        ev.report.malformed,
        out.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Judge the split and write the reports on the device `a` names; warnings go to stderr.
pub fn run(a: &EvalArgs) -> Result<(Evaluation, PathBuf), Failure> {
    let (ev, out) = crate::judging::on_device(a.judge.device, Run(a))?;
    for w in &ev.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(note) = ev.report.interval_note().filter(|_| a.bootstrap > 0) {
        eprintln!("warning: {note}");
    }
    Ok((ev, out))
}

struct Run<'a, 'b>(&'b EvalArgs<'a>);

impl OnBackend for Run<'_, '_> {
    type Out = (Evaluation, PathBuf);
    fn run<B: ModelBackend>(self, device: &B::Device) -> Result<Self::Out, Failure> {
        Ok(evalverse_eval::pipeline::run_eval::<B>(self.0, device)?)
    }
}
