//! The Qwen chat format over the real tokenizer.json gives the ids transformers'
//! apply_chat_template + processor expansion give (fixture made by scripts/make_fixtures.py), and
//! the assistant-only label mask. The tokenizer comes from scripts/fetch_test_assets.sh.

use std::path::{Path, PathBuf};

use evalverse_model::chat::{ChatTokenizer, Content, Message, Role};
use serde_json::Value;

fn tokenizer_path() -> PathBuf {
    if let Ok(p) = std::env::var("EVALVERSE_QWEN_TOKENIZER") {
        return PathBuf::from(p);
    }
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-assets/qwen-tokenizer.json");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch_test_assets.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_template.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn messages(case: &Value) -> Vec<Message> {
    let mut videos = case["num_video_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize);
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let role = match m["role"].as_str().unwrap() {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                r => panic!("role {r}"),
            };
            let content = match &m["content"] {
                Value::String(s) => vec![Content::Text(s.clone())],
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match p["type"].as_str().unwrap() {
                        "text" => Content::Text(p["text"].as_str().unwrap().to_string()),
                        "video" => Content::Video {
                            tokens: videos.next().unwrap(),
                        },
                        t => panic!("content type {t}"),
                    })
                    .collect(),
                v => panic!("content {v}"),
            };
            Message { role, content }
        })
        .collect()
}

#[test]
fn chat_template_encodes_to_transformers_ids_and_label_masks() {
    let tok = ChatTokenizer::from_file(&tokenizer_path()).unwrap();
    let fx = fixture();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let enc = tok
            .encode_chat(
                &messages(case),
                case["add_generation_prompt"].as_bool().unwrap(),
            )
            .unwrap();
        assert_eq!(enc.text, case["text"].as_str().unwrap(), "{name}: text");
        let want: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(enc.ids, want, "{name}: ids");
        // Prompts without an answer have no mask in the fixture: nothing is trained on.
        let mask: Vec<bool> = match case["assistant_mask"].as_array() {
            Some(m) => m
                .iter()
                .map(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true))
                .collect(),
            None => vec![false; want.len()],
        };
        assert_eq!(enc.labels, mask, "{name}: assistant label mask");
    }
}

#[test]
fn tokenizer_larger_than_the_embedding_is_refused() {
    let tok = ChatTokenizer::from_file(&tokenizer_path()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_a/config.json");
    // The tiny fixture has a 512-token vocabulary: the real Qwen tokenizer does not fit.
    let cfg = evalverse_model::QwenVlConfig::from_file(&dir).unwrap();
    let e = tok.check_model(&cfg).unwrap_err().to_string();
    assert!(e.contains("embedding holds 512"), "{e}");
}

/// Qwen3-VL's video prompt: per temporal patch "<{t:.1f} seconds>" + vision block, the times from
/// the sampled frame indices and the source fps (odd counts padded, 0.25 s printed "0.2" as
/// Python does), gives the text and ids of transformers' Qwen3VLProcessor on the real tokenizer
/// (fixtures/families/qwen3_chat.json, scripts/make_family_fixtures.py).
#[test]
fn qwen3_vl_timestamped_video_prompt_encodes_to_the_processors_ids() {
    use evalverse_model::chat::qwen3_timestamps;
    let tok = ChatTokenizer::from_file(&tokenizer_path()).unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/qwen3_chat.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let indices: Vec<usize> = case["frames_indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let seconds = qwen3_timestamps(&indices, case["fps"].as_f64().unwrap());
        let t = case["video_grid_thw"][0].as_u64().unwrap() as usize;
        assert_eq!(seconds.len(), t, "{name}: one timestamp per temporal patch");
        let mut m = vec![
            Message::text(Role::System, case["system"].as_str().unwrap()),
            Message {
                role: Role::User,
                content: vec![
                    Content::TimedVideo {
                        seconds,
                        tokens_per_frame: case["tokens_per_frame"].as_u64().unwrap() as usize,
                    },
                    Content::Text(case["question"].as_str().unwrap().to_string()),
                ],
            },
        ];
        if let Some(a) = case["answer"].as_str() {
            m.push(Message::text(Role::Assistant, a));
        }
        let enc = tok
            .encode_chat(&m, case["add_generation_prompt"].as_bool().unwrap())
            .unwrap();
        assert_eq!(enc.text, case["text"].as_str().unwrap(), "{name}: text");
        let want: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(enc.ids, want, "{name}: ids");
    }
}
