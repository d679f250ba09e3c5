//! Fixture helpers shared by the integration tests (tiny transformers checkpoints and cases).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use evalverse_model::position::MediaGrid;
use evalverse_model::Batch;

/// This crate's tests/fixtures, or `$EVALVERSE_MODEL_FIXTURES` where a binary runs away from the
/// source tree (the GPU machine: examples/gpu_check.rs).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("EVALVERSE_MODEL_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

/// Max |got - want| and max |want| over the rows (of `width` values) where `keep` is true.
pub fn max_diff(got: &[f32], want: &[f64], keep: &[bool], width: usize) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let (mut max_d, mut max_ref) = (0f64, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if keep[i / width] {
            max_d = max_d.max((g as f64 - w).abs());
            max_ref = max_ref.max(w.abs());
        }
    }
    (max_d, max_ref)
}

pub struct Case(pub HashMap<String, (Vec<f64>, Vec<usize>)>);

impl Case {
    pub fn load(name: &str) -> Case {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut m = HashMap::new();
        for (k, v) in st.tensors() {
            let vals: Vec<f64> = match v.dtype() {
                safetensors::Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                safetensors::Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                d => panic!("unexpected dtype {d:?} for {k}"),
            };
            m.insert(k, (vals, v.shape().to_vec()));
        }
        Case(m)
    }
    pub fn get(&self, k: &str) -> &(Vec<f64>, Vec<usize>) {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("fixture tensor {k} missing"))
    }
    pub fn ints(&self, k: &str) -> Vec<i64> {
        self.get(k).0.iter().map(|&x| x as i64).collect()
    }
}

pub fn batch<B: Backend>(case: &Case, device: &B::Device) -> Batch<B> {
    let (ids, shape) = case.get("input_ids");
    let (b, l) = (shape[0], shape[1]);
    let mask = case.ints("attention_mask");
    let ids: Vec<Vec<u32>> = (0..b)
        .map(|i| ids[i * l..(i + 1) * l].iter().map(|&x| x as u32).collect())
        .collect();
    let mask: Vec<Vec<bool>> = (0..b)
        .map(|i| mask[i * l..(i + 1) * l].iter().map(|&x| x == 1).collect())
        .collect();
    let (pixel_values, media) = if case.0.contains_key("pixel_values_videos") {
        let (pv, ps) = case.get("pixel_values_videos");
        let pv = Tensor::<B, 2>::from_data(
            TensorData::new(
                pv.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                [ps[0], ps[1]],
            ),
            device,
        );
        let grids = case.ints("video_grid_thw");
        let spg = &case.get("second_per_grid_ts").0;
        let media = (0..b)
            .map(|i| {
                vec![MediaGrid {
                    is_video: true,
                    grid_thw: [
                        grids[3 * i] as usize,
                        grids[3 * i + 1] as usize,
                        grids[3 * i + 2] as usize,
                    ],
                    second_per_grid: spg[i],
                }]
            })
            .collect();
        (Some(pv), media)
    } else {
        (None, vec![vec![]; b])
    };
    Batch {
        ids,
        mask,
        pixel_values,
        media,
        vision_embeds: None,
    }
}

/// A case, with case_video_a's pixels when the case shares them (case_video_b).
pub fn load_case(name: &str) -> Case {
    let mut case = Case::load(name);
    if case.0.contains_key("video_grid_thw") && !case.0.contains_key("pixel_values_videos") {
        let a = Case::load("case_video_a.safetensors");
        case.0.insert(
            "pixel_values_videos".into(),
            a.get("pixel_values_videos").clone(),
        );
    }
    case
}
