//! Parity with transformers 4.57.1: tiny random Qwen2.5-VL checkpoints made by
//! scripts/make_fixtures.py (sharded original layout with untied head; single-file new layout,
//! nested config, tied head), a batch of two left-padded prompts with one video each (3 temporal
//! patches, window attention with padded windows, full-attention blocks, second_per_grid 1 and 2).
//! Position ids must match exactly; vision output, hidden states and logits to f32 tolerance.

mod common;

use burn::tensor::{DType, Tensor};
use common::{batch, fixtures, load_case};
use evalverse_model::{Cpu, QwenVl};

/// Max |a - b| and max |b| over positions where `keep` is true (per row of `width` values).
fn diff(a: &Tensor<Cpu, 3>, want: &[f64], keep: &[bool], width: usize) -> (f64, f64) {
    let got: Vec<f32> = a.to_data().convert::<f32>().to_vec().unwrap();
    common::max_diff(&got, want, keep, width)
}

fn check_case(model_dir: &str, case_name: &str) {
    let device = Default::default();
    let model = QwenVl::<Cpu>::from_source(
        fixtures().join(model_dir).to_str().unwrap(),
        DType::F32,
        &device,
    )
    .unwrap();
    let case = load_case(case_name);
    let batch = batch(&case, &device);
    let out = model.forward(&batch, true, None).unwrap();
    // Position ids: exact, on real tokens (transformers fills padding with 1, as we do).
    let want_pos = case.ints("position_ids");
    let got_pos: Vec<i64> = out
        .position_ids
        .iter()
        .flat_map(|a| a.iter().flatten().copied())
        .collect();
    assert_eq!(got_pos, want_pos, "{case_name}: position ids");
    let want_deltas = case.ints("rope_deltas");
    assert_eq!(out.rope_deltas, want_deltas, "{case_name}: rope deltas");
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let d = model.cfg.text.hidden_size;
    let v = model.cfg.text.vocab_size;
    let mut report = vec![];
    if case.0.contains_key("video_embeds") {
        let grids: Vec<[usize; 3]> = batch.media.iter().flatten().map(|m| m.grid_thw).collect();
        let vis = model
            .visual
            .forward(batch.pixel_values.clone().unwrap(), &grids)
            .unsqueeze_dim::<3>(0);
        let (want, _) = case.get("video_embeds");
        let (md, mr) = diff(&vis, want, &vec![true; want.len() / d], d);
        report.push(format!("video_embeds max|d| {md:.2e} (max|ref| {mr:.2})"));
        assert!(
            md / mr < 1e-4,
            "{case_name}: vision output rel err {}",
            md / mr
        );
    }
    for (k, name) in ["hidden_embed", "hidden_layer_0", "hidden_layer_1"]
        .iter()
        .enumerate()
    {
        let (md, mr) = diff(&out.hidden_states[k], &case.get(name).0, &keep, d);
        report.push(format!("{name} max|d| {md:.2e}"));
        assert!(md / mr < 1e-4, "{case_name}: {name} rel err {}", md / mr);
    }
    let (md, mr) = diff(&out.last_hidden, &case.get("hidden_final_norm").0, &keep, d);
    assert!(
        md / mr < 1e-4,
        "{case_name}: final norm rel err {}",
        md / mr
    );
    let (md, mr) = diff(&out.logits, &case.get("logits").0, &keep, v);
    report.push(format!(
        "logits max|d| {md:.2e} (max|ref| {mr:.2}, rel {:.2e})",
        md / mr
    ));
    println!("{case_name} on {model_dir}: {}", report.join("; "));
    assert!(md / mr < 1e-4, "{case_name}: logits rel err {}", md / mr);
}

#[test]
fn video_batch_matches_transformers_on_sharded_untied_checkpoint() {
    check_case("tiny_a", "case_video_a.safetensors");
}

#[test]
fn video_batch_matches_transformers_on_tied_new_layout_nested_config() {
    check_case("tiny_b", "case_video_b.safetensors");
}

#[test]
fn text_only_batch_matches_transformers() {
    check_case("tiny_a", "case_text_a.safetensors");
}

/// The base weights loaded in bf16 (`model.dtype = "bf16"`, what the GPU path uses), compute
/// through the same graph on the CPU backend: the logits follow transformers' f32 logits to bf16
/// precision (8 bits of mantissa in every weight and activation between the f32 norms, softmax
/// and RoPE).
#[test]
fn bf16_weights_follow_the_f32_logits_to_bf16_precision() {
    let device = Default::default();
    let model = QwenVl::<Cpu>::from_source(
        fixtures().join("tiny_a").to_str().unwrap(),
        DType::BF16,
        &device,
    )
    .unwrap();
    // Held in bf16, not converted to the device's default f32 on the way in.
    let layer = &model.model.layers[0];
    let held = [
        ("embed_tokens", model.model.embed_tokens.val().dtype()),
        ("q_proj", layer.self_attn.q_proj.weight.val().dtype()),
        (
            "q_proj.bias",
            layer.self_attn.q_proj.bias.as_ref().unwrap().val().dtype(),
        ),
        (
            "input_layernorm",
            layer.input_layernorm.weight.val().dtype(),
        ),
        ("patch_embed", model.visual.patch_embed.weight.val().dtype()),
    ];
    for (name, dtype) in held {
        assert_eq!(dtype, DType::BF16, "{name}");
    }
    let case = load_case("case_video_a.safetensors");
    let batch = batch(&case, &device);
    let out = model.forward(&batch, false, None).unwrap();
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let v = model.cfg.text.vocab_size;
    let (md, mr) = diff(
        &out.logits.cast(DType::F32),
        &case.get("logits").0,
        &keep,
        v,
    );
    println!(
        "bf16 weights: logits max|d| {md:.2e} (max|ref| {mr:.2}, rel {:.2e})",
        md / mr
    );
    assert!(md / mr < 5e-2, "bf16 logits rel err {}", md / mr);
}
