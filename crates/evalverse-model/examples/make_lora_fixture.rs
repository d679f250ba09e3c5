//! Writes tests/fixtures/lora_evalverse/: an evalverse LoRA adapter on the tiny_a fixture (rank 4,
//! alpha 8, the seven language-model projections) with B drawn at random (a fresh adapter has
//! B = 0, which would make a parity test trivial). scripts/make_lora_fixtures.py loads it in PEFT.
//! With arguments BASE OUT [VISION_TARGET..] (folders under tests/fixtures), the adapter is made
//! on BASE, also on the named vision modules, and written to OUT
//! (scripts/make_family_lora_fixtures.py: the Qwen2-VL and Qwen3-VL fixtures).
//!
//!   cargo run --release -p evalverse-model --example make_lora_fixture
//!   cargo run --release -p evalverse-model --example make_lora_fixture -- families/qwen3_vl \
//!       families/lora_evalverse_qwen3_vl linear_fc1

use std::path::Path;

use burn::module::Param;
use burn::tensor::{DType, Tensor, TensorData};
use evalverse_model::lora::{apply_lora, save_peft, LoraConfig, DEFAULT_TARGETS};
use evalverse_model::{Cpu, QwenVl};

fn main() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base, out, vision) = match args.as_slice() {
        [] => ("tiny_a", "lora_evalverse", &[][..]),
        [base, out, vision @ ..] => (base.as_str(), out.as_str(), vision),
        _ => panic!("usage: make_lora_fixture [BASE OUT [VISION_TARGET..]]"),
    };
    let device = Default::default();
    let mut model =
        QwenVl::<Cpu>::from_source(fx.join(base).to_str().unwrap(), DType::F32, &device).unwrap();
    let mut targets: Vec<String> = DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect();
    targets.extend(vision.iter().cloned());
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: targets,
        include_vision: !vision.is_empty(),
        use_rslora: false,
        seed: 11,
    };
    let adapted = apply_lora(&mut model, &cfg).unwrap();
    let mut rng = evalverse_data::rng::Rng::new(5);
    model.for_each_linear(|_, lin| {
        if let Some(l) = lin.lora.as_mut() {
            let [r, out] = l.lora_b.val().dims();
            let v: Vec<f32> = (0..r * out).map(|_| (0.2 * rng.normal()) as f32).collect();
            l.lora_b = Param::from_tensor(Tensor::<Cpu, 2>::from_data(
                TensorData::new(v, [r, out]),
                &device,
            ));
        }
    });
    save_peft(
        &mut model,
        &cfg,
        &fx.join(out),
        &format!("tests/fixtures/{base}"),
    )
    .unwrap();
    println!(
        "wrote {} adapted modules to {}",
        adapted.len(),
        fx.join(out).display()
    );
}
