//! `evalverse data ...`: validate, stats, synth.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use evalverse_data::dataset::Dataset;
use evalverse_data::synth::{generate, SynthConfig};

use crate::Failure;

pub fn validate(dir: &Path, decode: bool) -> Result<ExitCode, Failure> {
    let (ds, mut issues) =
        Dataset::open(dir).with_context(|| format!("cannot read dataset {}", dir.display()))?;
    if decode {
        let media = ds.check_media(progress("decoding"));
        issues.extend(media);
        issues.sort_by_key(|i| i.line);
    }
    for i in &issues {
        println!("{i}");
    }
    if issues.is_empty() {
        println!(
            "{}: ok: {} clips, {} rankings, {} pairs{}",
            ds.manifest_path.display(),
            ds.clips.len(),
            ds.rankings.len(),
            ds.pairs.len(),
            if decode { ", every file decodes" } else { "" }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{}: {} problem(s)",
            ds.manifest_path.display(),
            issues.len()
        );
        Ok(ExitCode::from(1))
    }
}

pub fn stats(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
    let ds = Dataset::load(dir)?;
    let s = evalverse_data::stats::compute(&ds);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).context("serialising stats")?
        );
    } else {
        print!("{s}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn synth(
    out: &Path,
    clips: usize,
    seed: u64,
    width: u32,
    height: u32,
    fps: u32,
    raters: usize,
) -> Result<ExitCode, Failure> {
    let cfg = SynthConfig {
        clips,
        seed,
        width,
        height,
        fps,
        raters,
    };
    let summary = generate(out, &cfg, progress("rendering and encoding"))?;
    println!(
        "wrote {} clips in {} prompt groups to {} ({:.1} MB)",
        summary.clips,
        summary.prompt_groups,
        out.display(),
        summary.bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

/// A one-line progress counter on a terminal; silent when stderr is a file or pipe.
fn progress(what: &'static str) -> impl FnMut(usize, usize) {
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            eprint!("\r{what} {done}/{total} clips");
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}
