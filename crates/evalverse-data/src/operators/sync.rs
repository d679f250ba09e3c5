//! Audio-visual sync offset by onset cross-correlation.
//!
//! Visual onsets: per analysed frame, the summed transient brightening (per pixel the smaller of
//! the rises against the previous and the next frame, on luma normalised to mean 0.5, above 0.2, so
//! flicker and small motion drop out), kept where it stands above 3 times its median (flashes,
//! sparks, sudden appearances); frames at cuts are zeroed. Both onset trains are divided by their
//! maximum and squared, so the clearest event dominates. Audio onsets: the RMS envelope of the first-differenced signal (which favours
//! broadband transients such as clicks and impacts over voice and ambience) in 4 ms hops, minus
//! its running median over 100 ms, clipped at 0. The offset is the lag in ±600 ms that maximises
//! the correlation of the visual onset train with the audio onsets (each visual onset takes the
//! largest audio onset within half a frame of its time plus the lag, because a visual event is
//! only known to the frame); positive means the sound comes late.
//! `sync_confidence` is the best correlation over the mean over all lags; the offset is reported
//! only when it is at least `MIN_CONFIDENCE` and a visual onset exists.
//! Failure cases: no visible sound-making event (dialogue without a visible transient: lip sync
//! would need a mouth tracker); a flash in a clipped (over-exposed) area is invisible; periodic
//! events (footsteps, drums) alias at their period.

use super::{Analysed, Evidence};
use crate::media::AUDIO_RATE;

pub const MIN_CONFIDENCE: f64 = 3.0;
const MAX_LAG_S: f64 = 0.6;
const HOP: usize = 64; // 4 ms at 16 kHz

/// Visual onset strength per analysed frame.
pub fn visual_onsets(clip: &Analysed, cuts: &[usize]) -> Vec<f64> {
    let norm = |l: &[f32]| {
        let m = l.iter().map(|&v| v as f64).sum::<f64>() / l.len().max(1) as f64;
        let k = if m > 1e-3 { 0.5 / m } else { 0.0 };
        l.iter().map(|&v| v as f64 * k).collect::<Vec<f64>>()
    };
    let norms: Vec<Vec<f64>> = clip.frames.iter().map(|f| norm(&f.luma)).collect();
    let n = norms.len();
    // A flash is a brightening that reverts: per pixel, the smaller of the rises against the
    // previous and the next frame (the last frame compares with the previous one only).
    let mut v: Vec<f64> = (0..n)
        .map(|k| {
            if k == 0 || cuts.contains(&k) || cuts.contains(&(k + 1)) {
                return 0.0;
            }
            let next = if k + 1 < n {
                &norms[k + 1]
            } else {
                &norms[k - 1]
            };
            norms[k]
                .iter()
                .zip(&norms[k - 1])
                .zip(next)
                .map(|((c, p), q)| ((c - p).min(c - q) - 0.2).max(0.0))
                .sum::<f64>()
                / norms[k].len() as f64
        })
        .collect();
    let med = super::median(&v).unwrap_or(0.0);
    v.iter_mut()
        .for_each(|s| *s = if *s > 3.0 * med && *s > 1e-4 { *s } else { 0.0 });
    let top = v.iter().copied().fold(0.0, f64::max);
    if top > 0.0 {
        // Squared against the strongest, so the clearest event dominates the correlation.
        v.iter_mut().for_each(|s| *s = (*s / top).powi(2));
    }
    v
}

/// Audio onset function at `HOP` resolution.
pub fn audio_onsets(x: &[f32]) -> Vec<f64> {
    let env: Vec<f64> = x
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect::<Vec<f32>>()
        .chunks(HOP)
        .map(|c| (c.iter().map(|&v| (v * v) as f64).sum::<f64>() / c.len() as f64).sqrt())
        .collect();
    let half = 12; // ±48 ms
    (0..env.len())
        .map(|m| {
            let lo = m.saturating_sub(half);
            let hi = (m + half + 1).min(env.len());
            let med = super::median(&env[lo..hi]).unwrap_or(0.0);
            (env[m] - med).max(0.0)
        })
        .collect()
}

/// (offset in seconds, confidence), None when there is no visual onset or no audio.
pub fn estimate(clip: &Analysed, cuts: &[usize]) -> Option<(f64, f64)> {
    let x = clip.audio.as_deref()?;
    let v = visual_onsets(clip, cuts);
    if v.iter().all(|&s| s == 0.0) {
        return None;
    }
    let mut a = audio_onsets(x);
    let top = a.iter().copied().fold(0.0, f64::max);
    if top > 0.0 {
        a.iter_mut().for_each(|s| *s = (*s / top).powi(2));
    }
    let hop_s = HOP as f64 / AUDIO_RATE as f64;
    let half_frame = 0.5 * clip.frame_step_s;
    let max_lag = (MAX_LAG_S / hop_s).round() as i64;
    let scores: Vec<(f64, f64)> = (-max_lag..=max_lag)
        .map(|l| {
            let lag = l as f64 * hop_s;
            let c: f64 = clip
                .frames
                .iter()
                .zip(&v)
                .filter(|(_, &s)| s > 0.0)
                .map(|(f, &s)| {
                    let t = f.time_s + lag;
                    let lo = ((t - half_frame) / hop_s).ceil().max(0.0) as usize;
                    let hi = (((t + half_frame) / hop_s).floor().max(-1.0) + 1.0) as usize;
                    let hi = hi.min(a.len());
                    let best = if lo < hi {
                        a[lo..hi].iter().copied().fold(0.0, f64::max)
                    } else {
                        0.0
                    };
                    s * best
                })
                .sum();
            (lag, c)
        })
        .collect();
    let best = scores.iter().map(|s| s.1).fold(0.0, f64::max);
    let mean = scores.iter().map(|s| s.1).sum::<f64>() / scores.len() as f64;
    if best <= 0.0 {
        return None;
    }
    // The correlation is flat over the one-frame window; take the middle of the plateau around
    // the best lag.
    let at = scores
        .iter()
        .position(|s| s.1 == best)
        .expect("best is one of the scores");
    let (mut lo, mut hi) = (at, at);
    while lo > 0 && scores[lo - 1].1 >= 0.98 * best {
        lo -= 1;
    }
    while hi + 1 < scores.len() && scores[hi + 1].1 >= 0.98 * best {
        hi += 1;
    }
    let lag = 0.5 * (scores[lo].0 + scores[hi].0);
    Some((lag, best / mean.max(1e-12)))
}

/// Measurements: `sync_confidence` (ratio) and, when confident, `sync_offset` (ms, + = sound late).
pub fn measure(clip: &Analysed, cuts: &[usize], ev: &mut Evidence) {
    if let Some((lag, conf)) = estimate(clip, cuts) {
        ev.push("sync_confidence", conf, "ratio");
        if conf >= MIN_CONFIDENCE {
            ev.push("sync_offset", 1000.0 * lag, "ms");
        }
    }
}
