//! VideoFeedback (TIGER-Lab, the VideoScore training set; He et al. 2024): one record per clip
//! with `id`, `text prompt`, `video link` and five integer scores 1-4 (`visual quality`,
//! `temporal consistency`, `dynamic degree`, `text-to-video alignment`, `factual consistency`).
//! Input: the released JSON array (`data_annotated.json`) or JSON Lines. The video of a record is
//! the file named like the last part of `video link`, else `<id>.mp4`, in the videos folder.
//! The release does not name each clip's generator (recorded as "unknown") nor its annotators
//! (rater "videofeedback": the released scores are one consensus per clip).

use std::path::Path;

use serde_json::Value;

use super::{convert_score, Builder, Imported};
use crate::error::{DataError, Result};
use crate::manifest::Score;

/// Rater id given to the released per-clip scores.
pub const RATER: &str = "videofeedback";
/// Generator recorded for every clip (the release does not say which model made it).
pub const GENERATOR: &str = "unknown";
/// Fields that are not scores.
const META: [&str; 6] = [
    "id",
    "images",
    "text prompt",
    "video link",
    "conversations",
    "generator",
];

/// (1-based line, value or why it is not one) of each record of a JSON array or JSON Lines text.
pub(crate) fn json_items(text: &str) -> Vec<(usize, std::result::Result<Value, String>)> {
    let line_at = |off: usize| text[..off].matches('\n').count() + 1;
    let start = text.len() - text.trim_start().len();
    if !text[start..].starts_with('[') {
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                (
                    i + 1,
                    serde_json::from_str(l).map_err(|e| format!("not valid JSON: {e}")),
                )
            })
            .collect();
    }
    // A JSON array: walk its elements so each gets the line it starts on.
    let mut out = Vec::new();
    let mut pos = start + 1;
    loop {
        pos += text[pos..].len() - text[pos..].trim_start().len();
        if text[pos..].starts_with(']') {
            return out;
        }
        let mut it = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                out.push((line_at(pos), Ok(v)));
                pos += it.byte_offset();
            }
            Some(Err(e)) => {
                out.push((
                    line_at(pos) + e.line().saturating_sub(1),
                    Err(format!(
                        "not valid JSON: {e}; the rest of the array is not read"
                    )),
                ));
                return out;
            }
            None => {
                out.push((line_at(pos), Err("the JSON array is not closed".into())));
                return out;
            }
        }
        pos += text[pos..].len() - text[pos..].trim_start().len();
        if text[pos..].starts_with(',') {
            pos += 1;
        } else if !text[pos..].starts_with(']') {
            out.push((
                line_at(pos),
                Err("expected ',' or ']' after a record; the rest of the array is not read".into()),
            ));
            return out;
        }
    }
}

fn video_for(videos: &Path, id: &str, link: Option<&str>) -> std::result::Result<String, String> {
    let mut tried = Vec::new();
    if let Some(name) = link
        .and_then(|l| l.split(['?', '#']).next())
        .and_then(|l| l.rsplit('/').next())
        .filter(|n| !n.is_empty())
    {
        tried.push(name.to_string());
    }
    let by_id = format!("{id}.mp4");
    if !tried.contains(&by_id) {
        tried.push(by_id);
    }
    tried
        .iter()
        .find(|n| videos.join(n).is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "record '{id}': no video in {} (looked for {})",
                videos.display(),
                tried.join(", ")
            )
        })
}

pub(crate) fn convert(mut b: Builder) -> Result<Imported> {
    let text = std::fs::read_to_string(&b.file).map_err(|e| DataError::io(&b.file, e))?;
    let expected: Vec<String> = b.mapping.dimensions.keys().cloned().collect();
    for (line, item) in json_items(&text) {
        let v = match item {
            Ok(v) => v,
            Err(m) => {
                b.bad(line, m);
                continue;
            }
        };
        if let Err(m) = record(&mut b, line, &v, &expected) {
            b.bad(line, m);
        }
    }
    Ok(b.finish())
}

fn record(
    b: &mut Builder,
    line: usize,
    v: &Value,
    expected: &[String],
) -> std::result::Result<(), String> {
    let obj = v.as_object().ok_or("record is not a JSON object")?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing or empty 'id'".into()),
    };
    let prompt = obj
        .get("text prompt")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("record '{id}': missing 'text prompt'"))?;
    let generator = obj
        .get("generator")
        .and_then(Value::as_str)
        .unwrap_or(GENERATOR);
    let video = video_for(
        b.videos_dir,
        &id,
        obj.get("video link").and_then(Value::as_str),
    )?;
    for want in expected {
        if !obj.contains_key(want) {
            return Err(format!("record '{id}': missing score '{want}'"));
        }
    }
    // Check every score before adding the clip, so one bad score reports the whole record once.
    let mut scores = Vec::new();
    let mut problems = Vec::new();
    for (key, val) in obj {
        if META.contains(&key.as_str()) {
            continue;
        }
        let dim = match b.mapping.target(key, b.tax) {
            None => continue,
            Some(Err(m)) => {
                problems.push(m);
                continue;
            }
            Some(Ok(d)) => d.to_string(),
        };
        let Some(x) = val.as_f64().filter(|x| x.fract() == 0.0) else {
            problems.push(format!("'{key}' must be an integer score, got {val}"));
            continue;
        };
        match convert_score(x, &dim, b.tax, b.mapping, b.rescale) {
            Ok(s) => scores.push((dim, s)),
            Err(m) => problems.push(format!("'{key}': {m}")),
        }
    }
    if !problems.is_empty() {
        return Err(format!("record '{id}': {}", problems.join("; ")));
    }
    let i = b.clip(line, &video, prompt, generator, None, Some(&id))?;
    for (dim, s) in scores {
        b.annotate(line, i, RATER, &dim, Score::Value(s), None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_records_get_the_line_they_start_on() {
        let text = "[\n  {\"id\": \"a\"},\n  {\"id\":\n   \"b\"}\n]\n";
        let items = json_items(text);
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].0, items[1].0), (2, 3));
        let jsonl = "{\"id\": 1}\n\nnot json\n";
        let items = json_items(jsonl);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].0, 3);
        assert!(items[1].1.is_err());
    }
}
