//! AdamW over the LoRA tensors only (Loshchilov & Hutter 2019, as torch.optim.AdamW: decoupled
//! weight decay p -= lr * wd * p, bias-corrected moments, eps added outside the square root),
//! global-norm gradient clipping over all trainable tensors (torch clip_grad_norm_), and the
//! learning-rate schedule (linear warmup, then cosine or linear decay to `min_lr_ratio`).
//! The state is a map of named f32 vectors, saved in checkpoints and restored exactly.

use std::collections::BTreeMap;

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
}
