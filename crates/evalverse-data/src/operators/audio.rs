//! Audio presence, loudness, noise floor and speech, on mono 16 kHz samples.
//!
//! `loudness` is the gated mean power of 400 ms blocks (100 ms hop) in dBFS, gated as ITU-R
//! BS.1770 does (absolute -70 dBFS, then relative -10 dB) but without its K-weighting filter, so it
//! reads a little below LUFS for bass-heavy material. `noise_floor` is the 10th percentile of
//! 50 ms block levels (dBFS): the level the track never drops below, ambience or hiss.
//! `hiss` is the same percentile of the first-differenced signal divided by sqrt(2), the level of
//! white noise that would give it: first differencing suppresses low-frequency ambience and hum,
//! so it follows broadband hiss. `speech_ratio` is the share of 32 ms frames that are both loud
//! (at least -24 dBFS) and voiced (a normalised autocorrelation peak >= 0.5 at a pitch lag
//! of 2.5-12.5 ms, 80-400 Hz, standing 0.3 above the dip before it); `speech` is 1 when it reaches 0.05.
//! Failure cases: singing and solo pitched instruments with syllable-like envelopes read as
//! speech; whispered or heavily masked speech does not; a track of digital silence is "absent".

use super::{Analysed, Evidence};
use crate::media::AUDIO_RATE;

/// Share of voiced loud frames from which a clip is said to contain speech.
pub const SPEECH_MIN_RATIO: f64 = 0.05;
/// Level (dBFS) a 32 ms frame must reach to count as voiced.
pub const LOUD_DBFS: f64 = -24.0;

fn db(power: f64) -> f64 {
    10.0 * power.max(1e-12).log10()
}

fn block_levels(x: &[f32], len: usize, hop: usize) -> Vec<f64> {
    if x.len() < len {
        return vec![x.iter().map(|&v| (v * v) as f64).sum::<f64>() / x.len().max(1) as f64];
    }
    (0..=(x.len() - len) / hop)
        .map(|b| {
            let s = &x[b * hop..b * hop + len];
            s.iter().map(|&v| (v * v) as f64).sum::<f64>() / len as f64
        })
        .collect()
}

/// Gated loudness in dBFS (see module docs).
pub fn loudness_dbfs(x: &[f32]) -> f64 {
    let r = AUDIO_RATE as usize;
    let blocks = block_levels(x, r * 4 / 10, r / 10);
    let abs: Vec<f64> = blocks.into_iter().filter(|&p| db(p) > -70.0).collect();
    if abs.is_empty() {
        return -120.0;
    }
    let mean = abs.iter().sum::<f64>() / abs.len() as f64;
    let rel: Vec<f64> = abs
        .iter()
        .copied()
        .filter(|&p| db(p) > db(mean) - 10.0)
        .collect();
    db(rel.iter().sum::<f64>() / rel.len().max(1) as f64)
}

/// Share of 32 ms frames that are loud and voiced. A frame is voiced when its normalised
/// autocorrelation (mean removed) has a peak at a pitch lag of 2.5-12.5 ms that reaches 0.5 and
/// rises at least 0.3 above the lowest value at shorter lags: low-frequency noise (rumble, brown
/// ambience) also correlates strongly at short lags, but decays without such a peak.
pub fn speech_ratio(x: &[f32]) -> f64 {
    let r = AUDIO_RATE as usize;
    let len = r * 32 / 1000;
    let (lag_min, lag_lo, lag_hi) = (r / 800, r / 400, r / 80);
    let frames = x.len() / len;
    let mut voiced = 0usize;
    for k in 0..frames {
        let raw = &x[k * len..(k + 1) * len];
        let mean = raw.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let f: Vec<f64> = raw.iter().map(|&v| v as f64 - mean).collect();
        let p = f.iter().map(|v| v * v).sum::<f64>() / len as f64;
        if db(p) < LOUD_DBFS {
            continue;
        }
        // Energies of the overlapping parts from prefix sums of squares.
        let mut sq = vec![0.0; len + 1];
        for (i, v) in f.iter().enumerate() {
            sq[i + 1] = sq[i] + v * v;
        }
        let ac = |lag: usize| {
            let c: f64 = f[..len - lag]
                .iter()
                .zip(&f[lag..])
                .map(|(a, b)| a * b)
                .sum();
            let (e1, e2) = (sq[len - lag], sq[len] - sq[lag]);
            c / (e1 * e2).sqrt().max(1e-12)
        };
        let mut lowest = f64::INFINITY;
        let mut is_voiced = false;
        for lag in lag_min..=lag_hi.min(len / 2) {
            let v = ac(lag);
            lowest = lowest.min(v);
            if lag >= lag_lo && v >= 0.5 && v - lowest >= 0.3 {
                is_voiced = true;
                break;
            }
        }
        voiced += usize::from(is_voiced);
    }
    if frames == 0 {
        0.0
    } else {
        voiced as f64 / frames as f64
    }
}

/// Measurements: `audio_present` (bool), and for a track that is not silent `loudness`,
/// `peak`, `noise_floor`, `hiss` (dBFS), `speech_ratio` (0-1), `speech` (bool).
pub fn measure(clip: &Analysed, ev: &mut Evidence) {
    let Some(x) = clip.audio.as_deref().filter(|x| !x.is_empty()) else {
        ev.push("audio_present", 0.0, "bool");
        return;
    };
    let peak = x.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
    let present = 20.0 * peak.max(1e-12).log10() > -60.0;
    ev.push("audio_present", f64::from(u8::from(present)), "bool");
    if !present {
        return;
    }
    let r = AUDIO_RATE as usize;
    ev.push("loudness", loudness_dbfs(x), "dBFS");
    ev.push("peak", 20.0 * peak.log10(), "dBFS");
    let floor = super::quantile(&block_levels(x, r / 20, r / 20), 0.1).unwrap_or(0.0);
    ev.push("noise_floor", db(floor), "dBFS");
    let diff: Vec<f32> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let hiss = super::quantile(&block_levels(&diff, r / 20, r / 20), 0.1).unwrap_or(0.0);
    ev.push("hiss", db(hiss / 2.0), "dBFS");
    let ratio = speech_ratio(x);
    ev.push("speech_ratio", ratio, "0-1");
    ev.push(
        "speech",
        f64::from(u8::from(ratio >= SPEECH_MIN_RATIO)),
        "bool",
    );
}
