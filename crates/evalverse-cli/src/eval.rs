//! `evalverse eval`: judge a split with a judge (a bundle, a run, an adapter or a base) and
//! write the agreement report (report.json/md/html, judgements.jsonl, gate.md).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use evalverse_data::cache::DecodeCache;
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_data::video::FrameSpec;
use evalverse_eval::pipeline::{self, EvalSettings, Evaluation};
use evalverse_model::ModelBackend;

use crate::judging::{JudgeOptions, OnBackend};
use crate::Failure;

pub struct EvalArgs<'a> {
    pub judge: JudgeOptions<'a>,
    pub data: &'a Path,
    pub split: Split,
    pub dimensions: &'a [String],
    pub out: Option<&'a Path>,
    pub batch_size: usize,
    pub bootstrap: usize,
    pub seed: u64,
    /// Also judge every pair of clips of a prompt group in both orders (A/B and B/A).
    pub pairwise: bool,
    /// Print the N/A table of every gate policy (it is always written to gate.md).
    pub gate: bool,
    /// Frame sampling to judge with instead of the judge's: a base (`none`) or a bare adapter
    /// judged on the same frames as a trained run.
    pub frames: Option<&'a FrameSpec>,
    pub show_progress: bool,
}

pub fn eval(a: &EvalArgs) -> Result<ExitCode, Failure> {
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
    if a.gate {
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

/// Judge the split and write the reports; returns the evaluation and its folder.
pub fn run(a: &EvalArgs) -> Result<(Evaluation, PathBuf), Failure> {
    crate::judging::on_device(a.judge.device, Run(a))
}

struct Run<'a, 'b>(&'b EvalArgs<'a>);

impl OnBackend for Run<'_, '_> {
    type Out = (Evaluation, PathBuf);
    fn run<B: ModelBackend>(self, device: &B::Device) -> Result<Self::Out, Failure> {
        let a = self.0;
        let mut opened = a.judge.open()?;
        if let Some(f) = a.frames {
            opened.spec.frames = f.clone();
        }
        let out = a
            .out
            .map(Path::to_path_buf)
            .unwrap_or_else(|| opened.default_out.clone());
        let ds = Dataset::load(a.data).map_err(|e| Failure::Usage(anyhow!(e)))?;
        if let Some(b) = &opened.bundle {
            b.check_taxonomy(&ds.taxonomy, &format!("dataset {}", a.data.display()))?;
        }
        let judge = crate::judging::load::<B>(&opened, ds.taxonomy.clone(), a.judge.dtype, device)?;
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
        let ev = pipeline::evaluate(
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
        for w in &ev.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(note) = ev.report.interval_note().filter(|_| a.bootstrap > 0) {
            eprintln!("warning: {note}");
        }
        pipeline::write(&ev, &out)?;
        Ok((ev, out))
    }
}
