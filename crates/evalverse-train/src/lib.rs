//! evalverse-train: the two LoRA training stages of the EvalVerse method (chain-of-thought SFT
//! and preference calibration), as flat programs over small libraries: losses (pure functions),
//! optimizer and schedule, checkpoints with exact resume, metric loggers, recipes.

pub mod losses;
