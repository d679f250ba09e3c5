//! Typed errors of the data crate. Every variant names the file (and record, key or frame)
//! it is about, so the CLI can print one line a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The reason is part of the message and deliberately not the error's `source()`: the binary
    /// prints the whole chain, which would say it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: cannot decode media: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: cannot encode media: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Config {
            path: path.into(),
            message: message.into(),
        }
    }
    pub fn decode(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        DataError::Decode {
            path: path.into(),
            message: message.to_string(),
        }
    }
    pub fn encode(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        DataError::Encode {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::io(&tmp, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary prints the whole chain (anyhow's `{:#}`: each error's message joined by ": "),
    /// so a cause that is part of a message must not be the next link as well.
    #[test]
    fn io_error_reason_appears_once_in_the_printed_chain() {
        let e = DataError::io(
            "m.jsonl",
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad bytes"),
        );
        let mut chain = vec![e.to_string()];
        let mut next = std::error::Error::source(&e);
        while let Some(s) = next {
            chain.push(s.to_string());
            next = s.source();
        }
        let printed = chain.join(": ");
        assert_eq!(printed.matches("bad bytes").count(), 1, "{printed}");
        assert!(printed.contains("m.jsonl"), "{printed}");
    }
}

/// Typed errors of the statistics (metrics in evalverse-eval, fusion regressors in
/// evalverse-judge). Malformed input (mismatched lengths, NaN, a probability vector that does
/// not sum to one) is refused with the argument and record it is about; a statistic that is
/// merely undefined on valid input (a constant vector) is `None` instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    #[error("{what}: no records")]
    Empty { what: &'static str },
    #[error("{what}: record {index} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
    #[error("{what}: record {index}: {reason}")]
    Invalid {
        what: &'static str,
        index: usize,
        reason: String,
    },
}
