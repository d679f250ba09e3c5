//! `evalverse judge VIDEO --prompt TEXT --judge BUNDLE`: one clip judged on the taxonomy's
//! dimensions by the composed judge; prints one verdict per dimension with its parts labelled
//! (the VLM's score, the reward head's, the fused score, the gate) and the rationale.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use evalverse_data::cache::DecodeCache;
use evalverse_data::taxonomy::Taxonomy;
use evalverse_judge::harness::{Judgement, NaSource, Verdict};
use evalverse_judge::ClipInput;
use evalverse_model::ModelBackend;

use crate::judging::{JudgeOptions, OnBackend};
use crate::Failure;

pub struct JudgeArgs<'a> {
    pub judge: JudgeOptions<'a>,
    pub video: &'a Path,
    pub prompt: &'a str,
    pub dimensions: &'a [String],
    /// Taxonomy of a checkpoint judge: "evalverse" (built in) or a TOML file (a bundle
    /// carries its own).
    pub taxonomy: &'a str,
    pub json: bool,
    /// Decode cache folder.
    pub cache: &'a Path,
}

/// The decode cache of `judge` and `score` when none is named: `$XDG_CACHE_HOME/evalverse`,
/// else `~/.cache/evalverse`, else `.evalverse-cache`.
pub fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("evalverse"))
        .unwrap_or_else(|| PathBuf::from(".evalverse-cache"))
}

pub fn judge(a: &JudgeArgs) -> Result<ExitCode, Failure> {
    crate::judging::on_device(a.judge.device, Run(a))
}

struct Run<'a, 'b>(&'b JudgeArgs<'a>);

impl OnBackend for Run<'_, '_> {
    type Out = ExitCode;
    fn run<B: ModelBackend>(self, device: &B::Device) -> Result<ExitCode, Failure> {
        let a = self.0;
        let usage = |m: String| Failure::Usage(anyhow!(m));
        if a.video.is_dir() {
            return Err(usage(format!(
                "{}: is a folder, not a video file (`evalverse score LIST` judges many)",
                a.video.display()
            )));
        }
        if !a.video.is_file() {
            return Err(usage(format!("{}: no such video file", a.video.display())));
        }
        let opened = a.judge.open()?;
        let tax = match &opened.taxonomy {
            Some(t) => t.clone(),
            None => Taxonomy::load(a.taxonomy, Path::new("."))
                .map_err(|e| usage(format!("--taxonomy {}: {e}", a.taxonomy)))?,
        };
        evalverse_judge::check_dimensions(&tax, a.dimensions)?;
        let judge = crate::judging::load::<B>(&opened, tax, a.judge.dtype, device)?;
        let id = a
            .video
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let input = ClipInput::new(id, a.video, a.prompt);
        let cache = DecodeCache::new(a.cache);
        let prepared = judge.prepare(std::slice::from_ref(&input), &cache, |_, _| {});
        if let Some((_, why)) = prepared.skipped.first() {
            return Err(Failure::Runtime(anyhow!("{why}")));
        }
        for (_, why) in &prepared.no_evidence {
            eprintln!("warning: no operator evidence ({why}): the gate abstains, no fusion");
        }
        let examples = judge.examples_for(&input, a.dimensions, &prepared)?;
        let judgements = judge.judge(
            examples,
            std::slice::from_ref(&input),
            &prepared,
            8,
            |_, _| {},
        )?;
        if a.json {
            for j in &judgements {
                println!("{}", serde_json::to_string(j).expect("json"));
            }
            return Ok(ExitCode::SUCCESS);
        }
        for j in &judgements {
            let name = judge
                .taxonomy
                .dimension(&j.dimension)
                .map(|d| d.name.as_str())
                .unwrap_or(&j.dimension);
            println!("{name}: {}", verdict_line(j));
            for line in j.answer.trim().lines() {
                println!("    {line}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// "3 (soft 3.40 = fused; VLM 3.47: head 3.47, score tokens 3.12; the rationale says 4)", or
/// "N/A (gate: silent; the rationale says 3)".
pub fn verdict_line(j: &Judgement) -> String {
    let f = |v: f64| format!("{v:.2}");
    let said = |v: Option<Verdict>| match v {
        Some(Verdict::Score(s)) => format!("the rationale says {s}"),
        Some(Verdict::NotApplicable) => "the rationale says N/A".into(),
        Some(Verdict::Malformed) => "the rationale has no score line".into(),
        None => "no rationale".into(),
    };
    let mut parts = Vec::new();
    if let Some(v) = j.vlm_soft {
        let mut vlm = format!("VLM {}", f(v));
        let sub: Vec<String> = [
            j.head_soft.map(|h| format!("head {}", f(h))),
            j.token_soft.map(|t| format!("score tokens {}", f(t))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if sub.len() > 1 || j.head_soft.is_some() {
            vlm.push_str(&format!(": {}", sub.join(", ")));
        }
        parts.push(vlm);
    }
    if let Some(x) = j.fused_soft {
        parts.push(format!("fused {}", f(x)));
    }
    parts.push(said(j.text_verdict));
    match (j.verdict, j.na_source) {
        (Verdict::NotApplicable, Some(NaSource::Gate)) => format!(
            "N/A (gate: {}; {})",
            j.gate_reason.as_deref().unwrap_or("does not apply"),
            parts.join("; ")
        ),
        (Verdict::NotApplicable, _) => format!("N/A (the VLM's answer; {})", parts.join("; ")),
        (Verdict::Malformed, _) => format!("malformed answer ({})", parts.join("; ")),
        (Verdict::Score(s), _) => format!("{s} (soft {}; {})", f(j.soft), parts.join("; ")),
    }
}
