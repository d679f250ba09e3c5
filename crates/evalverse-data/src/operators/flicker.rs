//! Flicker: frame-to-frame fluctuation of overall brightness that is not a smooth change.
//!
//! For each analysed frame the mean luma m_t; the residual e_t = m_t - (m_{t-1} + m_{t+1}) / 2
//! relative to m_t is zero for constant or linearly changing brightness (fades, a light build-up)
//! and, for i.i.d. per-frame gain noise of standard deviation s, has standard deviation
//! s * sqrt(1.5). `flicker` is the robust (median absolute deviation) estimate of s, in %; triples
//! that straddle a cut are skipped, and the median ignores a single flash.
//! Failure cases: strobing or flashing content that is part of the scene (lightning, club lights
//! in most frames) reads as flicker; flicker slower than about a third of the frame rate is
//! mostly taken for a smooth change.

use super::{Analysed, Evidence};

pub fn measure(clip: &Analysed, cuts: &[usize], ev: &mut Evidence) {
    let means: Vec<f64> = clip
        .frames
        .iter()
        .map(|f| f.luma.iter().map(|&v| v as f64).sum::<f64>() / f.luma.len().max(1) as f64)
        .collect();
    let mut dev = Vec::new();
    for t in 1..means.len().saturating_sub(1) {
        if cuts.contains(&t) || cuts.contains(&(t + 1)) || means[t] < 1e-3 {
            continue;
        }
        dev.push(((means[t] - 0.5 * (means[t - 1] + means[t + 1])) / means[t]).abs());
    }
    if let Some(mad) = super::median(&dev) {
        ev.push("flicker", 100.0 * 1.4826 * mad / 1.5f64.sqrt(), "%");
    }
}
