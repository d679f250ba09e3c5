//! Bad Qwen2-VL / Qwen3-VL checkpoints are refused with the key, the file and both shapes (or both
//! sizes): an unsupported variant (Qwen3-VL MoE), a DeepStack layer past the vision depth, a
//! position table that is not a square grid or does not match config.json, missing and
//! mis-shaped tensors of the new blocks.

mod common;

use std::path::Path;

use burn::tensor::DType;
use common::fixtures;
use evalverse_model::{Cpu, QwenVl};
use serde_json::Value;

type Tensors = Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>;

fn load_err(dir: &Path) -> String {
    match QwenVl::<Cpu>::from_source(dir.to_str().unwrap(), DType::F32, &Default::default()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// A copy of fixtures/families/`family` with its config edited by `cfg` and its tensors by `edit`.
fn family_with(
    family: &str,
    cfg: impl FnOnce(&mut Value),
    edit: impl FnOnce(&mut Tensors),
) -> tempfile::TempDir {
    let src = fixtures().join("families").join(family);
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, d, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        safetensors::serialize(views, &None).unwrap(),
    )
    .unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// Replace tensor `key` by zeros of `shape`.
fn reshape(t: &mut Tensors, key: &str, shape: Vec<usize>) {
    let e = t.iter_mut().find(|(k, ..)| k == key).expect(key);
    e.3 = vec![0; shape.iter().product::<usize>() * 4];
    e.2 = shape;
}

#[test]
fn qwen3_vl_moe_is_refused_by_name() {
    let dir = family_with(
        "qwen3_vl",
        |c| c["model_type"] = "qwen3_vl_moe".into(),
        |_| {},
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json") && e.contains("qwen3_vl_moe") && e.contains("mixture of experts"),
        "{e}"
    );
}

#[test]
fn deepstack_layer_past_the_vision_depth_is_refused() {
    // depth 4: layers 0..3; index 4 does not exist.
    let dir = family_with(
        "qwen3_vl",
        |c| c["vision_config"]["deepstack_visual_indexes"] = serde_json::json!([0, 4]),
        |_| {},
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json")
            && e.contains("deepstack_visual_indexes")
            && e.contains("layer 4")
            && e.contains("depth is 4"),
        "{e}"
    );
}

#[test]
fn deepstack_levels_beyond_the_decoder_are_refused() {
    let dir = family_with(
        "qwen3_vl",
        |c| c["text_config"]["num_hidden_layers"] = 1.into(),
        |_| {},
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("deepstack_visual_indexes") && e.contains("num_hidden_layers 1"),
        "{e}"
    );
}

#[test]
fn position_table_that_is_not_a_square_grid_is_refused() {
    let dir = family_with(
        "qwen3_vl",
        |c| c["vision_config"]["num_position_embeddings"] = 60.into(),
        |t| reshape(t, "model.visual.pos_embed.weight", vec![60, 32]),
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json")
            && e.contains("num_position_embeddings 60")
            && e.contains("square"),
        "{e}"
    );
}

#[test]
fn position_table_other_than_the_config_says_is_refused_with_both_shapes() {
    // A 7x7 table where config.json says 8x8.
    let dir = family_with(
        "qwen3_vl",
        |_| {},
        |t| reshape(t, "model.visual.pos_embed.weight", vec![49, 32]),
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("visual.pos_embed.weight")
            && e.contains("model.safetensors")
            && e.contains("[49, 32]")
            && e.contains("[64, 32]")
            && e.contains("num_position_embeddings"),
        "{e}"
    );
}

#[test]
fn missing_deepstack_merger_tensor_is_named_with_its_shape() {
    let dir = family_with(
        "qwen3_vl",
        |_| {},
        |t| t.retain(|(k, ..)| k != "model.visual.deepstack_merger_list.1.norm.bias"),
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("missing tensor 'visual.deepstack_merger_list.1.norm.bias'")
            && e.contains("[128]")
            && e.contains("model.safetensors"),
        "{e}"
    );
}

#[test]
fn misshaped_q_norm_is_refused_with_both_shapes() {
    let dir = family_with(
        "qwen3_vl",
        |_| {},
        |t| {
            reshape(
                t,
                "model.language_model.layers.2.self_attn.q_norm.weight",
                vec![16],
            )
        },
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("model.layers.2.self_attn.q_norm.weight")
            && e.contains("stored as 'model.language_model.layers.2.self_attn.q_norm.weight'")
            && e.contains("model.safetensors")
            && e.contains("[16]")
            && e.contains("[24]"),
        "{e}"
    );
}

#[test]
fn qwen2_vl_layernorm_without_its_bias_is_refused() {
    let dir = family_with(
        "qwen2_vl",
        |_| {},
        |t| t.retain(|(k, ..)| k != "visual.blocks.1.norm2.bias"),
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("missing tensor 'visual.blocks.1.norm2.bias'") && e.contains("[32]"),
        "{e}"
    );
}

#[test]
fn qwen2_vl_misshaped_mlp_is_refused_with_both_shapes() {
    // mlp_ratio 2 makes fc1 [64, 32]; a checkpoint of ratio 4 has [128, 32].
    let dir = family_with(
        "qwen2_vl",
        |_| {},
        |t| reshape(t, "visual.blocks.0.mlp.fc1.weight", vec![128, 32]),
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("visual.blocks.0.mlp.fc1.weight")
            && e.contains("model.safetensors")
            && e.contains("[128, 32]")
            && e.contains("[64, 32]"),
        "{e}"
    );
}

#[test]
fn qwen3_vl_tensors_under_a_qwen2_5_vl_config_are_refused_with_both_shapes() {
    // A family mix-up: Qwen2.5-VL's config (vocabulary 512) with Qwen3-VL's tensors (256).
    let dir = family_with(
        "qwen3_vl",
        |c| {
            *c = serde_json::from_str(
                &std::fs::read_to_string(fixtures().join("tiny_b/config.json")).unwrap(),
            )
            .unwrap()
        },
        |_| {},
    );
    let e = load_err(dir.path());
    assert!(
        e.contains("model.embed_tokens.weight")
            && e.contains("model.safetensors")
            && e.contains("[256, 64]")
            && e.contains("[512, 64]"),
        "{e}"
    );
}
