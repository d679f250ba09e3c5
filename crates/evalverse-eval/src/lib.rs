//! evalverse-eval: how far a judge agrees with held-out experts (EvalVerse §7), per dimension,
//! aspect and stage, at sample and system level, with bootstrap confidence intervals; the
//! evaluation pipeline over a `evalverse_judge::Judge`, pairwise A/B judging, and fitting the
//! judge's fusion stage.

pub mod bootstrap;
pub mod error;
pub mod fusion;
pub mod metrics;
pub mod stats;

pub use error::{MetricError, RunError};
pub mod leaderboard;
pub mod pairwise;
pub mod pipeline;
pub mod publish;
pub mod quickstart;
pub mod report;
