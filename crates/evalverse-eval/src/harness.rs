//! The judge harness: a base model + adapter judges every clip x dimension of a split. For each,
//! it generates the rationale and score (greedy), parses the score robustly (a malformed answer is
//! counted, never guessed), and reads the soft score: the expected value over the score tokens
//! after "Score: " (Q-Align / VideoScore2 style), with the distribution kept for calibration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use evalverse_data::cache::CachedClip;
use evalverse_data::prompts::{parse_score, split_unit_answer, UnitExample, SYSTEM_PROMPT};
use evalverse_data::taxonomy::Taxonomy;
use evalverse_model::chat::{ChatTokenizer, Content, Message, Role};
use evalverse_model::generate::{generate, score_distribution, GenerationConfig};
use evalverse_model::position::MediaGrid;
use evalverse_model::{Batch, QwenVl};
use serde::{Deserialize, Serialize};

/// What the judge answered, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Verdict {
    Score(f64),
    NotApplicable,
    Malformed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Judgement {
    pub clip_id: String,
    pub prompt_group: String,
    pub generator: String,
    pub dimension: String,
    pub answer: String,
    pub verdict: Verdict,
    /// Expected score over the score tokens.
    pub soft: f64,
    /// Distribution over the scale levels (renormalised over the score tokens).
    pub distribution: Vec<f64>,
    pub expert_mean: Option<f64>,
    pub expert_na: bool,
}

pub struct JudgeSettings {
    pub max_new_tokens: usize,
    pub batch_size: usize,
}

fn prompt(question: &str, tokens: usize) -> Vec<Message> {
    vec![
        Message::text(Role::System, SYSTEM_PROMPT),
        Message {
            role: Role::User,
            content: vec![
                Content::Video { tokens },
                Content::Text(question.to_string()),
            ],
        },
    ]
}

/// A left-padded batch; row `i` holds the clips of `clips[i]`, in prompt order (one video for a
/// pointwise question, two for an A/B pair).
pub(crate) fn batch_of<B: Backend>(
    seqs: &[Vec<u32>],
    clips: &[Vec<&CachedClip>],
    pad: u32,
    device: &B::Device,
) -> Batch<B> {
    let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut pixels = Vec::new();
    let mut n = 0;
    for c in clips.iter().flatten() {
        pixels.extend_from_slice(&c.vision.pixel_values);
        n += c.vision.grid_thw.iter().product::<usize>();
    }
    let row_len = pixels.len() / n.max(1);
    Batch {
        ids: seqs
            .iter()
            .map(|s| {
                std::iter::repeat_n(pad, len - s.len())
                    .chain(s.iter().copied())
                    .collect()
            })
            .collect(),
        mask: seqs
            .iter()
            .map(|s| {
                std::iter::repeat_n(false, len - s.len())
                    .chain(std::iter::repeat_n(true, s.len()))
                    .collect()
            })
            .collect(),
        pixel_values: Some(Tensor::<B, 2>::from_data(
            TensorData::new(pixels, [n, row_len]),
            device,
        )),
        media: clips
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| MediaGrid {
                        is_video: true,
                        grid_thw: c.vision.grid_thw,
                        second_per_grid: c.vision.second_per_grid,
                    })
                    .collect()
            })
            .collect(),
        vision_embeds: None,
    }
}

/// Judge response units (`prompts::group_units`): one generation per unit, with
/// `max_new_tokens` per member dimension; each member's verdict and soft score are read from its
/// part of the answer (`split_unit_answer`). A member whose heading the answer lacks is
/// malformed, and its soft score is read after a forced "Heading: Score: ".
pub fn judge_units<B: Backend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    tax: &Taxonomy,
    units: &[UnitExample],
    clips: &BTreeMap<PathBuf, CachedClip>,
    settings: &JudgeSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Judgement>, String> {
    let scale = &tax.default_scale;
    let device = model.device();
    let pad = tok.special.endoftext;
    let levels = scale.values();
    let mut score_ids = Vec::new();
    for v in &levels {
        match tok
            .encode(&format!("{}", *v as i64))
            .map_err(|e| e.to_string())?
            .as_slice()
        {
            [id] => score_ids.push(*id),
            _ => return Err(format!("score level {v} is not a single token")),
        }
    }
    let usable: Vec<&UnitExample> = units
        .iter()
        .filter(|u| clips.contains_key(&u.members[0].video))
        .collect();
    let total: usize = usable.iter().map(|u| u.members.len()).sum();
    let mut out = Vec::with_capacity(total);
    for chunk in usable.chunks(settings.batch_size.max(1)) {
        let cl: Vec<&CachedClip> = chunk.iter().map(|u| &clips[&u.members[0].video]).collect();
        let rows: Vec<Vec<&CachedClip>> = cl.iter().map(|c| vec![*c]).collect();
        let mut prompts = Vec::new();
        for (u, c) in chunk.iter().zip(&cl) {
            let tokens = c.vision.grid_thw.iter().product::<usize>() / 4;
            prompts.push(
                tok.encode_chat(&prompt(&u.question, tokens), true)
                    .map_err(|e| e.to_string())?
                    .ids,
            );
        }
        let widest = chunk.iter().map(|u| u.members.len()).max().unwrap_or(1);
        let gen = generate(
            model,
            &batch_of::<B>(&prompts, &rows, pad, &device),
            &GenerationConfig::greedy(
                settings.max_new_tokens * widest,
                vec![tok.special.im_end, pad],
            ),
        )
        .map_err(|e| e.to_string())?;
        // Soft scores: the prompt, the member's part of the answer up to its last "Score:" (or
        // the part and a forced score line), then "Score: " -> distribution over the score tokens.
        let mut parts = Vec::new();
        let mut soft_prompts = Vec::new();
        let mut soft_rows = Vec::new();
        for (i, (u, p)) in chunk.iter().zip(&prompts).enumerate() {
            let answer = tok
                .decode(&gen.tokens[i], true)
                .map_err(|e| e.to_string())?;
            let headings = u.headings(tax);
            for (m, (part, heading)) in u.members.iter().zip(
                split_unit_answer(&answer, &headings)
                    .into_iter()
                    .zip(&headings),
            ) {
                let prefix = match part {
                    Some((at, text)) => match text.rfind("Score:") {
                        Some(s) => format!("{}Score: ", &answer[..at + s]),
                        None => format!("{}\nScore: ", answer[..at + text.len()].trim_end()),
                    },
                    None => format!(
                        "{}\n{} Score: ",
                        answer.trim_end(),
                        heading.as_deref().unwrap_or_default()
                    ),
                };
                let mut ids = p.clone();
                ids.extend(tok.encode(&prefix).map_err(|e| e.to_string())?);
                soft_prompts.push(ids);
                soft_rows.push(rows[i].clone());
                let text = match (headings.len(), part) {
                    (1, _) if heading.is_none() => answer.clone(),
                    (_, Some((_, t))) => t.trim().to_string(),
                    (_, None) => String::new(),
                };
                parts.push((m, text, part.is_some()));
            }
        }
        let mut dists = Vec::with_capacity(soft_prompts.len());
        for (ps, rs) in soft_prompts
            .chunks(settings.batch_size.max(1))
            .zip(soft_rows.chunks(settings.batch_size.max(1)))
        {
            dists.extend(
                score_distribution(model, &batch_of::<B>(ps, rs, pad, &device), &score_ids)
                    .map_err(|e| e.to_string())?,
            );
        }
        for ((e, answer, found), (dist, _mass)) in parts.into_iter().zip(dists) {
            let verdict = match found.then(|| parse_score(&answer, scale)).flatten() {
                Some(Some(v)) => Verdict::Score(v),
                Some(None) => Verdict::NotApplicable,
                None => Verdict::Malformed,
            };
            let distribution: Vec<f64> = dist.iter().map(|&p| p as f64).collect();
            let soft = distribution.iter().zip(&levels).map(|(p, v)| p * v).sum();
            out.push(Judgement {
                clip_id: e.clip_id.clone(),
                prompt_group: e.prompt_group.clone(),
                generator: e.generator.clone(),
                dimension: e.dimension.clone(),
                answer,
                verdict,
                soft,
                distribution,
                expert_mean: e.mean,
                expert_na: e.score.is_none(),
            });
        }
        progress(out.len(), total);
    }
    Ok(out)
}
