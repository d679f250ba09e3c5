//! Sharpness / focus, on a few frames at up to 320 px (the 160 px analysis frames have lost the
//! detail that blur removes).
//!
//! Two contrast-normalised focus measures (Tenengrad family): `edge_strength`, the RMS luma
//! gradient divided by the mean luma (% per px), and `detail_freq`, the ratio of RMS Laplacian to
//! RMS gradient, which for a pattern of spatial frequency w (radians per px) is about w: blur
//! removes high frequencies first and lowers it, whatever the contrast or brightness.
//! Failure cases: sensor noise, grain and compression blocking raise both (a noisy soft image
//! reads sharp); flat content (sky, fog) reads soft however well focused.

use super::{Analysed, Evidence};

/// Focus measures of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detail {
    pub grad_rms: f64,
    pub lap_rms: f64,
    pub mean: f64,
}

pub fn measure_frame(luma: &[f32], w: usize, h: usize) -> Detail {
    let (mut g, mut l, mut n) = (0f64, 0f64, 0usize);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w - 1 {
            let i = y * w + x;
            let c = luma[i];
            let gx = 0.5 * (luma[i + 1] - luma[i - 1]);
            let gy = 0.5 * (luma[i + w] - luma[i - w]);
            let lap = luma[i + 1] + luma[i - 1] + luma[i + w] + luma[i - w] - 4.0 * c;
            g += (gx * gx + gy * gy) as f64;
            l += (lap * lap) as f64;
            n += 1;
        }
    }
    let mean = luma.iter().map(|&v| v as f64).sum::<f64>() / luma.len().max(1) as f64;
    let n = n.max(1) as f64;
    Detail {
        grad_rms: (g / n).sqrt(),
        lap_rms: (l / n).sqrt(),
        mean,
    }
}

/// Measurements: `edge_strength` (% of mean luma per px), `detail_freq` (rad/px).
pub fn measure(clip: &Analysed, ev: &mut Evidence) {
    if clip.detail.is_empty() {
        return;
    }
    let n = clip.detail.len() as f64;
    let edge = clip
        .detail
        .iter()
        .map(|d| 100.0 * d.grad_rms / d.mean.max(1e-3))
        .sum::<f64>()
        / n;
    let freq = clip
        .detail
        .iter()
        .map(|d| d.lap_rms / d.grad_rms.max(1e-9))
        .sum::<f64>()
        / n;
    ev.push("edge_strength", edge, "%/px");
    ev.push("detail_freq", freq, "rad/px");
}
