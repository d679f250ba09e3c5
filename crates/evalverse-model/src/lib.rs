//! evalverse-model: the Qwen-VL family in burn, generic over the backend.
//!
//! Qwen2.5-VL (the base of VideoScore2, UnifiedReward-Think, Q-Insight), Qwen2-VL (VideoAlign's
//! base) and dense Qwen3-VL (the 2026 reward-model base), one implementation whose family
//! differences are config choices (`config::Family`): vision tower with window or per-frame
//! attention, learned position table and DeepStack, the patch merger(s), the Qwen2 / Qwen3
//! decoder with chunked or interleaved multimodal RoPE, weight loading
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
