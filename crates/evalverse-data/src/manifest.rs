//! The annotated-dataset manifest: one JSON record per line (JSONL), tagged by `"record"`:
//! `clip` (a generated video with its expert annotations), `ranking` and `pair` (preferences
//! within a prompt group, per dimension, per rater; ties allowed). Schema in docs/MANIFEST.md.
//! Parsing never fills a default for a missing field: a bad line is reported with file:line.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Generation task of a clip (EvalVerse §4: T2V, R2V, multi-shot, audio-visual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    T2v,
    R2v,
    Multishot,
    Av,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::T2v, Task::R2v, Task::Multishot, Task::Av];
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::T2v => "t2v",
            Task::R2v => "r2v",
            Task::Multishot => "multishot",
            Task::Av => "av",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rater's answer: a score on the dimension's scale, or "N/A".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    Value(f64),
    NotApplicable,
}

impl Score {
    pub fn value(&self) -> Option<f64> {
        match self {
            Score::Value(v) => Some(*v),
            Score::NotApplicable => None,
        }
    }
}

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Score::Value(v) if v.fract() == 0.0 && v.abs() < 1e15 => s.serialize_i64(*v as i64),
            Score::Value(v) => s.serialize_f64(*v),
            Score::NotApplicable => s.serialize_str("N/A"),
        }
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so that a score of another type is reported
        // as what a score is, not as "no variant of untagged enum" of a private type.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Score;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a score: a number or \"N/A\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Score, E> {
                Ok(Score::Value(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Score, E> {
                Ok(Score::Value(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Score, E> {
                Ok(Score::Value(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Score, E> {
                match t {
                    "N/A" => Ok(Score::NotApplicable),
                    _ => Err(E::custom(format!(
                        "score must be a number or \"N/A\", got \"{t}\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One rater's answer on one dimension of one clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    pub rater: String,
    pub dimension: String,
    pub score: Score,
    /// The expert's rationale (chain-of-thought target for SFT), when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceKind {
    Image,
    Video,
}

/// Ground-truth reference for R2V clips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub kind: ReferenceKind,
    /// Path relative to the dataset root.
    pub path: String,
}

/// A shot: [start, end) in seconds from the start of the clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shot {
    pub start: f64,
    pub end: f64,
}

/// What the clip's audio track holds (absent: the clip is silent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioInfo {
    pub speech: bool,
    pub music: bool,
}

/// A generated clip and its expert annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipRecord {
    pub id: String,
    pub task: Task,
    pub prompt: String,
    /// Video path relative to the dataset root.
    pub video: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// Shot list; empty means one shot spanning the clip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shots: Vec<Shot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioInfo>,
    pub generator: String,
    pub prompt_group: String,
    pub annotations: Vec<Annotation>,
}

impl ClipRecord {
    pub fn facts(&self) -> crate::taxonomy::ClipFacts {
        crate::taxonomy::ClipFacts {
            shots: self.shots.len().max(1),
            has_audio: self.audio.is_some(),
            has_speech: self.audio.is_some_and(|a| a.speech),
        }
    }
}

/// A rater's ranking of the clips of one prompt group on one dimension: tiers, best first;
/// clips in one tier are tied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingRecord {
    pub prompt_group: String,
    pub dimension: String,
    pub rater: String,
    pub order: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairChoice {
    A,
    B,
    Tie,
}

/// A rater's pairwise preference between two clips of one prompt group on one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRecord {
    pub prompt_group: String,
    pub dimension: String,
    pub rater: String,
    pub a: String,
    pub b: String,
    pub preference: PairChoice,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
pub enum Record {
    Clip(ClipRecord),
    Ranking(RankingRecord),
    Pair(PairRecord),
}

/// A record with the 1-based line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub line: usize,
    pub record: T,
}

/// A manifest line that could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
    /// The id of the clip record the line seems to hold, when it can still be read: a ranking or
    /// pair naming it is a follow-on of this error, not an unknown clip.
    pub clip_id: Option<String>,
}

/// The UTF-8 byte order mark (bytes EF BB BF), which Windows editors and spreadsheet exports put
/// at the start of a file.
const BOM: &str = "\u{feff}";

/// Parse JSONL text; blank lines are skipped, every malformed line is returned as an error
/// (parsing continues after it).
pub fn parse_jsonl(text: &str) -> (Vec<Located<Record>>, Vec<LineError>) {
    parse_jsonl_bytes(text.as_bytes())
}

/// Parse JSONL bytes as `parse_jsonl` does, decoding each line as UTF-8 on its own so that a line
/// with a bad byte is reported with its line and column and the others are still read. A byte
/// order mark at the start of the file is skipped, as Python's `utf-8-sig` codec and most JSONL
/// readers do; one at the start of a later line (files joined together) is reported by name.
pub fn parse_jsonl_bytes(bytes: &[u8]) -> (Vec<Located<Record>>, Vec<LineError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = match i {
            0 => raw.strip_prefix(BOM.as_bytes()).unwrap_or(raw),
            _ => raw,
        };
        let mut error = |message: String, clip_id: Option<String>| {
            errors.push(LineError {
                line: i + 1,
                message,
                clip_id,
            })
        };
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l,
            Err(e) => {
                let at = e.valid_up_to();
                error(
                    format!(
                        "not valid UTF-8: byte 0x{:02X} at column {}; save the manifest as UTF-8",
                        raw[at],
                        at + 1
                    ),
                    clip_id_of(&String::from_utf8_lossy(raw)),
                );
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(BOM) {
            error(
                "the line starts with a UTF-8 byte order mark (bytes EF BB BF), as left by joining \
                 files that had one; delete those three bytes"
                    .into(),
                clip_id_of(rest),
            );
            continue;
        }
        match serde_json::from_str::<Record>(trimmed) {
            Ok(record) => records.push(Located {
                line: i + 1,
                record,
            }),
            Err(e) => error(describe_json_error(trimmed, &e), clip_id_of(trimmed)),
        }
    }
    (records, errors)
}

/// The id of the clip record a line that failed to parse seems to hold: from its JSON when that
/// still parses (a schema error), else from the text (malformed or truncated JSON).
fn clip_id_of(line: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if v.get("record")?.as_str()? != "clip" {
            return None;
        }
        return v.get("id")?.as_str().map(str::to_owned);
    }
    if string_field(line, "record").is_some_and(|r| r != "clip") {
        return None;
    }
    string_field(line, "id").map(str::to_owned)
}

/// The value of the first `"key": "value"` in `line`, read as text; None when absent or escaped.
fn string_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\"");
    let mut from = 0;
    while let Some(k) = line[from..].find(&pattern) {
        let after = &line[from + k + pattern.len()..];
        from += k + pattern.len();
        let Some(rest) = after.trim_start().strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim_start().strip_prefix('"')?;
        let value = &rest[..rest.find('"')?];
        return (!value.contains('\\')).then_some(value);
    }
    None
}

fn describe_json_error(line: &str, e: &serde_json::Error) -> String {
    // serde_json ends its message with " at line 1 column N": each manifest line is parsed on
    // its own, so that "line 1" is not the manifest's line (the issue names that); keep the
    // column only.
    let full = e.to_string();
    let message = full
        .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
        .unwrap_or(&full);
    let at = match e.column() {
        0 => String::new(),
        c => format!(" (column {c})"),
    };
    if e.classify() == serde_json::error::Category::Syntax
        || e.classify() == serde_json::error::Category::Eof
    {
        return format!("malformed JSON: {message}{at}");
    }
    // serde's message is good; add the record id when the line has one, for orientation.
    let id = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
    match id {
        Some(id) => format!("record '{id}': {message}{at}"),
        None => format!("invalid record: {message}{at}"),
    }
}

/// Serialise records as JSONL (one per line, trailing newline).
pub fn to_jsonl(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).expect("manifest records always serialise"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_accepts_number_and_na_only() {
        let s: Score = serde_json::from_str("4").unwrap();
        assert_eq!(s, Score::Value(4.0));
        let s: Score = serde_json::from_str("\"N/A\"").unwrap();
        assert_eq!(s, Score::NotApplicable);
        assert!(serde_json::from_str::<Score>("\"four\"").is_err());
        assert!(serde_json::from_str::<Score>("null").is_err());
    }

    #[test]
    fn parse_continues_after_malformed_line() {
        let text = "{\"record\":\"pair\",\"prompt_group\":\"g\",\"dimension\":\"lens\",\"rater\":\"r\",\"a\":\"x\",\"b\":\"y\",\"preference\":\"tie\"}\n{oops\n\n{\"record\":\"ranking\",\"prompt_group\":\"g\",\"dimension\":\"lens\",\"rater\":\"r\",\"order\":[[\"x\"],[\"y\"]]}\n";
        let (records, errors) = parse_jsonl(text);
        assert_eq!(
            records.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(
            errors[0].message.starts_with("malformed JSON"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn missing_field_is_an_error_not_a_default() {
        let text = r#"{"record":"clip","id":"c1","task":"t2v","prompt":"p","video":"v.mp4","generator":"g","annotations":[]}"#;
        let (_, errors) = parse_jsonl(text);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("c1") && errors[0].message.contains("prompt_group"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn json_errors_name_the_column_not_line_1_of_the_line() {
        let (_, errors) = parse_jsonl("\n{\"record\": \"pair\",}\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        let m = &errors[0].message;
        assert!(
            m.starts_with("malformed JSON") && m.contains("(column 19)") && !m.contains("line 1"),
            "{m}"
        );
    }

    #[test]
    fn a_score_of_another_type_is_reported_as_what_a_score_is() {
        let line = r#"{"record":"clip","id":"c1","task":"t2v","prompt":"p","video":"v.mp4","generator":"g","prompt_group":"g","annotations":[{"rater":"r","dimension":"lens","score":true}]}"#;
        let (_, errors) = parse_jsonl(line);
        assert_eq!(errors.len(), 1);
        let m = &errors[0].message;
        assert!(
            m.starts_with("record 'c1': ")
                && m.contains("a number or \"N/A\"")
                && !m.contains("untagged"),
            "{m}"
        );
    }

    #[test]
    fn clip_id_of_a_broken_line_comes_only_from_a_clip_record() {
        // Schema error: the JSON parses, the id is read from it.
        assert_eq!(
            clip_id_of(r#"{"record":"clip","id":"c1","task":"t2v"}"#).as_deref(),
            Some("c1")
        );
        // Truncated: read from the text.
        assert_eq!(
            clip_id_of(r#"{"record": "clip", "id" : "c2", "prompt": "A ten"#).as_deref(),
            Some("c2")
        );
        // A prompt quoting "id" does not count; a pair or ranking holds no clip.
        assert_eq!(
            clip_id_of(r#"{"record":"clip","prompt":"say \"id\": \"x\"","#),
            None
        );
        assert_eq!(clip_id_of(r#"{"record":"pair","id":"p","a":"x"#), None);
        assert_eq!(clip_id_of("not json"), None);
    }
}
