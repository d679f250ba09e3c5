//! `POST /v1/chat/completions`: the OpenAI-compatible subset that vLLM clients of video judges
//! send (UnifiedReward's, Flow-GRPO's and Pref-GRPO's reward functions), so such a client works
//! by changing its base URL. A request carries one video: a `video_url` part (a path under an
//! allowed media root, `file://`, `data:video/mp4;base64,...`, or vLLM's pre-extracted frames
//! `data:video/jpeg;base64,<f1>,<f2>,...`), or `image_url` parts taken as the frames of one clip
//! (UnifiedReward sends sampled frames that way). The text parts are the prompt the video was
//! generated from (or the `prompt` field, an evalverse extension for clients whose text is an
//! instruction). The answer is a `chat.completion` whose content lists each dimension's score and
//! ends with `Final Score: X.XX` (the reward: mean soft score), with the structured result under
//! `evalverse`.
//!
//! What the judge does not vary per request is refused or documented, never silently changed:
//! `stream` and `n > 1` are refused; `mm_processor_kwargs` (`fps`, `max_pixels`, `min_pixels`)
//! must equal the judge's own preprocessing (its scores are calibrated on it); `temperature`,
//! `top_p` and `max_tokens` are accepted and do not change the judge (scores come from the score
//! tokens' probabilities; rationales are greedy up to the bundle's `max_new_tokens`).

use evalverse_data::video::FrameSpec;
use evalverse_judge::score::ClipResult;
use serde::Deserialize;

use crate::media::{FramesArg, VideoArg};
use crate::ApiError;

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    mm_processor_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    media_io_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// evalverse extension: the dimensions to judge (all when absent).
    #[serde(default)]
    dimensions: Vec<String>,
    /// evalverse extension: the generation prompt, when the text parts are an instruction.
    #[serde(default)]
    prompt: Option<String>,
    /// evalverse extension: put each dimension's rationale in the content.
    #[serde(default)]
    rationale: bool,
    // model, max_tokens, temperature, top_p, seed, ...: accepted, see the module docs.
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Content,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Content {
    #[default]
    None,
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    VideoUrl { video_url: Url },
    ImageUrl { image_url: Url },
}

#[derive(Debug, Deserialize)]
struct Url {
    url: String,
}

/// What a chat request asks the judge.
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub video: VideoArg,
    /// Frame rate of `data:video/jpeg` frames (`media_io_kwargs.video.fps`).
    pub frames_fps: Option<f64>,
    pub prompt: String,
    pub dimensions: Vec<String>,
    pub rationale: bool,
}

fn bad(m: impl AsRef<str>) -> ApiError {
    ApiError::bad_request(m.as_ref())
}

/// Parse and check a `/v1/chat/completions` body against the judge's preprocessing.
pub fn parse_chat_request(body: &[u8], frames: &FrameSpec) -> Result<ChatCall, ApiError> {
    let req: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not a chat completion request: {e}")))?;
    if req.stream == Some(true) {
        return Err(bad(
            "streaming is not offered: a judgement is answered whole (send stream: false)",
        ));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(bad(
            "n must be 1: the judge answers one judgement per request",
        ));
    }
    check_processor_kwargs(req.mm_processor_kwargs.as_ref(), frames)?;
    let frames_fps = media_fps(req.media_io_kwargs.as_ref())?;
    let mut texts = Vec::new();
    let mut videos = Vec::new();
    let mut images = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role.as_str() {
            "user" => {}
            // The judge's own prompt is fixed; a client's system or earlier assistant turns
            // do not change it.
            "system" | "developer" | "assistant" => continue,
            other => return Err(bad(format!("message {i}: unknown role '{other}'"))),
        }
        match &m.content {
            Content::None => {}
            Content::Text(t) => texts.push(t.clone()),
            Content::Parts(parts) => {
                for p in parts {
                    match p {
                        Part::Text { text } => texts.push(text.clone()),
                        Part::VideoUrl { video_url } => videos.push(video_url.url.clone()),
                        Part::ImageUrl { image_url } => images.push(image_url.url.clone()),
                    }
                }
            }
        }
    }
    let video = match (videos.len(), images.len()) {
        (1, 0) => VideoArg::Url(videos.remove(0)),
        (0, n) if n > 0 => VideoArg::Frames(FramesArg {
            frames: images,
            fps: None,
        }),
        (0, 0) => {
            return Err(bad(
                "no video: send one video_url part (or the clip's frames as image_url parts)",
            ))
        }
        (1, _) => {
            return Err(bad(
                "a video_url part and image_url parts: send the clip one way",
            ))
        }
        (n, _) => {
            return Err(bad(format!(
                "{n} video_url parts: one video per request (POST /v1/compare compares a group)"
            )))
        }
    };
    let prompt = match req.prompt {
        Some(p) => p,
        None => texts.join("\n"),
    };
    if prompt.trim().is_empty() {
        return Err(bad(
            "no prompt: the text parts (or `prompt`) give the prompt the video was generated from",
        ));
    }
    Ok(ChatCall {
        video,
        frames_fps,
        prompt: prompt.trim().to_string(),
        dimensions: req.dimensions,
        rationale: req.rationale,
    })
}

/// `mm_processor_kwargs` may restate the judge's preprocessing, not change it.
fn check_processor_kwargs(
    kw: Option<&serde_json::Map<String, serde_json::Value>>,
    frames: &FrameSpec,
) -> Result<(), ApiError> {
    let Some(kw) = kw else { return Ok(()) };
    for (k, v) in kw {
        let (judge, given) = match k.as_str() {
            "fps" => (frames.fps, v.as_f64()),
            "max_pixels" => (frames.max_pixels as f64, v.as_f64()),
            "min_pixels" => (frames.min_pixels as f64, v.as_f64()),
            "do_sample_frames" => {
                if v.as_bool() == Some(true) {
                    continue;
                }
                return Err(bad(
                    "mm_processor_kwargs.do_sample_frames: the judge always samples frames by fps",
                ));
            }
            other => {
                return Err(bad(format!(
                    "mm_processor_kwargs.{other} is not taken (fps, max_pixels, min_pixels, \
                     do_sample_frames are)"
                )))
            }
        };
        if given != Some(judge) {
            return Err(bad(format!(
                "mm_processor_kwargs.{k} = {v}: this judge was calibrated with {k} = {judge} and \
                 preprocesses every clip that way; leave it out or send {judge}"
            )));
        }
    }
    Ok(())
}

/// `media_io_kwargs.video.fps`: the frame rate of pre-extracted frames.
fn media_fps(
    kw: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<f64>, ApiError> {
    let Some(kw) = kw else { return Ok(None) };
    let mut fps = None;
    for (modality, v) in kw {
        if modality != "video" {
            return Err(bad(format!(
                "media_io_kwargs.{modality} is not taken (video is)"
            )));
        }
        let Some(obj) = v.as_object() else {
            return Err(bad("media_io_kwargs.video must be an object"));
        };
        for (k, x) in obj {
            match k.as_str() {
                "fps" => {
                    fps = Some(x.as_f64().ok_or_else(|| {
                        bad(format!("media_io_kwargs.video.fps = {x}: not a number"))
                    })?)
                }
                // The server's own frame count setting in vLLM; frames are sampled by fps here.
                "num_frames" => {}
                other => {
                    return Err(bad(format!(
                        "media_io_kwargs.video.{other} is not taken (fps, num_frames are)"
                    )))
                }
            }
        }
    }
    Ok(fps)
}

/// The assistant's content for a judged clip: one line per dimension, then `Final Score`.
pub fn content(r: &ClipResult, rationale: bool) -> String {
    let mut lines = Vec::new();
    for j in &r.judgements {
        let line = match (r.scores.get(&j.dimension), r.soft.get(&j.dimension)) {
            (Some(Some(s)), Some(Some(soft))) => format!("{}: {s} (soft {soft:.2})", j.dimension),
            (_, Some(Some(soft))) => format!("{}: {soft:.2} (soft; no score line)", j.dimension),
            _ => {
                let why = j
                    .gate_reason
                    .clone()
                    .unwrap_or_else(|| "does not apply".to_string());
                format!("{}: N/A ({why})", j.dimension)
            }
        };
        lines.push(line);
        if rationale && !j.answer.trim().is_empty() {
            lines.push(format!("{} rationale: {}", j.dimension, j.answer.trim()));
        }
    }
    match r.reward() {
        Some(x) => lines.push(format!("Final Score: {x:.2}")),
        None => lines.push("Final Score: N/A".into()),
    }
    lines.join("\n")
}

/// The `chat.completion` object.
pub fn completion(model: &str, id: u64, r: &ClipResult, rationale: bool) -> serde_json::Value {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    serde_json::json!({
        "id": format!("chatcmpl-evalverse-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content(r, rationale)},
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "evalverse": r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<ChatCall, ApiError> {
        parse_chat_request(v.to_string().as_bytes(), &FrameSpec::default())
    }

    #[test]
    fn a_vllm_style_video_request_is_read() {
        let c = parse(serde_json::json!({
            "model": "UnifiedReward", "max_tokens": 512, "temperature": 0.7, "seed": 3,
            "messages": [
                {"role": "system", "content": "You are a judge."},
                {"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": "file:///m/a.mp4"}},
                    {"type": "text", "text": "a red fox in the snow"}]}],
            "mm_processor_kwargs": {"fps": 2.0, "do_sample_frames": true},
            "media_io_kwargs": {"video": {"fps": 4, "num_frames": -1}},
            "dimensions": ["lens"]
        }))
        .unwrap();
        assert!(matches!(&c.video, VideoArg::Url(u) if u == "file:///m/a.mp4"));
        assert_eq!(c.prompt, "a red fox in the snow");
        assert_eq!(c.frames_fps, Some(4.0));
        assert_eq!(c.dimensions, vec!["lens".to_string()]);
        // UnifiedReward's frames as images, and a plain-string user turn.
        let c = parse(
            serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,BBBB"}},
            {"type": "text", "text": "p"}]}]}),
        )
        .unwrap();
        assert!(matches!(&c.video, VideoArg::Frames(f) if f.frames.len() == 2));
    }

    #[test]
    fn what_the_judge_does_not_vary_is_refused_with_a_reason() {
        let user =
            |parts: serde_json::Value| serde_json::json!([{"role": "user", "content": parts}]);
        let v = serde_json::json!({"type": "video_url", "video_url": {"url": "a.mp4"}});
        let t = serde_json::json!({"type": "text", "text": "p"});
        for (body, needle) in [
            (
                serde_json::json!({"messages": user(serde_json::json!([v, t])), "stream": true}),
                "streaming",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v, t])), "n": 2}),
                "n must be 1",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v, t])), "mm_processor_kwargs": {"fps": 1}}),
                "calibrated with fps = 2",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v, t])), "mm_processor_kwargs": {"max_pixels": 1}}),
                "max_pixels",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v, t])), "mm_processor_kwargs": {"nframes": 8}}),
                "not taken",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v, t])), "media_io_kwargs": {"image": {}}}),
                "media_io_kwargs.image",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([t]))}),
                "no video",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v, v, t]))}),
                "2 video_url parts",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([v]))}),
                "no prompt",
            ),
            (
                serde_json::json!({"messages": user(serde_json::json!([{"type": "audio_url", "audio_url": {"url": "x"}}]))}),
                "not a chat completion request",
            ),
            (
                serde_json::json!({"messages": [{"role": "tool", "content": "x"}]}),
                "unknown role",
            ),
            (
                serde_json::json!({"message": []}),
                "not a chat completion request",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert!(
                e.status == 400 && e.message.contains(needle),
                "{body}: {e:?}"
            );
        }
    }
}
