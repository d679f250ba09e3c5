//! Global camera motion between consecutive analysis frames, and camera shake.
//!
//! Method: each luma frame is divided by its mean (so flicker and exposure changes do not look
//! like motion), then the translation that best maps frame t onto frame t+1 is found by block
//! matching on the whole frame: exhaustive search over ±12% of the width on a half-size pyramid
//! level, refinement at full analysis size, and a parabolic sub-pixel fit of the mean absolute
//! difference. The remaining difference after alignment (`residual`) is what changed that a
//! camera translation cannot explain; it drives cut detection.
//!
//! Shake is the high-frequency part of the camera path: the RMS second difference of the
//! accumulated translation divided by sqrt(6), which estimates the standard deviation of i.i.d.
//! per-frame jitter and is zero for a constant-speed pan. Units: % of the frame width.

use super::{Analysed, Evidence};

/// Motion between analysed frames t and t+1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairMotion {
    /// Content displacement from frame t to t+1, in analysis pixels (x right, y down).
    pub dx: f64,
    pub dy: f64,
    /// Mean absolute difference of mean-normalised luma after alignment.
    pub residual: f64,
    /// Mean absolute difference without alignment.
    pub raw: f64,
}

/// Luma divided by its mean (all zeros for a black frame), so a gain change is not motion.
pub fn normalised(luma: &[f32]) -> Vec<f32> {
    let mean = luma.iter().map(|&v| v as f64).sum::<f64>() / luma.len().max(1) as f64;
    let k = if mean > 1e-4 {
        (1.0 / mean) as f32
    } else {
        0.0
    };
    luma.iter().map(|&v| v * k).collect()
}

fn half(img: &[f32], w: usize, h: usize) -> (Vec<f32>, usize, usize) {
    let (ow, oh) = (w / 2, h / 2);
    let mut out = vec![0f32; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let i = 2 * y * w + 2 * x;
            out[y * ow + x] = 0.25 * (img[i] + img[i + 1] + img[i + w] + img[i + w + 1]);
        }
    }
    (out, ow, oh)
}

/// Mean |b(x+dx, y+dy) - a(x, y)| over the interior that stays inside both frames for every
/// shift up to `margin`.
fn sad(a: &[f32], b: &[f32], w: usize, h: usize, dx: i32, dy: i32, margin: usize) -> f64 {
    let mut acc = 0f64;
    let mut n = 0usize;
    for y in margin..h - margin {
        let by = (y as i32 + dy) as usize;
        let ra = &a[y * w + margin..y * w + w - margin];
        let start = (by * w) as i64 + margin as i64 + dx as i64;
        let rb = &b[start as usize..start as usize + (w - 2 * margin)];
        let s: f32 = ra.iter().zip(rb).map(|(p, q)| (p - q).abs()).sum();
        acc += s as f64;
        n += w - 2 * margin;
    }
    acc / n.max(1) as f64
}

fn parabola(m: f64, c: f64, p: f64) -> f64 {
    let den = m - 2.0 * c + p;
    if den > 1e-12 {
        (0.5 * (m - p) / den).clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

/// Search radius on the half-size level: 12% of the width, limited so a third of the frame remains.
fn half_radius(w: usize, h: usize) -> usize {
    ((0.06 * w as f64).round() as usize)
        .max(1)
        .min((w / 2).min(h / 2) / 3)
}

/// Residual of mean-normalised luma frames `a`, `b` after the best integer translation within
/// ±1 px of `guess` (a displacement found by chaining pair motions).
pub fn residual_near(a: &[f32], b: &[f32], w: usize, h: usize, guess: (f64, f64)) -> f64 {
    let r = 2 * half_radius(w, h) as i32 + 1;
    let margin = r as usize + 1;
    let gx = (guess.0.round() as i32).clamp(-r + 1, r - 1);
    let gy = (guess.1.round() as i32).clamp(-r + 1, r - 1);
    let mut best = f64::INFINITY;
    for dy in gy - 1..=gy + 1 {
        for dx in gx - 1..=gx + 1 {
            best = best.min(sad(a, b, w, h, dx, dy, margin));
        }
    }
    best
}

/// Translation and residual between two luma frames of size w x h.
pub fn align(a: &[f32], b: &[f32], w: usize, h: usize) -> PairMotion {
    let (a, b) = (normalised(a), normalised(b));
    let (a2, w2, h2) = half(&a, w, h);
    let (b2, _, _) = half(&b, w, h);
    let r2 = half_radius(w, h);
    let mut best = (f64::INFINITY, 0i32, 0i32);
    let r2i = r2 as i32;
    for dy in -r2i..=r2i {
        for dx in -r2i..=r2i {
            let s = sad(&a2, &b2, w2, h2, dx, dy, r2);
            if s < best.0 {
                best = (s, dx, dy);
            }
        }
    }
    let margin = 2 * r2 + 2;
    let (cx, cy) = (2 * best.1, 2 * best.2);
    let mut fine = (f64::INFINITY, cx, cy);
    for dy in cy - 1..=cy + 1 {
        for dx in cx - 1..=cx + 1 {
            let s = sad(&a, &b, w, h, dx, dy, margin);
            if s < fine.0 {
                fine = (s, dx, dy);
            }
        }
    }
    let (s0, fx, fy) = fine;
    let at = |dx: i32, dy: i32| sad(&a, &b, w, h, dx, dy, margin);
    let sub_x = parabola(at(fx - 1, fy), s0, at(fx + 1, fy));
    let sub_y = parabola(at(fx, fy - 1), s0, at(fx, fy + 1));
    PairMotion {
        dx: fx as f64 + sub_x,
        dy: fy as f64 + sub_y,
        residual: s0,
        raw: sad(&a, &b, w, h, 0, 0, margin),
    }
}

/// Motion of one block of a frame into the next (`block_motion`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockMotion {
    /// Best integer displacement of the block's content, px.
    pub dx: i32,
    pub dy: i32,
    /// SAD at the best shift over the median SAD of all shifts searched: near 0 a distinct
    /// match (structure that moved), near 1 none (flat, or texture re-drawn every frame).
    pub distinct: f64,
}

/// Per-block motion between mean-normalised luma frames `a` and `b` (w x h): the interior
/// (`radius` px from every edge) cut into `cols` x `rows` blocks, each matched exhaustively over
/// ±`radius` px. Row-major, `cols * rows` entries.
pub fn block_motion(
    a: &[f32],
    b: &[f32],
    w: usize,
    h: usize,
    cols: usize,
    rows: usize,
    radius: usize,
) -> Vec<BlockMotion> {
    let (iw, ih) = (w - 2 * radius, h - 2 * radius);
    let (bw, bh) = (iw / cols, ih / rows);
    let r = radius as i32;
    let mut out = Vec::with_capacity(cols * rows);
    let mut sads = Vec::with_capacity((2 * radius + 1).pow(2));
    for by in 0..rows {
        for bx in 0..cols {
            let (x0, y0) = (radius + bx * bw, radius + by * bh);
            sads.clear();
            let mut best = (f64::INFINITY, 0, 0);
            for dy in -r..=r {
                for dx in -r..=r {
                    let mut acc = 0f32;
                    for y in y0..y0 + bh {
                        let ra = &a[y * w + x0..y * w + x0 + bw];
                        let start = ((y as i32 + dy) as usize) * w + (x0 as i32 + dx) as usize;
                        let rb = &b[start..start + bw];
                        acc += ra.iter().zip(rb).map(|(p, q)| (p - q).abs()).sum::<f32>();
                    }
                    let s = acc as f64 / (bw * bh) as f64;
                    sads.push(s);
                    if s < best.0 {
                        best = (s, dx, dy);
                    }
                }
            }
            let med = super::median(&sads).unwrap_or(0.0);
            out.push(BlockMotion {
                dx: best.1,
                dy: best.2,
                distinct: if med > 1e-9 { best.0 / med } else { 1.0 },
            });
        }
    }
    out
}

/// Motion of every consecutive pair of analysed frames.
pub fn pair_motion(clip: &Analysed) -> Vec<PairMotion> {
    clip.frames
        .windows(2)
        .map(|p| align(&p[0].luma, &p[1].luma, clip.width, clip.height))
        .collect()
}

/// Per-frame shake estimate (% of width) over runs of pairs that contain no cut.
pub fn shake(clip: &Analysed, pairs: &[PairMotion], cuts: &[usize]) -> Option<f64> {
    let scale = 100.0 / clip.width as f64;
    let mut sq = 0.0;
    let mut n = 0usize;
    // Pair k joins frames k and k+1; a cut at frame c breaks pair c-1.
    for k in 1..pairs.len() {
        if cuts.contains(&k) || cuts.contains(&(k + 1)) {
            continue;
        }
        // Second difference of the path = difference of consecutive displacements.
        let ddx = (pairs[k].dx - pairs[k - 1].dx) * scale;
        let ddy = (pairs[k].dy - pairs[k - 1].dy) * scale;
        sq += ddx * ddx + ddy * ddy;
        n += 1;
    }
    (n > 0).then(|| (sq / n as f64 / 6.0).sqrt())
}

/// Measurements: `camera_speed` (mean |displacement| per second, % of width), `pan` (mean signed
/// horizontal displacement per second, % of width), `shake` (% of width, see module docs).
pub fn measure(clip: &Analysed, pairs: &[PairMotion], cuts: &[usize], ev: &mut Evidence) {
    let per_s = 1.0 / clip.frame_step_s;
    let scale = 100.0 / clip.width as f64;
    let inside: Vec<&PairMotion> = pairs
        .iter()
        .enumerate()
        .filter(|(k, _)| !cuts.contains(&(k + 1)))
        .map(|(_, p)| p)
        .collect();
    if !inside.is_empty() {
        let n = inside.len() as f64;
        let speed = inside.iter().map(|p| p.dx.hypot(p.dy)).sum::<f64>() / n * scale * per_s;
        let pan = inside.iter().map(|p| p.dx).sum::<f64>() / n * scale * per_s;
        ev.push("camera_speed", speed, "%w/s");
        ev.push("pan", pan, "%w/s");
    }
    if let Some(s) = shake(clip, pairs, cuts) {
        ev.push("shake", s, "%w");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: usize, h: usize, ox: f64, oy: f64) -> Vec<f32> {
        (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    let (u, v) = (x as f64 - ox, y as f64 - oy);
                    (0.5 + 0.2 * (u * 0.31).sin() * (v * 0.23).cos()
                        + 0.1 * (u * 0.07 + v * 0.11).sin()) as f32
                })
            })
            .collect()
    }

    #[test]
    fn align_recovers_integer_and_subpixel_translation() {
        let (w, h) = (112, 84);
        let a = textured(w, h, 0.0, 0.0);
        let b = textured(w, h, 5.0, -3.0);
        let m = align(&a, &b, w, h);
        assert!(
            (m.dx - 5.0).abs() < 0.1 && (m.dy + 3.0).abs() < 0.1,
            "{m:?}"
        );
        assert!(m.residual < 0.01 && m.raw > 0.05, "{m:?}");
        let c = textured(w, h, 2.5, 0.0);
        let m = align(&a, &c, w, h);
        assert!((m.dx - 2.5).abs() < 0.25, "{m:?}");
    }

    #[test]
    fn align_ignores_a_global_gain_change() {
        let (w, h) = (112, 84);
        let a = textured(w, h, 0.0, 0.0);
        let b: Vec<f32> = textured(w, h, 1.0, 0.0).iter().map(|v| v * 1.3).collect();
        let m = align(&a, &b, w, h);
        assert!((m.dx - 1.0).abs() < 0.1 && m.residual < 0.01, "{m:?}");
    }
}
