//! The judge's conversation and the count of video tokens in it: one builder for training,
//! evaluation, pairwise comparison, `judge`, `score` and the server, so the prompts a judge is
//! trained on are the prompts it is served with (STYLE 9). The question texts themselves come
//! from `evalverse_data::prompts` (the taxonomy's definitions, expert questions and evidence).
//! The model family fixes, here and only here, how clips are preprocessed (`patch_spec`) and how
//! a video is written into the prompt (`clip_tokens`: one block, or Qwen3-VL's timestamped
//! block per temporal patch, as transformers' Qwen3VLProcessor writes it).

use evalverse_data::cache::CachedClip;
use evalverse_data::prompts::SYSTEM_PROMPT;
use evalverse_data::video::{FrameSampling, PatchSpec, PixelNorm};
use evalverse_model::chat::{qwen3_timestamps, Content, Message, Role};
use evalverse_model::config::{Family, VisionConfig};

/// Version of the prompt format (system prompt, video placement, question layout). A bundle
/// records it; a judge is refused by a build whose prompts differ.
pub const PROMPT_VERSION: u32 = 1;

/// Merged video tokens of a clip with patch grid `grid_thw` [t, h, w]: t * h * w / merge^2,
/// the merge size read from the model's vision config.
pub fn video_tokens(vision: &VisionConfig, grid_thw: [usize; 3]) -> usize {
    grid_thw.iter().product::<usize>() / (vision.spatial_merge_size * vision.spatial_merge_size)
}

/// A video's place in the prompt, in the layout of the model's family.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTokens {
    /// One vision block of this many merged tokens (Qwen2-VL, Qwen2.5-VL).
    Block(usize),
    /// Per temporal patch, its time as text `<t seconds>` and its own vision block of
    /// `tokens_per_frame` merged tokens (Qwen3-VL).
    Timed {
        seconds: Vec<f64>,
        tokens_per_frame: usize,
    },
}

impl VideoTokens {
    /// Merged video tokens in all (the `<|video_pad|>` count).
    pub fn total(&self) -> usize {
        match self {
            VideoTokens::Block(n) => *n,
            VideoTokens::Timed {
                seconds,
                tokens_per_frame,
            } => seconds.len() * tokens_per_frame,
        }
    }

    fn content(&self) -> Content {
        match self {
            VideoTokens::Block(tokens) => Content::Video { tokens: *tokens },
            VideoTokens::Timed {
                seconds,
                tokens_per_frame,
            } => Content::TimedVideo {
                seconds: seconds.clone(),
                tokens_per_frame: *tokens_per_frame,
            },
        }
    }
}

/// A decoded clip's place in the prompt (see `VideoTokens`). Qwen3-VL's times come from the
/// sampled frame indices and the source frame rate (`chat::qwen3_timestamps`); a still image
/// (no frame rate) sits at 0 seconds.
pub fn clip_tokens(vision: &VisionConfig, clip: &CachedClip) -> VideoTokens {
    let v = &clip.vision;
    match vision.family {
        Family::Qwen2Vl | Family::Qwen2_5Vl => VideoTokens::Block(video_tokens(vision, v.grid_thw)),
        Family::Qwen3Vl => {
            let [t, h, w] = v.grid_thw;
            let seconds = if v.video_fps > 0.0 && !v.frame_indices.is_empty() {
                qwen3_timestamps(&v.frame_indices, v.video_fps)
            } else {
                vec![0.0; t]
            };
            assert_eq!(
                seconds.len(),
                t,
                "{} sampled frames do not make the clip's {t} temporal patches",
                v.frame_indices.len()
            );
            VideoTokens::Timed {
                seconds,
                tokens_per_frame: video_tokens(vision, [1, h, w]),
            }
        }
    }
}

/// What the model's processor does to a clip, read from its vision config: the patch geometry,
/// and the family's normalisation and frame sampling (Qwen3-VL: mean = std = 0.5 and
/// `Qwen3VLVideoProcessor`'s sampling; Qwen2/2.5-VL: CLIP constants and qwen-vl-utils).
pub fn patch_spec(vision: &VisionConfig) -> PatchSpec {
    let (norm, sampling) = match vision.family {
        Family::Qwen2Vl | Family::Qwen2_5Vl => (PixelNorm::Clip, FrameSampling::QwenVlUtils),
        Family::Qwen3Vl => (PixelNorm::Half, FrameSampling::Qwen3Vl),
    };
    PatchSpec {
        patch_size: vision.patch_size,
        merge_size: vision.spatial_merge_size,
        temporal_patch_size: vision.temporal_patch_size,
        norm,
        sampling,
    }
}

/// One video of a prompt: an optional label line before it ("Video A:") and its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSlot<'a> {
    pub label: Option<&'a str>,
    pub tokens: VideoTokens,
}

/// The judge conversation: the system prompt, the user turn (each video, labelled when
/// several, then the question), and the assistant's answer when given (training targets).
pub fn conversation(videos: &[VideoSlot], question: &str, answer: Option<&str>) -> Vec<Message> {
    let mut content = Vec::with_capacity(2 * videos.len() + 1);
    for v in videos {
        if let Some(l) = v.label {
            content.push(Content::Text(l.to_string()));
        }
        content.push(v.tokens.content());
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
pub fn single(tokens: VideoTokens, question: &str, answer: Option<&str>) -> Vec<Message> {
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
    use evalverse_model::chat::format_tenths;

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
                    tokens: VideoTokens::Block(3),
                },
                VideoSlot {
                    label: Some("Video B:"),
                    tokens: VideoTokens::Block(5),
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
        let s = single(VideoTokens::Block(4), "Q", Some("A"));
        assert_eq!(s[1].content[0], Content::Video { tokens: 4 });
        assert_eq!(s[2], Message::text(Role::Assistant, "A"));
    }

    fn qwen3_vision() -> VisionConfig {
        VisionConfig {
            family: Family::Qwen3Vl,
            patch_size: 16,
            norm: evalverse_model::config::NormKind::Layer,
            hidden_act: evalverse_model::config::Activation::GeluTanh,
            mlp: evalverse_model::config::VisionMlpKind::Plain,
            patch_bias: true,
            window_size: None,
            num_position_embeddings: Some(64),
            deepstack_visual_indexes: vec![0],
            ..vision(2)
        }
    }

    fn clip(grid_thw: [usize; 3], frame_indices: Vec<usize>, video_fps: f64) -> CachedClip {
        CachedClip {
            vision: evalverse_data::video::VisionInput {
                pixel_values: vec![],
                row_len: 3 * 2 * 16 * 16,
                grid_thw,
                second_per_grid: 1.0,
                frame_indices,
                video_fps,
            },
            audio: None,
        }
    }

    #[test]
    fn patch_spec_follows_the_family() {
        let q25 = patch_spec(&vision(2));
        assert_eq!(
            (q25.factor(), q25.norm, q25.sampling),
            (28, PixelNorm::Clip, FrameSampling::QwenVlUtils)
        );
        let q3 = patch_spec(&qwen3_vision());
        assert_eq!(
            (q3.factor(), q3.norm, q3.sampling),
            (32, PixelNorm::Half, FrameSampling::Qwen3Vl)
        );
        assert_eq!(q3.row_len(), 1536);
        let q2 = patch_spec(&VisionConfig {
            family: Family::Qwen2Vl,
            ..vision(2)
        });
        assert_eq!(
            (q2.norm, q2.sampling),
            (PixelNorm::Clip, FrameSampling::QwenVlUtils)
        );
    }

    #[test]
    fn qwen2_5_clip_is_one_block() {
        let c = clip([4, 6, 8], vec![0, 7, 13, 20, 27, 34, 40, 47], 12.0);
        assert_eq!(clip_tokens(&vision(2), &c), VideoTokens::Block(48));
        assert_eq!(
            single(clip_tokens(&vision(2), &c), "Q", None)[1].content[0],
            Content::Video { tokens: 48 }
        );
    }

    /// The times transformers' Qwen3VLProcessor writes for the bundled clips (from
    /// evalverse-data's Qwen3-VL preprocessing fixture, scripts/make_qwen3_preprocess_fixtures.py)
    /// are the times of the prompt's blocks, one per temporal patch.
    #[test]
    fn qwen3_clip_is_timestamped_blocks_at_the_processors_times() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../evalverse-data/tests/fixtures/preprocess/qwen3_preprocess.json");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        let usizes = |v: &serde_json::Value| -> Vec<usize> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        };
        let floats = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let mut cases = 0;
        for c in meta["clips"].as_array().unwrap() {
            for (indices, stamps, grid) in [
                (&c["frame_indices"], &c["timestamps"], &c["grid_thw"]),
                (
                    &c["class_default_size"]["frame_indices"],
                    &c["class_default_size"]["timestamps"],
                    &c["class_default_size"]["grid_thw"],
                ),
            ] {
                let g = usizes(grid);
                let cc = clip(
                    [g[0], g[1], g[2]],
                    usizes(indices),
                    c["video_fps"].as_f64().unwrap(),
                );
                let got = clip_tokens(&qwen3_vision(), &cc);
                let VideoTokens::Timed {
                    seconds,
                    tokens_per_frame,
                } = &got
                else {
                    panic!("{}: {got:?} is not timed", c["name"]);
                };
                assert_eq!(*tokens_per_frame, g[1] * g[2] / 4, "{}", c["name"]);
                // serde_json parses floats to within an ulp (no float_roundtrip): compare to
                // 1e-12 s, and the text the prompt writes exactly.
                let want = floats(stamps);
                assert_eq!(seconds.len(), want.len(), "{}", c["name"]);
                for (a, b) in seconds.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12, "{}: {a} vs {b}", c["name"]);
                    assert_eq!(format_tenths(*a), format_tenths(*b), "{}", c["name"]);
                }
                assert_eq!(
                    got.total(),
                    video_tokens(&qwen3_vision(), [g[0], g[1], g[2]])
                );
                cases += 1;
            }
        }
        assert_eq!(cases, 6);
        // An odd count (7 frames, 4 temporal patches): the last pair is frame 35 twice.
        let c = clip([4, 4, 4], vec![0, 6, 12, 18, 23, 29, 35], 12.0);
        let m = single(clip_tokens(&qwen3_vision(), &c), "Q", None);
        assert_eq!(
            m[1].content[0],
            Content::TimedVideo {
                seconds: vec![0.25, 1.25, (23.0 / 12.0 + 29.0 / 12.0) / 2.0, 35.0 / 12.0],
                tokens_per_frame: 4
            }
        );
    }

    #[test]
    fn qwen3_still_image_sits_at_zero_seconds() {
        let c = clip([1, 4, 6], vec![0], 0.0);
        assert_eq!(
            clip_tokens(&qwen3_vision(), &c),
            VideoTokens::Timed {
                seconds: vec![0.0],
                tokens_per_frame: 6
            }
        );
    }
}
