//! Scoring many videos with one judge (`evalverse score`): a list (JSONL or CSV: video, prompt,
//! optional reference, dimensions and id) is judged in batches across videos, each clip decoded
//! once through the cache, and one result line per clip is appended to the output JSONL and
//! flushed to disk as soon as its batch is judged. Re-run on the same output, it skips the
//! clips already there (a line cut short by a kill is dropped and redone), so an interrupted
//! run loses nothing. A row that cannot be judged (no prompt, a video that does not decode)
//! becomes an error line naming the file and row, and the rest go on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use evalverse_data::cache::DecodeCache;
use evalverse_model::ModelBackend;
use serde::{Deserialize, Serialize};

use crate::harness::{Judgement, Verdict};
use crate::{ClipInput, Judge, JudgeError};

/// One row of a score list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    /// Where the row is (`list.jsonl:3`), for errors.
    pub at: String,
    pub id: String,
    pub video: PathBuf,
    pub prompt: Option<String>,
    pub reference: Option<PathBuf>,
    /// Dimensions to judge (all when empty).
    pub dimensions: Vec<String>,
}

/// A row as written in a JSONL list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    #[serde(default)]
    id: Option<String>,
    video: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    dimensions: Vec<String>,
}

/// The judge's result on one clip: the final score per dimension (null: N/A or a malformed
/// answer), its soft score (null: N/A), every stage in `judgements`, or the error that kept the
/// clip from being judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipResult {
    pub id: String,
    pub video: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, Option<f64>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub soft: BTreeMap<String, Option<f64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judgements: Vec<Judgement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ClipResult {
    /// The result of a clip's judgements (in taxonomy order).
    pub fn of(row: &ListRow, judgements: Vec<Judgement>) -> ClipResult {
        ClipResult::judged(
            row.id.clone(),
            row.video.display().to_string(),
            row.prompt.clone(),
            judgements,
        )
    }

    /// The result of clip `id` (its video and prompt as the caller names them).
    pub fn judged(
        id: String,
        video: String,
        prompt: Option<String>,
        judgements: Vec<Judgement>,
    ) -> ClipResult {
        let mut scores = BTreeMap::new();
        let mut soft = BTreeMap::new();
        for j in &judgements {
            // A malformed answer has no level, but its soft score (read after a forced
            // "Score: ") is defined; N/A has neither.
            let (s, f) = match j.verdict {
                Verdict::Score(v) => (Some(v), Some(j.soft)),
                Verdict::Malformed => (None, Some(j.soft)),
                Verdict::NotApplicable => (None, None),
            };
            scores.insert(j.dimension.clone(), s);
            soft.insert(j.dimension.clone(), f);
        }
        ClipResult {
            id,
            video,
            prompt,
            scores,
            soft,
            judgements,
            error: None,
        }
    }

    /// The clip's reward for an RL loop: the mean final soft score over the dimensions the
    /// judge scored (N/A and malformed ones left out); None for an error or when none was scored.
    pub fn reward(&self) -> Option<f64> {
        let v: Vec<f64> = self.soft.values().flatten().copied().collect();
        (self.error.is_none() && !v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    pub fn error(row: &ListRow, why: String) -> ClipResult {
        ClipResult {
            id: row.id.clone(),
            video: row.video.display().to_string(),
            prompt: row.prompt.clone(),
            scores: BTreeMap::new(),
            soft: BTreeMap::new(),
            judgements: vec![],
            error: Some(why),
        }
    }
}

/// Read a score list: JSONL (`.jsonl`/`.json`: one object per line with `video`, `prompt`,
/// optional `reference`, `dimensions`, `id`) or CSV (a header naming `video` and `prompt`, and
/// optionally `reference`, `dimensions` (separated by `;`), `id`). Relative video paths are
/// relative to the list's folder. A row's id defaults to its video path as written (with
/// `#LINE` appended when the path repeats). Returns the rows and the errors of rows that could
/// not be read (file and line named); a row without a prompt is returned (it becomes an error
/// line of the output, so the run reports it and goes on).
pub fn read_list(path: &Path) -> Result<(Vec<ListRow>, Vec<String>), JudgeError> {
    // Bytes, not a string: a line that is not UTF-8 is reported with its line, and the others
    // are still read (the CSV reader checks each record itself).
    let bytes =
        std::fs::read(path).map_err(|e| JudgeError::Config(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let resolve = |v: &str| {
        let p = PathBuf::from(v);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut raw: Vec<(
        usize,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Vec<String>,
    )> = Vec::new();
    if csv {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(&bytes[..]);
        let header: Vec<String> = r
            .headers()
            .map_err(|e| JudgeError::Config(format!("{}:1: {e}", path.display())))?
            .iter()
            .map(|c| c.trim().to_string())
            .collect();
        let col = |n: &str| header.iter().position(|h| h == n);
        let allowed = ["id", "video", "prompt", "reference", "dimensions"];
        if let Some(u) = header.iter().find(|h| !allowed.contains(&h.as_str())) {
            return Err(JudgeError::Config(format!(
                "{}:1: unknown column '{u}' (allowed: {})",
                path.display(),
                allowed.join(", ")
            )));
        }
        let Some(vc) = col("video") else {
            return Err(JudgeError::Config(format!(
                "{}:1: the header has no 'video' column",
                path.display()
            )));
        };
        for rec in r.records() {
            let rec = match rec {
                Ok(rec) => rec,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    errors.push(format!("{}:{line}: {e}", path.display()));
                    continue;
                }
            };
            let line = rec.position().map_or(0, |p| p.line()) as usize;
            if rec.len() != header.len() {
                errors.push(format!(
                    "{}:{line}: {} fields, the header has {}",
                    path.display(),
                    rec.len(),
                    header.len()
                ));
                continue;
            }
            let get = |n: &str| col(n).map(|c| rec[c].to_string()).filter(|s| !s.is_empty());
            raw.push((
                line,
                get("id"),
                rec[vc].to_string(),
                get("prompt"),
                get("reference"),
                get("dimensions")
                    .map(|d| d.split(';').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default(),
            ));
        }
    } else {
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = match std::str::from_utf8(line) {
                Ok(l) => l,
                Err(e) => {
                    let at = e.valid_up_to();
                    errors.push(format!(
                        "{}:{}: not valid UTF-8: byte 0x{:02X} at column {}; save the list as UTF-8",
                        path.display(),
                        i + 1,
                        line[at],
                        at + 1
                    ));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<JsonRow>(line) {
                Ok(r) => raw.push((i + 1, r.id, r.video, r.prompt, r.reference, r.dimensions)),
                Err(e) => errors.push(format!("{}:{}: {e}", path.display(), i + 1)),
            }
        }
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (line, id, video, prompt, reference, dimensions) in raw {
        let id = match id {
            Some(id) => id,
            None if seen.contains(&video) => format!("{video}#{line}"),
            None => video.clone(),
        };
        if !seen.insert(id.clone()) {
            errors.push(format!("{}:{line}: id '{id}' repeats", path.display()));
            continue;
        }
        rows.push(ListRow {
            at: format!("{}:{line}", path.display()),
            id,
            video: resolve(&video),
            prompt: prompt.filter(|p| !p.trim().is_empty()),
            reference: reference.map(|r| resolve(&r)),
            dimensions,
        });
    }
    Ok((rows, errors))
}

/// The ids already in an output file, after dropping a last line cut short by a kill (it is
/// redone). Returns the ids and how many bytes of a partial line were dropped.
pub fn done_ids(out: &Path) -> Result<(BTreeSet<String>, usize), JudgeError> {
    let mut ids = BTreeSet::new();
    let bytes = match std::fs::read(out) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ids, 0)),
        Err(e) => return Err(JudgeError::Runtime(format!("{}: {e}", out.display()))),
    };
    let mut good = 0;
    for (start, line) in lines_with_offsets(&bytes) {
        let end = start + line.len();
        let complete = bytes.get(end) == Some(&b'\n');
        match serde_json::from_slice::<ClipResult>(line) {
            Ok(r) if complete => {
                ids.insert(r.id);
                good = end + 1;
            }
            _ if !complete => break,
            Err(e) => {
                return Err(JudgeError::Config(format!(
                    "{}: a complete line at byte {start} is not a result ({e}); not appending to \
                     a file this run did not write",
                    out.display()
                )))
            }
            Ok(_) => unreachable!(),
        }
    }
    let dropped = bytes.len() - good;
    if dropped > 0 {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(|e| JudgeError::Runtime(format!("{}: {e}", out.display())))?;
        f.set_len(good as u64)
            .map_err(|e| JudgeError::Runtime(format!("{}: {e}", out.display())))?;
    }
    Ok((ids, dropped))
}

fn lines_with_offsets(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push((start, &bytes[start..i]));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push((start, &bytes[start..]));
    }
    out
}

/// Counts of a scoring run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScoreSummary {
    pub scored: usize,
    pub errors: usize,
    pub skipped_done: usize,
}

/// Score `rows` with `judge` into `out` (appended; rows whose id is already there are
/// skipped), `clips_per_batch` videos at a time, `batch_size` prompts per forward pass.
/// `progress(done, total)` counts rows.
pub fn score<B: ModelBackend>(
    judge: &Judge<B>,
    rows: &[ListRow],
    out: &Path,
    cache: &DecodeCache,
    clips_per_batch: usize,
    batch_size: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ScoreSummary, JudgeError> {
    let (done, _) = done_ids(out)?;
    if let Some(p) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p)
            .map_err(|e| JudgeError::Runtime(format!("{}: {e}", p.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| JudgeError::Runtime(format!("{}: {e}", out.display())))?;
    let mut summary = ScoreSummary::default();
    let todo: Vec<&ListRow> = rows.iter().filter(|r| !done.contains(&r.id)).collect();
    summary.skipped_done = rows.len() - todo.len();
    let total = todo.len();
    let mut finished = 0;
    progress(0, total);
    for chunk in todo.chunks(clips_per_batch.max(1)) {
        let mut results: Vec<ClipResult> = Vec::new();
        let mut inputs = Vec::new();
        let mut judged_rows = Vec::new();
        for r in chunk {
            let why = match (&r.prompt, &r.reference) {
                (None, _) => Some(format!("{}: the row has no prompt", r.at)),
                (_, Some(_)) => Some(format!(
                    "{}: a reference video is not read by this judge (its prompts have none)",
                    r.at
                )),
                _ => crate::check_dimensions(&judge.taxonomy, &r.dimensions)
                    .err()
                    .map(|e| format!("{}: {e}", r.at)),
            };
            match why {
                Some(w) => results.push(ClipResult::error(r, w)),
                None => {
                    inputs.push(ClipInput::new(
                        r.id.clone(),
                        r.video.clone(),
                        r.prompt.clone().unwrap_or_default(),
                    ));
                    judged_rows.push(*r);
                }
            }
        }
        let prepared = judge.prepare(&inputs, cache, |_, _| {});
        let mut examples = Vec::new();
        for (input, r) in inputs.iter().zip(&judged_rows) {
            if let Some(w) = prepared.skip_reason(&input.id) {
                results.push(ClipResult::error(r, format!("{}: {w}", r.at)));
                continue;
            }
            examples.extend(judge.examples_for(input, &r.dimensions, &prepared)?);
        }
        let judgements = judge.judge(examples, &inputs, &prepared, batch_size, |_, _| {})?;
        let mut by_clip: BTreeMap<String, Vec<Judgement>> = BTreeMap::new();
        for j in judgements {
            by_clip.entry(j.clip_id.clone()).or_default().push(j);
        }
        for r in &judged_rows {
            if let Some(js) = by_clip.remove(&r.id) {
                results.push(ClipResult::of(r, js));
            }
        }
        // In list order, one write per batch, on disk before the next batch starts.
        let order: BTreeMap<&str, usize> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        results.sort_by_key(|r| order[r.id.as_str()]);
        let mut text = String::new();
        for r in &results {
            text.push_str(&serde_json::to_string(r).expect("json"));
            text.push('\n');
            if r.error.is_some() {
                summary.errors += 1;
            } else {
                summary.scored += 1;
            }
        }
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| JudgeError::Runtime(format!("{}: {e}", out.display())))?;
        finished += chunk.len();
        progress(finished, total);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_from_jsonl_and_csv_with_errors_named() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("list.jsonl");
        std::fs::write(
            &j,
            "{\"video\": \"a.mp4\", \"prompt\": \"a cat\"}\n\n{\"video\": \"b.mp4\"}\n{\"video\": 3}\n{\"video\": \"a.mp4\", \"prompt\": \"again\", \"dimensions\": [\"lens\"]}\n",
        )
        .unwrap();
        let (rows, errs) = read_list(&j).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].id, "a.mp4");
        assert_eq!(rows[0].video, dir.path().join("a.mp4"));
        assert_eq!(rows[1].prompt, None, "kept, becomes an error line");
        assert_eq!(rows[2].id, "a.mp4#5");
        assert_eq!(rows[2].dimensions, vec!["lens".to_string()]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("list.jsonl:4"), "{errs:?}");

        let c = dir.path().join("list.csv");
        std::fs::write(
            &c,
            "id,video,prompt,dimensions\nx,/v/x.mp4,\"a \"\"quoted\"\", prompt\",lens;vocal\ny,y.mp4,p\n",
        )
        .unwrap();
        let (rows, errs) = read_list(&c).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].prompt.as_deref(), Some("a \"quoted\", prompt"));
        assert_eq!(rows[0].video, PathBuf::from("/v/x.mp4"));
        assert_eq!(rows[0].dimensions, vec!["lens", "vocal"]);
        assert!(
            errs[0].contains("list.csv:3") && errs[0].contains("3 fields"),
            "{errs:?}"
        );
        std::fs::write(&c, "video,score\na.mp4,3\n").unwrap();
        let e = read_list(&c).unwrap_err().to_string();
        assert!(e.contains("unknown column 'score'"), "{e}");
    }

    #[test]
    fn a_list_line_that_is_not_utf8_is_reported_with_its_line_and_the_others_read() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("list.jsonl");
        let mut bytes = b"{\"video\": \"a.mp4\", \"prompt\": \"a cat\"}\n".to_vec();
        bytes.extend(b"{\"video\": \"b\xff.mp4\", \"prompt\": \"p\"}\n");
        bytes.extend(b"{\"video\": \"c.mp4\", \"prompt\": \"p\"}\n");
        std::fs::write(&j, &bytes).unwrap();
        let (rows, errs) = read_list(&j).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a.mp4", "c.mp4"]
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("list.jsonl:2: not valid UTF-8") && errs[0].contains("0xFF"),
            "{errs:?}"
        );
        let c = dir.path().join("list.csv");
        std::fs::write(&c, b"video,prompt\na.mp4,p\nb\xff.mp4,p\n").unwrap();
        let (rows, errs) = read_list(&c).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(
            errs.len() == 1 && errs[0].contains("list.csv:3:"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_line_cut_short_is_dropped_and_complete_ones_count_as_done() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let row = |id: &str| ListRow {
            at: "l:1".into(),
            id: id.into(),
            video: "v.mp4".into(),
            prompt: Some("p".into()),
            reference: None,
            dimensions: vec![],
        };
        let a = serde_json::to_string(&ClipResult::error(&row("a"), "x".into())).unwrap();
        let b = serde_json::to_string(&ClipResult::of(&row("b"), vec![])).unwrap();
        std::fs::write(&out, format!("{a}\n{b}\n{{\"id\": \"c\", \"vid")).unwrap();
        let (ids, dropped) = done_ids(&out).unwrap();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(dropped, "{\"id\": \"c\", \"vid".len());
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{a}\n{b}\n"),
            "truncated to the last complete line"
        );
        std::fs::write(&out, "not json\n").unwrap();
        assert!(done_ids(&out).is_err(), "a foreign file is not appended to");
    }
}
