//! Typed errors of this crate: `MetricError` of the statistics (defined in evalverse-data,
//! shared with the fusion regressors) with its checks, and `RunError` of the pipelines.

pub use evalverse_data::error::MetricError;

/// Refuses slices of different lengths.
pub(crate) fn same_length(
    what: &'static str,
    left: usize,
    right: usize,
) -> Result<(), MetricError> {
    if left == right {
        Ok(())
    } else {
        Err(MetricError::LengthMismatch { what, left, right })
    }
}

/// Refuses an empty slice or one holding NaN or ±∞.
pub(crate) fn finite(what: &'static str, values: &[f64]) -> Result<(), MetricError> {
    if values.is_empty() {
        return Err(MetricError::Empty { what });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricError::NonFinite {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

/// Errors of the pipelines this crate runs (evaluation, export, the quickstart): `Usage` is the
/// user's to fix (a path, a setting, input that does not fit; the CLI exits 2), `Runtime` is what
/// went wrong while running (exit 1). Messages name the file, record or setting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

impl From<evalverse_judge::JudgeError> for RunError {
    fn from(e: evalverse_judge::JudgeError) -> Self {
        match e {
            evalverse_judge::JudgeError::Config(m) => RunError::Usage(m),
            evalverse_judge::JudgeError::Runtime(m) => RunError::Runtime(m),
        }
    }
}

impl From<evalverse_train::runtime::TrainError> for RunError {
    fn from(e: evalverse_train::runtime::TrainError) -> Self {
        match e {
            evalverse_train::runtime::TrainError::Config(m) => RunError::Usage(m),
            other => RunError::Runtime(other.to_string()),
        }
    }
}

impl From<evalverse_data::DataError> for RunError {
    fn from(e: evalverse_data::DataError) -> Self {
        match e {
            evalverse_data::DataError::Config { .. } => RunError::Usage(e.to_string()),
            other => RunError::Runtime(other.to_string()),
        }
    }
}

impl From<crate::fusion::FusionError> for RunError {
    fn from(e: crate::fusion::FusionError) -> Self {
        match e {
            crate::fusion::FusionError::Usage(m) => RunError::Usage(m),
            other => RunError::Runtime(other.to_string()),
        }
    }
}

/// `Result` context for the pipelines: an error with what was being done.
pub trait Context<T> {
    /// A runtime error "`what`: error".
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, RunError>;
    /// A usage error "`what`: error".
    fn usage(self, what: impl FnOnce() -> String) -> Result<T, RunError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, RunError> {
        self.map_err(|e| RunError::Runtime(format!("{}: {e}", what())))
    }
    fn usage(self, what: impl FnOnce() -> String) -> Result<T, RunError> {
        self.map_err(|e| RunError::Usage(format!("{}: {e}", what())))
    }
}
