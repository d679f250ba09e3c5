//! Metric logging: metrics.jsonl (one JSON object per step), TensorBoard event files (TFRecord
//! framing with masked CRC32C and a hand-encoded `Event`/`Summary` protobuf, read by TensorBoard's
//! own event reader; see scripts/check_tensorboard.py), and a progress bar with loss, lr,
//! tokens/s and ETA. Metric names follow TRL's (loss, learning_rate, grad_norm, rewards/chosen, ...).
//!
//! Every step is logged once. A run continues from its last checkpoint, which can be older than
//! the last logged step (kill -9, a full disk): the logs are cut back to that step when the
//! logger opens, metrics.jsonl by rewriting it, TensorBoard by rewriting the run's events into
//! one new stream that starts with a `SessionLog.START` at step 0, TensorBoard's own mark of a
//! restart (its event accumulator drops what it had read before it from the older files).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

/// A log file that could not be read or written, named.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct LogError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

fn at(path: &Path) -> impl Fn(std::io::Error) -> LogError + '_ {
    move |error| LogError {
        path: path.to_path_buf(),
        error,
    }
}

/// An open log file and its name, for errors.
struct Sink {
    path: PathBuf,
    file: File,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        self.file.write_all(bytes).map_err(at(&self.path))
    }
}

pub struct Logger {
    jsonl: Option<Sink>,
    tb: Option<Sink>,
    pub bar: Option<ProgressBar>,
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(crc: u32) -> u32 {
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One TFRecord: length, masked crc of the length, data, masked crc of the data.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked(crc32c(&len)).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked(crc32c(data)).to_le_bytes());
    r
}

/// tensorflow.Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }.
fn event(wall_time: f64, step: i64, body: &[u8]) -> Vec<u8> {
    let mut e = vec![0x09];
    e.extend_from_slice(&wall_time.to_le_bytes());
    e.push(0x10);
    varint(step as u64, &mut e);
    e.extend_from_slice(body);
    e
}

/// Summary { repeated Value value = 1 }, Value { tag = 1 (string), simple_value = 2 (float) }.
fn scalar_summary(tag: &str, value: f32) -> Vec<u8> {
    let mut v = vec![0x0a];
    varint(tag.len() as u64, &mut v);
    v.extend_from_slice(tag.as_bytes());
    v.push(0x15);
    v.extend_from_slice(&value.to_le_bytes());
    let mut s = vec![0x0a];
    varint(v.len() as u64, &mut s);
    s.extend_from_slice(&v);
    let mut body = vec![0x2a];
    varint(s.len() as u64, &mut body);
    body.extend_from_slice(&s);
    body
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `file_version` body of the first event of every file: TensorBoard reads SessionLog marks only
/// in streams of version 2 or later.
fn file_version() -> Vec<u8> {
    let mut body = vec![0x1a];
    varint(13, &mut body);
    body.extend_from_slice(b"brain.Event:2");
    body
}

/// `session_log` (field 7) = SessionLog { status = 1: START }.
const SESSION_START: [u8; 4] = [0x3a, 0x02, 0x08, 0x01];

/// One event read back from a file: its step, its record bytes as stored, and its body's kind.
#[derive(Debug, Clone)]
struct StoredEvent {
    step: i64,
    record: Vec<u8>,
    kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
enum EventKind {
    FileVersion,
    SessionStart,
    /// Scalars (tag, value) of a summary.
    Summary(Vec<(String, f32)>),
    Other,
}

impl StoredEvent {
    #[cfg(test)]
    fn scalar(&self, tag: &str) -> Option<f32> {
        match &self.kind {
            EventKind::Summary(v) => v.iter().find(|(t, _)| t == tag).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Protobuf fields of a message: (field number, varint value or the bytes of a length-delimited
/// field). None for bytes that do not parse.
fn fields(mut b: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
    fn read_varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = vec![];
    while !b.is_empty() {
        let key = read_varint(&mut b)?;
        let (field, wire) = (key >> 3, key & 7);
        let (value, bytes): (u64, &[u8]) = match wire {
            0 => (read_varint(&mut b)?, &[]),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let (x, rest) = (b.get(..n)?, &b[n..]);
                b = rest;
                (0, x)
            }
            2 => {
                let n = read_varint(&mut b)? as usize;
                let (x, rest) = (b.get(..n)?, &b[n..]);
                b = rest;
                (0, x)
            }
            _ => return None,
        };
        out.push((field, value, bytes));
    }
    Some(out)
}

fn parse_event(data: &[u8]) -> Option<(i64, EventKind)> {
    let mut step = 0i64;
    let mut kind = EventKind::Other;
    for (field, value, bytes) in fields(data)? {
        match field {
            2 => step = value as i64,
            3 => kind = EventKind::FileVersion,
            5 => {
                let mut scalars = vec![];
                for (f, _, value) in fields(bytes)? {
                    if f != 1 {
                        continue;
                    }
                    let mut tag = None;
                    let mut x = None;
                    for (g, _, b) in fields(value)? {
                        match g {
                            1 => tag = Some(String::from_utf8_lossy(b).into_owned()),
                            2 => x = Some(f32::from_le_bytes(b.try_into().ok()?)),
                            _ => {}
                        }
                    }
                    if let (Some(t), Some(x)) = (tag, x) {
                        scalars.push((t, x));
                    }
                }
                kind = EventKind::Summary(scalars);
            }
            7 => {
                let start = fields(bytes)?.iter().any(|(f, v, _)| *f == 1 && *v == 1);
                if start {
                    kind = EventKind::SessionStart;
                }
            }
            _ => {}
        }
    }
    Some((step, kind))
}

/// The events of a TFRecord file up to the first incomplete or corrupt record (a write cut off
/// by a kill or a full disk), and whether the file ended there cleanly.
fn read_events(path: &Path) -> Result<(Vec<StoredEvent>, bool), LogError> {
    let bytes = std::fs::read(path).map_err(at(path))?;
    let mut out = vec![];
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let Some(len_bytes) = rest.get(..8) else {
            return Ok((out, false));
        };
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let len_crc = rest
            .get(8..12)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")));
        let total = len.checked_add(16).filter(|t| *t <= rest.len());
        let (Some(total), Some(len_crc)) = (total, len_crc) else {
            return Ok((out, false));
        };
        let data = &rest[12..12 + len];
        let data_crc = u32::from_le_bytes(rest[12 + len..total].try_into().expect("4"));
        if len_crc != masked(crc32c(len_bytes)) || data_crc != masked(crc32c(data)) {
            return Ok((out, false));
        }
        let Some((step, kind)) = parse_event(data) else {
            return Ok((out, false));
        };
        out.push(StoredEvent {
            step,
            record: rest[..total].to_vec(),
            kind,
        });
        rest = &rest[total..];
    }
    Ok((out, true))
}

/// The TensorBoard event files of a folder, in the order TensorBoard reads them (by name).
fn event_files(tb_dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(tb_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(at(tb_dir)(e)),
    };
    files.sort();
    Ok(files)
}

/// The summary records of the earlier event files of a run with a step at most `keep_to`, each
/// (tag, step) once: a START mark drops what came before it at or after its step, as TensorBoard
/// reads it, and a tag logged again at a step it had reached (a restart written before these
/// marks) replaces what it had logged from that step on.
fn kept_records(files: &[PathBuf], keep_to: usize) -> Result<Vec<Vec<u8>>, LogError> {
    let mut kept: Vec<(i64, Vec<String>, Vec<u8>)> = vec![];
    for f in files {
        for e in read_events(f)?.0 {
            match e.kind {
                EventKind::SessionStart => kept.retain(|(s, ..)| *s < e.step),
                EventKind::Summary(v) if e.step <= keep_to as i64 => {
                    let tags: Vec<String> = v.into_iter().map(|(t, _)| t).collect();
                    kept.retain(|(s, t, _)| *s < e.step || !t.iter().any(|x| tags.contains(x)));
                    kept.push((e.step, tags, e.record));
                }
                _ => {}
            }
        }
    }
    Ok(kept.into_iter().map(|(.., r)| r).collect())
}

/// metrics.jsonl cut back to the lines of steps at most `keep_to`, each (metric, step) once (a
/// metric logged again at a step it had reached replaces what it had logged from that step on);
/// a line that does not parse is the tail of a cut-off write and is dropped. None when nothing
/// is cut.
fn kept_lines(text: &str, keep_to: usize) -> Option<String> {
    let mut kept: Vec<(u64, Vec<String>, &str)> = vec![];
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(line) else {
            continue;
        };
        let Some(step) = obj.get("step").and_then(|s| s.as_u64()) else {
            continue;
        };
        if step as usize > keep_to {
            continue;
        }
        let keys: Vec<String> = obj.keys().filter(|k| *k != "step").cloned().collect();
        kept.retain(|(s, k, _)| *s < step || !k.iter().any(|x| keys.contains(x)));
        kept.push((step, keys, line));
    }
    if kept.len() == lines && (text.is_empty() || text.ends_with('\n')) {
        return None;
    }
    Some(kept.iter().map(|(.., l)| format!("{l}\n")).collect())
}

/// Open metrics.jsonl for appending after step `keep_to`, cutting off later lines.
fn open_jsonl(path: &Path, keep_to: usize) -> Result<Sink, LogError> {
    let mut open = std::fs::OpenOptions::new();
    open.create(true);
    if keep_to == 0 {
        // A fresh run: nothing of an earlier attempt is kept (opened, not read: the path may be
        // a device).
        open.write(true).truncate(true);
    } else {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Some(kept) = kept_lines(&text, keep_to) {
                    evalverse_data::error::write_atomic(path, kept.as_bytes()).map_err(
                        |e| match e {
                            evalverse_data::DataError::Io { path, error } => {
                                LogError { path, error }
                            }
                            other => at(path)(std::io::Error::other(other.to_string())),
                        },
                    )?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(path)(e)),
        }
        open.append(true);
    }
    let file = open.open(path).map_err(at(path))?;
    Ok(Sink {
        path: path.to_path_buf(),
        file,
    })
}

/// Start the run's event stream in `tb_dir`: a new file holding the earlier files' events of
/// steps at most `keep_to` after a START mark; the earlier files are removed once it is complete.
fn open_events(tb_dir: &Path, keep_to: usize) -> Result<Sink, LogError> {
    std::fs::create_dir_all(tb_dir).map_err(at(tb_dir))?;
    let earlier = event_files(tb_dir)?;
    let kept = if keep_to == 0 {
        vec![]
    } else {
        kept_records(&earlier, keep_to)?
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "evalverse".into());
    let path = tb_dir.join(format!(
        "events.out.tfevents.{}.{host}.{}",
        now() as u64,
        std::process::id()
    ));
    // Written under a name TensorBoard does not read, then renamed: a crash leaves the earlier
    // files as they were, or the complete new one beside them (whose START mark hides them).
    let tmp = tb_dir.join(format!(".events.tmp{}", std::process::id()));
    let mut sink = Sink {
        path: tmp.clone(),
        file: File::create(&tmp).map_err(at(&tmp))?,
    };
    sink.write(&record(&event(now(), 0, &file_version())))?;
    sink.write(&record(&event(now(), 0, &SESSION_START)))?;
    for r in &kept {
        sink.write(r)?;
    }
    sink.file.sync_all().map_err(at(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(at(&path))?;
    for old in earlier.iter().filter(|p| **p != path) {
        std::fs::remove_file(old).map_err(at(old))?;
    }
    sink.path = path;
    Ok(sink)
}

impl Logger {
    /// Open the sinks in `dir` for a run that continues after step `start_step` (0: a fresh
    /// run; a resumed run: its checkpoint's step). Steps after it that earlier attempts logged
    /// are dropped from metrics.jsonl and TensorBoard, so each step is logged once.
    pub fn new(
        dir: &Path,
        jsonl: bool,
        tensorboard: bool,
        progress_total: Option<u64>,
        start_step: usize,
    ) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let jsonl = if jsonl {
            Some(open_jsonl(&dir.join("metrics.jsonl"), start_step)?)
        } else {
            None
        };
        let tb = if tensorboard {
            Some(open_events(&dir.join("tb"), start_step)?)
        } else {
            None
        };
        let bar = progress_total
            .filter(|_| std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .map(|n| {
                let b = ProgressBar::new(n);
                b.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                        .expect("valid template"),
                );
                b
            });
        Ok(Logger { jsonl, tb, bar })
    }

    /// Log named scalars for a step to every sink.
    pub fn log(&mut self, step: usize, scalars: &[(&str, f64)]) -> Result<(), LogError> {
        if let Some(f) = self.jsonl.as_mut() {
            let mut obj = serde_json::Map::new();
            obj.insert("step".into(), step.into());
            for (k, v) in scalars {
                obj.insert((*k).into(), serde_json::Value::from(*v));
            }
            f.write(format!("{}\n", serde_json::Value::Object(obj)).as_bytes())?;
        }
        if let Some(f) = self.tb.as_mut() {
            let mut bytes = vec![];
            for (k, v) in scalars {
                bytes.extend(record(&event(
                    now(),
                    step as i64,
                    &scalar_summary(k, *v as f32),
                )));
            }
            f.write(&bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C check value of "123456789" (RFC 3720 / iSCSI).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn jsonl_gets_one_object_per_log_call() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Logger::new(dir.path(), true, true, None, 0).unwrap();
        l.log(1, &[("loss", 2.5), ("learning_rate", 1e-4)]).unwrap();
        l.log(2, &[("loss", 2.0)]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["loss"], 2.5);
        assert_eq!(lines[1]["step"], 2);
        let tb: Vec<_> = std::fs::read_dir(dir.path().join("tb")).unwrap().collect();
        assert_eq!(tb.len(), 1);
    }

    /// (step, loss) of every metrics.jsonl line, in file order.
    fn jsonl_losses(dir: &Path) -> Vec<(u64, f64)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
            })
            .collect()
    }

    /// The event files of `dir/tb` and the (step, loss) scalars they hold, in stream order.
    fn tb_losses(dir: &Path) -> (usize, Vec<(i64, f32)>) {
        let files = event_files(&dir.join("tb")).unwrap();
        let mut out = vec![];
        for f in &files {
            for e in read_events(f).unwrap().0 {
                if let Some(v) = e.scalar("loss") {
                    out.push((e.step, v));
                }
            }
        }
        (files.len(), out)
    }

    fn log_steps(dir: &Path, start: usize, steps: std::ops::RangeInclusive<usize>, offset: f64) {
        let mut l = Logger::new(dir, true, true, None, start).unwrap();
        for s in steps {
            l.log(s, &[("loss", s as f64 + offset)]).unwrap();
        }
    }

    #[test]
    fn resume_drops_the_steps_logged_after_its_checkpoint() {
        // A run killed after step 13 whose last checkpoint is step 10, resumed to step 15.
        let dir = tempfile::tempdir().unwrap();
        log_steps(dir.path(), 0, 1..=13, 0.0);
        log_steps(dir.path(), 10, 11..=15, 0.5);
        let want: Vec<(u64, f64)> = (1..=15u64)
            .map(|s| (s, s as f64 + if s > 10 { 0.5 } else { 0.0 }))
            .collect();
        assert_eq!(jsonl_losses(dir.path()), want);
        let (files, tb) = tb_losses(dir.path());
        assert_eq!(files, 1, "one event stream per run");
        let want: Vec<(i64, f32)> = want.iter().map(|&(s, v)| (s as i64, v as f32)).collect();
        assert_eq!(tb, want);
    }

    #[test]
    fn a_fresh_start_replaces_the_logs_of_a_run_that_saved_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        log_steps(dir.path(), 0, 1..=2, 0.0);
        log_steps(dir.path(), 0, 1..=2, 0.5);
        assert_eq!(jsonl_losses(dir.path()), vec![(1, 1.5), (2, 2.5)]);
        let (files, tb) = tb_losses(dir.path());
        assert_eq!((files, tb), (1, vec![(1, 1.5), (2, 2.5)]));
    }

    #[test]
    fn resume_drops_a_torn_last_line_and_record() {
        // kill -9 in the middle of a write: half a JSON line, half a TFRecord.
        let dir = tempfile::tempdir().unwrap();
        log_steps(dir.path(), 0, 1..=3, 0.0);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("metrics.jsonl"))
            .unwrap();
        f.write_all(b"{\"step\":4,\"lo").unwrap();
        let tb = event_files(&dir.path().join("tb")).unwrap().remove(0);
        let mut f = std::fs::OpenOptions::new().append(true).open(&tb).unwrap();
        f.write_all(&record(&event(now(), 4, &scalar_summary("loss", 4.0)))[..20])
            .unwrap();
        log_steps(dir.path(), 3, 4..=4, 0.5);
        assert_eq!(
            jsonl_losses(dir.path()),
            vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.5)]
        );
        let (files, tb) = tb_losses(dir.path());
        assert_eq!(
            (files, tb),
            (1, vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.5)])
        );
    }

    #[test]
    fn a_failed_write_names_the_file() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("metrics.jsonl")).unwrap();
        let mut l = Logger::new(dir.path(), true, false, None, 0).unwrap();
        let e = l.log(1, &[("loss", 1.0)]).unwrap_err().to_string();
        assert!(
            e.contains(&dir.path().join("metrics.jsonl").display().to_string())
                && e.contains("No space left on device"),
            "{e}"
        );
    }
}
