//! Parity of `evalverse_train::losses::dpo_loss` with TRL's `DPOTrainer` for the loss types
//! sigmoid, ipo, hinge and robust, at beta 0.1 and 0.5, with label smoothing 0 and 0.2 for
//! sigmoid and robust. The fixture is written by scripts/make_trl_fixtures.py, which runs TRL's
//! own `DPOTrainer._compute_loss` (float64) on 16 fixed pairs of sequence log-probs, one pair per
//! batch, and records per-pair losses, `rewards/chosen` and `rewards/rejected` and the TRL version.
//! Each completion is a single token, so TRL's IPO length normalisation divides by 1.
//!
//! TRL 1.x's sigmoid loss does not read `label_smoothing` (TRL 0.x applied the cDPO smoothing
//! there, as `DpoKind::Sigmoid` does); the fixture records which loss types read it, and the
//! second test pins down the resulting difference.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use evalverse_train::losses::{dpo_loss, DpoKind};
use serde_json::Value;

/// Largest |ours − TRL's| accepted, on losses and on rewards.
const TOLERANCE: f64 = 1e-5;

fn load_fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trl_dpo.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn tensor(v: &[f64]) -> Tensor<Flex, 1> {
    let data: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [v.len()]), &Default::default())
}

fn values(t: Tensor<Flex, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

struct Inputs {
    policy_chosen: Vec<f64>,
    policy_rejected: Vec<f64>,
    ref_chosen: Vec<f64>,
    ref_rejected: Vec<f64>,
}

impl Inputs {
    fn from_fixture(f: &Value) -> Self {
        let x = &f["inputs"];
        Inputs {
            policy_chosen: numbers(&x["policy_chosen"]),
            policy_rejected: numbers(&x["policy_rejected"]),
            ref_chosen: numbers(&x["ref_chosen"]),
            ref_rejected: numbers(&x["ref_rejected"]),
        }
    }

    /// h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)) per pair, in f64.
    fn margins(&self) -> Vec<f64> {
        (0..self.policy_chosen.len())
            .map(|i| {
                (self.policy_chosen[i] - self.ref_chosen[i])
                    - (self.policy_rejected[i] - self.ref_rejected[i])
            })
            .collect()
    }

    /// Our (losses, chosen_rewards, rejected_rewards).
    fn ours(&self, kind: DpoKind, beta: f64, label_smoothing: f64) -> [Vec<f64>; 3] {
        let out = dpo_loss(
            tensor(&self.policy_chosen),
            tensor(&self.policy_rejected),
            tensor(&self.ref_chosen),
            tensor(&self.ref_rejected),
            kind,
            beta,
            label_smoothing,
        );
        [
            values(out.losses),
            values(out.chosen_rewards),
            values(out.rejected_rewards),
        ]
    }
}

struct Config<'a> {
    loss_type: &'a str,
    kind: DpoKind,
    beta: f64,
    label_smoothing: f64,
    /// TRL's (losses, chosen_rewards, rejected_rewards).
    trl: [Vec<f64>; 3],
    batch_mean_loss: f64,
}

fn configs(f: &Value) -> Vec<Config<'_>> {
    f["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .map(|c| {
            let loss_type = c["loss_type"].as_str().expect("loss_type");
            // DpoKind's serde names are TRL's loss_type names.
            let kind: DpoKind = serde_json::from_value(Value::String(loss_type.to_string()))
                .unwrap_or_else(|e| panic!("loss_type {loss_type}: {e}"));
            Config {
                loss_type,
                kind,
                beta: c["beta"].as_f64().expect("beta"),
                label_smoothing: c["label_smoothing"].as_f64().expect("label_smoothing"),
                trl: [
                    numbers(&c["losses"]),
                    numbers(&c["chosen_rewards"]),
                    numbers(&c["rejected_rewards"]),
                ],
                batch_mean_loss: c["batch_mean_loss"].as_f64().expect("batch_mean_loss"),
            }
        })
        .collect()
}

/// Whether the fixture's TRL applies `label_smoothing` for this loss type.
fn trl_reads_label_smoothing(f: &Value, loss_type: &str) -> bool {
    f["trl_reads_label_smoothing"][loss_type]
        .as_bool()
        .unwrap_or(true)
}

#[test]
fn dpo_losses_and_rewards_match_trl_dpo_trainer() {
    let f = load_fixture();
    let trl = f["versions"]["trl"].as_str().unwrap_or("?");
    let x = Inputs::from_fixture(&f);
    let mut worst: Vec<(String, f64, f64)> = Vec::new();
    let mut checked = 0;
    for c in configs(&f) {
        if c.label_smoothing != 0.0 && !trl_reads_label_smoothing(&f, c.loss_type) {
            continue; // TRL ignores it here: see the next test
        }
        let [losses, chosen, rejected] = x.ours(c.kind, c.beta, c.label_smoothing);
        let d_loss = max_abs_diff(&losses, &c.trl[0]);
        let d_reward = max_abs_diff(&chosen, &c.trl[1]).max(max_abs_diff(&rejected, &c.trl[2]));
        let d_mean = (losses.iter().sum::<f64>() / losses.len() as f64 - c.batch_mean_loss).abs();
        eprintln!(
            "{:8} beta {} eps {}: max |Δ loss| {d_loss:.3e}, max |Δ reward| {d_reward:.3e}, |Δ batch mean loss| {d_mean:.3e}",
            c.loss_type, c.beta, c.label_smoothing
        );
        assert!(
            d_loss < TOLERANCE && d_reward < TOLERANCE && d_mean < TOLERANCE,
            "{} beta {} eps {} differs from TRL {trl}:\nours  {losses:?}\nTRL's {:?}",
            c.loss_type,
            c.beta,
            c.label_smoothing,
            c.trl[0]
        );
        match worst.iter_mut().find(|w| w.0 == c.loss_type) {
            Some(w) => {
                w.1 = w.1.max(d_loss);
                w.2 = w.2.max(d_reward);
            }
            None => worst.push((c.loss_type.to_string(), d_loss, d_reward)),
        }
        checked += 1;
    }
    for (loss_type, d_loss, d_reward) in &worst {
        eprintln!(
            "{loss_type} vs TRL {trl}: max |Δ loss| {d_loss:.3e}, max |Δ reward| {d_reward:.3e}"
        );
    }
    assert!(
        worst.len() == 4 && checked >= 10,
        "fixture covers {checked} configurations"
    );
}

/// TRL 1.x computes sigmoid as -log sigma(beta h) whatever `label_smoothing` is; our
/// `DpoKind::Sigmoid` applies cDPO smoothing, -(1-eps) log sigma(beta h) - eps log sigma(-beta h),
/// which is the unsmoothed loss plus eps * beta * h (log sigma(z) - log sigma(-z) = z).
#[test]
fn trl_sigmoid_ignores_label_smoothing_which_ours_applies_as_cdpo() {
    let f = load_fixture();
    let trl = f["versions"]["trl"].as_str().unwrap_or("?");
    let x = Inputs::from_fixture(&f);
    let h = x.margins();
    for c in configs(&f) {
        if c.label_smoothing == 0.0 || trl_reads_label_smoothing(&f, c.loss_type) {
            continue;
        }
        // What TRL computed is our loss without smoothing.
        let [unsmoothed, chosen, rejected] = x.ours(c.kind, c.beta, 0.0);
        let d_trl = max_abs_diff(&unsmoothed, &c.trl[0]);
        let d_reward = max_abs_diff(&chosen, &c.trl[1]).max(max_abs_diff(&rejected, &c.trl[2]));
        // Ours with smoothing departs from TRL's by exactly eps * beta * h.
        let [smoothed, ..] = x.ours(c.kind, c.beta, c.label_smoothing);
        let gap: Vec<f64> = smoothed.iter().zip(&c.trl[0]).map(|(o, t)| o - t).collect();
        let expected: Vec<f64> = h.iter().map(|h| c.label_smoothing * c.beta * h).collect();
        let d_gap = max_abs_diff(&gap, &expected);
        let largest_gap = gap.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        eprintln!(
            "{} beta {} eps {} (TRL {trl} ignores eps): ours(eps=0) vs TRL max |Δ loss| {d_trl:.3e}, |Δ reward| {d_reward:.3e}; \
             ours(eps) vs TRL max |Δ loss| {largest_gap:.3e}, = eps*beta*h to {d_gap:.3e}",
            c.loss_type, c.beta, c.label_smoothing
        );
        assert!(d_trl < TOLERANCE && d_reward < TOLERANCE && d_gap < TOLERANCE);
    }
}
