//! Writes tests/fixtures/lora_evalverse/: an evalverse LoRA adapter on the tiny_a fixture (rank 4,
//! alpha 8, the seven language-model projections) with B drawn at random (a fresh adapter has
//! B = 0, which would make a parity test trivial). scripts/make_lora_fixtures.py loads it in PEFT.
//!
//!   cargo run --release -p evalverse-model --example make_lora_fixture

use std::path::Path;

use burn::module::Param;
use burn::tensor::{DType, Tensor, TensorData};
use evalverse_model::lora::{apply_lora, save_peft, LoraConfig, DEFAULT_TARGETS};
use evalverse_model::{Cpu, QwenVl};

fn main() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let device = Default::default();
    let mut model =
        QwenVl::<Cpu>::from_source(fx.join("tiny_a").to_str().unwrap(), DType::F32, &device)
            .unwrap();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
        include_vision: false,
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
        &fx.join("lora_evalverse"),
        "tests/fixtures/tiny_a",
    )
    .unwrap();
    println!(
        "wrote {} adapted modules to {}",
        adapted.len(),
        fx.join("lora_evalverse").display()
    );
}
