//! The Qwen chat format (Qwen2-VL / Qwen2.5-VL Instruct template) over the real tokenizer.json:
//! a default system prompt when none is given, `<|im_start|>role\n...<|im_end|>\n` turns, vision
//! placeholders `<|vision_start|><|video_pad|>*N<|vision_end|>` expanded to the number of merged
//! patches (Qwen3-VL: one timestamped block per temporal patch, `Content::TimedVideo`), the
//! generation prompt, and assistant-only label masks for training (the answer, its
//! `<|im_end|>` and the newline after it, as LLaMA-Factory's qwen2_vl template and TRL's
//! assistant_only_loss mark them).

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    /// A video of `tokens` merged patches (grid t*h*w / merge^2).
    Video {
        tokens: usize,
    },
    /// An image of `tokens` merged patches.
    Image {
        tokens: usize,
    },
    /// A video in Qwen3-VL's layout (transformers `Qwen3VLProcessor`): per temporal patch, its
    /// timestamp as text `<{t:.1f} seconds>` (t the mean time of the patch's two frames), then
    /// `<|vision_start|>` + `tokens_per_frame` x `<|video_pad|>` + `<|vision_end|>`.
    TimedVideo {
        seconds: Vec<f64>,
        tokens_per_frame: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Content>,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![Content::Text(text.into())],
        }
    }
}

/// Python's `f"{t:.1f}"`: the exact binary value rounded to one decimal, ties to even (0.25 ->
/// "0.2", 0.35 -> "0.3" as 0.35 is stored below it).
pub fn format_tenths(t: f64) -> String {
    format!("{t:.1}")
}

/// Qwen3-VL's timestamps of a video's temporal patches (transformers
/// `Qwen3VLProcessor._calculate_timestamps`): frame i at `frame_indices[i] / video_fps`, an odd
/// count padded with the last index, each pair of frames at the mean of its two times.
pub fn qwen3_timestamps(frame_indices: &[usize], video_fps: f64) -> Vec<f64> {
    let mut idx = frame_indices.to_vec();
    if idx.len() % 2 == 1 {
        idx.push(*idx.last().expect("odd means non-empty"));
    }
    idx.chunks(2)
        .map(|p| (p[0] as f64 / video_fps + p[1] as f64 / video_fps) / 2.0)
        .collect()
}

/// A tokenised conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// true where the token is part of an assistant answer (trained on).
    pub labels: Vec<bool>,
    pub text: String,
}

/// Special token ids of the Qwen vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub im_start: u32,
    pub im_end: u32,
    pub endoftext: u32,
    pub vision_start: u32,
    pub vision_end: u32,
    pub image_pad: u32,
    pub video_pad: u32,
}

pub struct ChatTokenizer {
    pub tokenizer: Tokenizer,
    pub special: SpecialIds,
    pub path: PathBuf,
}

impl ChatTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |m: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: m,
        };
        let tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| err(format!("has no special token {t}")))
        };
        let special = SpecialIds {
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
            endoftext: id("<|endoftext|>")?,
            vision_start: id("<|vision_start|>")?,
            vision_end: id("<|vision_end|>")?,
            image_pad: id("<|image_pad|>")?,
            video_pad: id("<|video_pad|>")?,
        };
        Ok(ChatTokenizer {
            tokenizer,
            special,
            path: path.to_path_buf(),
        })
    }

    /// Refuse a tokenizer whose ids do not fit the model's embedding, and special ids that
    /// disagree with the model config.
    pub fn check_model(&self, cfg: &crate::config::QwenVlConfig) -> Result<()> {
        let size = self.tokenizer.get_vocab_size(true);
        let err = |m: String| ModelError::Tokenizer {
            path: self.path.clone(),
            message: m,
        };
        if size > cfg.text.vocab_size {
            return Err(err(format!(
                "has {size} tokens but the model's embedding holds {}",
                cfg.text.vocab_size
            )));
        }
        for (name, tok, model) in [
            ("<|video_pad|>", self.special.video_pad, cfg.video_token_id),
            ("<|image_pad|>", self.special.image_pad, cfg.image_token_id),
            (
                "<|vision_start|>",
                self.special.vision_start,
                cfg.vision_start_token_id,
            ),
        ] {
            if tok != model {
                return Err(err(format!(
                    "{name} is id {tok} but the model config says {model}"
                )));
            }
        }
        Ok(())
    }

    /// The template text, with vision placeholders expanded. Returns the text and the byte spans
    /// of assistant answers (content + `<|im_end|>\n`).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> (String, Vec<(usize, usize)>) {
        let mut s = String::new();
        let mut spans = Vec::new();
        if messages.first().map(|m| m.role) != Some(Role::System) {
            s.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
        }
        for m in messages {
            s.push_str("<|im_start|>");
            s.push_str(m.role.as_str());
            s.push('\n');
            let start = s.len();
            for c in &m.content {
                match c {
                    Content::Text(t) => s.push_str(t),
                    Content::Video { tokens } => {
                        s.push_str("<|vision_start|>");
                        s.push_str(&"<|video_pad|>".repeat(*tokens));
                        s.push_str("<|vision_end|>");
                    }
                    Content::Image { tokens } => {
                        s.push_str("<|vision_start|>");
                        s.push_str(&"<|image_pad|>".repeat(*tokens));
                        s.push_str("<|vision_end|>");
                    }
                    Content::TimedVideo {
                        seconds,
                        tokens_per_frame,
                    } => {
                        for t in seconds {
                            s.push_str(&format!("<{} seconds>", format_tenths(*t)));
                            s.push_str("<|vision_start|>");
                            s.push_str(&"<|video_pad|>".repeat(*tokens_per_frame));
                            s.push_str("<|vision_end|>");
                        }
                    }
                }
            }
            s.push_str("<|im_end|>\n");
            if m.role == Role::Assistant {
                spans.push((start, s.len()));
            }
        }
        if add_generation_prompt {
            s.push_str("<|im_start|>assistant\n");
        }
        (s, spans)
    }

    /// Tokenise a conversation; `labels` marks the tokens inside assistant answers.
    pub fn encode_chat(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Encoded> {
        let (text, spans) = self.render(messages, add_generation_prompt);
        let enc =
            self.tokenizer
                .encode(text.as_str(), false)
                .map_err(|e| ModelError::Tokenizer {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
        let labels = enc
            .get_offsets()
            .iter()
            .map(|&(a, b)| spans.iter().any(|&(s, e)| a >= s && b <= e && b > a))
            .collect();
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            labels,
            text,
        })
    }

    /// Plain text to ids (no special-token handling beyond the tokenizer's own).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }
}
