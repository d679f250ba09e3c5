//! LoRA: PEFT adapters load and give PEFT's logits; evalverse adapters load in PEFT with the same
//! logits (fixtures from scripts/make_lora_fixtures.py, peft 0.21.2); a fresh adapter is the
//! identity; merge and unmerge; the base gets no gradient.

mod common;

use burn::backend::Autodiff;
use burn::tensor::{DType, Tensor};
use common::{batch, fixtures, load_case, Case};
use evalverse_model::lora::{
    apply_lora, load_peft, merge_all, save_peft, set_training, unmerge_all, LoraConfig,
    DEFAULT_TARGETS,
};
use evalverse_model::{Cpu, QwenVl};

fn tiny() -> QwenVl<Cpu> {
    QwenVl::<Cpu>::from_source(
        fixtures().join("tiny_a").to_str().unwrap(),
        DType::F32,
        &Default::default(),
    )
    .unwrap()
}

fn logits(m: &QwenVl<Cpu>) -> Vec<f32> {
    let b = batch(&load_case("case_video_a.safetensors"), &Default::default());
    m.forward(&b, false, None)
        .unwrap()
        .logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

/// Max relative difference over the real (unpadded) positions of case_video_a.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let case = load_case("case_video_a.safetensors");
    let mask = case.ints("attention_mask");
    let v = got.len() / mask.len();
    let (mut d, mut r) = (0f64, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if mask[i / v] == 1 {
            d = d.max((g as f64 - w).abs());
            r = r.max(w.abs());
        }
    }
    d / r
}

fn cfg() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
        include_vision: false,
        use_rslora: false,
        seed: 1,
    }
}

#[test]
fn peft_adapter_loaded_by_evalverse_gives_peft_logits() {
    let mut m = tiny();
    let c = load_peft(&mut m, &fixtures().join("lora_peft")).unwrap();
    assert_eq!((c.rank, c.alpha), (4, 8.0));
    let want = Case::load("lora_logits.safetensors");
    let e = rel_err(&logits(&m), &want.get("peft_adapter_logits").0);
    println!("PEFT adapter: logits rel err {e:.2e}");
    assert!(e < 1e-4, "{e}");
}

#[test]
fn evalverse_adapter_gives_the_logits_peft_computes_for_it() {
    let mut m = tiny();
    load_peft(&mut m, &fixtures().join("lora_evalverse")).unwrap();
    let want = Case::load("lora_logits.safetensors");
    let e = rel_err(&logits(&m), &want.get("evalverse_adapter_logits").0);
    println!("evalverse adapter in PEFT: logits rel err {e:.2e}");
    assert!(e < 1e-4, "{e}");
}

#[test]
fn saving_an_adapter_and_loading_it_back_round_trips() {
    let mut m = tiny();
    load_peft(&mut m, &fixtures().join("lora_evalverse")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_peft(&mut m, &cfg(), dir.path(), "tiny").unwrap();
    let a = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let b = std::fs::read(fixtures().join("lora_evalverse/adapter_model.safetensors")).unwrap();
    assert_eq!(a, b, "the same adapter serialises to the same bytes");
}

#[test]
fn fresh_adapter_leaves_the_model_unchanged() {
    let base = logits(&tiny());
    let mut m = tiny();
    let adapted = apply_lora(&mut m, &cfg()).unwrap();
    assert_eq!(
        adapted.len(),
        14,
        "7 projections x 2 layers, no vision modules"
    );
    assert_eq!(logits(&m), base, "B = 0 at init");
}

#[test]
fn merge_gives_the_same_logits_and_unmerge_restores_the_base() {
    let mut m = tiny();
    load_peft(&mut m, &fixtures().join("lora_peft")).unwrap();
    let before = logits(&m);
    let w0: Vec<f32> = m.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    merge_all(&mut m);
    let merged = logits(&m);
    let max = before
        .iter()
        .zip(&merged)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-4, "merged logits differ by {max}");
    assert!(
        save_peft(&mut m, &cfg(), tempfile::tempdir().unwrap().path(), "x").is_err(),
        "merged adapters are not saved as PEFT"
    );
    unmerge_all(&mut m);
    let w1: Vec<f32> = m.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let max = w0
        .iter()
        .zip(&w1)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-6, "unmerged weight differs by {max}");
}

#[test]
fn only_adapter_weights_get_gradients() {
    type Ad = Autodiff<Cpu>;
    let device = Default::default();
    let mut m = QwenVl::<Ad>::from_source(
        fixtures().join("tiny_a").to_str().unwrap(),
        DType::F32,
        &device,
    )
    .unwrap();
    load_peft(&mut m, &fixtures().join("lora_peft")).unwrap();
    set_training(&mut m, true);
    let case = load_case("case_text_a.safetensors");
    let b = batch_ad(&case);
    let loss = m.forward(&b, false, None).unwrap().logits.mean();
    let grads = loss.backward();
    let q = &m.model.layers[0].self_attn.q_proj;
    assert!(
        q.weight.val().grad(&grads).is_none(),
        "frozen base weight has no gradient"
    );
    let lora = q.lora.as_ref().unwrap();
    let ga: Tensor<Cpu, 2> = lora.lora_a.val().grad(&grads).expect("A has a gradient");
    assert!(ga.abs().sum().into_scalar() > 0.0);
    assert!(m.model.embed_tokens.val().grad(&grads).is_none());
}

fn batch_ad(case: &Case) -> evalverse_model::Batch<Autodiff<Cpu>> {
    let (ids, shape) = case.get("input_ids");
    let (b, l) = (shape[0], shape[1]);
    let mask = case.ints("attention_mask");
    evalverse_model::Batch {
        ids: (0..b)
            .map(|i| ids[i * l..(i + 1) * l].iter().map(|&x| x as u32).collect())
            .collect(),
        mask: (0..b)
            .map(|i| mask[i * l..(i + 1) * l].iter().map(|&x| x == 1).collect())
            .collect(),
        pixel_values: None,
        media: vec![vec![]; b],
        vision_embeds: None,
    }
}
