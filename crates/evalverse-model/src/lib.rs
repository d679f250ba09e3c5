//! evalverse-model: the Qwen-VL family in burn, generic over the backend.
//!
//! Qwen2.5-VL first (the base of VideoScore2, UnifiedReward-Think, Q-Insight): vision tower with
//! window attention and the patch merger, the Qwen2 decoder with multimodal RoPE, weight loading
//! from Hugging Face checkpoints (local or hf-hub; single or sharded safetensors; both key
//! layouts), the tokenizer and chat format, generation with a KV cache, and score readout.
//! Parameter names follow the Hugging Face checkpoints.

pub mod attention;
pub mod chat;
pub mod config;
pub mod error;
pub mod export;
pub mod generate;
pub mod init;
pub mod lora;
pub mod model;
pub mod nn;
pub mod ops;
pub mod position;
pub mod reward;
pub mod text;
pub mod vision;
pub mod weights;

pub use config::QwenVlConfig;
pub use error::{ModelError, Result};
pub use model::{Batch, QwenVl};
pub use ops::{ModelBackend, TrainBackend};

/// The CPU backend used by tests and the quickstart.
pub type Cpu = burn::backend::Flex;
