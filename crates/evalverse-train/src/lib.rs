//! evalverse-train: the two LoRA training stages of the EvalVerse method (chain-of-thought SFT
//! and preference calibration), as flat programs over small libraries: losses (pure functions),
//! optimizer and schedule, checkpoints with exact resume, metric loggers, recipes.

pub mod checkpoint;
pub mod judge_spec;
pub mod log;
pub mod losses;
pub mod optim;
pub mod preference;
pub mod recipe;
pub mod runtime;
pub mod sft;

/// Judge prompts and examples (they live in evalverse-data, shared with evaluation).
pub use evalverse_data::prompts as examples;
