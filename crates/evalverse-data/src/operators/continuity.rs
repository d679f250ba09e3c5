//! Colour / identity continuity across shots, and colour drift within the clip.
//!
//! Feature: the hue histogram of saturated pixels (`hue_histogram`), averaged over the frames of
//! a segment. `shot_similarity` is the overlap of the hues present in adjacent shots
//! (`presence_overlap`; the lowest over the cuts, 1 = the same colours present), emitted for
//! clips with two or more shots: which colours appear, not how much of the frame they fill, so
//! re-framing (wide to close) does not read as a break. `colour_drift` is 1 - the same overlap
//! between the first and the last fifth of the longest shot (0 = stable: no hue appeared or
//! vanished). Failure cases: a legitimate change of setting or lighting at a cut reads as
//! broken continuity; colour carries identity only while the subject's colours differ from the
//! background's (costume, hair); a colour that fills less than about 1% of the saturated pixels
//! counts only in proportion, so a small prop changing colour is barely seen.

use super::{Analysed, Evidence};

/// Hue bins of the continuity feature.
const HUE_BINS: usize = 24;
/// Share of the saturated pixels above which a hue counts as fully present (`presence_overlap`).
const PRESENCE_CAP: f64 = 0.02;

/// Overlap of the hues present in two hue histograms: each histogram is smoothed over adjacent
/// bins (1/4, 1/2, 1/4, so a hue near a bin edge does not flicker between bins) and every bin is
/// capped at `PRESENCE_CAP`; the overlap is sum(min) / sum(max) of the capped bins (1 = the same
/// hues present, 0 = none shared). Unlike the L1 distance of the raw histograms, it does not
/// change when a re-framed shot changes how much of the frame a colour fills, only when a colour
/// appears or disappears.
pub fn presence_overlap(a: &[f64], b: &[f64]) -> f64 {
    let capped = |h: &[f64]| -> Vec<f64> {
        let n = h.len();
        (0..n)
            .map(|i| {
                (0.5 * h[i] + 0.25 * h[(i + n - 1) % n] + 0.25 * h[(i + 1) % n]).min(PRESENCE_CAP)
            })
            .collect()
    };
    let (a, b) = (capped(a), capped(b));
    let (lo, hi) = a
        .iter()
        .zip(&b)
        .fold((0.0, 0.0), |s, (x, y)| (s.0 + x.min(*y), s.1 + x.max(*y)));
    if hi > 0.0 {
        lo / hi
    } else {
        1.0
    }
}

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
                (Some(a), Some(b)) => Some(presence_overlap(a, b)),
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
                ev.push("colour_drift", 1.0 - presence_overlap(&a, &b), "0-1");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::shots::histogram_distance;
    use super::*;

    #[test]
    fn presence_overlap_sees_colours_change_not_their_amount() {
        let mut a = vec![0.0; HUE_BINS];
        a[4] = 0.8; // background
        a[14] = 0.2; // costume
                     // Re-framed: the costume fills three times as much of the frame.
        let mut closer = a.clone();
        closer[4] = 0.4;
        closer[14] = 0.6;
        // Continuity break: the costume's hue moved by 5 bins (75 degrees).
        let mut broken = a.clone();
        broken[14] = 0.0;
        broken[19] = 0.2;
        assert!((presence_overlap(&a, &closer) - 1.0).abs() < 1e-12);
        assert!(
            presence_overlap(&a, &broken) < 0.4,
            "{}",
            presence_overlap(&a, &broken)
        );
        // The L1 distance says the opposite: re-framing looks like the bigger change.
        assert!(histogram_distance(&a, &closer) > histogram_distance(&a, &broken));
        assert_eq!(presence_overlap(&[0.0; 4], &[0.0; 4]), 1.0);
    }
}
