//! A generic long CSV: one row per clip, dimension, rater and score. Columns `clip, dimension,
//! rater, score, prompt, generator`, and optionally `video` (then `clip` is the clip id; without
//! it `clip` is the video path relative to the videos folder and the id derives from it),
//! `prompt_group` (default: clips with the same prompt text share a group) and `rationale`.
//! `score` is a number or `N/A`; `dimension` is a taxonomy id unless a --map entry says otherwise.

use super::{convert_score, csv_reader, for_each_row, Builder, Imported};
use crate::error::Result;
use crate::manifest::Score;

/// Every column the long CSV may have.
const COLUMNS: [&str; 9] = [
    "clip",
    "dimension",
    "rater",
    "score",
    "prompt",
    "generator",
    "video",
    "prompt_group",
    "rationale",
];

pub(crate) fn convert(mut b: Builder) -> Result<Imported> {
    let allowed: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let (mut r, cols) = csv_reader(&b.file, &COLUMNS[..6], &allowed, "")?;
    let get = |rec: &csv::StringRecord, c: &str| -> Option<String> {
        cols.get(c)
            .and_then(|&i| rec.get(i))
            .map(|s| s.trim().to_owned())
    };
    for_each_row(&mut b, &mut r, |b, line, rec| long_row(b, line, rec, &get));
    Ok(b.finish())
}

fn long_row(
    b: &mut Builder,
    line: usize,
    rec: &csv::StringRecord,
    get: &dyn Fn(&csv::StringRecord, &str) -> Option<String>,
) -> std::result::Result<(), String> {
    let clip = get(rec, "clip").unwrap_or_default();
    let source_dim = get(rec, "dimension").unwrap_or_default();
    let rater = get(rec, "rater").unwrap_or_default();
    let raw = get(rec, "score").unwrap_or_default();
    let dim = match b.mapping.target(&source_dim, b.tax) {
        None => return Ok(()),
        Some(Err(m)) => return Err(m),
        Some(Ok(d)) => d.to_string(),
    };
    let score = if raw == "N/A" {
        Score::NotApplicable
    } else {
        let x: f64 = raw
            .parse()
            .map_err(|_| format!("score '{raw}' is not a number or N/A"))?;
        Score::Value(convert_score(x, &dim, b.tax, b.mapping, b.rescale)?)
    };
    let (video, id) = match get(rec, "video") {
        Some(v) => (v, Some(clip.clone())),
        None => (clip.clone(), None),
    };
    let rationale = get(rec, "rationale").filter(|r| !r.is_empty());
    let prompt = get(rec, "prompt").unwrap_or_default();
    let generator = get(rec, "generator").unwrap_or_default();
    let group = get(rec, "prompt_group");
    let i = b.clip(
        line,
        &video,
        &prompt,
        &generator,
        group.as_deref(),
        id.as_deref(),
    )?;
    b.annotate(line, i, &rater, &dim, score, rationale)
}
