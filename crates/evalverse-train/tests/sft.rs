//! The SFT stage end to end on a tiny random Qwen2.5-VL with the real Qwen tokenizer and
//! data/sample: the loss falls; a run stopped halfway and resumed reproduces the losses of an
//! uninterrupted run; a NaN-free run writes checkpoints and a PEFT adapter.

mod common;

use common::{recipe, tiny_base, B};
use evalverse_train::runtime::TrainError;

/// The tests here compare losses to 1e-6: two training runs at once in one process share the
/// CPU backend's thread pool, and its work splitting (hence the float summation order) then
/// differs from a run alone (measured: 5e-6 relative at step 2). They take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sft_resume_after_half_reproduces_losses_and_loss_falls() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let straight = evalverse_train::sft::run::<B>(
        &recipe(dir.path(), &base, "straight", 6, 0.1),
        false,
        &device,
        &|_| false,
    )
    .unwrap();
    assert_eq!(straight.steps, 6);
    let first = straight.losses[0].1;
    let last = straight.losses[5].1;
    assert!(last < first, "loss should fall: {:?}", straight.losses);

    let r = recipe(dir.path(), &base, "resumed", 6, 0.1);
    match evalverse_train::sft::run::<B>(&r, false, &device, &|step| step == 3) {
        Err(TrainError::Interrupted { step: 3, .. }) => {}
        other => panic!("expected an interruption at step 3, got {other:?}"),
    }
    // Starting again without --resume is refused rather than overwriting.
    assert!(matches!(
        evalverse_train::sft::run::<B>(&r, false, &device, &|_| false),
        Err(TrainError::Config(_))
    ));
    let resumed = evalverse_train::sft::run::<B>(&r, true, &device, &|_| false).unwrap();
    assert_eq!(resumed.losses.len(), 6);
    for ((s1, a), (s2, b)) in straight.losses.iter().zip(&resumed.losses) {
        assert_eq!(s1, s2);
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "step {s1}: straight {a} vs resumed {b}"
        );
    }
    // Outputs: a PEFT adapter, the resolved recipe, metrics, TensorBoard events, 2 checkpoints kept.
    let out = dir.path().join("resumed");
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "recipe.toml",
        "metrics.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cks: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cks.len(), 2, "keep_last = 2");
}

#[test]
fn gradient_checkpointing_trains_to_the_same_losses() {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    type Checkpointed = burn::backend::Autodiff<evalverse_model::Cpu, BalancedCheckpointing>;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let plain = evalverse_train::sft::run::<B>(
        &recipe(dir.path(), &base, "plain", 2, 0.1),
        false,
        &device,
        &|_| false,
    )
    .unwrap();
    let mut r = recipe(dir.path(), &base, "checkpointed", 2, 0.1);
    r.train.gradient_checkpointing = true;
    let ck = evalverse_train::sft::run::<Checkpointed>(&r, false, &device, &|_| false).unwrap();
    assert_eq!(plain.losses.len(), ck.losses.len());
    for ((s1, a), (_, b)) in plain.losses.iter().zip(&ck.losses) {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "step {s1}: {a} vs checkpointed {b}"
        );
    }
}

#[test]
fn a_bf16_base_trains_along_the_f32_loss_curve() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let device = Default::default();
    let f32_run = evalverse_train::sft::run::<B>(
        &recipe(dir.path(), &base, "f32", 3, 0.0),
        false,
        &device,
        &|_| false,
    )
    .unwrap();
    // Base weights in bf16, LoRA weights and optimizer state in f32 (model.dtype = "bf16").
    let mut r = recipe(dir.path(), &base, "bf16", 3, 0.0);
    r.model.dtype = evalverse_train::recipe::Dtype::Bf16;
    let bf16_run = evalverse_train::sft::run::<B>(&r, false, &device, &|_| false).unwrap();
    for ((s, a), (_, b)) in f32_run.losses.iter().zip(&bf16_run.losses) {
        println!("step {s}: f32 {a:.5} bf16 {b:.5}");
        assert!(
            b.is_finite() && (a - b).abs() <= 1e-3 * a.abs(),
            "step {s}: {a} vs bf16 {b}"
        );
    }
}
