//! `evalverse model logits` (hidden): the logits of a fixed probe input (text around one short
//! video of deterministic pixels) through a model, optionally with a PEFT adapter attached
//! unmerged, written as safetensors with the inputs in transformers' argument names. Parity
//! checks use it: an export against base + adapter here, and against transformers / PEFT in
//! scripts/check_export_transformers.py.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use burn::tensor::{DType, Tensor, TensorData};
use evalverse_model::config::Family;
use evalverse_model::position::MediaGrid;
use evalverse_model::{Batch, Cpu, QwenVl, QwenVlConfig};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::Failure;

/// Probe tokens, patch rows [n, dim] and the video grid for a model config, the video written in
/// the family's layout (one block; Qwen3-VL: a timestamped block per temporal patch). Text ids
/// stay below 400, clear of the special ids of the Qwen vocabulary and of the tiny test
/// vocabularies.
fn probe(cfg: &QwenVlConfig) -> (Vec<u32>, Vec<f32>, [usize; 3], usize) {
    let v = &cfg.vision;
    let m = v.spatial_merge_size;
    let grid = [2, 2 * m, 2 * m];
    let rows = grid.iter().product::<usize>();
    let dim = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
    let pixels: Vec<f32> = (0..rows * dim)
        .map(|i| (1.5 * ((i / dim) as f64 * 0.37 + (i % dim) as f64 * 0.011).sin()) as f32)
        .collect();
    let text = |k: usize, n: usize| (0..n).map(move |i| ((7 + 31 * (k + i)) % 400) as u32);
    let mut ids: Vec<u32> = text(0, 6).collect();
    let block = |ids: &mut Vec<u32>, tokens: usize| {
        ids.push(cfg.vision_start_token_id);
        ids.extend(std::iter::repeat_n(cfg.video_token_id, tokens));
        ids.push(cfg.vision_end_token_id);
    };
    match cfg.family {
        Family::Qwen2Vl | Family::Qwen2_5Vl => block(&mut ids, rows / (m * m)),
        // Qwen3-VL's video layout (Qwen3VLProcessor): per temporal patch, its timestamp text
        // (three probe ids stand in for "<t seconds>") and its own vision block.
        Family::Qwen3Vl => {
            for f in 0..grid[0] {
                ids.extend(text(20 + 3 * f, 3));
                block(&mut ids, grid[1] * grid[2] / (m * m));
            }
        }
    }
    ids.extend(text(6, 5));
    (ids, pixels, grid, dim)
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn logits(model_src: &str, adapter: Option<&Path>, out: &Path) -> Result<ExitCode, Failure> {
    let device = Default::default();
    let mut model = QwenVl::<Cpu>::from_source(model_src, DType::F32, &device)
        .map_err(|e| Failure::Usage(anyhow!("--model {model_src}: {e}")))?;
    if let Some(dir) = adapter {
        evalverse_model::lora::load_peft(&mut model, dir)
            .map_err(|e| Failure::Usage(anyhow!("--adapter {}: {e}", dir.display())))?;
    }
    let (ids, pixels, grid, dim) = probe(&model.cfg);
    let rows = pixels.len() / dim;
    let batch = Batch {
        ids: vec![ids.clone()],
        mask: vec![vec![true; ids.len()]],
        pixel_values: Some(Tensor::<Cpu, 2>::from_data(
            TensorData::new(pixels.clone(), [rows, dim]),
            &device,
        )),
        media: vec![vec![MediaGrid {
            is_video: true,
            grid_thw: grid,
            second_per_grid: 1.0,
        }]],
        vision_embeds: None,
    };
    let logits = model
        .forward(&batch, false, None)
        .map_err(|e| Failure::Runtime(anyhow!(e)))?
        .logits;
    let shape = logits.dims().to_vec();
    let logits: Vec<f32> = logits.into_data().to_vec().expect("f32");
    let l = ids.len();
    let tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        (
            "input_ids",
            Dtype::I64,
            vec![1, l],
            bytes_i64(&ids.iter().map(|&t| t as i64).collect::<Vec<_>>()),
        ),
        (
            "attention_mask",
            Dtype::I64,
            vec![1, l],
            bytes_i64(&vec![1; l]),
        ),
        (
            "pixel_values_videos",
            Dtype::F32,
            vec![rows, dim],
            bytes_f32(&pixels),
        ),
        (
            "video_grid_thw",
            Dtype::I64,
            vec![1, 3],
            bytes_i64(&grid.map(|g| g as i64)),
        ),
        ("second_per_grid_ts", Dtype::F32, vec![1], bytes_f32(&[1.0])),
        ("logits", Dtype::F32, shape, bytes_f32(&logits)),
    ];
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, d, s, b)| {
            (
                k.to_string(),
                TensorView::new(*d, s.clone(), b).expect("sizes"),
            )
        })
        .collect();
    let meta = HashMap::from([(
        "probe".to_string(),
        serde_json::json!({"model": model_src, "adapter": adapter.map(|p| p.display().to_string())})
            .to_string(),
    )]);
    let bytes = safetensors::serialize(views, &Some(meta)).map_err(|e| anyhow!(e))?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("probe logits {:?} -> {}", [1, l], out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rel: &str) -> QwenVlConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../evalverse-model/tests/fixtures")
            .join(rel)
            .join("config.json");
        QwenVlConfig::from_file(&path).unwrap()
    }

    /// Indices of the vision blocks' starts and their placeholder counts.
    fn blocks(cfg: &QwenVlConfig, ids: &[u32]) -> Vec<(usize, usize)> {
        ids.iter()
            .enumerate()
            .filter(|(_, &t)| t == cfg.vision_start_token_id)
            .map(|(i, _)| {
                let n = ids[i + 1..]
                    .iter()
                    .take_while(|&&t| t == cfg.video_token_id)
                    .count();
                assert_eq!(ids[i + 1 + n], cfg.vision_end_token_id);
                (i, n)
            })
            .collect()
    }

    #[test]
    fn qwen3_probe_writes_a_timestamped_block_per_temporal_patch() {
        let cfg = config("families/qwen3_vl");
        let (ids, _, grid, _) = probe(&cfg);
        let m = cfg.vision.spatial_merge_size;
        let b = blocks(&cfg, &ids);
        assert_eq!(b.len(), grid[0]);
        assert!(b.iter().all(|&(_, n)| n == grid[1] * grid[2] / (m * m)));
        // Text (the timestamp's stand-in) between the blocks.
        assert!(b[1].0 > b[0].0 + b[0].1 + 2, "{b:?}");
    }

    #[test]
    fn qwen2_5_probe_writes_one_block() {
        let cfg = config("tiny_a");
        let (ids, _, grid, _) = probe(&cfg);
        let m = cfg.vision.spatial_merge_size;
        assert_eq!(
            blocks(&cfg, &ids),
            vec![(6, grid.iter().product::<usize>() / (m * m))]
        );
    }
}
