//! The GRPO objective's machinery on a tiny random base (which cannot answer "Score: N", so its
//! rewards are all 0 and this is not a learning test; the loss itself equals TRL's in
//! tests/trl_grpo.rs): a step samples `group` seeded answers per item (the same seed gives the
//! same answers, as a resumed run needs; another seed others), logs TRL's metric names, and at
//! step 0 (policy == reference, zero advantages) the loss and the KL are 0 to rounding.

mod common;

use common::{recipe_with, tiny_base, B};
use evalverse_train::grpo::{AdvantageScale, LossConfig, LossType, RewardFn};
use evalverse_train::objective::grpo::{Grpo, GrpoSettings};
use evalverse_train::preference;
use evalverse_train::trainer::{Objective, StepPlan};

#[test]
fn a_step_samples_seeded_groups_and_starts_at_zero_loss() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let r = recipe_with(dir.path(), &base, "grpo", 1, 0.0, "kind = \"sft\"", "");
    let device = Default::default();
    let (model, setup) = preference::setup::<B>(&r, &device).unwrap();
    let settings = GrpoSettings {
        group: 4,
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: 5,
        rewards: vec![(RewardFn::Format, 1.0), (RewardFn::NaCorrect, 0.5)],
        scale: AdvantageScale::Group,
        loss: LossConfig {
            beta: 0.04,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            loss_type: LossType::Bnpo,
            max_completion_length: 5,
            kl_ratio_correction: true,
        },
        filter_wrong: false,
    };
    let mut g = Grpo::new(&setup, &model, &r, settings).unwrap();
    assert!(g.items() >= 2);
    let batches = vec![vec![0usize, 1]];
    let plan = |seed| StepPlan {
        step: 0,
        micro_batches: &batches,
        seed,
    };
    let m = g.prepare_step(&model, &plan(7)).unwrap();
    let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    for want in [
        "reward",
        "reward_std",
        "completion_length",
        "frac_reward_zero_std",
        "rewards/format/mean",
        "rewards/na_correct/mean",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let first: Vec<Vec<u32>> = g.sampled_tokens(0).iter().map(|t| t.to_vec()).collect();
    assert_eq!(first.len(), 4, "one group per item");
    assert!(first.iter().all(|t| !t.is_empty() && t.len() <= 5));
    assert!(
        first.iter().any(|t| t != &first[0]),
        "sampled at temperature 1, the answers differ: {first:?}"
    );
    let get = |m: &[(String, f64)], k: &str| m.iter().find(|(n, _)| n == k).unwrap().1;
    let length = get(&m, "completion_length");
    assert!(length > 0.0 && length <= 5.0, "{m:?}");
    // The same seed samples the same answers; another seed others.
    g.prepare_step(&model, &plan(7)).unwrap();
    let again: Vec<Vec<u32>> = g.sampled_tokens(0).iter().map(|t| t.to_vec()).collect();
    assert_eq!(first, again);
    g.prepare_step(&model, &plan(8)).unwrap();
    let other: Vec<Vec<u32>> = g.sampled_tokens(0).iter().map(|t| t.to_vec()).collect();
    assert_ne!(first, other);
    // Random answers never state a score: every reward 0, every advantage 0, and at step 0
    // the policy is the reference, so the loss (and the KL) are 0 up to rounding.
    let m = g.prepare_step(&model, &plan(7)).unwrap();
    assert_eq!(get(&m, "reward"), 0.0, "{m:?}");
    assert_eq!(get(&m, "frac_reward_zero_std"), 1.0, "{m:?}");
    assert!(g.advantages(&[0, 1]).iter().all(|a| *a == 0.0));
    let mb = g.micro_batch(&model, 0, &[0, 1]).unwrap();
    let loss = mb.loss.into_scalar() as f64;
    assert!(loss.abs() < 1e-6, "loss {loss}");
    let kl = get(&mb.metrics, "kl");
    assert!((0.0..1e-6).contains(&kl), "kl {kl}");
    assert!(mb.backward && mb.tokens > 0);
}
