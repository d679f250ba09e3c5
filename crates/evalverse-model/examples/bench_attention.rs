//! Time and peak memory of one attention call (`nn::attention_chunked`, burn Flex) at a long
//! sequence, with the score matrix whole or in chunks of query rows:
//!
//! ```sh
//! cargo run --release -p evalverse-model --example bench_attention -- LEN HEADS HEAD_DIM [--full] [--reps N]
//! ```
//!
//! Causal mask (`model::causal_mask`, as the decoder builds it), batch 1, random q/k/v (burn's default RNG: other values in every process, so
//! `output_sum` only keeps the work from being skipped). `--full` sets the chunk
//! budget to unlimited (the score matrix at once); otherwise `ATTENTION_CHUNK_ELEMS`, what the
//! model uses. One JSON line: median seconds per call over `--reps` (default 3) after one warm-up,
//! and the process's peak resident memory (VmHWM, MB). Run each setting in its own process.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use evalverse_model::model::causal_mask;
use evalverse_model::nn::{attention_chunked, ATTENTION_CHUNK_ELEMS};
use evalverse_model::Cpu;

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> usize { args[i].parse().expect("LEN HEADS HEAD_DIM") };
    let (l, h, d) = (num(0), num(1), num(2));
    let full = args.iter().any(|a| a == "--full");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .map(|i| args[i + 1].parse().expect("--reps N"))
        .unwrap_or(3);
    let budget = if full {
        usize::MAX
    } else {
        ATTENTION_CHUNK_ELEMS
    };
    let device = Default::default();
    let r = || Tensor::<Cpu, 4>::random([1, h, l, d], Distribution::Normal(0.0, 1.0), &device);
    let (q, k, v) = (r(), r(), r());
    let mask = causal_mask::<Cpu>(&[vec![true; l]], 0, &device);
    let before = peak_rss_mb();
    let mut times = Vec::new();
    let mut check = 0f32;
    for i in 0..=reps {
        let t = Instant::now();
        let o = attention_chunked(
            q.clone(),
            k.clone(),
            v.clone(),
            Some(mask.clone()),
            (d as f64).powf(-0.5),
            budget,
        );
        check = o.sum().into_scalar();
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "len": l, "heads": h, "head_dim": d, "full": full,
            "chunk_elems": if full { None } else { Some(budget) },
            "score_elems": h * l * l,
            "median_s": times[times.len() / 2],
            "peak_rss_mb_before": before, "peak_rss_mb": peak_rss_mb(),
            "output_sum": check,
        })
    );
}
