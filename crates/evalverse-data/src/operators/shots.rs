//! Shot boundaries, shot durations and cut rhythm.
//!
//! A hard cut replaces the picture in one frame. Two detectors, either suffices:
//! - a camera jump: the camera path (chained global displacements, see `motion`) steps at the
//!   boundary by more than `JUMP_Z` standard errors of the clip's own jitter, at a local maximum,
//!   by at least `MIN_JUMP` of the width in one frame, and the step is confirmed by aligning
//!   across the boundary directly (`confirmed`). This finds cuts that re-frame the same scene,
//!   which change few colours; shake is jitter about a smooth path and averages out over the
//!   `WINDOW` frames each side; and most of the frame moved with it (`block_vote`): a subject
//!   that stutters or jumps moves the global alignment too when the background has little stable
//!   texture, but leaves the background's blocks where their own motion puts them;
//! - a colour change: the chromaticity histogram distance between the two frames is at least
//!   `COLOUR_MIN` and `COLOUR_RATIO` times its local level (a cut to different content, whatever
//!   the alignment found).

use super::motion::{align, block_motion, normalised, BlockMotion, PairMotion};
use super::{Analysed, Evidence};

/// Frames each side of a boundary that are compared.
const WINDOW: usize = 4;
/// Camera-jump score (in standard errors) above which a boundary can be a cut.
const JUMP_Z: f64 = 6.0;
/// Smallest jump between the two frames, as a share of the width, for a jump cut.
const MIN_JUMP: f64 = 0.025;
/// Jitter floor in px: sub-pixel alignment noise of a static shot.
const MIN_JITTER_PX: f64 = 0.25;
/// Colour change for a cut to different content: histogram distance and ratio to local level.
const COLOUR_MIN: f64 = 0.35;
const COLOUR_RATIO: f64 = 5.0;
/// Block vote (`block_vote`): blocks per row and column, search radius as a share of the width,
/// the largest best/median SAD ratio of a distinct match, the displacement change (px) within
/// which a block kept its motion, and the share of still blocks that vetoes a camera jump.
const BLOCK_COLS: usize = 4;
const BLOCK_ROWS: usize = 3;
const BLOCK_RADIUS: f64 = 0.1;
const DISTINCT_MAX: f64 = 0.6;
const STILL_PX: f64 = 1.5;
const MOVED_PX: f64 = 3.0;
const STILL_VETO: f64 = 0.4;
/// Fewest distinctly matched blocks for the vote to count.
const MIN_VOTERS: usize = 6;

/// 8x8 histogram of (r, g) chromaticity r/(r+g+b), g/(r+g+b), pixels weighted by brightness.
pub fn chroma_histogram(rgb: &[f32]) -> [f64; 64] {
    let mut h = [0f64; 64];
    let mut total = 0.0;
    for p in rgb.chunks_exact(3) {
        let s = (p[0] + p[1] + p[2]) as f64;
        if s < 0.03 {
            continue;
        }
        let r = ((p[0] as f64 / s) * 8.0).min(7.999) as usize;
        let g = ((p[1] as f64 / s) * 8.0).min(7.999) as usize;
        h[r * 8 + g] += s;
        total += s;
    }
    if total > 0.0 {
        h.iter_mut().for_each(|v| *v /= total);
    }
    h
}

/// Half the L1 distance of two histograms: 0 identical, 1 disjoint.
pub fn histogram_distance(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// Per boundary k (between analysed frames k-1 and k; index 0 unused): the camera-jump score,
/// the step of the camera path at k in units of its own jitter. The path p_t is the chained
/// global displacement (`motion`); the step is the difference of the mean path over `WINDOW`
/// frames after and before the boundary, less what the median pan explains, divided by the
/// standard error of that difference under the clip's jitter (MAD of second differences).
/// A cut that re-frames the same scene is a jump of the background that no smooth camera makes;
/// shake is jitter about a smooth path and averages out over the windows.
pub fn jump_scores(pairs: &[PairMotion]) -> Vec<f64> {
    let n = pairs.len() + 1;
    let mut path = vec![(0.0, 0.0); n];
    for k in 1..n {
        path[k] = (
            path[k - 1].0 + pairs[k - 1].dx,
            path[k - 1].1 + pairs[k - 1].dy,
        );
    }
    let vx = super::median(&pairs.iter().map(|p| p.dx).collect::<Vec<_>>()).unwrap_or(0.0);
    let vy = super::median(&pairs.iter().map(|p| p.dy).collect::<Vec<_>>()).unwrap_or(0.0);
    // Robust jitter: per axis, second differences of the path have variance 6 sigma^2 for i.i.d.
    // jitter of std sigma; the median length of a 2-D Gaussian vector of per-axis std s is
    // s * sqrt(2 ln 2) = 1.1774 s.
    let second: Vec<f64> = pairs
        .windows(2)
        .map(|w| (w[1].dx - w[0].dx).hypot(w[1].dy - w[0].dy))
        .collect();
    let sigma = super::median(&second).unwrap_or(0.0) / 1.1774 / 6f64.sqrt();
    let mut scores = vec![0.0; n];
    for (k, score) in scores.iter_mut().enumerate().skip(1) {
        let before = k.saturating_sub(WINDOW)..k;
        let after = k..(k + WINDOW).min(n);
        let mean = |r: std::ops::Range<usize>| {
            let m = r.len() as f64;
            let (sx, sy) = r
                .clone()
                .fold((0.0, 0.0), |a, t| (a.0 + path[t].0, a.1 + path[t].1));
            let (st, _) = r.fold((0.0, 0.0), |a, t| (a.0 + t as f64, a.1));
            (sx / m, sy / m, st / m)
        };
        let (bx, by, bt) = mean(before.clone());
        let (ax, ay, at) = mean(after.clone());
        let dt = at - bt;
        let step = (ax - bx - vx * dt).hypot(ay - by - vy * dt);
        let se = sigma * (1.0 / before.len() as f64 + 1.0 / after.len() as f64).sqrt();
        *score = step / (se + MIN_JITTER_PX);
    }
    scores
}

/// Per boundary k: the chromaticity histogram distance between frames k-1 and k, relative to the
/// median of that distance around it (±`WINDOW` pairs, itself excluded), and its absolute value.
pub fn colour_change(clip: &Analysed) -> Vec<(f64, f64)> {
    let hists: Vec<[f64; 64]> = clip
        .frames
        .iter()
        .map(|f| chroma_histogram(&f.rgb))
        .collect();
    let d: Vec<f64> = hists
        .windows(2)
        .map(|w| histogram_distance(&w[0], &w[1]))
        .collect();
    let mut out = vec![(0.0, 0.0); clip.frames.len()];
    for k in 0..d.len() {
        let lo = k.saturating_sub(WINDOW);
        let hi = (k + WINDOW + 1).min(d.len());
        let around: Vec<f64> = (lo..hi).filter(|&j| j != k).map(|j| d[j]).collect();
        let local = super::median(&around).unwrap_or(0.0);
        out[k + 1] = (d[k] / (local + 1e-3), d[k]);
    }
    out
}

/// Indices (into `clip.frames`) of the first frame of every shot after the first: boundaries that
/// are a local maximum of the camera-jump score above `JUMP_Z` with a jump of at least
/// `MIN_JUMP` of the width, confirmed across the boundary, with fewer than `STILL_VETO` of the
/// distinctly matched blocks keeping their own motion, or whose colour change is at least `COLOUR_MIN` and `COLOUR_RATIO`
/// times the local level (a cut to different content, whatever the alignment says).
pub fn detect_cuts(clip: &Analysed, pairs: &[PairMotion]) -> Vec<usize> {
    let z = jump_scores(pairs);
    let colour = colour_change(clip);
    let min_jump = MIN_JUMP * clip.width as f64;
    let n = clip.frames.len();
    (1..z.len())
        .filter(|&k| {
            let jump = pairs[k - 1].dx.hypot(pairs[k - 1].dy);
            let peak = z[k] >= z[k - 1] && (k + 1 >= z.len() || z[k] > z[k + 1]);
            let by_jump = peak
                && z[k] > JUMP_Z
                && jump >= min_jump
                && confirmed(clip, pairs, k)
                && block_vote(clip, k)
                    .still_share()
                    .is_none_or(|s| s < STILL_VETO);
            let by_colour = colour[k].0 >= COLOUR_RATIO && colour[k].1 >= COLOUR_MIN;
            by_jump || by_colour
        })
        .filter(|&k| k < n)
        .collect()
}

/// A jump at boundary k is confirmed when aligning frame k-2 directly with frame k+1 gives the
/// displacement the chained pair motions give (within half the jump, at least 2 px): a single
/// pair aligned on the wrong structure (boiling texture, a stuttering subject) puts a false step
/// in the chained path that the direct alignment does not show.
fn confirmed(clip: &Analysed, pairs: &[PairMotion], k: usize) -> bool {
    let n = clip.frames.len();
    let (i, j) = (k.saturating_sub(2), (k + 1).min(n - 1));
    let chained = pairs[i..j]
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.dx, a.1 + p.dy));
    let direct = align(
        &clip.frames[i].luma,
        &clip.frames[j].luma,
        clip.width,
        clip.height,
    );
    let jump = pairs[k - 1].dx.hypot(pairs[k - 1].dy);
    (direct.dx - chained.0).hypot(direct.dy - chained.1) <= (0.5 * jump).max(2.0)
}

/// How the frame's blocks moved across boundary k (`block_vote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockVote {
    /// Blocks with a distinct match at the boundary's pair and at 3 or more pairs around it.
    pub voters: usize,
    /// Of those, blocks whose displacement at the boundary is within `STILL_PX` of their own
    /// median displacement around it, and blocks `MOVED_PX` or more away from it.
    pub still: usize,
    pub moved: usize,
}

impl BlockVote {
    /// Share of the voters that kept their motion; None with fewer than `MIN_VOTERS` voters.
    pub fn still_share(&self) -> Option<f64> {
        (self.voters >= MIN_VOTERS).then(|| self.still as f64 / self.voters as f64)
    }
}

/// The block vote at boundary k: per-block motion (`motion::block_motion`, `BLOCK_COLS` x
/// `BLOCK_ROWS` blocks) of the pair across the boundary and of the `WINDOW` pairs each side,
/// each block compared with its own median motion around the boundary. A cut moves every layer
/// of the picture at once; a subject's stutter moves its own blocks only.
pub fn block_vote(clip: &Analysed, k: usize) -> BlockVote {
    let n = clip.frames.len();
    let radius = (BLOCK_RADIUS * clip.width as f64).round() as usize;
    let lo = k.saturating_sub(WINDOW + 1);
    let hi = (k + WINDOW).min(n - 1);
    let norm: Vec<Vec<f32>> = (lo..=hi)
        .map(|t| normalised(&clip.frames[t].luma))
        .collect();
    // blocks[q - lo] is the motion of pair q (frames q, q + 1).
    let blocks: Vec<Vec<BlockMotion>> = norm
        .windows(2)
        .map(|f| {
            block_motion(
                &f[0],
                &f[1],
                clip.width,
                clip.height,
                BLOCK_COLS,
                BLOCK_ROWS,
                radius,
            )
        })
        .collect();
    let at = k - 1 - lo;
    let mut vote = BlockVote::default();
    for b in 0..BLOCK_COLS * BLOCK_ROWS {
        let around: Vec<&BlockMotion> = blocks
            .iter()
            .enumerate()
            .filter(|&(q, m)| q != at && m[b].distinct < DISTINCT_MAX)
            .map(|(_, m)| &m[b])
            .collect();
        let here = blocks[at][b];
        if here.distinct >= DISTINCT_MAX || around.len() < 3 {
            continue;
        }
        let median = |f: fn(&BlockMotion) -> i32| {
            super::median(&around.iter().map(|m| f(m) as f64).collect::<Vec<_>>())
        };
        let (mx, my) = (
            median(|m| m.dx).unwrap_or(0.0),
            median(|m| m.dy).unwrap_or(0.0),
        );
        let d = (here.dx as f64 - mx).hypot(here.dy as f64 - my);
        vote.voters += 1;
        vote.still += usize::from(d <= STILL_PX);
        vote.moved += usize::from(d >= MOVED_PX);
    }
    vote
}

/// Shots as [start, end) seconds from cut frame indices.
pub fn shots_from_cuts(clip: &Analysed, cuts: &[usize]) -> Vec<[f64; 2]> {
    let mut bounds = vec![0.0];
    bounds.extend(cuts.iter().map(|&c| clip.frames[c].time_s));
    bounds.push(clip.duration_s());
    bounds.windows(2).map(|w| [w[0], w[1]]).collect()
}

/// Measurements: `shot_count`, `mean_shot_s` (s), `min_shot_s` (s), `cut_rhythm_cv` (coefficient
/// of variation of the shot durations; 0 when evenly cut or for a single shot), `cuts_per_min`.
pub fn measure(clip: &Analysed, cuts: &[usize], ev: &mut Evidence) {
    let shots = shots_from_cuts(clip, cuts);
    let durs: Vec<f64> = shots.iter().map(|[s, e]| e - s).collect();
    let n = durs.len() as f64;
    let mean = durs.iter().sum::<f64>() / n;
    let var = durs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n;
    ev.push("shot_count", n, "count");
    ev.push("mean_shot_s", mean, "s");
    ev.push(
        "min_shot_s",
        durs.iter().copied().fold(f64::INFINITY, f64::min),
        "s",
    );
    ev.push(
        "cut_rhythm_cv",
        if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
        "ratio",
    );
    ev.push(
        "cuts_per_min",
        cuts.len() as f64 / clip.duration_s() * 60.0,
        "1/min",
    );
    ev.shots = shots;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Frame;

    /// A 112 x 84 clip of 12 frames: value-noise-like texture panning 0.5 px a frame; `patch(t)`
    /// is the x offset of a flat bright 16 x 16 square (the "subject"), `jump(t)` an extra shift
    /// of the whole picture.
    fn clip(patch: impl Fn(usize) -> f64, jump: impl Fn(usize) -> f64) -> Analysed {
        let (w, h) = (112, 84);
        let frames = (0..12)
            .map(|t| {
                let ox = 0.5 * t as f64 + jump(t);
                let luma: Vec<f32> = (0..h)
                    .flat_map(|y| {
                        let patch = &patch;
                        (0..w).map(move |x| {
                            let u = x as f64 + ox;
                            let v = y as f64;
                            let px = 40.0 + patch(t);
                            if (x as f64 - px).abs() < 8.0 && (v - 42.0).abs() < 8.0 {
                                return 0.95;
                            }
                            (0.5 + 0.2 * (u * 0.31).sin() * (v * 0.23).cos()
                                + 0.1 * (u * 0.07 + v * 0.11).sin())
                                as f32
                        })
                    })
                    .collect();
                Frame {
                    index: t,
                    time_s: t as f64 / 12.0,
                    rgb: luma.iter().flat_map(|&l| [l, l, l]).collect(),
                    luma,
                }
            })
            .collect();
        Analysed {
            width: w,
            height: h,
            source_fps: 12.0,
            total_frames: 12,
            frame_step_s: 1.0 / 12.0,
            frames,
            detail: Vec::new(),
            audio: None,
        }
    }

    #[test]
    fn a_moving_subject_leaves_the_vote_still_and_a_cut_moves_it() {
        // The subject jumps 10 px at frame 6 and stays; the background pans on.
        let stutter = clip(|t| if t >= 6 { 10.0 } else { 0.0 }, |_| 0.0);
        let v = block_vote(&stutter, 6);
        assert!(v.still_share().is_some_and(|s| s >= 0.8), "{v:?}");
        // The whole picture jumps 6 px at frame 6: a re-framing cut.
        let cut = clip(|_| 0.0, |t| if t >= 6 { 6.0 } else { 0.0 });
        let v = block_vote(&cut, 6);
        assert!(v.still_share().is_some_and(|s| s < STILL_VETO), "{v:?}");
        assert!(v.moved * 10 >= v.voters * 8, "{v:?}");
        // Away from the jump, the blocks keep their motion.
        let v = block_vote(&cut, 3);
        assert!(v.still_share().is_some_and(|s| s >= 0.8), "{v:?}");
    }
}
