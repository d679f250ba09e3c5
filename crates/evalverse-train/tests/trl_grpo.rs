//! Parity of `evalverse_train::grpo` with TRL's `GRPOTrainer`: advantages (group-normalised and
//! Dr. GRPO's unscaled), and the clipped importance-ratio loss with the k3 KL to the reference
//! for loss_type grpo / bnpo / dr_grpo, beta 0.04 and 0, symmetric and clip-higher epsilons, the
//! KL term with and without TRL's importance-ratio correction (`use_bias_correction_kl`): the
//! loss, its gradient with respect to the policy log-probs, and TRL's logged `kl` and
//! `clip_ratio/*_mean`. The fixture is written by scripts/make_trl_grpo_fixtures.py, which runs
//! TRL's own `_compute_loss` (float64) on fixed log-probs of 8 answers (2 groups of 4, one with
//! equal rewards) of up to 6 tokens.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use evalverse_train::grpo::{self, AdvantageScale, LossConfig, LossType};
use serde_json::Value;

type B = Autodiff<Flex>;

const TOLERANCE: f64 = 1e-5;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trl_grpo.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn flat(v: &Value) -> (Vec<f64>, Vec<usize>) {
    match v.as_array() {
        Some(rows) if rows.first().is_some_and(|r| r.is_array()) => {
            let cols = rows[0].as_array().unwrap().len();
            let data = rows
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
                .collect();
            (data, vec![rows.len(), cols])
        }
        Some(xs) => (
            xs.iter().map(|x| x.as_f64().unwrap()).collect(),
            vec![xs.len()],
        ),
        None => panic!("not an array: {v}"),
    }
}

fn t2(v: &Value) -> Tensor<B, 2> {
    let (d, s) = flat(v);
    let d: Vec<f32> = d.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(d, [s[0], s[1]]), &Default::default())
}

fn t1(v: &[f64]) -> Tensor<B, 1> {
    let d: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(d, [v.len()]), &Default::default())
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn advantages_and_loss_equal_trls() {
    let f = fixture();
    let inp = &f["inputs"];
    let group = f["group"].as_u64().unwrap() as usize;
    let rewards = flat(&inp["rewards"]).0;
    let mut worst = (0.0f64, 0.0f64);
    for c in f["cases"].as_array().unwrap() {
        let scale = match c["scale_rewards"].as_str().unwrap() {
            "group" => AdvantageScale::Group,
            _ => AdvantageScale::None,
        };
        let adv = grpo::advantages(&rewards, group, scale);
        let want_adv = flat(&c["advantages"]).0;
        // TRL's nanstd is not exact to the last f64 bits (differences ~2e-8); the loss runs in f32.
        assert!(max_abs(&adv, &want_adv) < 1e-6, "{c}: {adv:?}");
        let cfg = LossConfig {
            beta: c["beta"].as_f64().unwrap(),
            epsilon_low: c["epsilon_low"].as_f64().unwrap(),
            epsilon_high: c["epsilon_high"].as_f64().unwrap(),
            loss_type: match c["loss_type"].as_str().unwrap() {
                "grpo" => LossType::Grpo,
                "bnpo" => LossType::Bnpo,
                _ => LossType::DrGrpo,
            },
            max_completion_length: f["max_completion_length"].as_u64().unwrap() as usize,
            kl_ratio_correction: c["use_bias_correction_kl"].as_bool().unwrap(),
        };
        let logp = t2(&inp["logp"]).require_grad();
        let out = grpo::loss(
            logp.clone(),
            t2(&inp["old"]),
            Some(t2(&inp["ref"])),
            t1(&adv),
            t2(&inp["mask"]),
            &cfg,
        );
        let loss = out.loss.clone().into_scalar() as f64;
        let grads = out.loss.backward();
        let g: Vec<f64> = logp
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let want_g = flat(&c["grad_logp"]).0;
        let (dl, dg) = (
            (loss - c["loss"].as_f64().unwrap()).abs(),
            max_abs(&g, &want_g),
        );
        assert!(
            dl < TOLERANCE,
            "{}: loss {loss} vs TRL {}",
            c["loss_type"],
            c["loss"]
        );
        assert!(dg < TOLERANCE, "{}: gradient off by {dg}", c["loss_type"]);
        worst = (worst.0.max(dl), worst.1.max(dg));
        for (ours, key) in [
            (out.kl, "kl"),
            (out.clip_low, "clip_low"),
            (out.clip_high, "clip_high"),
            (out.clip_region, "clip_region"),
        ] {
            let v = ours.into_scalar() as f64;
            assert!(
                (v - c[key].as_f64().unwrap()).abs() < TOLERANCE,
                "{key}: {v} vs TRL {}",
                c[key]
            );
        }
    }
    // Some ratios were clipped on each side, so the clip branches were exercised.
    let any = |k: &str| {
        f["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c[k].as_f64().unwrap() > 0.0)
    };
    assert!(any("clip_low") && any("clip_high"));
    eprintln!(
        "largest |ours - TRL|: loss {:.2e}, gradient {:.2e}",
        worst.0, worst.1
    );
}
