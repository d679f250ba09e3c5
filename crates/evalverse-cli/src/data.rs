//! `evalverse data ...`: validate, stats, synth, import.

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

pub struct ImportArgs<'a> {
    pub format: evalverse_data::import::Format,
    pub input: &'a Path,
    pub videos: &'a Path,
    pub out: &'a Path,
    pub map: Option<&'a Path>,
    pub rescale: bool,
}

/// Convert a source dataset; every bad row is printed as FILE:LINE: reason and nothing is
/// written if there is one (exit 1). A bad --map file or a non-empty --out is a usage error.
pub fn import(a: &ImportArgs) -> Result<ExitCode, Failure> {
    use evalverse_data::import::{import, write, Mapping};
    let usage = |e: anyhow::Error| Failure::Usage(e);
    if !a.input.is_file() {
        return Err(usage(anyhow::anyhow!(
            "--input {}: no such file",
            a.input.display()
        )));
    }
    if !a.videos.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "--videos {}: no such folder",
            a.videos.display()
        )));
    }
    let tax = evalverse_data::Taxonomy::evalverse();
    let mut mapping = Mapping::default_for(a.format);
    if let Some(m) = a.map {
        mapping = mapping
            .with_file(m, &tax)
            .map_err(|e| usage(anyhow::anyhow!(e)))?;
    }
    if a.rescale && mapping.source_scale.is_none() {
        return Err(usage(anyhow::anyhow!(
            "--rescale needs the source scale: add [source_scale] min/max to the --map file"
        )));
    }
    if a.out.exists()
        && (!a.out.is_dir()
            || std::fs::read_dir(a.out)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true))
    {
        return Err(usage(anyhow::anyhow!(
            "--out {}: exists and is not an empty folder",
            a.out.display()
        )));
    }
    let imported = import(a.format, a.input, a.videos, &tax, &mapping, a.rescale)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
    if !imported.errors.is_empty() {
        for e in &imported.errors {
            println!("{e}");
        }
        eprintln!(
            "{}: {} bad row(s); nothing written",
            a.input.display(),
            imported.errors.len()
        );
        return Ok(ExitCode::from(1));
    }
    let name = a
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let provenance = format!(
        "evalverse data import --format {} --input {}{}",
        a.format.as_str(),
        a.input.display(),
        if a.rescale { " --rescale" } else { "" }
    );
    write(&imported, a.out, &name, &provenance)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
    let (mut clips, mut notes, mut pairs) = (0, 0, 0);
    for r in &imported.records {
        match r {
            evalverse_data::manifest::Record::Clip(c) => {
                clips += 1;
                notes += c.annotations.len();
            }
            evalverse_data::manifest::Record::Pair(_) => pairs += 1,
            evalverse_data::manifest::Record::Ranking(_) => {}
        }
    }
    println!(
        "wrote {clips} clips ({notes} scores, {pairs} pairs) to {}; check it with `evalverse data validate {}`",
        a.out.display(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
