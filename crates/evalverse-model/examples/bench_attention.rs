//! Time and peak memory of one attention call (burn Flex) at a long sequence, for inference or
//! for training, by the model's attention or by the composite of burn ops it replaced:
//!
//! ```sh
//! cargo run --release -p evalverse-model --example bench_attention -- LEN HEADS HEAD_DIM [--train] [--composite [--full]] [--reps N]
//! ```
//!
//! Inference (default): `attention::attention` on Flex, what the model runs (one batch element and
//! one chunk of at most `ATTENTION_CHUNK_ELEMS` scores at a time). `--composite`:
//! `attention_chunked`, the same written with burn's ops only; `--full` gives it an unlimited
//! budget (the score matrix at once). `--train`: forward and backward (gradients of q, k and v
//! for sum(out * w)) on `Autodiff<Flex>`, through the attention operation training uses (keeps
//! q, k, v and the output; recomputes the probabilities chunk by chunk in the backward pass) or,
//! with `--composite`, through burn's autodiff of `attention_chunked` (every chunk's scores and
//! probabilities kept for the backward pass).
//!
//! Causal mask (`model::causal_mask`, as the decoder builds it), batch 1, random q/k/v (burn's
//! default RNG: other values in every process, so `output_sum`, the sum of the output or of the
//! gradients, only keeps the work from being skipped). One JSON line: median seconds per call
//! over `--reps` (default 3) after one warm-up, and the process's peak resident memory (VmHWM,
//! MB). Run each setting in its own process.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{Distribution, Tensor};
use evalverse_model::attention::{attention, attention_chunked, ATTENTION_CHUNK_ELEMS};
use evalverse_model::model::causal_mask;
use evalverse_model::Cpu;

type Ad = Autodiff<Cpu>;

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> usize { args[i].parse().expect("LEN HEADS HEAD_DIM") };
    let (l, h, d) = (num(0), num(1), num(2));
    let flag = |f: &str| args.iter().any(|a| a == f);
    let (full, train, composite) = (flag("--full"), flag("--train"), flag("--composite"));
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
    let (q, k, v, w) = (r(), r(), r(), r());
    let mask = causal_mask::<Cpu>(&[vec![true; l]], 0, &device);
    let before = peak_rss_mb();
    let mut times = Vec::new();
    let mut check = 0f32;
    for i in 0..=reps {
        let t = Instant::now();
        let scale = (d as f64).powf(-0.5);
        check = if train {
            let [qa, ka, va] =
                [&q, &k, &v].map(|t| Tensor::<Ad, 4>::from_inner(t.clone()).require_grad());
            let m = Some(Tensor::<Ad, 4>::from_inner(mask.clone()));
            let o = if composite {
                attention_chunked(qa.clone(), ka.clone(), va.clone(), m, scale, budget)
            } else {
                attention(qa.clone(), ka.clone(), va.clone(), m, scale)
            };
            let grads = (o * Tensor::from_inner(w.clone())).sum().backward();
            [qa, ka, va]
                .iter()
                .map(|t| t.grad(&grads).expect("a gradient").sum().into_scalar())
                .sum()
        } else {
            attention_chunked(
                q.clone(),
                k.clone(),
                v.clone(),
                Some(mask.clone()),
                scale,
                budget,
            )
            .sum()
            .into_scalar()
        };
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "len": l, "heads": h, "head_dim": d, "full": full, "train": train,
            "implementation": if composite { "composite" } else { "attention" },
            "backward": if !train { "none" } else if composite { "burn autodiff of the composite" } else { "attention op (recompute)" },
            "chunk_elems": if full { None } else { Some(budget) },
            "score_elems": h * l * l,
            "median_s": times[times.len() / 2],
            "peak_rss_mb_before": before, "peak_rss_mb": peak_rss_mb(),
            "output_sum": check,
        })
    );
}
