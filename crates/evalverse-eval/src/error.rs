//! Typed errors of the metric library. Malformed input (mismatched lengths, NaN, a probability
//! vector that does not sum to one) is refused with the argument and record it is about;
//! a statistic that is merely undefined on valid input (a constant vector) is `None` instead.

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
    #[error(transparent)]
    Fit(#[from] evalverse_judge::fusion::FitError),
}

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
