//! evalverse-data: the path from an annotated video dataset on disk to model-ready tensors.
//!
//! Taxonomy (EvalVerse §3), the JSONL manifest and its validation, prompt-group splits,
//! inter-rater agreement, video/audio decoding with video-rs, Qwen2.5-VL frame sampling and
//! preprocessing, a content-addressed decode cache, and the synthetic cinematic dataset generator.

pub mod agreement;
pub mod cache;
pub mod dataset;
pub mod error;
pub mod frames;
pub mod import;
pub mod manifest;
pub mod media;
pub mod operators;
pub mod prompts;
pub mod rng;
pub mod split;
pub mod stats;
pub mod synth;
pub mod taxonomy;
pub mod video;

pub use error::{DataError, Result};
pub use taxonomy::Taxonomy;
