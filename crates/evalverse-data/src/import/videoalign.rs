//! VideoAlign / VideoGen-RewardBench (Liu et al. 2025, "Improving Video Generation with Human
//! Feedback"): a CSV of pairs, `path_A, path_B, prompt` and one column per dimension (`VQ`, `MQ`,
//! `TA`, and in the benchmark `Overall`) holding `A`, `B` or `same`; the benchmark adds
//! `A_model, B_model` (the generators) and both carry fps / frame counts, which are not needed.
//! Paths are relative to the videos folder. Without `A_model`/`B_model`, a clip's generator is
//! the folder its video is in (`videos/kling1.5/x.mp4` -> `kling1.5`).

use super::{csv_reader, for_each_row, Builder, Imported};
use crate::error::{DataError, Result};
use crate::manifest::{PairChoice, PairRecord};

/// Rater id of the released preferences.
pub const RATER: &str = "videoalign";
/// Columns that are not dimensions.
const META: [&str; 9] = [
    "path_A",
    "path_B",
    "prompt",
    "A_model",
    "B_model",
    "fps_A",
    "num_frames_A",
    "fps_B",
    "num_frames_B",
];

fn generator_of(path: &str, column: Option<&str>) -> std::result::Result<String, String> {
    if let Some(g) = column.map(str::trim).filter(|g| !g.is_empty()) {
        return Ok(g.to_string());
    }
    let parts: Vec<&str> = path.trim().split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() >= 2 {
        Ok(parts[parts.len() - 2].to_string())
    } else {
        Err(format!(
            "'{path}': no generator column and no folder naming the generator"
        ))
    }
}

pub(crate) fn convert(mut b: Builder) -> Result<Imported> {
    // The columns a file may have: the metadata, and the dimensions the mapping names or skips.
    let mut allowed: Vec<String> = META.iter().map(|c| c.to_string()).collect();
    allowed.extend(b.mapping.dimensions.keys().cloned());
    allowed.extend(b.mapping.skip.iter().cloned());
    let (mut r, cols) = csv_reader(
        &b.file,
        &["path_A", "path_B", "prompt"],
        &allowed,
        "; a dimension column needs an entry in a --map file",
    )?;
    // Dimension columns, decided once from the header.
    let mut dims: Vec<(usize, String, String)> = Vec::new();
    let mut names: Vec<(&String, &usize)> = cols.iter().collect();
    names.sort_by_key(|(_, i)| **i);
    for (name, &i) in names {
        if META.contains(&name.as_str()) {
            continue;
        }
        match b.mapping.target(name, b.tax) {
            None => {}
            Some(Ok(d)) => dims.push((i, name.clone(), d.to_string())),
            Some(Err(m)) => return Err(DataError::config(&b.file, format!("line 1: column {m}"))),
        }
    }
    if dims.is_empty() {
        return Err(DataError::config(
            &b.file,
            "line 1: no dimension column (VQ, MQ, TA or a --map entry)",
        ));
    }
    let get =
        |rec: &csv::StringRecord, c: &str| cols.get(c).and_then(|&i| rec.get(i)).map(str::to_owned);
    for_each_row(&mut b, &mut r, |b, line, rec| {
        pair_row(b, line, rec, &get, &dims)
    });
    Ok(b.finish())
}

fn pair_row(
    b: &mut Builder,
    line: usize,
    rec: &csv::StringRecord,
    get: &dyn Fn(&csv::StringRecord, &str) -> Option<String>,
    dims: &[(usize, String, String)],
) -> std::result::Result<(), String> {
    let (pa, pb) = (
        get(rec, "path_A").unwrap_or_default(),
        get(rec, "path_B").unwrap_or_default(),
    );
    let prompt = get(rec, "prompt").unwrap_or_default();
    if pa.trim() == pb.trim() {
        return Err(format!("path_A and path_B are the same video '{pa}'"));
    }
    let mut choices = Vec::new();
    let mut problems = Vec::new();
    for (i, name, dim) in dims {
        let v = rec.get(*i).unwrap_or("").trim();
        match v.to_ascii_lowercase().as_str() {
            "a" => choices.push((dim, PairChoice::A)),
            "b" => choices.push((dim, PairChoice::B)),
            "same" => choices.push((dim, PairChoice::Tie)),
            _ => problems.push(format!("{name} must be A, B or same, got '{v}'")),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let ga = generator_of(&pa, get(rec, "A_model").as_deref())?;
    let gb = generator_of(&pb, get(rec, "B_model").as_deref())?;
    let ia = b.clip(line, &pa, &prompt, &ga, None, None)?;
    let ib = b.clip(line, &pb, &prompt, &gb, None, None)?;
    let (a, group) = {
        let c = b.clip_record(ia);
        (c.id.clone(), c.prompt_group.clone())
    };
    let bid = b.clip_record(ib).id.clone();
    for (dim, choice) in choices {
        b.pair(PairRecord {
            prompt_group: group.clone(),
            dimension: dim.clone(),
            rater: RATER.into(),
            a: a.clone(),
            b: bid.clone(),
            preference: choice,
        });
    }
    Ok(())
}
