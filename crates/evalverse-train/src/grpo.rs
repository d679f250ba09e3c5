//! GRPO for the judge, as pure functions: the rewards of a sampled answer against the experts,
//! group-normalised advantages, and the clipped importance-ratio loss with the k3 KL estimator to
//! the frozen reference, as TRL's `GRPOTrainer` computes them (trl 1.16
//! `trainer/grpo_trainer.py`: `_generate_and_score_completions` for the advantages,
//! `_compute_loss` for the loss and its logged `kl` / `clip_ratio`). The parity test against TRL's
//! own numbers is tests/grpo.rs on fixtures made by scripts/make_trl_grpo_fixtures.py.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use evalverse_data::prompts::parse_score;
use evalverse_data::taxonomy::Scale;
use serde::{Deserialize, Serialize};

/// A reward function a recipe selects (`stage.rewards = ["graded", "format"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardFn {
    /// VideoScore2's graded score match against the experts' mean (rounded to a level).
    Graded,
    /// 1 - |score - experts' mean| / (scale max - min).
    AbsError,
    /// One parseable `Score: N` or `Score: N/A` line.
    Format,
    /// The answer's N/A agrees with the experts' N/A.
    NaCorrect,
}

impl RewardFn {
    /// The name TRL's logs give a reward function's mean (`rewards/<name>/mean`).
    pub fn name(self) -> &'static str {
        match self {
            RewardFn::Graded => "graded",
            RewardFn::AbsError => "abs_error",
            RewardFn::Format => "format",
            RewardFn::NaCorrect => "na_correct",
        }
    }
}

/// What the experts said of one dimension: their mean score, or N/A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expert {
    Mean(f64),
    NotApplicable,
}

/// An answer's verdict: a level, N/A, or no well-formed score line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    Score(f64),
    NotApplicable,
    Malformed,
}

/// Read an answer as evaluation reads it (the last `Score:` line).
pub fn read_answer(text: &str, scale: &Scale) -> Answer {
    match parse_score(text, scale) {
        Some(Some(v)) => Answer::Score(v),
        Some(None) => Answer::NotApplicable,
        None => Answer::Malformed,
    }
}

/// VideoScore2's graded match over the dimensions of one response: every dimension exact ->
/// 1.0; every one within one level with total error 1 / 2 / 3 -> 0.7 / 0.4 / 0.1; else 0. The
/// experts' mean is rounded to the nearest level (halves up) and clamped to the scale; N/A
/// matches N/A exactly and nothing else.
pub fn graded(answers: &[Answer], experts: &[Expert], scale: &Scale) -> f64 {
    assert_eq!(answers.len(), experts.len(), "one answer per expert label");
    let mut total = 0.0;
    for (a, e) in answers.iter().zip(experts) {
        let err = match (a, e) {
            (Answer::NotApplicable, Expert::NotApplicable) => 0.0,
            (Answer::Score(s), Expert::Mean(m)) => {
                let k = ((m - scale.min) / scale.step + 0.5).floor();
                let level = (scale.min + k * scale.step).clamp(scale.min, scale.max);
                (s - level).abs() / scale.step
            }
            _ => return 0.0,
        };
        if err > 1.0 + 1e-9 {
            return 0.0;
        }
        total += err;
    }
    match total.round() as i64 {
        0 => 1.0,
        1 => 0.7,
        2 => 0.4,
        3 => 0.1,
        _ => 0.0,
    }
}

/// 1 - |score - mean| / (max - min); N/A against N/A 1, any other mismatch or a malformed
/// answer 0.
pub fn abs_error(answer: Answer, expert: Expert, scale: &Scale) -> f64 {
    match (answer, expert) {
        (Answer::Score(s), Expert::Mean(m)) => {
            (1.0 - (s - m).abs() / (scale.max - scale.min).max(f64::MIN_POSITIVE)).max(0.0)
        }
        (Answer::NotApplicable, Expert::NotApplicable) => 1.0,
        _ => 0.0,
    }
}

/// 1 when the answer has exactly one `Score:` line and it parses (a level of the scale or N/A).
pub fn format(text: &str, scale: &Scale) -> f64 {
    let lines = text.matches("Score:").count();
    f64::from(u8::from(
        lines == 1 && read_answer(text, scale) != Answer::Malformed,
    ))
}

/// 1 when the answer says N/A exactly when the experts did (a malformed answer: 0).
pub fn na_correct(answer: Answer, expert: Expert) -> f64 {
    match answer {
        Answer::Malformed => 0.0,
        a => f64::from(u8::from(
            (a == Answer::NotApplicable) == (expert == Expert::NotApplicable),
        )),
    }
}

/// One sampled answer's reward under `f` (a one-dimension response unit).
pub fn reward(f: RewardFn, text: &str, expert: Expert, scale: &Scale) -> f64 {
    let a = read_answer(text, scale);
    match f {
        RewardFn::Graded => graded(&[a], &[expert], scale),
        RewardFn::AbsError => abs_error(a, expert, scale),
        RewardFn::Format => format(text, scale),
        RewardFn::NaCorrect => na_correct(a, expert),
    }
}

/// How rewards become advantages (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageScale {
    /// GRPO: (r - group mean) / (group std + 1e-4), std with Bessel's correction.
    #[default]
    Group,
    /// Dr. GRPO: r - group mean, unscaled.
    None,
}

/// Mean and standard deviation with Bessel's correction (torch's `std`, TRL's `nanstd`); 0 for
/// fewer than two values.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = if xs.len() > 1 {
        (xs.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, std)
}

/// Advantages of `rewards` laid out as consecutive groups of `group` answers per prompt.
pub fn advantages(rewards: &[f64], group: usize, scale: AdvantageScale) -> Vec<f64> {
    assert!(group > 0 && rewards.len() % group == 0, "whole groups");
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(group) {
        let (mean, std) = mean_std(g);
        for r in g {
            out.push(match scale {
                AdvantageScale::Group => (r - mean) / (std + 1e-4),
                AdvantageScale::None => r - mean,
            });
        }
    }
    out
}

/// How per-token losses are reduced (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each answer's tokens, then over answers.
    #[default]
    Grpo,
    /// Sum over every token / the number of tokens.
    Bnpo,
    /// Sum over every token / (answers x max completion length).
    DrGrpo,
}

/// The objective's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// KL coefficient (0: no reference term).
    pub beta: f64,
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    pub loss_type: LossType,
    /// `dr_grpo`'s denominator.
    pub max_completion_length: usize,
    /// Multiply the KL term by the importance ratio (TRL's `use_bias_correction_kl`, on by
    /// default in trl 1.16).
    pub kl_ratio_correction: bool,
}

/// The loss and what TRL logs of it (tensors: read them only when logging).
pub struct LossOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    /// Masked mean of the per-token k3 KL (zero when beta is 0).
    pub kl: Tensor<B, 1>,
    /// Fractions of tokens clipped below, above, either (TRL's `clip_ratio/*_mean`).
    pub clip_low: Tensor<B, 1>,
    pub clip_high: Tensor<B, 1>,
    pub clip_region: Tensor<B, 1>,
}

/// The clipped importance-ratio objective of TRL's `_compute_loss` (token-level importance
/// sampling, no entropy or vLLM terms): ratio = exp(logp - old), loss per token
/// -min(ratio A, clip(ratio, 1 - eps_low, 1 + eps_high) A) + beta k3, k3 = exp(ref - logp) -
/// (ref - logp) - 1 (times the ratio with `kl_ratio_correction`), reduced by `loss_type`. `logps`, `old_logps`, `ref_logps` and `mask` are
/// [answers, completion tokens]; `advantages` [answers].
pub fn loss<B: Backend>(
    logps: Tensor<B, 2>,
    old_logps: Tensor<B, 2>,
    ref_logps: Option<Tensor<B, 2>>,
    advantages: Tensor<B, 1>,
    mask: Tensor<B, 2>,
    cfg: &LossConfig,
) -> LossOutput<B> {
    let [n, t] = logps.dims();
    let device = logps.device();
    let adv = advantages.reshape([n, 1]).expand([n, t]);
    let ratio = (logps.clone() - old_logps).exp();
    let clipped = ratio
        .clone()
        .clamp(1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high);
    let l1 = ratio.clone() * adv.clone();
    let l2 = clipped * adv.clone();
    let mut per_token = l1.clone().min_pair(l2).neg();
    let tokens = mask.clone().sum().clamp_min(1.0);
    let masked_mean = |x: Tensor<B, 2>| (x * mask.clone()).sum() / tokens.clone();
    let kl = match ref_logps {
        Some(r) if cfg.beta != 0.0 => {
            let d = r - logps;
            let mut k3 = d.clone().exp() - d - 1.0;
            if cfg.kl_ratio_correction {
                k3 = k3 * ratio.clone();
            }
            per_token = per_token + k3.clone() * cfg.beta;
            masked_mean(k3)
        }
        _ => Tensor::zeros([1], &device),
    };
    let loss = match cfg.loss_type {
        LossType::Grpo => {
            ((per_token * mask.clone()).sum_dim(1) / mask.clone().sum_dim(1).clamp_min(1.0)).mean()
        }
        LossType::Bnpo => (per_token * mask.clone()).sum() / tokens.clone(),
        LossType::DrGrpo => {
            (per_token * mask.clone()).sum() / ((n * cfg.max_completion_length.max(1)) as f64)
        }
    };
    let zero = Tensor::<B, 2>::zeros([n, t], &device);
    let low = ratio
        .clone()
        .lower_elem(1.0 - cfg.epsilon_low)
        .bool_and(adv.clone().lower(zero.clone()));
    let high = ratio
        .greater_elem(1.0 + cfg.epsilon_high)
        .bool_and(adv.greater(zero));
    let region = low.clone().bool_or(high.clone());
    LossOutput {
        loss,
        kl,
        clip_low: masked_mean(low.float()),
        clip_high: masked_mean(high.float()),
        clip_region: masked_mean(region.float()),
    }
}

/// A one-element tensor's value (for logging).
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale() -> Scale {
        Scale {
            min: 1.0,
            max: 5.0,
            step: 1.0,
            labels: vec![],
        }
    }

    #[test]
    fn videoscore2s_graded_match_by_hand() {
        let s = scale();
        let sc = |v: &[f64]| v.iter().map(|&x| Answer::Score(x)).collect::<Vec<_>>();
        let ex = |v: &[f64]| v.iter().map(|&x| Expert::Mean(x)).collect::<Vec<_>>();
        assert_eq!(
            graded(&sc(&[3.0, 4.0, 2.0]), &ex(&[3.0, 4.0, 2.0]), &s),
            1.0
        );
        assert_eq!(
            graded(&sc(&[3.0, 4.0, 2.0]), &ex(&[3.0, 4.0, 3.0]), &s),
            0.7
        );
        assert_eq!(
            graded(&sc(&[3.0, 4.0, 2.0]), &ex(&[4.0, 4.0, 3.0]), &s),
            0.4
        );
        assert_eq!(
            graded(&sc(&[3.0, 4.0, 2.0]), &ex(&[4.0, 5.0, 3.0]), &s),
            0.1
        );
        assert_eq!(
            graded(&sc(&[3.0, 4.0, 2.0]), &ex(&[3.0, 4.0, 4.0]), &s),
            0.0
        );
        // The experts' mean 3.5 rounds to 4; 3.4 to 3.
        assert_eq!(graded(&sc(&[4.0]), &ex(&[3.5]), &s), 1.0);
        assert_eq!(graded(&sc(&[4.0]), &ex(&[3.4]), &s), 0.7);
        assert_eq!(
            graded(&[Answer::NotApplicable], &[Expert::NotApplicable], &s),
            1.0
        );
        assert_eq!(graded(&[Answer::NotApplicable], &ex(&[3.0]), &s), 0.0);
        assert_eq!(graded(&[Answer::Malformed], &ex(&[3.0]), &s), 0.0);
    }

    #[test]
    fn the_other_rewards_by_hand() {
        let s = scale();
        assert_eq!(
            reward(RewardFn::AbsError, "x\nScore: 4", Expert::Mean(3.0), &s),
            0.75
        );
        assert_eq!(
            reward(RewardFn::AbsError, "Score: N/A", Expert::NotApplicable, &s),
            1.0
        );
        assert_eq!(
            reward(
                RewardFn::Format,
                "because.\nScore: 2",
                Expert::Mean(3.0),
                &s
            ),
            1.0
        );
        assert_eq!(
            reward(
                RewardFn::Format,
                "Score: 2\nScore: 3",
                Expert::Mean(3.0),
                &s
            ),
            0.0
        );
        assert_eq!(
            reward(RewardFn::Format, "Score: 9", Expert::Mean(3.0), &s),
            0.0
        );
        assert_eq!(
            reward(RewardFn::Format, "Score: N/A", Expert::Mean(3.0), &s),
            1.0
        );
        assert_eq!(
            reward(RewardFn::NaCorrect, "Score: N/A", Expert::NotApplicable, &s),
            1.0
        );
        assert_eq!(
            reward(RewardFn::NaCorrect, "Score: 2", Expert::NotApplicable, &s),
            0.0
        );
        assert_eq!(
            reward(RewardFn::NaCorrect, "Score: 2", Expert::Mean(2.0), &s),
            1.0
        );
        assert_eq!(
            reward(RewardFn::NaCorrect, "no line", Expert::Mean(2.0), &s),
            0.0
        );
    }

    #[test]
    fn advantages_by_hand() {
        let a = advantages(&[1.0, 0.0, 0.5, 0.5], 2, AdvantageScale::Group);
        let std = (0.5f64).sqrt(); // Bessel: ((0.5^2 + 0.5^2) / 1)^0.5
        assert!((a[0] - 0.5 / (std + 1e-4)).abs() < 1e-12);
        assert!((a[1] + 0.5 / (std + 1e-4)).abs() < 1e-12);
        assert_eq!(
            &a[2..],
            &[0.0, 0.0],
            "a group of equal rewards teaches nothing"
        );
        assert_eq!(
            advantages(&[1.0, 0.0], 2, AdvantageScale::None),
            vec![0.5, -0.5]
        );
    }
}
