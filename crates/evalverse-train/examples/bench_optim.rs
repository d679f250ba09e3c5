//! Optimizer time per step at Qwen2.5-VL-7B widths, before and after the optimizer moved onto
//! the device (issue 25): LoRA r 8 on the seven language-model projections of `--layers`
//! decoder layers (hidden 3,584, MLP 18,944, 28 query and 4 KV heads of 128; 720,896 LoRA
//! weights per layer), gradients as a backward pass leaves them (f32 tensors on the device).
//!
//! - host (before): what every training step did: download each gradient into a host vector
//!   (`runtime::accumulate_grads`), `optim::clip_global_norm` and `AdamWState::update` in f64 on
//!   one thread, upload every weight (`runtime::set_lora_params`).
//! - device (now, `trainer::train`): `optim::clip_global_norm_device` and `AdamW::update` on
//!   the device's tensors, and one scalar read (the gradient norm, for the log).
//!
//! ```sh
//! cargo run --release -p evalverse-train --example bench_optim -- [--layers 2] [--steps 10] [--warmup 2] [--cuda]
//! ```
//!
//! `--layers 2` is the 7B slice of bench_sft_step (BENCHMARKS.md), 28 the whole 7B model.
//! Warm-up steps, then the median of `--steps`; both paths run the same steps from the same
//! weights and gradients (clip 1.0, weight decay 0.01, lr 1e-4), and the JSON reports the
//! largest difference between their weights at the end. `--cuda` (an example built with
//! `--features cuda`) runs on burn-cuda, device 0. One JSON object on stdout.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use evalverse_model::Cpu;
use evalverse_train::optim::{
    clip_global_norm, clip_global_norm_device, scalar, AdamW, AdamWConfig, AdamWState, Tensors,
};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// LoRA shapes (A [in, r], B [r, out]) of the seven projections of `layers` 7B decoder layers.
fn shapes(layers: usize, rank: usize) -> BTreeMap<String, [usize; 2]> {
    let (h, i, kv) = (3584, 18944, 4 * 128);
    let proj = [
        ("self_attn.q_proj", h, h),
        ("self_attn.k_proj", h, kv),
        ("self_attn.v_proj", h, kv),
        ("self_attn.o_proj", h, h),
        ("mlp.gate_proj", h, i),
        ("mlp.up_proj", h, i),
        ("mlp.down_proj", i, h),
    ];
    let mut out = BTreeMap::new();
    for l in 0..layers {
        for (name, fan_in, fan_out) in proj {
            let path = format!("model.layers.{l}.{name}");
            out.insert(format!("{path}.lora_A"), [fan_in, rank]);
            out.insert(format!("{path}.lora_B"), [rank, fan_out]);
        }
    }
    out
}

fn host<B: Backend>(t: &Tensor<B, 2>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].parse().expect("a number"))
            .unwrap_or(default)
    };
    let (layers, steps, warmup) = (
        flag("--layers", 2),
        flag("--steps", 10),
        flag("--warmup", 2),
    );
    if args.iter().any(|a| a == "--cuda") {
        #[cfg(feature = "cuda")]
        return bench::<burn::backend::Cuda>(layers, steps, warmup, &Default::default());
        #[cfg(not(feature = "cuda"))]
        panic!("--cuda: build the example with --features cuda");
    }
    bench::<Cpu>(layers, steps, warmup, &Default::default());
}

fn bench<B: Backend>(layers: usize, steps: usize, warmup: usize, device: &B::Device) {
    let shapes = shapes(layers, 8);
    let n: usize = shapes.values().map(|s| s[0] * s[1]).sum();
    B::seed(device, 0);
    let params: Tensors<B> = shapes
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                Tensor::random(*s, Distribution::Normal(0.0, 0.02), device),
            )
        })
        .collect();
    let grads: Tensors<B> = shapes
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                Tensor::random(*s, Distribution::Normal(0.0, 1e-3), device),
            )
        })
        .collect();
    let cfg = AdamWConfig {
        lr: 1e-4,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.01,
        grad_clip: 1.0,
    };
    let sync = || B::sync(device).expect("device sync");

    // ---- before: gradients down, f64 AdamW on the host, weights up (the weights themselves
    // stayed on the host between steps)
    let mut vals: BTreeMap<String, Vec<f32>> =
        params.iter().map(|(k, p)| (k.clone(), host(p))).collect();
    let mut p_host = params.clone();
    let mut opt = AdamWState::default();
    let (mut before, mut down) = (vec![], vec![]);
    for i in 0..warmup + steps {
        sync();
        let t0 = Instant::now();
        let mut acc: BTreeMap<String, Vec<f32>> =
            grads.iter().map(|(k, g)| (k.clone(), host(g))).collect();
        let t_down = t0.elapsed();
        clip_global_norm(&mut acc, cfg.grad_clip);
        opt.update(&cfg, cfg.lr, &mut vals, &acc);
        for (k, v) in &vals {
            let t = Tensor::from_data(TensorData::new(v.clone(), shapes[k]), device);
            p_host.insert(k.clone(), t);
        }
        sync();
        if i >= warmup {
            before.push(t0.elapsed().as_secs_f64());
            down.push(t_down.as_secs_f64());
        }
    }

    // ---- now: clipping and AdamW on the device, one scalar read
    let mut p_dev = params.clone();
    let mut dopt = AdamW::<B>::default();
    let mut after = vec![];
    for i in 0..warmup + steps {
        sync();
        let t0 = Instant::now();
        let mut acc = grads.clone();
        let norm = clip_global_norm_device(&mut acc, cfg.grad_clip, device);
        dopt.update(&cfg, cfg.lr, &mut p_dev, &acc);
        let _norm = scalar(norm);
        sync();
        if i >= warmup {
            after.push(t0.elapsed().as_secs_f64());
        }
    }

    let max_diff = p_host
        .iter()
        .flat_map(|(k, p)| {
            host(p)
                .into_iter()
                .zip(host(&p_dev[k]))
                .map(|(a, b)| (a - b).abs())
        })
        .fold(0f32, f32::max);
    let host_s = median(before);
    let device_s = median(after);
    println!(
        "{}",
        json!({
            "backend": std::any::type_name::<B>(),
            "layers": layers,
            "lora_params": n,
            "steps": steps,
            "host_optim_s": host_s,
            "host_grads_download_s": median(down),
            "device_optim_s": device_s,
            "speedup": host_s / device_s,
            "max_weight_diff": max_diff,
        })
    );
}
