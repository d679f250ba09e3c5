//! The reward head: a linear map from the decoder's final hidden states to one scalar per
//! taxonomy dimension (VideoAlign's `rm_head = Linear(hidden, output_dim)`, one output per
//! dimension). Its features are the final normed hidden states averaged over the vision
//! placeholder positions, then the hidden state at the last prompt position (the question and
//! any operator evidence reach the head through it): [mean_video(h), h_last], 2 x hidden wide.
//! (Adding their spread over the video positions measured no better: held-out SRCC 0.21 vs 0.26.)
//! They are standardised with per-feature statistics measured on the train split before
//! training (kept in the config).
//!
//! Bradley-Terry calibration trains it with LoRA (recipe `stage.strategy.readout = "head"`);
//! afterwards a per-dimension affine map, fitted by least squares on the train split, puts the
//! raw scalar on the taxonomy scale, so MAE and hard scores mean what they mean for token scores
//! (VideoAlign normalises its rewards by a mean and std kept beside the model, the same idea).
//!
//! On disk, beside the adapter: `reward_head.safetensors` (`weight` [dimensions, 2 x hidden],
//! `bias` [dimensions], f32) and `reward_head.json` (dimension order, hidden size, calibration).

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::model::{Batch, QwenVl};
use crate::ops::ModelBackend;

pub const WEIGHTS: &str = "reward_head.safetensors";
pub const CONFIG: &str = "reward_head.json";
/// The one feature layout written so far.
pub const FEATURES: &str = "video_mean+last";
/// Hidden-size blocks in a feature row (mean, last).
pub const FEATURE_BLOCKS: usize = 2;

/// Raw scalar -> scale: `scale * raw + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub scale: f64,
    pub offset: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Dimension ids, in the order of the weight rows.
    pub dimensions: Vec<String>,
    pub hidden_size: usize,
    pub features: String,
    /// One per dimension; identity until fitted.
    pub calibration: Vec<Calibration>,
    /// Per-feature mean and standard deviation (2 x hidden each) the features are standardised
    /// with before the linear map, measured on the train split with the starting policy: the
    /// video-mean features of different clips differ by a small fraction of their common
    /// value, so unstandardised a zero-initialised head moves its scalars very slowly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<Standardize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standardize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardize {
    /// Mean and standard deviation of feature rows (`width` wide, row-major); a feature that
    /// does not vary gets std 1.
    pub fn fit(rows: &[f32], width: usize) -> Self {
        let n = (rows.len() / width.max(1)).max(1) as f64;
        let mut mean = vec![0f64; width];
        for r in rows.chunks_exact(width) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += *v as f64 / n;
            }
        }
        let mut var = vec![0f64; width];
        for r in rows.chunks_exact(width) {
            for ((s, v), m) in var.iter_mut().zip(r).zip(&mean) {
                *s += (*v as f64 - m).powi(2) / n;
            }
        }
        Standardize {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: var
                .iter()
                .map(|&v| {
                    if v.sqrt() > 1e-6 {
                        v.sqrt() as f32
                    } else {
                        1.0
                    }
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RewardHead {
    pub config: HeadConfig,
    /// [dimensions, 2 x hidden], row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl RewardHead {
    /// A zero head (every scalar 0: Bradley-Terry starts from ties) with identity calibration.
    pub fn zeros(dimensions: Vec<String>, hidden_size: usize) -> Self {
        let n = dimensions.len();
        RewardHead {
            config: HeadConfig {
                calibration: vec![
                    Calibration {
                        scale: 1.0,
                        offset: 0.0
                    };
                    n
                ],
                dimensions,
                hidden_size,
                features: FEATURES.into(),
                standardize: None,
            },
            weight: vec![0.0; n * FEATURE_BLOCKS * hidden_size],
            bias: vec![0.0; n],
        }
    }

    pub fn feature_len(&self) -> usize {
        FEATURE_BLOCKS * self.config.hidden_size
    }

    pub fn index(&self, dimension: &str) -> Option<usize> {
        self.config.dimensions.iter().position(|d| d == dimension)
    }

    /// The raw scalar put on the scale by the fitted calibration.
    pub fn calibrated(&self, index: usize, raw: f64) -> f64 {
        let c = self.config.calibration[index];
        c.scale * raw + c.offset
    }

    /// Raw scalars of feature rows [n, 2 x hidden] (host values) for the given dimension rows.
    pub fn raw_host(&self, features: &[f32], rows: &[usize]) -> Vec<f64> {
        let w = self.feature_len();
        rows.iter()
            .enumerate()
            .map(|(i, &d)| {
                let f = &features[i * w..(i + 1) * w];
                let row = &self.weight[d * w..(d + 1) * w];
                self.bias[d] as f64
                    + f.iter()
                        .zip(row)
                        .enumerate()
                        .map(|(j, (a, b))| {
                            let x = match &self.config.standardize {
                                Some(z) => (*a as f64 - z.mean[j] as f64) / z.std[j] as f64,
                                None => *a as f64,
                            };
                            x * *b as f64
                        })
                        .sum::<f64>()
            })
            .collect()
    }

    /// Feature rows [n, 2 x hidden] standardised as the head was trained (unchanged without
    /// `standardize`); differentiable.
    pub fn standardized<B: Backend>(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.config.standardize {
            Some(z) => {
                let device = features.device();
                let w = z.mean.len();
                let row = |v: &[f32]| {
                    Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [1, w]), &device)
                };
                (features - row(&z.mean)) / row(&z.std)
            }
            None => features,
        }
    }

    /// Write both files into `dir` (created), atomically each.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let n = self.config.dimensions.len();
        let w: Vec<u8> = self.weight.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = self.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        fn view(shape: Vec<usize>, bytes: &[u8]) -> Result<safetensors::tensor::TensorView<'_>> {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, bytes)
                .map_err(|e| ModelError::Invalid(e.to_string()))
        }
        let views = vec![
            ("bias".to_string(), view(vec![n], &b)?),
            ("weight".to_string(), view(vec![n, self.feature_len()], &w)?),
        ];
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize(views, &Some(meta))
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        crate::lora::write_atomic(&dir.join(WEIGHTS), &bytes)?;
        let json = serde_json::to_string_pretty(&self.config).expect("json");
        crate::lora::write_atomic(&dir.join(CONFIG), json.as_bytes())
    }

    /// The head saved in `dir`, or None when the folder has none (an adapter of token scores).
    /// Errors name the file: one of the two files missing, bad JSON, shapes that disagree with
    /// the config, a non-finite weight.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let (wp, cp) = (dir.join(WEIGHTS), dir.join(CONFIG));
        match (wp.is_file(), cp.is_file()) {
            (false, false) => return Ok(None),
            (true, false) => {
                return Err(ModelError::config(
                    &cp,
                    format!("missing: {} needs it", wp.display()),
                ))
            }
            (false, true) => {
                return Err(ModelError::config(
                    &wp,
                    format!("missing: {} names it", cp.display()),
                ))
            }
            _ => {}
        }
        let text = std::fs::read_to_string(&cp).map_err(|e| ModelError::io(&cp, e))?;
        let config: HeadConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(&cp, format!("not a reward head config: {e}")))?;
        if config.features != FEATURES {
            return Err(ModelError::config(
                &cp,
                format!(
                    "features \"{}\" unknown (this build reads \"{FEATURES}\")",
                    config.features
                ),
            ));
        }
        let n = config.dimensions.len();
        if let Some(z) = &config.standardize {
            let w = FEATURE_BLOCKS * config.hidden_size;
            if z.mean.len() != w || z.std.len() != w || z.std.iter().any(|s| !(*s > 0.0)) {
                return Err(ModelError::config(
                    &cp,
                    format!("standardize needs {w} means and {w} positive deviations"),
                ));
            }
        }
        if config.calibration.len() != n {
            return Err(ModelError::config(
                &cp,
                format!(
                    "{} calibrations for {n} dimensions",
                    config.calibration.len()
                ),
            ));
        }
        let bytes = std::fs::read(&wp).map_err(|e| ModelError::io(&wp, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::config(&wp, format!("not safetensors: {e}")))?;
        let read = |name: &str, shape: Vec<usize>| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| ModelError::config(&wp, format!("no tensor '{name}'")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(ModelError::config(
                    &wp,
                    format!(
                        "'{name}' is {:?} {:?}, expected F32 {shape:?} ({n} dimensions x hidden {})",
                        t.dtype(),
                        t.shape(),
                        config.hidden_size
                    ),
                ));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(ModelError::config(
                    &wp,
                    format!("'{name}' element {i} is not finite"),
                ));
            }
            Ok(v)
        };
        let weight = read("weight", vec![n, FEATURE_BLOCKS * config.hidden_size])?;
        let bias = read("bias", vec![n])?;
        Ok(Some(RewardHead {
            config,
            weight,
            bias,
        }))
    }
}

/// Head features [batch, 2 x hidden]: the final hidden states `h` [batch, len, hidden] of `batch`
/// averaged over each row's vision placeholder positions, then the row's last position (rows are
/// left-padded, so that is the last prompt token). A row without vision tokens gets zeros for
/// the average.
pub fn features<B: ModelBackend>(
    model: &QwenVl<B>,
    batch: &Batch<B>,
    h: Tensor<B, 3>,
) -> Tensor<B, 2> {
    let [b, l, d] = h.dims();
    let device = h.device();
    let cfg = &model.cfg;
    let mut pool = vec![0.0f32; b * b * l];
    for (i, (ids, mask)) in batch.ids.iter().zip(&batch.mask).enumerate() {
        let at: Vec<usize> = (0..l)
            .filter(|&t| mask[t] && (ids[t] == cfg.video_token_id || ids[t] == cfg.image_token_id))
            .collect();
        for &t in &at {
            pool[i * b * l + i * l + t] = 1.0 / at.len() as f32;
        }
    }
    // The head computes in f32 whatever the base's dtype (its weights are f32).
    let flat = h.reshape([b * l, d]).cast(DType::F32);
    let pool = Tensor::<B, 2>::from_data(TensorData::new(pool, [b, b * l]), (&device, DType::F32));
    let mean = pool.matmul(flat.clone());
    let last = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..b).map(|i| (i * l + l - 1) as i64).collect::<Vec<_>>(),
            [b],
        ),
        &device,
    );
    Tensor::cat(vec![mean, flat.select(0, last)], 1)
}

/// Raw scalars [n] of feature rows [n, 2 x hidden] with weight [dimensions, 2 x hidden] and bias
/// [dimensions], row i read at dimension `rows[i]` (differentiable in all three).
pub fn raw<B: ModelBackend>(
    features: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    rows: &[usize],
) -> Tensor<B, 1> {
    let [n, _] = features.dims();
    let k = weight.dims()[0];
    let all = features.matmul(weight.transpose()) + bias.unsqueeze_dim::<2>(0); // [n, k]
    let idx = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            rows.iter()
                .enumerate()
                .map(|(i, &r)| (i * k + r) as i64)
                .collect::<Vec<_>>(),
            [n],
        ),
        &all.device(),
    );
    all.reshape([n * k]).select(0, idx)
}

/// Least-squares `scale, offset` with `target ~ scale * raw + offset`; a constant `raw` gets
/// scale 0 and the target mean.
pub fn fit_calibration(raw: &[f64], target: &[f64]) -> Calibration {
    let n = raw.len().min(target.len());
    if n == 0 {
        return Calibration {
            scale: 1.0,
            offset: 0.0,
        };
    }
    let mx = raw[..n].iter().sum::<f64>() / n as f64;
    let my = target[..n].iter().sum::<f64>() / n as f64;
    let sxx: f64 = raw[..n].iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = raw[..n]
        .iter()
        .zip(&target[..n])
        .map(|(x, y)| (x - mx) * (y - my))
        .sum();
    let scale = if sxx > 1e-12 { sxy / sxx } else { 0.0 };
    Calibration {
        scale,
        offset: my - scale * mx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_is_least_squares_and_constant_raw_gives_the_mean() {
        let c = fit_calibration(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]);
        assert!((c.scale - 2.0).abs() < 1e-12 && (c.offset - 1.0).abs() < 1e-12);
        let c = fit_calibration(&[0.5, 0.5], &[2.0, 4.0]);
        assert_eq!((c.scale, c.offset), (0.0, 3.0));
    }

    #[test]
    fn saved_head_loads_back_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("evalverse-head-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(RewardHead::load(&dir).unwrap(), None);
        let mut h = RewardHead::zeros(vec!["lens".into(), "scene".into()], 3);
        h.weight[7] = 0.5;
        h.bias[1] = -1.25;
        h.config.calibration[1] = Calibration {
            scale: 2.0,
            offset: 3.0,
        };
        h.save(&dir).unwrap();
        assert_eq!(RewardHead::load(&dir).unwrap(), Some(h.clone()));
        let mut z = h.clone();
        z.config.standardize = Some(Standardize::fit(
            &[1.0, 2.0, 5.0, 0.0, 0.0, 0.0, 3.0, 2.0, 5.0, 0.0, 0.0, 0.0],
            6,
        ));
        let st = z.config.standardize.clone().unwrap();
        assert_eq!((st.mean[0], st.std[0], st.std[2]), (2.0, 1.0, 1.0));
        // feature 1 is constant 2 -> (2 - 2) / 1 = 0: only the bias is left
        assert_eq!(
            z.raw_host(&[0.0, 2.0, 0.0, 0.0, 0.0, 0.0], &[1]),
            vec![-1.25]
        );
        // scene row: bias -1.25 + 0.5 * feature 1 (element 7 = row 1, column 1)
        assert_eq!(
            h.raw_host(&[0.0, 2.0, 0.0, 0.0, 0.0, 0.0], &[1]),
            vec![-0.25]
        );
        assert_eq!(h.calibrated(1, -0.25), 2.5);
        std::fs::remove_file(dir.join(CONFIG)).unwrap();
        let e = RewardHead::load(&dir).unwrap_err().to_string();
        assert!(e.contains(CONFIG), "{e}");
        let mut c = h.config.clone();
        c.hidden_size = 4;
        std::fs::write(dir.join(CONFIG), serde_json::to_string(&c).unwrap()).unwrap();
        let e = RewardHead::load(&dir).unwrap_err().to_string();
        assert!(e.contains(WEIGHTS) && e.contains("'weight'"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
