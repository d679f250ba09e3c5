//! AdamW over the LoRA tensors only (Loshchilov & Hutter 2019, as torch.optim.AdamW: decoupled
//! weight decay p *= 1 - lr * wd, bias-corrected moments, eps added outside the square root),
//! global-norm gradient clipping over all trainable tensors (torch clip_grad_norm_), and the
//! learning-rate schedule (linear warmup, then cosine or linear decay to `min_lr_ratio`).
//! Training runs `AdamW` on the device's tensors; `AdamWState` (named host vectors, f64
//! arithmetic) is the reference it is tested against and the checkpoint format of both.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Optimizer settings from the recipe (defaults: torch.optim.AdamW's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// (beta1, beta2), default (0.9, 0.999).
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    /// Default 1e-8 (torch), not burn's 1e-5.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay, default 0.0 (LoRA recipes usually use 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the global L2 norm of all gradients to this (0 disables), default 1.0.
    #[serde(default = "default_clip")]
    pub grad_clip: f64,
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}
fn default_clip() -> f64 {
    1.0
}

impl AdamWConfig {
    pub fn check(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("optim.lr must be positive, got {}", self.lr));
        }
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return Err(format!("optim.betas must be in [0, 1), got ({b1}, {b2})"));
        }
        if !(self.eps > 0.0) || self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            return Err(
                "optim.eps must be positive; weight_decay and grad_clip non-negative".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    Cosine,
    Linear,
    Constant,
}

/// Learning-rate schedule from the recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// cosine | linear | constant (after warmup).
    pub decay: Decay,
    /// Steps of linear warmup from 0 to the peak lr.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Final lr as a fraction of the peak (default 0).
    #[serde(default)]
    pub min_lr_ratio: f64,
}

impl ScheduleConfig {
    /// Multiplier of the peak lr at optimizer step `step` (0-based) of `total`.
    /// Warmup: (step + 1) / warmup (as transformers' get_*_schedule_with_warmup at step + 1).
    pub fn factor(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let m = self.min_lr_ratio;
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => m + (1.0 - m) * (1.0 - progress),
            Decay::Cosine => m + (1.0 - m) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// AdamW moments per named tensor, and the step count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdamWState {
    pub step: u64,
    pub m: BTreeMap<String, Vec<f32>>,
    pub v: BTreeMap<String, Vec<f32>>,
}

/// Global L2 norm of the gradients.
pub fn global_norm(grads: &BTreeMap<String, Vec<f32>>) -> f64 {
    grads
        .values()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scale all gradients so their global norm is at most `max` (torch: coef = max / (norm + 1e-6),
/// applied when coef < 1). Returns the norm before clipping.
pub fn clip_global_norm(grads: &mut BTreeMap<String, Vec<f32>>, max: f64) -> f64 {
    let norm = global_norm(grads);
    if max > 0.0 {
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            grads
                .values_mut()
                .flat_map(|g| g.iter_mut())
                .for_each(|x| *x = (*x as f64 * coef) as f32);
        }
    }
    norm
}

impl AdamWState {
    /// One AdamW update of `params` in place with `grads` at learning rate `lr`.
    pub fn update(
        &mut self,
        cfg: &AdamWConfig,
        lr: f64,
        params: &mut BTreeMap<String, Vec<f32>>,
        grads: &BTreeMap<String, Vec<f32>>,
    ) {
        self.step += 1;
        let (b1, b2) = cfg.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        for (name, p) in params.iter_mut() {
            let Some(g) = grads.get(name) else { continue };
            let m = self
                .m
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; p.len()]);
            let v = self
                .v
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; p.len()]);
            for i in 0..p.len() {
                let gi = g[i] as f64;
                let mut pi = p[i] as f64;
                pi -= lr * cfg.weight_decay * pi;
                let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
                let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
                m[i] = mi as f32;
                v[i] = vi as f32;
                let denom = (vi / bc2).sqrt() + cfg.eps;
                pi -= lr * (mi / bc1) / denom;
                p[i] = pi as f32;
            }
        }
    }
}

/// Named trainable tensors (or their gradients) on the device.
pub type Tensors<B> = BTreeMap<String, Tensor<B, 2>>;

/// Global L2 norm of the gradients as a [1] tensor on their device (f32, as torch's
/// clip_grad_norm_). Empty: 0.
pub fn global_norm_device<B: Backend>(grads: &Tensors<B>, device: &B::Device) -> Tensor<B, 1> {
    let sq = grads
        .values()
        .map(|g| g.clone().powi_scalar(2).sum())
        .reduce(|a, b| a + b);
    sq.map_or_else(|| Tensor::zeros([1], device), Tensor::sqrt)
}

/// Clip as `clip_global_norm`, on the device: every gradient is multiplied by
/// min(1, max / (norm + 1e-6)) (torch's clamped coefficient; a factor of exactly 1 leaves a
/// gradient unchanged). `max = 0` disables clipping. Returns the norm before clipping, on the
/// device: nothing is read back here.
pub fn clip_global_norm_device<B: Backend>(
    grads: &mut Tensors<B>,
    max: f64,
    device: &B::Device,
) -> Tensor<B, 1> {
    let norm = global_norm_device(grads, device);
    if max > 0.0 {
        let coef = (norm.clone().add_scalar(1e-6).recip() * max)
            .clamp_max(1.0)
            .reshape([1, 1]);
        for g in grads.values_mut() {
            *g = g.clone() * coef.clone();
        }
    }
    norm
}

/// AdamW with its moments on the device (torch.optim.AdamW, foreach=False: per tensor
/// p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
/// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)), in f32 like torch. A tensor without a
/// gradient is left alone and gets no moments (as torch, whose state is created lazily).
#[derive(Debug, Clone)]
pub struct AdamW<B: Backend> {
    pub step: u64,
    pub m: Tensors<B>,
    pub v: Tensors<B>,
}

impl<B: Backend> Default for AdamW<B> {
    fn default() -> Self {
        AdamW {
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }
}

impl<B: Backend> AdamW<B> {
    /// One AdamW update of `params` with `grads` at learning rate `lr`.
    pub fn update(
        &mut self,
        cfg: &AdamWConfig,
        lr: f64,
        params: &mut Tensors<B>,
        grads: &Tensors<B>,
    ) {
        self.step += 1;
        let (b1, b2) = cfg.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        for (name, p) in params.iter_mut() {
            let Some(g) = grads.get(name) else { continue };
            let m = match self.m.remove(name) {
                Some(m) => m * b1 + g.clone() * (1.0 - b1),
                None => g.clone() * (1.0 - b1),
            };
            let g2 = g.clone().powi_scalar(2);
            let v = match self.v.remove(name) {
                Some(v) => v * b2 + g2 * (1.0 - b2),
                None => g2 * (1.0 - b2),
            };
            let decayed = if cfg.weight_decay > 0.0 {
                p.clone() * (1.0 - lr * cfg.weight_decay)
            } else {
                p.clone()
            };
            let denom = (v.clone().sqrt() / bc2_sqrt).add_scalar(cfg.eps);
            *p = decayed - m.clone() / denom * (lr / bc1);
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
    }

    /// The moments as host vectors (the checkpoint format, `checkpoint::save_optimizer`).
    pub fn to_host(&self) -> AdamWState {
        let host = |map: &Tensors<B>| -> BTreeMap<String, Vec<f32>> {
            map.iter()
                .map(|(k, t)| {
                    let v = t.clone().into_data().convert::<f32>().to_vec::<f32>();
                    (k.clone(), v.expect("f32 moments"))
                })
                .collect()
        };
        AdamWState {
            step: self.step,
            m: host(&self.m),
            v: host(&self.v),
        }
    }

    /// Moments read from a checkpoint, put on `device` in the shapes of the parameters they
    /// belong to. A moment of a tensor the run does not train, or of another size, is an error
    /// naming it.
    pub fn from_host(
        state: &AdamWState,
        shapes: &BTreeMap<String, [usize; 2]>,
        device: &B::Device,
    ) -> Result<Self, String> {
        let up = |map: &BTreeMap<String, Vec<f32>>| -> Result<Tensors<B>, String> {
            map.iter()
                .map(|(k, v)| {
                    let shape = shapes.get(k).ok_or_else(|| {
                        format!("optimizer state for '{k}', which is not trained")
                    })?;
                    if shape[0] * shape[1] != v.len() {
                        return Err(format!(
                            "optimizer state for '{k}' has {} values, the tensor {shape:?}",
                            v.len()
                        ));
                    }
                    let t = Tensor::from_data(
                        TensorData::new(v.clone(), *shape),
                        (device, burn::tensor::DType::F32),
                    );
                    Ok((k.clone(), t))
                })
                .collect()
        };
        Ok(AdamW {
            step: state.step,
            m: up(&state.m)?,
            v: up(&state.v)?,
        })
    }
}

/// Read a [1] tensor's value (the one host read per step: the gradient norm).
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdamWConfig {
        AdamWConfig {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 0.0,
        }
    }

    #[test]
    fn first_adamw_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        // Step 1: m_hat = g, v_hat = g^2 -> update = lr * g / (|g| + eps) ~= lr * sign(g).
        let mut p = BTreeMap::from([("w".to_string(), vec![1.0f32, -2.0])]);
        let g = BTreeMap::from([("w".to_string(), vec![0.5f32, -3.0])]);
        let mut s = AdamWState::default();
        s.update(&cfg(), 0.1, &mut p, &g);
        assert!(
            (p["w"][0] - 0.9).abs() < 1e-6 && (p["w"][1] + 1.9).abs() < 1e-6,
            "{:?}",
            p["w"]
        );
    }

    #[test]
    fn weight_decay_is_decoupled_from_the_gradient() {
        // Zero gradient: only decay acts: p = p - lr * wd * p = 1 - 0.1 * 0.5 = 0.95.
        let mut p = BTreeMap::from([("w".to_string(), vec![1.0f32])]);
        let g = BTreeMap::from([("w".to_string(), vec![0.0f32])]);
        let mut s = AdamWState::default();
        s.update(
            &AdamWConfig {
                weight_decay: 0.5,
                ..cfg()
            },
            0.1,
            &mut p,
            &g,
        );
        assert!((p["w"][0] - 0.95).abs() < 1e-6);
    }

    #[test]
    fn second_step_uses_bias_corrected_moments() {
        // g = 1 then 1: m = 0.19, v = 0.001999; m_hat = 0.19/0.19 = 1, v_hat = 0.001999/0.001999 = 1 -> step lr again.
        let mut p = BTreeMap::from([("w".to_string(), vec![0.0f32])]);
        let g = BTreeMap::from([("w".to_string(), vec![1.0f32])]);
        let mut s = AdamWState::default();
        s.update(&cfg(), 0.1, &mut p, &g);
        s.update(&cfg(), 0.1, &mut p, &g);
        assert!((p["w"][0] + 0.2).abs() < 1e-5, "{}", p["w"][0]);
        assert_eq!(s.step, 2);
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        // Norm of (3, 4) across two tensors is 5; clip to 1 -> (0.6, 0.8) up to torch's 1e-6.
        let mut g = BTreeMap::from([
            ("a".to_string(), vec![3.0f32]),
            ("b".to_string(), vec![4.0f32]),
        ]);
        let n = clip_global_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-12);
        assert!((g["a"][0] - 0.6).abs() < 1e-6 && (g["b"][0] - 0.8).abs() < 1e-6);
        let mut small = BTreeMap::from([("a".to_string(), vec![0.3f32])]);
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small["a"][0], 0.3);
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let s = ScheduleConfig {
            decay: Decay::Cosine,
            warmup_steps: 2,
            min_lr_ratio: 0.0,
        };
        assert_eq!(s.factor(0, 10), 0.5);
        assert_eq!(s.factor(1, 10), 1.0);
        assert!((s.factor(2, 10) - 1.0).abs() < 1e-12);
        // Halfway through the 8 decay steps: cos(pi/2) -> 0.5.
        assert!((s.factor(6, 10) - 0.5).abs() < 1e-12);
        let l = ScheduleConfig {
            decay: Decay::Linear,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
        };
        assert!((l.factor(5, 10) - 0.55).abs() < 1e-12);
    }

    type Dev = evalverse_model::Cpu;

    fn on_device(map: &BTreeMap<String, Vec<f32>>, shape: [usize; 2]) -> Tensors<Dev> {
        map.iter()
            .map(|(k, v)| {
                let t = Tensor::from_data(TensorData::new(v.clone(), shape), &Default::default());
                (k.clone(), t)
            })
            .collect()
    }

    fn host(t: &Tensor<Dev, 2>) -> Vec<f32> {
        t.clone().into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn device_adamw_follows_the_host_reference_with_decay_and_clipping() {
        // Gradients that change sign and size over 30 steps, two tensors, weight decay and a
        // clip that acts on some steps and not others: the device update stays within f32
        // rounding of the f64 host reference.
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            grad_clip: 1.0,
            ..cfg()
        };
        let mut hp = BTreeMap::from([
            ("a".to_string(), vec![0.5f32, -1.0, 2.0, 0.0]),
            ("b".to_string(), vec![1.5f32, 0.25, -0.75, 3.0]),
        ]);
        let mut dp = on_device(&hp, [2, 2]);
        let (mut hs, mut ds) = (AdamWState::default(), AdamW::<Dev>::default());
        for step in 0..30 {
            let x = step as f32;
            let mut hg = BTreeMap::from([
                (
                    "a".to_string(),
                    vec![(x * 0.7).sin(), 0.3 * x.cos(), 1e-4, -0.2],
                ),
                (
                    "b".to_string(),
                    vec![0.05 * x, -(x * 1.3).sin(), 0.9, 1e-3 * x],
                ),
            ]);
            let mut dg = on_device(&hg, [2, 2]);
            let hn = clip_global_norm(&mut hg, cfg.grad_clip);
            let dn = scalar(clip_global_norm_device(
                &mut dg,
                cfg.grad_clip,
                &Default::default(),
            ));
            assert!(
                (hn - dn).abs() <= 1e-6 * hn.max(1.0),
                "step {step}: norm {hn} vs {dn}"
            );
            let lr = 0.05 * (1.0 + step as f64).recip();
            hs.update(&cfg, lr, &mut hp, &hg);
            ds.update(&cfg, lr, &mut dp, &dg);
            for (k, v) in &hp {
                for (a, b) in v.iter().zip(host(&dp[k])) {
                    assert!(
                        (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                        "step {step} {k}: {a} vs {b}"
                    );
                }
            }
        }
        // The moments round-trip through the checkpoint format.
        let back = ds.to_host();
        assert_eq!(back.step, 30);
        for (k, v) in &hs.m {
            for (a, b) in v.iter().zip(&back.m[k]) {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1e-3),
                    "m {k}: {a} vs {b}"
                );
            }
        }
        let shapes = BTreeMap::from([("a".to_string(), [2, 2]), ("b".to_string(), [2, 2])]);
        let again = AdamW::<Dev>::from_host(&back, &shapes, &Default::default()).unwrap();
        assert_eq!(again.to_host(), back);
    }

    #[test]
    fn device_clipping_leaves_small_gradients_unchanged_and_scales_large_ones() {
        let mut g = on_device(
            &BTreeMap::from([("a".to_string(), vec![3.0f32, 4.0])]),
            [1, 2],
        );
        let n = scalar(clip_global_norm_device(&mut g, 1.0, &Default::default()));
        assert!((n - 5.0).abs() < 1e-6);
        let v = host(&g["a"]);
        assert!(
            (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
        let mut small = on_device(&BTreeMap::from([("a".to_string(), vec![0.3f32])]), [1, 1]);
        clip_global_norm_device(&mut small, 1.0, &Default::default());
        assert_eq!(host(&small["a"]), vec![0.3]);
    }

    #[test]
    fn a_tensor_without_a_gradient_is_not_touched_by_the_device_optimizer() {
        let mut p = on_device(
            &BTreeMap::from([
                ("a".to_string(), vec![1.0f32]),
                ("b".to_string(), vec![2.0f32]),
            ]),
            [1, 1],
        );
        let g = on_device(&BTreeMap::from([("a".to_string(), vec![0.5f32])]), [1, 1]);
        let mut s = AdamW::<Dev>::default();
        s.update(
            &AdamWConfig {
                weight_decay: 0.5,
                ..cfg()
            },
            0.1,
            &mut p,
            &g,
        );
        assert_eq!(host(&p["b"]), vec![2.0]);
        assert!(!s.m.contains_key("b") && s.m.contains_key("a"));
        // Moments of a tensor the run does not train are refused on load.
        let shapes = BTreeMap::from([("b".to_string(), [1, 1])]);
        let e = AdamW::<Dev>::from_host(&s.to_host(), &shapes, &Default::default()).unwrap_err();
        assert!(e.contains("'a'"), "{e}");
    }
}
