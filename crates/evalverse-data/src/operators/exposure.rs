//! Exposure, clipping and contrast.
//!
//! `exposure_ev` is the log2 ratio of the mean linear luminance (sRGB decoded, Rec. 709 weights)
//! to 18% grey: 0 for a frame that averages to mid grey, +1 for one stop brighter. It measures
//! the picture, not the camera: a night scene is legitimately negative, so the figure is only
//! comparable between renders of the same content (see docs/OPERATORS.md). Clipping is the share
//! of pixels at the ends of the code range, contrast the RMS of luma.

use super::{Analysed, Evidence};

/// sRGB transfer function inverse, value in [0, 1].
pub fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// `srgb_to_linear` through a 4096-entry table with linear interpolation (max error < 1e-5).
struct Linear(Vec<f32>);

impl Linear {
    fn new() -> Self {
        Linear(
            (0..=4096)
                .map(|i| srgb_to_linear(i as f32 / 4096.0))
                .collect(),
        )
    }
    fn get(&self, v: f32) -> f32 {
        let x = v.clamp(0.0, 1.0) * 4096.0;
        let i = (x as usize).min(4095);
        let t = x - i as f32;
        self.0[i] + (self.0[i + 1] - self.0[i]) * t
    }
}

/// Measurements: `exposure_ev` (EV relative to 18% grey), `luma_mean` (0-1), `highlights_clipped`
/// (% of pixels with luma >= 0.98), `shadows_crushed` (% with luma <= 0.02), `contrast_rms`
/// (std of luma within a frame, 0-1, averaged over frames).
pub fn measure(clip: &Analysed, ev: &mut Evidence) {
    let n = clip.frames.len() as f64;
    let table = Linear::new();
    let (mut lin, mut luma, mut hi, mut lo, mut rms) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for f in &clip.frames {
        let px = f.luma.len() as f64;
        let l: f64 = f
            .rgb
            .chunks_exact(3)
            .map(|p| {
                (0.2126 * table.get(p[0]) + 0.7152 * table.get(p[1]) + 0.0722 * table.get(p[2]))
                    as f64
            })
            .sum::<f64>()
            / px;
        let m = f.luma.iter().map(|&v| v as f64).sum::<f64>() / px;
        let var = f.luma.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / px;
        lin += l;
        luma += m;
        rms += var.sqrt();
        hi += f.luma.iter().filter(|&&v| v >= 0.98).count() as f64 / px;
        lo += f.luma.iter().filter(|&&v| v <= 0.02).count() as f64 / px;
    }
    ev.push(
        "exposure_ev",
        (lin / n).max(1e-6).log2() - 0.18f64.log2(),
        "EV",
    );
    ev.push("luma_mean", luma / n, "0-1");
    ev.push("highlights_clipped", 100.0 * hi / n, "%");
    ev.push("shadows_crushed", 100.0 * lo / n, "%");
    ev.push("contrast_rms", rms / n, "0-1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_table_matches_the_transfer_function() {
        let t = Linear::new();
        for i in 0..=1000 {
            let v = i as f32 / 1000.0;
            assert!((t.get(v) - srgb_to_linear(v)).abs() < 1e-5, "{v}");
        }
        // 18% grey is sRGB 0.4613.
        assert!((srgb_to_linear(0.4613) - 0.18).abs() < 1e-3);
    }
}
