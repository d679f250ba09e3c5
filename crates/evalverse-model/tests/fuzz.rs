//! Fuzz targets of the model crate's parsers of outside input: a checkpoint's config.json
//! (`QwenVlConfig::from_json_str`) and safetensors files (`Weights::open`, then every tensor
//! taken as its header describes it). Inputs are the fixtures mutated through their JSON tree
//! (a safetensors file through its header) and bytes, and arbitrary bytes. The property: no
//! panic, no hang, an error names the file (and the key or tensor), and a tensor that loads
//! has the size its shape says. Cases: PROPTEST_CASES (default 256); scripts/fuzz_long.sh runs
//! them for minutes (FUZZ_SECONDS).

#[macro_use]
#[path = "../../evalverse-data/tests/fuzz_support/mod.rs"]
mod support;

use std::path::Path;

use burn::tensor::DType;
use evalverse_model::weights::{canonical_key, Weights};
use evalverse_model::QwenVlConfig;
use proptest::prelude::*;
use support::{fuzz, show, Input, Seeds};

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Words of config.json beyond those in the fixtures.
const CONFIG_WORDS: &[&str] = &[
    "qwen2_5_vl",
    "qwen2_vl",
    "rope_parameters",
    "rope_scaling",
    "text_config",
    "vision_config",
    "embed_dim",
    "spatial_patch_size",
    "in_chans",
    "gelu",
    "silu",
    "mrope",
    "eos_token_id",
    "qwen3_vl",
    "qwen3_vl_moe",
    "deepstack_visual_indexes",
    "num_position_embeddings",
    "head_dim",
    "mlp_ratio",
    "quick_gelu",
    "gelu_pytorch_tanh",
    "attention_bias",
];

#[test]
fn fuzz_config_json() {
    let seeds = Seeds::json(
        vec![
            fixture("tiny_a/config.json"),
            fixture("tiny_b/config.json"),
            fixture("config_variants/tiny_a.hub_flat.json"),
            fixture("families/qwen2_vl/config.json"),
            fixture("families/qwen2_vl.hub_flat.json"),
            fixture("families/qwen3_vl/config.json"),
        ],
        CONFIG_WORDS,
    );
    let origin = Path::new("fuzz/config.json");
    fuzz("config_json", support::input(), |input| {
        let bytes = seeds.materialise(input);
        let text = String::from_utf8_lossy(&bytes);
        // Sizes are added and multiplied with overflow checks: a huge size is refused, never a
        // panic (debug) or a wrapped value (release).
        let parsed = std::panic::catch_unwind(|| QwenVlConfig::from_json_str(&text, origin));
        let Ok(parsed) = parsed else {
            return Err(format!("panicked: {}", support::last_panic()));
        };
        match parsed {
            Err(e) => {
                support::tally("refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with("fuzz/config.json: "),
                    "the error does not name the file: {m:?}"
                );
            }
            Ok(c) => {
                support::tally("accepted");
                // The sizes the model is built from are what the file says, and consistent.
                let t = &c.text;
                let v = &c.vision;
                // Qwen3-VL states its head width (4B: 2560 / 32 heads, head_dim 128).
                let heads_fit = c.family == evalverse_model::config::Family::Qwen3Vl
                    || t.head_dim() * t.num_attention_heads == t.hidden_size;
                ensure!(
                    heads_fit
                        && 2 * t.mrope_section.iter().sum::<usize>() == t.head_dim()
                        && v.out_hidden_size == t.hidden_size,
                    "inconsistent sizes accepted: {c:?}"
                );
                ensure!(
                    v.deepstack_visual_indexes.iter().all(|&i| i < v.depth)
                        && v.deepstack_visual_indexes.len() <= t.num_hidden_layers
                        && v.num_position_embeddings.is_none_or(|n| {
                            v.position_grid_side().is_some_and(|s| s * s == n && n > 0)
                        }),
                    "a DeepStack layer or position table that does not fit accepted: {c:?}"
                );
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                let top = v.get("text_config").unwrap_or(&v);
                for (key, got) in [
                    ("image_token_id", c.image_token_id as u64),
                    ("video_token_id", c.video_token_id as u64),
                ] {
                    let want = v.get(key).or_else(|| top.get(key)).and_then(|x| x.as_u64());
                    ensure!(
                        want == Some(got),
                        "{key} is {want:?} in the file but {got} in the config: {}",
                        show(&bytes)
                    );
                }
            }
        }
        Ok(())
    });
}

/// A safetensors seed: its JSON header (edited as a tree) and the data after it.
struct Checkpoints {
    headers: Seeds,
    data: Vec<Vec<u8>>,
}

fn split_safetensors(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (bytes[8..8 + n].to_vec(), bytes[8 + n..].to_vec())
}

/// A small file with one tensor of each float dtype the loader converts, and one it refuses.
fn handmade() -> Vec<u8> {
    let header = serde_json::json!({
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "model.language_model.b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
        "model.visual.h": {"dtype": "F16", "shape": [2, 2], "data_offsets": [32, 40]},
        "i": {"dtype": "I64", "shape": [1], "data_offsets": [40, 48]},
    })
    .to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend((0..48u8).map(|i| i.wrapping_mul(37)));
    out
}

fn checkpoints() -> Checkpoints {
    let files = [
        handmade(),
        fixture("lora_peft/adapter_model.safetensors"),
        fixture("lora_evalverse/adapter_model.safetensors"),
    ];
    let (headers, data): (Vec<_>, Vec<_>) = files.iter().map(|f| split_safetensors(f)).unzip();
    Checkpoints {
        headers: Seeds::new(
            headers,
            |t| serde_json::from_str(t).ok(),
            |v| serde_json::to_string(v).ok(),
            &[
                "F32",
                "BF16",
                "F16",
                "I64",
                "U8",
                "BOOL",
                "F64",
                "dtype",
                "shape",
                "data_offsets",
            ],
        ),
        data,
    }
}

/// What a generated file does with its length prefix and its data.
#[derive(Debug, Clone)]
enum Prefix {
    /// The header's true length.
    Exact,
    /// Off by this much.
    Off(i8),
    Value(u64),
}

#[derive(Debug, Clone)]
enum Data {
    Keep,
    Cut(u32),
    Grow(u8),
}

fn file_input() -> impl Strategy<Value = (Input, Prefix, Data)> {
    let prefix = prop_oneof![
        6 => Just(Prefix::Exact),
        1 => any::<i8>().prop_map(Prefix::Off),
        1 => prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 40), any::<u64>()].prop_map(Prefix::Value),
    ];
    let data = prop_oneof![
        6 => Just(Data::Keep),
        1 => any::<u32>().prop_map(Data::Cut),
        1 => (1u8..64).prop_map(Data::Grow),
    ];
    (support::input(), prefix, data)
}

fn seed_of(input: &Input) -> usize {
    match input {
        Input::Tree { seed, .. } | Input::Text { seed, .. } => *seed as usize,
        _ => 0,
    }
}

#[test]
fn fuzz_safetensors_header() {
    let ck = checkpoints();
    fuzz(
        "safetensors_header",
        file_input(),
        |(input, prefix, data)| {
            let header = ck.headers.materialise(input);
            let mut body = ck.data[seed_of(input) % ck.data.len()].clone();
            match data {
                Data::Keep => {}
                Data::Cut(n) => body.truncate(*n as usize % (body.len() + 1)),
                Data::Grow(n) => body.extend(std::iter::repeat_n(0x7f, *n as usize)),
            }
            let len = match prefix {
                Prefix::Exact => header.len() as u64,
                Prefix::Off(d) => (header.len() as i64 + *d as i64).max(0) as u64,
                Prefix::Value(v) => *v,
            };
            let mut file = len.to_le_bytes().to_vec();
            file.extend(&header);
            file.extend(&body);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("model.safetensors");
            std::fs::write(&path, &file).unwrap();
            let shown = || {
                format!(
                    "header {} ({} data bytes, prefix {len})",
                    show(&header),
                    body.len()
                )
            };
            let mut w = match Weights::open(&[path.clone()], DType::F32) {
                Err(e) => {
                    support::tally("refused");
                    let m = e.to_string();
                    ensure!(
                        m.contains(&path.display().to_string()),
                        "the error does not name the file: {m:?} for {}",
                        shown()
                    );
                    return Ok(());
                }
                Ok(w) => w,
            };
            support::tally("opened");
            // Every tensor the header lists, taken at its own shape.
            let st = safetensors::SafeTensors::deserialize(&file)
                .map_err(|e| format!("Weights::open accepted what safetensors refuses: {e}"))?;
            for (name, view) in st.tensors() {
                let key = canonical_key(&name);
                let shape = view.shape().to_vec();
                ensure!(
                    w.contains(&key),
                    "tensor {name} listed but not found as {key}"
                );
                let elems: usize = shape.iter().product();
                match w.take(&key, &shape) {
                    Ok(d) => ensure!(
                        d.num_elements() == elems,
                        "tensor {name}: {} elements for shape {shape:?}",
                        d.num_elements()
                    ),
                    Err(e) => {
                        let m = e.to_string();
                        ensure!(
                            m.contains(&key) || m.contains(name.as_str()),
                            "the error does not name the tensor {name}: {m:?}"
                        );
                    }
                }
                if let [r, c] = shape[..] {
                    if let Err(e) = w.take_transposed(&key, [r, c]) {
                        let m = e.to_string();
                        ensure!(
                            m.contains(&key),
                            "the error does not name the tensor {key}: {m:?}"
                        );
                    }
                }
            }
            let _ = w.finish();
            Ok(())
        },
    );
}
