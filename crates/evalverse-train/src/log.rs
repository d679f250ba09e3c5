//! Metric logging: metrics.jsonl (one JSON object per step), TensorBoard event files (TFRecord
//! framing with masked CRC32C and a hand-encoded `Event`/`Summary` protobuf, read by TensorBoard's
//! own event reader; see scripts/check_tensorboard.py), and a progress bar with loss, lr,
//! tokens/s and ETA. Metric names follow TRL's (loss, learning_rate, grad_norm, rewards/chosen, ...).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Logger {
    jsonl: Option<File>,
    tb: Option<File>,
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

impl Logger {
    pub fn new(
        dir: &Path,
        jsonl: bool,
        tensorboard: bool,
        progress_total: Option<u64>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let jsonl = if jsonl {
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("metrics.jsonl"))?,
            )
        } else {
            None
        };
        let tb = if tensorboard {
            let tb_dir = dir.join("tb");
            std::fs::create_dir_all(&tb_dir)?;
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "evalverse".into());
            let mut f = File::create(tb_dir.join(format!(
                "events.out.tfevents.{}.{host}.{}",
                now() as u64,
                std::process::id()
            )))?;
            let mut body = vec![0x1a];
            varint(13, &mut body);
            body.extend_from_slice(b"brain.Event:2");
            f.write_all(&record(&event(now(), 0, &body)))?;
            Some(f)
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
    pub fn log(&mut self, step: usize, scalars: &[(&str, f64)]) -> std::io::Result<()> {
        if let Some(f) = self.jsonl.as_mut() {
            let mut obj = serde_json::Map::new();
            obj.insert("step".into(), step.into());
            for (k, v) in scalars {
                obj.insert((*k).into(), serde_json::Value::from(*v));
            }
            writeln!(f, "{}", serde_json::Value::Object(obj))?;
        }
        if let Some(f) = self.tb.as_mut() {
            for (k, v) in scalars {
                f.write_all(&record(&event(
                    now(),
                    step as i64,
                    &scalar_summary(k, *v as f32),
                )))?;
            }
            f.flush()?;
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
        let mut l = Logger::new(dir.path(), true, true, None).unwrap();
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
}
