//! `evalverse score LIST --judge BUNDLE --out results.jsonl`: many videos judged in batches
//! (`evalverse_judge::score`), with a progress bar; re-run on the same output it skips what is
//! done.

use std::path::Path;
use std::process::ExitCode;

use evalverse_data::cache::DecodeCache;
use evalverse_model::ModelBackend;

use crate::judging::{JudgeOptions, OnBackend};
use crate::Failure;

pub struct ScoreArgs<'a> {
    pub judge: JudgeOptions<'a>,
    pub list: &'a Path,
    pub out: &'a Path,
    /// Videos decoded and judged together.
    pub clips_per_batch: usize,
    /// Prompts per forward pass.
    pub batch_size: usize,
    pub cache: &'a Path,
}

pub fn score(a: &ScoreArgs) -> Result<ExitCode, Failure> {
    crate::judging::on_device(a.judge.device, Run(a))
}

struct Run<'a, 'b>(&'b ScoreArgs<'a>);

impl OnBackend for Run<'_, '_> {
    type Out = ExitCode;
    fn run<B: ModelBackend>(self, device: &B::Device) -> Result<ExitCode, Failure> {
        let a = self.0;
        let (rows, errors) = evalverse_judge::score::read_list(a.list)?;
        for e in &errors {
            eprintln!("error: {e} (row left out)");
        }
        let opened = a.judge.open()?;
        let tax = opened
            .taxonomy
            .clone()
            .unwrap_or_else(evalverse_data::taxonomy::Taxonomy::evalverse);
        let judge = crate::judging::load::<B>(&opened, tax, a.judge.dtype, device)?;
        let bar = indicatif::ProgressBar::new(rows.len() as u64);
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} clips, {per_sec}, eta {eta}",
            )
            .expect("template"),
        );
        let started = std::time::Instant::now();
        let s = evalverse_judge::score::score(
            &judge,
            &rows,
            a.out,
            &DecodeCache::new(a.cache),
            a.clips_per_batch,
            a.batch_size,
            |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "scored {} clips, {} error rows, {} already done, {} unreadable list rows in {secs:.1} s ({:.3} clips/s) -> {}",
            s.scored,
            s.errors,
            s.skipped_done,
            errors.len(),
            (s.scored + s.errors) as f64 / secs.max(1e-9),
            a.out.display()
        );
        Ok(if s.errors > 0 || !errors.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
