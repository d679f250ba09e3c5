//! The judge's conversation and the count of video tokens in it: one builder for training,
//! evaluation, pairwise comparison, `judge`, `score` and the server, so the prompts a judge is
//! trained on are the prompts it is served with (STYLE 9). The question texts themselves come
//! from `evalverse_data::prompts` (the taxonomy's definitions, expert questions and evidence).

use evalverse_data::cache::CachedClip;
use evalverse_data::prompts::SYSTEM_PROMPT;
use evalverse_data::video::PatchSpec;
use evalverse_model::chat::{Content, Message, Role};
use evalverse_model::config::VisionConfig;

/// Version of the prompt format (system prompt, video placement, question layout). A bundle
/// records it; a judge is refused by a build whose prompts differ.
pub const PROMPT_VERSION: u32 = 1;

/// Merged video tokens of a clip with patch grid `grid_thw` [t, h, w]: t * h * w / merge^2,
/// the merge size read from the model's vision config.
pub fn video_tokens(vision: &VisionConfig, grid_thw: [usize; 3]) -> usize {
    grid_thw.iter().product::<usize>() / (vision.spatial_merge_size * vision.spatial_merge_size)
}

/// Merged video tokens of a decoded clip (see `video_tokens`).
pub fn clip_tokens(vision: &VisionConfig, clip: &CachedClip) -> usize {
    video_tokens(vision, clip.vision.grid_thw)
}

/// The patch geometry the clips are preprocessed with, read from the model's vision config.
pub fn patch_spec(vision: &VisionConfig) -> PatchSpec {
    PatchSpec {
        patch_size: vision.patch_size,
        merge_size: vision.spatial_merge_size,
        temporal_patch_size: vision.temporal_patch_size,
    }
}

/// One video of a prompt: an optional label line before it ("Video A:") and its token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSlot<'a> {
    pub label: Option<&'a str>,
    pub tokens: usize,
}

/// The judge conversation: the system prompt, the user turn (each video, labelled when
/// several, then the question), and the assistant's answer when given (training targets).
pub fn conversation(videos: &[VideoSlot], question: &str, answer: Option<&str>) -> Vec<Message> {
    let mut content = Vec::with_capacity(2 * videos.len() + 1);
    for v in videos {
        if let Some(l) = v.label {
            content.push(Content::Text(l.to_string()));
        }
        content.push(Content::Video { tokens: v.tokens });
    }
    content.push(Content::Text(question.to_string()));
    let mut m = vec![
        Message::text(Role::System, SYSTEM_PROMPT),
        Message {
            role: Role::User,
            content,
        },
    ];
    if let Some(a) = answer {
        m.push(Message::text(Role::Assistant, a));
    }
    m
}

/// The pointwise conversation of one clip (no label).
pub fn single(tokens: usize, question: &str, answer: Option<&str>) -> Vec<Message> {
    conversation(
        &[VideoSlot {
            label: None,
            tokens,
        }],
        question,
        answer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vision(merge: usize) -> VisionConfig {
        VisionConfig {
            depth: 1,
            hidden_size: 32,
            num_heads: 2,
            intermediate_size: 64,
            patch_size: 14,
            spatial_merge_size: merge,
            temporal_patch_size: 2,
            in_channels: 3,
            out_hidden_size: 64,
            family: evalverse_model::config::Family::Qwen2_5Vl,
            norm: evalverse_model::config::NormKind::Rms,
            hidden_act: evalverse_model::config::Activation::Silu,
            mlp: evalverse_model::config::VisionMlpKind::Gated,
            patch_bias: false,
            window_size: Some(112),
            fullatt_block_indexes: vec![],
            tokens_per_second: 2.0,
            num_position_embeddings: None,
            deepstack_visual_indexes: vec![],
            rms_norm_eps: 1e-6,
        }
    }

    #[test]
    fn token_count_divides_by_the_configs_merge_area() {
        assert_eq!(video_tokens(&vision(2), [2, 8, 12]), 48);
        assert_eq!(video_tokens(&vision(1), [2, 8, 12]), 192);
    }

    #[test]
    fn pair_prompt_labels_each_video_and_keeps_order() {
        let m = conversation(
            &[
                VideoSlot {
                    label: Some("Video A:"),
                    tokens: 3,
                },
                VideoSlot {
                    label: Some("Video B:"),
                    tokens: 5,
                },
            ],
            "Which?",
            None,
        );
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[1].content,
            vec![
                Content::Text("Video A:".into()),
                Content::Video { tokens: 3 },
                Content::Text("Video B:".into()),
                Content::Video { tokens: 5 },
                Content::Text("Which?".into()),
            ]
        );
        let s = single(4, "Q", Some("A"));
        assert_eq!(s[1].content[0], Content::Video { tokens: 4 });
        assert_eq!(s[2], Message::text(Role::Assistant, "A"));
    }
}
