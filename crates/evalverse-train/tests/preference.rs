//! The preference stage on top of a short SFT run: every strategy trains and logs TRL's metric
//! names; DPO starts at loss ln 2 (the policy equals the frozen SFT reference); the stacked
//! SFT + preference adapter reproduces the model it was trained as.

mod common;

use burn::tensor::DType;
use common::{recipe, recipe_with, tiny_base, B};
use evalverse_model::{Cpu, QwenVl};

fn metrics(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn preference_strategies_train_on_top_of_sft() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    evalverse_train::sft::run::<B>(
        &recipe(dir.path(), &base, "sft", 2, 0.0),
        false,
        &device,
        &|_| false,
    )
    .unwrap();
    let sft_adapter = dir.path().join("sft/adapter");
    let with_sft = format!("adapter = \"{}\"", sft_adapter.display());

    // DPO (sigmoid): the first loss is ln 2 because policy and reference start equal.
    let r = recipe_with(
        dir.path(),
        &base,
        "dpo",
        3,
        0.0,
        "kind = \"preference\"\nstrategy = { name = \"dpo\", loss = \"sigmoid\", beta = 0.1 }",
        &with_sft,
    );
    let dpo = evalverse_train::preference::run::<B>(&r, false, &device, &|_| false).unwrap();
    assert!(
        (dpo.losses[0].1 - std::f64::consts::LN_2).abs() < 1e-5,
        "first DPO loss {}",
        dpo.losses[0].1
    );
    let m = metrics(&dir.path().join("dpo"));
    for key in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
        "learning_rate",
        "grad_norm",
    ] {
        assert!(m[0].get(key).is_some(), "{key} not logged");
    }
    assert!(
        m[2]["rewards/margins"].as_f64().unwrap() > 0.0,
        "training should open a margin: {m:?}"
    );

    // The stacked adapter equals "SFT merged + preference adapter".
    let case_model = |adapter: &std::path::Path| {
        let mut m =
            QwenVl::<Cpu>::from_source(base.to_str().unwrap(), DType::F32, &device).unwrap();
        evalverse_model::lora::load_peft(&mut m, adapter).unwrap();
        m
    };
    let mut two_step = case_model(&sft_adapter);
    evalverse_model::lora::merge_all(&mut two_step);
    evalverse_model::lora::drop_adapters(&mut two_step);
    evalverse_model::lora::load_peft(&mut two_step, &dir.path().join("dpo/adapter_preference"))
        .unwrap();
    let stacked = case_model(&dir.path().join("dpo/adapter"));
    let batch = evalverse_model::Batch::<Cpu> {
        ids: vec![vec![9707, 11, 1879, 0, 151645]],
        mask: vec![vec![true; 5]],
        pixel_values: None,
        media: vec![vec![]],
        vision_embeds: None,
    };
    let a: Vec<f32> = two_step
        .forward(&batch, false, None)
        .unwrap()
        .logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let b: Vec<f32> = stacked
        .forward(&batch, false, None)
        .unwrap()
        .logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-4, "stacked adapter differs by {max}");

    // Bradley-Terry with Rao-Kupper ties, and distribution matching, through the stage: their
    // metrics are logged (that each objective fits a batch is tests/objectives.rs).
    for (name, stage, key) in [
        ("bt", "kind = \"preference\"\nstrategy = { name = \"bt\", ties = \"rao_kupper\", theta = 1.5 }", "accuracy"),
        ("dist", "kind = \"preference\"\nstrategy = { name = \"distribution\" }", "loss"),
    ] {
        let r = recipe_with(dir.path(), &base, name, 2, 0.0, stage, &with_sft);
        let run = evalverse_train::preference::run::<B>(&r, false, &device, &|_| false).unwrap();
        assert!(run.losses.iter().all(|(_, l)| l.is_finite()), "{name}: {:?}", run.losses);
        assert!(metrics(&dir.path().join(name))[0].get(key).is_some(), "{name}: {key} not logged");
    }
    // Bradley-Terry reads its score after the judge's own rationale by default: generated once,
    // one per scored train example, and kept in the run folder.
    let generated = std::fs::read_to_string(dir.path().join("bt/rationales.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = generated
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["generated"].is_string()
        && ["lens", "pacing"].contains(&r["dimension"].as_str().unwrap())));
}

/// Bradley-Terry with `readout = "head"`: the reward head trains with the LoRA (no rationale is
/// generated), is calibrated to the scale on the train split and saved beside both adapters and
/// in every checkpoint; a run killed at step 2 and resumed ends bit-identical to a straight run.
#[test]
fn bt_reward_head_trains_calibrates_and_resumes_exactly() {
    use evalverse_model::reward::RewardHead;
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let stage = "kind = \"preference\"\nstrategy = { name = \"bt\", ties = \"rao_kupper\", readout = \"head\" }";
    let straight = recipe_with(dir.path(), &base, "head_a", 4, 0.0, stage, "");
    let a = evalverse_train::preference::run::<B>(&straight, false, &device, &|_| false).unwrap();
    assert!(
        a.losses.iter().all(|(_, l)| l.is_finite()),
        "{:?}",
        a.losses
    );
    let out = dir.path().join("head_a");
    assert!(
        !out.join("rationales.jsonl").exists(),
        "a head reads the prompt, no rationale"
    );
    let head = RewardHead::load(&out.join("adapter"))
        .unwrap()
        .expect("head in adapter/");
    assert_eq!(
        RewardHead::load(&out.join("adapter_preference"))
            .unwrap()
            .as_ref(),
        Some(&head)
    );
    assert!(
        RewardHead::load(&out.join("checkpoints/step-000004/adapter"))
            .unwrap()
            .is_some()
    );
    assert!(
        head.weight.iter().any(|&w| w != 0.0),
        "the head got no gradient"
    );
    let z = head
        .config
        .standardize
        .as_ref()
        .expect("features standardised");
    assert!(z.std.iter().all(|&s| s > 0.0) && z.mean.iter().any(|&m| m != 0.0));
    // Trained dimensions get a fitted calibration; the others keep the identity.
    let lens = head.index("lens").unwrap();
    let scene = head.index("scene").unwrap();
    let c = head.config.calibration[lens];
    assert!(
        c.offset != 0.0 && c.offset.is_finite() && c.scale.is_finite(),
        "{c:?}"
    );
    assert_eq!(
        (
            head.config.calibration[scene].scale,
            head.config.calibration[scene].offset
        ),
        (1.0, 0.0)
    );

    let resumed = recipe_with(dir.path(), &base, "head_b", 4, 0.0, stage, "");
    let err = evalverse_train::preference::run::<B>(&resumed, false, &device, &|s| s == 2)
        .err()
        .expect("stopped at step 2");
    assert!(err.to_string().contains('2'), "{err}");
    let b = evalverse_train::preference::run::<B>(&resumed, true, &device, &|_| false).unwrap();
    assert_eq!(a.losses, b.losses);
    assert_eq!(
        RewardHead::load(&dir.path().join("head_b/adapter")).unwrap(),
        Some(head)
    );
}

/// `train_lora = false`: only the reward head trains, so the preference delta stays zero (the
/// judge's text is the starting policy's); without a head it is refused at load time.
#[test]
fn a_head_on_the_frozen_policy_leaves_the_lora_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let stage = "kind = \"preference\"\nstrategy = { name = \"bt\", readout = \"head\", train_lora = false }";
    let r = recipe_with(dir.path(), &base, "frozen", 2, 0.0, stage, "");
    evalverse_train::preference::run::<B>(&r, false, &device, &|_| false).unwrap();
    let delta = dir.path().join("frozen/adapter_preference");
    let bytes = std::fs::read(delta.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut b_tensors = 0;
    for (name, t) in st.tensors() {
        if name.contains("lora_B") {
            b_tensors += 1;
            assert!(t.data().iter().all(|&x| x == 0), "{name} moved");
        }
    }
    assert!(b_tensors > 0);
    let head = evalverse_model::reward::RewardHead::load(&dir.path().join("frozen/adapter"))
        .unwrap()
        .expect("head");
    assert!(head.weight.iter().any(|&w| w != 0.0));

    // The same recipe without the head is refused when it loads.
    let text = std::fs::read_to_string(dir.path().join("frozen.toml"))
        .unwrap()
        .replace("readout = \"head\", ", "");
    assert!(!text.contains("readout"));
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    let e = evalverse_train::recipe::Recipe::load(&p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train_lora"), "{e}");
}

/// Every preference strategy runs on a base held in bf16 (`model.dtype = "bf16"`, the GPU
/// recipes' setting): where the bf16 hidden states meet the f32 head, reward features, score
/// values and LoRA, the casts are explicit (burn Flex refuses mixed dtypes). DPO and a zero
/// reward head start at ln 2; that each objective fits a batch on a bf16 base is
/// tests/objectives.rs.
#[test]
fn every_preference_strategy_trains_on_a_bf16_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let bf16 = |mut r: evalverse_train::recipe::Recipe| {
        r.model.dtype = evalverse_train::recipe::Dtype::Bf16;
        r
    };
    evalverse_train::sft::run::<B>(
        &bf16(recipe(dir.path(), &base, "sft", 1, 0.0)),
        false,
        &device,
        &|_| false,
    )
    .unwrap();
    let with_sft = format!("adapter = \"{}\"", dir.path().join("sft/adapter").display());
    for (name, strategy) in [
        ("dpo", "{ name = \"dpo\", loss = \"sigmoid\", beta = 0.1 }"),
        (
            "bt",
            "{ name = \"bt\", ties = \"rao_kupper\", theta = 1.5, rationale = \"expert\" }",
        ),
        (
            "bt_head",
            "{ name = \"bt\", readout = \"head\", rationale = \"expert\" }",
        ),
        ("dist", "{ name = \"distribution\" }"),
    ] {
        let stage = format!("kind = \"preference\"\nstrategy = {strategy}");
        let r = bf16(recipe_with(
            dir.path(),
            &base,
            name,
            2,
            0.0,
            &stage,
            &with_sft,
        ));
        let run = evalverse_train::preference::run::<B>(&r, false, &device, &|_| false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            run.losses.len() == 2 && run.losses.iter().all(|(_, l)| l.is_finite()),
            "{name}: {:?}",
            run.losses
        );
        if name == "dpo" {
            // Policy and reference are the same bf16 computation at the start.
            assert!((run.losses[0].1 - std::f64::consts::LN_2).abs() < 1e-5);
        }
        if name == "bt_head" {
            // A zero head gives every clip the scalar 0 (ties ignored): -log sigmoid(0) = ln 2.
            assert!((run.losses[0].1 - std::f64::consts::LN_2).abs() < 1e-6);
        }
    }
}
