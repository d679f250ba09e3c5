//! Per-boundary features of the shot detector against the generator's true cuts, as CSV, for
//! tuning and diagnosing `operators::shots` (see docs/OPERATORS.md):
//!
//! `cargo run --release -p evalverse-data --example cut_features -- data/sample > cuts.csv`
//!
//! One row per boundary k (between analysis frames k-1 and k) of every clip in the folder's
//! truth.jsonl: `truth` (1 when frame k is the first frame at or after a true cut), `detected`
//! (1 when `detect_cuts` reports it), the clip's shake and boil, the camera-jump score `z`, the
//! pair displacement (`dx`, `dy`, `jump`, px), the colour-change ratio and distance, the aligned
//! residual, `gain` (residual at the clip's median pan over the aligned residual: how much the
//! jump explains) and `persist_dx/dy` (frame k-2 aligned directly with k+1, less the other two
//! pairs' motion: the part of the jump that persists across the boundary), and from per-block
//! motion (`motion::block_motion`, 4 x 3 blocks) the blocks with a distinct match at the
//! boundary and its neighbours (`blocks`, `shots::block_vote`), and of those the ones whose displacement stays within
//! 1.5 px of their own median around the boundary (`still`) or leaves it by 3 px or more
//! (`moved`): a cut moves every layer at once, a subject's stutter only its own blocks.

use std::path::Path;

use evalverse_data::operators::{self, motion, shots, AnalysisSpec};

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/sample".into());
    let root = Path::new(&root);
    let text = std::fs::read_to_string(root.join("truth.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", root.join("truth.jsonl").display()));
    println!(
        "id,k,time_s,truth,detected,shake,boil,z,dx,dy,jump,colour_ratio,colour_dist,residual,gain,persist_dx,persist_dy,blocks,still,moved"
    );
    for (line_no, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("truth.jsonl line {}: {e}", line_no + 1));
        let id = v["id"].as_str().expect("id");
        let cuts: Vec<f64> = v["shots"].as_array().expect("shots")[1..]
            .iter()
            .map(|s| s[0].as_f64().expect("shot start"))
            .collect();
        let path = root.join("videos").join(format!("{id}.mp4"));
        let clip = operators::analyse(&path, &AnalysisSpec::default(), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let pairs = motion::pair_motion(&clip);
        let z = shots::jump_scores(&pairs);
        let colour = shots::colour_change(&clip);
        let detected = shots::detect_cuts(&clip, &pairs);
        // The median pan, as `jump_scores` takes it.
        let median = |f: fn(&motion::PairMotion) -> f64| {
            operators::median(&pairs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        let (vx, vy) = (median(|p| p.dx), median(|p| p.dy));
        let norm: Vec<Vec<f32>> = clip
            .frames
            .iter()
            .map(|f| motion::normalised(&f.luma))
            .collect();
        let step = clip.frame_step_s;
        let n = clip.frames.len();
        for k in 1..n {
            let t = clip.frames[k].time_s;
            let truth = cuts.iter().any(|&e| t >= e - 1e-9 && t - e < step);
            let p = pairs[k - 1];
            let gain =
                motion::residual_near(&norm[k - 1], &norm[k], clip.width, clip.height, (vx, vy))
                    / p.residual.max(1e-9);
            let (i, j) = (k.saturating_sub(2), (k + 1).min(n - 1));
            let direct = motion::align(
                &clip.frames[i].luma,
                &clip.frames[j].luma,
                clip.width,
                clip.height,
            );
            let others = (i..j)
                .filter(|&q| q != k - 1)
                .fold((0.0, 0.0), |s, q| (s.0 + pairs[q].dx, s.1 + pairs[q].dy));
            let vote = shots::block_vote(&clip, k);
            println!(
                "{id},{k},{t:.4},{},{},{:.3},{:.3},{:.3},{:.2},{:.2},{:.2},{:.3},{:.4},{:.5},{:.3},{:.2},{:.2},{},{},{}",
                u8::from(truth),
                u8::from(detected.contains(&k)),
                v["defects"]["shake"].as_f64().unwrap_or(0.0),
                v["defects"]["boil"].as_f64().unwrap_or(0.0),
                z[k],
                p.dx,
                p.dy,
                p.dx.hypot(p.dy),
                colour[k].0,
                colour[k].1,
                p.residual,
                gain,
                direct.dx - others.0,
                direct.dy - others.1,
                vote.voters,
                vote.still,
                vote.moved,
            );
        }
    }
}
