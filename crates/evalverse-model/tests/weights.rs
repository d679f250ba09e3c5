//! Weight loading refuses bad checkpoints with errors naming the key, the shapes or the file, and
//! resolves `hf:` sources from the local hub cache when HF_HUB_OFFLINE is set.

mod common;

use std::path::Path;

use burn::tensor::DType;
use common::fixtures;
use evalverse_model::{Cpu, QwenVl};

fn load_err(dir: &Path) -> String {
    match QwenVl::<Cpu>::from_source(dir.to_str().unwrap(), DType::F32, &Default::default()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// tiny_b (single file) with its tensors rewritten by `edit`.
fn tiny_b_with(
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let src = fixtures().join("tiny_b");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
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
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    dir
}

#[test]
fn missing_tensor_is_named() {
    let dir = tiny_b_with(|t| {
        t.retain(|(k, ..)| k != "model.language_model.layers.1.mlp.up_proj.weight")
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("missing tensor 'model.layers.1.mlp.up_proj.weight'") && e.contains("[128, 64]"),
        "{e}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = tiny_b_with(|t| {
        t.push((
            "model.language_model.extra_head.weight".into(),
            safetensors::Dtype::F32,
            vec![2],
            vec![0; 8],
        ))
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("unexpected tensor") && e.contains("model.extra_head.weight"),
        "{e}"
    );
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let dir = tiny_b_with(|t| {
        let e = t
            .iter_mut()
            .find(|(k, ..)| k == "model.language_model.norm.weight")
            .unwrap();
        e.2 = vec![32];
        e.3.truncate(32 * 4);
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("'model.norm.weight'") && e.contains("[32]") && e.contains("[64]"),
        "{e}"
    );
}

#[test]
fn bf16_checkpoint_loads_into_f32_and_stays_close() {
    let dir = tiny_b_with(|t| {
        for (_, d, _, b) in t.iter_mut() {
            *b = b
                .chunks_exact(4)
                .flat_map(|c| {
                    half::bf16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            *d = safetensors::Dtype::BF16;
        }
    });
    let device = Default::default();
    let m = QwenVl::<Cpu>::from_source(dir.path().to_str().unwrap(), DType::F32, &device).unwrap();
    let w = m
        .model
        .norm
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(m.model.norm.weight.val().dtype(), DType::F32);
    assert!(
        w.iter().all(|v| v.is_finite() && *v > 0.4 && *v < 1.6),
        "norm weights drawn in U(0.5, 1.5) survive bf16"
    );
}

#[test]
fn corrupt_header_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("tiny_b/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage",
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("corrupt safetensors header"),
        "{e}"
    );
}

#[test]
fn offline_hub_source_resolves_from_the_local_cache() {
    // The hf-hub cache layout: models--ORG--NAME/{refs/REV, snapshots/COMMIT/files}.
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--evalverse--tiny-qwen");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("tiny_b").join(f), snap.join(f)).unwrap();
    }
    // SAFETY: this test binary sets these variables only here, before any thread reads them.
    unsafe {
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    let m = QwenVl::<Cpu>::from_source("hf:evalverse/tiny-qwen", DType::F32, &Default::default())
        .unwrap();
    assert_eq!(m.cfg.text.vocab_size, 512);
    let e = match QwenVl::<Cpu>::from_source("hf:evalverse/absent", DType::F32, &Default::default())
    {
        Ok(_) => panic!("absent repo loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("hf:evalverse/absent@main") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
}

/// A copy of tiny_b with its config.json replaced by `config` (None: no config.json).
fn tiny_b_config(config: Option<&str>) -> tempfile::TempDir {
    let dir = tiny_b_with(|_| {});
    match config {
        Some(text) => std::fs::write(dir.path().join("config.json"), text).unwrap(),
        None => std::fs::remove_file(dir.path().join("config.json")).unwrap(),
    }
    dir
}

#[test]
fn a_hidden_size_the_weights_contradict_is_reported_as_the_tensor_shape() {
    let config = std::fs::read_to_string(fixtures().join("tiny_b/config.json")).unwrap();
    let edited = config.replace("\"hidden_size\": 64", "\"hidden_size\": 128");
    assert_ne!(edited, config);
    let dir = tiny_b_config(Some(&edited));
    let e = load_err(dir.path());
    assert!(
        e.contains("'model.embed_tokens.weight'")
            && e.contains("[512, 64]")
            && e.contains("[512, 128]")
            && e.contains("hidden_size")
            && !e.contains("mrope_section"),
        "{e}"
    );
}

#[test]
fn a_malformed_config_is_the_same_kind_of_error_as_a_missing_one() {
    use evalverse_model::weights::ModelSource;
    use evalverse_model::ModelError;
    for (what, config) in [
        ("missing", None),
        ("not JSON", Some("{\"model_type\": ")),
        ("no vision_config", Some("{\"model_type\": \"qwen2_5_vl\"}")),
    ] {
        let dir = tiny_b_config(config);
        let e = ModelSource::parse(dir.path().to_str().unwrap())
            .and_then(|s| s.resolve())
            .unwrap_err();
        assert!(
            matches!(&e, ModelError::Config { path, .. } if path.ends_with("config.json")),
            "{what}: {e:?}"
        );
    }
    // Weights the config does not describe are the weights' fault, found when they load.
    let dir = tiny_b_with(|t| t.retain(|(k, ..)| !k.ends_with("norm.weight")));
    assert!(ModelSource::parse(dir.path().to_str().unwrap())
        .and_then(|s| s.resolve())
        .is_ok());
}
