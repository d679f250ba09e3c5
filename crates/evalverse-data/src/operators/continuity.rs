//! Colour / identity continuity across shots, and colour drift within the clip.
//!
//! Feature: the hue histogram of saturated pixels (`hue_histogram`), averaged over the frames of
//! a segment; distances are half the L1 distance (0 same, up to 1). `shot_similarity` is 1 - the histogram distance between adjacent
//! shots (the lowest over the cuts, 1 = same colours), emitted for clips with two or more shots.
//! `colour_drift` is the histogram distance between the first and the last fifth of the longest
//! shot (0 = stable). Failure cases: a legitimate change of setting or lighting at a cut reads as
//! broken continuity; colour carries identity only while the subject's colours differ from the
//! background's (costume, hair), and a re-framed shot (wide to close) changes how much of the
//! frame they fill, which lowers similarity without any break.

use super::shots::histogram_distance;

/// Hue bins of the continuity feature.
const HUE_BINS: usize = 24;

/// Hue histogram of the saturated pixels (HSV saturation >= 0.35), weighted by saturation and
/// normalised to sum to one (so re-framing that changes how much of the frame a subject fills
/// changes it less): the colours that carry identity (costume, hair, props) against a muted
/// background, invariant to brightness.
pub fn hue_histogram(rgb: &[f32]) -> Vec<f64> {
    let mut h = vec![0f64; HUE_BINS];
    let n = (rgb.len() / 3).max(1) as f64;
    for p in rgb.chunks_exact(3) {
        let (r, g, b) = (p[0] as f64, p[1] as f64, p[2] as f64);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        if max < 0.05 {
            continue;
        }
        let sat = (max - min) / max;
        if sat < 0.35 {
            continue;
        }
        let d = max - min;
        let hue = if max == r {
            ((g - b) / d).rem_euclid(6.0)
        } else if max == g {
            (b - r) / d + 2.0
        } else {
            (r - g) / d + 4.0
        } / 6.0;
        h[((hue * HUE_BINS as f64) as usize).min(HUE_BINS - 1)] += sat / n;
    }
    let total: f64 = h.iter().sum();
    if total > 0.0 {
        h.iter_mut().for_each(|v| *v /= total);
    }
    h
}
use super::{Analysed, Evidence};

fn mean_histogram(clip: &Analysed, range: std::ops::Range<usize>) -> Option<Vec<f64>> {
    if range.is_empty() {
        return None;
    }
    let mut acc = vec![0.0; HUE_BINS];
    for f in &clip.frames[range.clone()] {
        for (a, v) in acc.iter_mut().zip(hue_histogram(&f.rgb)) {
            *a += v;
        }
    }
    let n = range.len() as f64;
    Some(acc.into_iter().map(|v| v / n).collect())
}

pub fn measure(clip: &Analysed, cuts: &[usize], ev: &mut Evidence) {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(clip.frames.len());
    let segments: Vec<std::ops::Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
    if segments.len() >= 2 {
        let hists: Vec<Option<Vec<f64>>> = segments
            .iter()
            .map(|r| mean_histogram(clip, r.clone()))
            .collect();
        let sims: Vec<f64> = hists
            .windows(2)
            .filter_map(|w| match (&w[0], &w[1]) {
                (Some(a), Some(b)) => Some(1.0 - histogram_distance(a, b)),
                _ => None,
            })
            .collect();
        if let Some(min) = sims.iter().copied().reduce(f64::min) {
            ev.push("shot_similarity", min, "0-1");
        }
    }
    if let Some(longest) = segments.iter().max_by_key(|r| r.len()) {
        let fifth = longest.len() / 5;
        if fifth >= 1 {
            let a = mean_histogram(clip, longest.start..longest.start + fifth);
            let b = mean_histogram(clip, longest.end - fifth..longest.end);
            if let (Some(a), Some(b)) = (a, b) {
                ev.push("colour_drift", histogram_distance(&a, &b), "0-1");
            }
        }
    }
}
