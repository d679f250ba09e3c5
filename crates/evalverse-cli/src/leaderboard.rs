//! `evalverse leaderboard RUN...`: one table comparing evaluated judges, with significance.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::Failure;

pub fn leaderboard(
    runs: &[PathBuf],
    resamples: usize,
    seed: u64,
    out: Option<&PathBuf>,
) -> Result<ExitCode, Failure> {
    let mut loaded = Vec::new();
    for r in runs {
        // A training run folder (its eval/) or an eval folder.
        let js = evalverse_eval::pipeline::read_judgements(r)?;
        loaded.push((r.display().to_string(), js));
    }
    let entries = evalverse_eval::leaderboard::build(&loaded, resamples, seed)
        .map_err(|m| Failure::Usage(anyhow!(m)))?;
    let md = evalverse_eval::leaderboard::markdown(&entries);
    print!("{md}");
    if let Some(o) = out {
        std::fs::create_dir_all(o)
            .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", o.display())))?;
        std::fs::write(o.join("leaderboard.md"), &md)
            .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", o.display())))?;
        std::fs::write(
            o.join("leaderboard.json"),
            serde_json::to_string_pretty(&entries).expect("json"),
        )
        .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", o.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}
