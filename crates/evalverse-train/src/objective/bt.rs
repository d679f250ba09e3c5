//! Bradley-Terry on the judge's own score tokens (EvalVerse §6.2): for two clips of one prompt
//! group and dimension ranked by the experts' mean, P(a beats b) = sigmoid(s_a - s_b) with s
//! the expected score over the score tokens where the answer states its score
//! (`losses::expected_score`), ties by Rao-Kupper or Davidson (`losses::bt_loss`). The answer
//! before the score is the starting policy's own greedy rationale (generated once and kept in
//! the run folder, so the scalar is read where evaluation reads the soft score) or the experts'.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::{Bool, ElementConversion, Tensor, TensorData};
use evalverse_model::chat::ChatTokenizer;
use evalverse_model::{ModelBackend, QwenVl, TrainBackend};

use crate::examples::{score_line, JudgeExample};
use crate::losses::{bt_loss, expected_score, BtTies};
use crate::preference::{prompt_only, split_pairs, Setup};
use crate::recipe::BtRationale;
use crate::runtime::{self, runtime, Clips, Encoded, TrainError, VisionCache};
use crate::trainer::{MicroBatch, Objective};

/// Pairs of one prompt group and dimension ranked by the experts' mean: (winner, loser, tie),
/// every pair of clips once; tied pairs are dropped when the tie model is `Ignore`.
pub fn pairs<'e>(
    scored: &[&'e JudgeExample],
    ties: BtTies,
) -> Vec<(&'e JudgeExample, &'e JudgeExample, bool)> {
    let mut by_key: BTreeMap<(&str, &str), Vec<&JudgeExample>> = BTreeMap::new();
    for e in scored {
        by_key
            .entry((e.prompt_group.as_str(), e.dimension.as_str()))
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for group in by_key.values() {
        for i in 0..group.len() {
            for j in i + 1..group.len() {
                let (mi, mj) = (
                    group[i].mean.expect("scored"),
                    group[j].mean.expect("scored"),
                );
                let tie = (mi - mj).abs() < 1e-9;
                if tie && ties == BtTies::Ignore {
                    continue;
                }
                out.push(if mi >= mj {
                    (group[i], group[j], tie)
                } else {
                    (group[j], group[i], tie)
                });
            }
        }
    }
    out
}

struct Compare {
    /// The winner's and the loser's encoded answers.
    a: Encoded,
    b: Encoded,
    tie: bool,
}

pub struct BtScoreTokens<'a, B: TrainBackend> {
    setup: &'a Setup<B>,
    pairs: Vec<Compare>,
    ties: BtTies,
    values: Tensor<B, 1>,
}

impl<'a, B: TrainBackend> BtScoreTokens<'a, B> {
    /// The pairs of the scored examples, each answer completed with its example's score line after the
    /// chosen rationale. Generated rationales come from `model` as it is now (the SFT judge),
    /// or from `kept` when resuming and it holds one for every example.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        setup: &'a Setup<B>,
        model: &QwenVl<B>,
        rationale: BtRationale,
        max_new_tokens: usize,
        ties: BtTies,
        kept: &Path,
        resume: bool,
    ) -> Result<Self, TrainError> {
        let scored: Vec<&JudgeExample> = setup.scored.iter().collect();
        let scored = &scored[..];
        let answers: Vec<String> = match rationale {
            BtRationale::Expert => scored.iter().map(|e| e.answer.clone()).collect(),
            BtRationale::Generated => {
                let own = match resume.then(|| kept_rationales(kept, scored)).flatten() {
                    Some(own) => own,
                    None => {
                        let own = generate_rationales(
                            model,
                            &setup.tok,
                            scored,
                            &setup.clips,
                            &setup.vision,
                            max_new_tokens,
                        )?;
                        write_rationales(kept, scored, &own)?;
                        own
                    }
                };
                own.iter()
                    .zip(scored)
                    .map(|(a, e)| with_score_line(a, e.score))
                    .collect()
            }
        };
        let answer_of: BTreeMap<(&str, &str), &str> = scored
            .iter()
            .zip(&answers)
            .map(|(e, a)| ((e.clip_id.as_str(), e.dimension.as_str()), a.as_str()))
            .collect();
        let enc = |e: &JudgeExample| {
            setup.encode(e, answer_of[&(e.clip_id.as_str(), e.dimension.as_str())])
        };
        let pairs = pairs(scored, ties)
            .into_iter()
            .filter_map(|(w, l, tie)| {
                Some(Compare {
                    a: enc(w)?,
                    b: enc(l)?,
                    tie,
                })
            })
            .collect();
        Ok(BtScoreTokens {
            setup,
            pairs,
            ties,
            values: setup.values(),
        })
    }
}

impl<B: TrainBackend> Objective<B> for BtScoreTokens<'_, B> {
    fn items(&self) -> usize {
        self.pairs.len()
    }

    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        _k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        let device = &self.setup.device;
        let chunk: Vec<&Compare> = items.iter().map(|&i| &self.pairs[i]).collect();
        let n = chunk.len();
        // Interleaved [a0, b0, a1, b1, ...]: one forward pass for both sides.
        let seqs: Vec<&Encoded> = chunk.iter().flat_map(|p| [&p.a, &p.b]).collect();
        let (batch, _) = self.setup.batch(&seqs);
        let logits = self.setup.score_logits(model, &batch, &seqs)?;
        let s = expected_score(logits, self.values.clone());
        let (sw, sl) = split_pairs(s, n, device);
        let tie = Tensor::<B, 1, Bool>::from_data(
            TensorData::new(chunk.iter().map(|p| p.tie).collect::<Vec<_>>(), [n]),
            device,
        );
        let acc: f64 = sw
            .clone()
            .greater(sl.clone())
            .float()
            .mean()
            .into_scalar()
            .elem();
        Ok(MicroBatch {
            loss: bt_loss(sw, sl, tie, self.ties).mean(),
            backward: true,
            metrics: vec![("accuracy".into(), acc)],
            tokens: batch.mask.iter().flatten().filter(|m| **m).count(),
        })
    }
}

/// Greedy answers of `model` to the judge questions of `examples`, cut where the judge's score
/// is read: up to and including the last "Score:" of the answer, or the whole answer when it has
/// none (the evaluation harness then appends a score line the same way).
fn own_rationales<B: ModelBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    examples: &[&JudgeExample],
    clips: &Clips,
    vision: &VisionCache<B>,
    max_new_tokens: usize,
) -> Result<Vec<String>, TrainError> {
    const BATCH: usize = 16;
    let device = model.device();
    let pad = tok.special.endoftext;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(BATCH) {
        let mut prompts = Vec::with_capacity(chunk.len());
        for e in chunk {
            prompts.push(prompt_only(tok, e, clips)?.expect("decoded clip"));
        }
        let refs: Vec<&Encoded> = prompts.iter().collect();
        let (batch, _) = runtime::make_batch::<B>(&refs, clips, pad, &device, Some(vision));
        let gen = evalverse_model::generate::generate(
            model,
            &batch,
            &evalverse_model::generate::GenerationConfig::greedy(
                max_new_tokens,
                vec![tok.special.im_end, pad],
            ),
        )
        .map_err(runtime)?;
        for tokens in &gen.tokens {
            let text = tok.decode(tokens, true).map_err(runtime)?;
            out.push(match text.rfind("Score:") {
                Some(i) => text[..i].to_string(),
                None => format!("{}\n", text.trim_end()),
            });
        }
    }
    Ok(out)
}

/// `own_rationales` of the starting policy (the autodiff model's inner copy, on the cached
/// vision tokens), logged once.
fn generate_rationales<B: TrainBackend>(
    model: &QwenVl<B>,
    tok: &ChatTokenizer,
    scored: &[&JudgeExample],
    clips: &Clips,
    vision: &VisionCache<B>,
    max_new_tokens: usize,
) -> Result<Vec<String>, TrainError> {
    eprintln!(
        "bt: generating the starting judge's rationales for {} examples",
        scored.len()
    );
    let inner: VisionCache<B::InnerBackend> = vision
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().inner()))
        .collect();
    own_rationales(&model.valid(), tok, scored, clips, &inner, max_new_tokens)
}

/// One JSON line per example: clip, dimension and the generated rationale.
fn write_rationales(
    path: &Path,
    scored: &[&JudgeExample],
    own: &[String],
) -> Result<(), TrainError> {
    let mut lines = String::new();
    for (e, a) in scored.iter().zip(own) {
        let row =
            serde_json::json!({"clip_id": e.clip_id, "dimension": e.dimension, "generated": a});
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    runtime::write_text(path, &lines)
}

/// The rationales a run wrote before it was interrupted, in `scored` order; None unless the
/// file holds exactly one for every example (then they are generated again: greedy, the same).
fn kept_rationales(path: &Path, scored: &[&JudgeExample]) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut by_key = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let key = (
            v["clip_id"].as_str()?.to_string(),
            v["dimension"].as_str()?.to_string(),
        );
        by_key.insert(key, v["generated"].as_str()?.to_string());
    }
    if by_key.len() != scored.len() {
        return None;
    }
    scored
        .iter()
        .map(|e| by_key.remove(&(e.clip_id.clone(), e.dimension.clone())))
        .collect()
}

/// A generated rationale (cut by `own_rationales`) completed with the score line of `score`,
/// so the score digit sits where the harness reads the soft score.
fn with_score_line(rationale: &str, score: Option<f64>) -> String {
    let line = score_line(score);
    let body = rationale.trim_start_matches('\n');
    if body.trim().is_empty() {
        line
    } else {
        format!("{body}{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::{kept_rationales, with_score_line, write_rationales};
    use crate::examples::JudgeExample;

    fn example(clip: &str, dim: &str) -> JudgeExample {
        JudgeExample {
            clip_id: clip.into(),
            prompt_group: "pg".into(),
            generator: "g".into(),
            video: format!("videos/{clip}.mp4").into(),
            has_audio: false,
            dimension: dim.into(),
            question: String::new(),
            answer: String::new(),
            rationale: String::new(),
            score: Some(3.0),
            mean: Some(3.0),
            histogram: vec![],
        }
    }

    #[test]
    fn resumed_bt_run_reuses_the_rationales_only_when_every_example_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rationales.jsonl");
        let (a, b) = (example("c1", "lens"), example("c2", "lens"));
        write_rationales(&path, &[&a, &b], &["one\n".into(), "two\n".into()]).unwrap();
        // Read back in the order asked for, whatever the file's order.
        assert_eq!(
            kept_rationales(&path, &[&b, &a]),
            Some(vec!["two\n".to_string(), "one\n".to_string()])
        );
        // Another example set (a changed recipe): generate again.
        assert_eq!(kept_rationales(&path, &[&a]), None);
        assert_eq!(kept_rationales(&path, &[&a, &example("c3", "lens")]), None);
        assert_eq!(
            kept_rationales(&dir.path().join("missing.jsonl"), &[&a]),
            None
        );
    }

    #[test]
    fn generated_rationale_gets_the_score_line_where_the_harness_reads_it() {
        // Cut at the answer's last "Score:" (own_rationales keeps the text before it).
        assert_eq!(
            with_score_line("Soft image. Overall poor, so I give 2.\n", Some(4.0)),
            "Soft image. Overall poor, so I give 2.\nScore: 4"
        );
        // An answer without a score line was closed with a newline, as the harness does.
        assert_eq!(
            with_score_line("Soft image\n", Some(3.0)),
            "Soft image\nScore: 3"
        );
        // Nothing before the score line: the score line alone.
        assert_eq!(with_score_line("\n", Some(5.0)), "Score: 5");
        assert_eq!(with_score_line("", Some(1.0)), "Score: 1");
    }
}
