//! Checks and judge throughput of the CUDA path, for the GPU machine (scripts/gpu_checks.sh and
//! scripts/bench_gpu.sh run it there; build it here with `--features cuda`: that machine has no
//! Rust, and no FFmpeg, which this binary does not link). `--cpu` runs any subcommand on burn
//! Flex instead, to try it without a GPU; `--wgpu` (a build with `--features wgpu`) on burn-wgpu
//! with fusion and autotune, the CubeCL path of burn-cuda, which runs without a GPU on Mesa's
//! lavapipe Vulkan driver (f32 only: WGSL has no bf16; scripts/wgpu_checks.sh).
//!
//! ```sh
//! gpu_check parity [--cpu|--wgpu]
//! gpu_check attention [--cpu|--wgpu]
//! gpu_check generate BASE [--cpu|--wgpu] [--bf16] [--grid T,H,W] [--text N] [--new N] [--reps N]
//! ```
//!
//! * `parity`: the tiny_a fixture checkpoint (sharded, untied) on the device, base weights in f32
//!   and in bf16, on case_video_a (two left-padded prompts with a video each): position ids must
//!   equal transformers 4.57.1's, logits within 1e-3 (f32: room for TF32-class matmuls; the CPU
//!   reaches 3.4e-6) and 5e-2 (bf16, as the CPU test) of its f32 logits, relative to max |logit|.
//!   Fixtures: `$EVALVERSE_MODEL_FIXTURES`, default this crate's tests/fixtures. On `--wgpu`,
//!   f32 only.
//! * `attention`: the attention operation's output and q/k/v gradients under autodiff on the
//!   device against burn's autodiff of the composite on the CPU, f32, with a causal mask
//!   (2 x 4 heads x 96 tokens, one chunk) and at 2,048 tokens x 8 heads (two chunks per batch
//!   element): within 1e-3 relative.
//! * `generate`: batch 1, TEXT (default 32) text tokens, vision_start, the video tokens of grid
//!   T,H,W (default 8,32,32: 16 frames at 448x448), vision_end, TEXT more, pseudo-random ids and
//!   pixels (seed 0); one warm-up, then the median of REPS (default 3) of a prefill (vision +
//!   decoder + logits at every position, as scripts/bench_model.py's), `generate` with NEW
//!   (default 64) and with 1 greedy new tokens: decode tokens/s = (NEW - 1) / (generate_NEW -
//!   generate_1).
//!
//! One JSON line on stdout; `parity` and `attention` exit 1 past a tolerance.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor};
use evalverse_model::attention::{attention, attention_chunked};
use evalverse_model::generate::{generate, GenerationConfig};
use evalverse_model::model::{causal_mask, synthetic_video_prompt};
use evalverse_model::{Cpu, ModelBackend, QwenVl};
use serde_json::{json, Value};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn host<B: ModelBackend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data")
}

/// max |got - want| / max |want| over the rows (of `width` values) where `keep` is true.
fn rel_err(got: &[f32], want: &[f64], keep: &[bool], width: usize) -> f64 {
    let (d, r) = common::max_diff(got, want, keep, width);
    d / r.max(1e-30)
}

/// `bf16`: also with bf16 base weights (not on wgpu: WGSL has no bf16).
fn parity<B: ModelBackend>(bf16: bool, device: &B::Device) -> (Value, bool) {
    let case = common::load_case("case_video_a.safetensors");
    let batch = common::batch::<B>(&case, device);
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let dir = common::fixtures().join("tiny_a");
    let mut ok = true;
    let mut rows = Vec::new();
    let runs = [(DType::F32, "f32", 1e-3), (DType::BF16, "bf16", 5e-2)];
    for (dtype, name, tol) in runs.into_iter().take(if bf16 { 2 } else { 1 }) {
        let model = QwenVl::<B>::from_source(dir.to_str().unwrap(), dtype, device)
            .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()));
        let out = model.forward(&batch, false, None).expect("forward");
        let pos: Vec<i64> = out
            .position_ids
            .iter()
            .flat_map(|a| a.iter().flatten().copied())
            .collect();
        let pos_ok = pos == case.ints("position_ids");
        let err = rel_err(
            &host(out.logits),
            &case.get("logits").0,
            &keep,
            model.cfg.text.vocab_size,
        );
        ok &= pos_ok && err <= tol;
        rows.push(
            json!({"weights": name, "logits_rel_err": err, "tolerance": tol,
                         "position_ids_equal": pos_ok}),
        );
    }
    (json!({"check": "parity", "ok": ok, "runs": rows}), ok)
}

fn attention_check<B: ModelBackend>(device: &B::Device) -> (Value, bool) {
    type A<X> = Autodiff<X>;
    let mut ok = true;
    let mut rows = Vec::new();
    for (b, h, l, d) in [(2, 4, 96, 32), (1, 8, 2048, 64)] {
        Cpu::seed(&Default::default(), 7);
        let cpu = Default::default();
        let r = |shape| Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &cpu);
        let (q, k, v, w) = (
            r([b, h, l, d]),
            r([b, h, l, d]),
            r([b, h, l, d]),
            r([b, h, l, d]),
        );
        let mask = causal_mask::<Cpu>(&vec![vec![true; l]; b], 0, &cpu);
        let scale = (d as f64).powf(-0.5);
        // Reference: burn's autodiff of the composite, on the CPU.
        let [qa, ka, va] =
            [&q, &k, &v].map(|t| Tensor::<A<Cpu>, 4>::from_inner(t.clone()).require_grad());
        let m = Tensor::<A<Cpu>, 4>::from_inner(mask.clone());
        let o = attention_chunked(
            qa.clone(),
            ka.clone(),
            va.clone(),
            Some(m),
            scale,
            usize::MAX,
        );
        let g = (o.clone() * Tensor::from_inner(w.clone())).sum().backward();
        let want: Vec<Vec<f32>> = [
            o.inner(),
            qa.grad(&g).unwrap(),
            ka.grad(&g).unwrap(),
            va.grad(&g).unwrap(),
        ]
        .into_iter()
        .map(host)
        .collect();
        // The device: the attention operation under autodiff.
        let to = |t: &Tensor<Cpu, 4>| {
            Tensor::<A<B>, 4>::from_inner(Tensor::<B, 4>::from_data(t.to_data(), device))
        };
        let [qd, kd, vd] = [&q, &k, &v].map(|t| to(t).require_grad());
        let o = attention(qd.clone(), kd.clone(), vd.clone(), Some(to(&mask)), scale);
        let g = (o.clone() * to(&w)).sum().backward();
        let got: Vec<Vec<f32>> = [
            o.inner(),
            qd.grad(&g).unwrap(),
            kd.grad(&g).unwrap(),
            vd.grad(&g).unwrap(),
        ]
        .into_iter()
        .map(host)
        .collect();
        let mut errs = serde_json::Map::new();
        for (name, (g, w)) in ["out", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
            let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
            let e = rel_err(g, &w64, &vec![true; g.len()], 1);
            ok &= e <= 1e-3;
            errs.insert(name.to_string(), json!(e));
        }
        rows.push(json!({"shape": [b, h, l, d], "rel_err": errs}));
    }
    (
        json!({"check": "attention", "ok": ok, "tolerance": 1e-3, "runs": rows}),
        ok,
    )
}

struct GenArgs {
    base: String,
    dtype: DType,
    grid: [usize; 3],
    text: usize,
    new: usize,
    reps: usize,
}

fn generate_bench<B: ModelBackend>(a: &GenArgs, name: &str, device: &B::Device) -> Value {
    let t = Instant::now();
    let model = QwenVl::<B>::from_source(&a.base, a.dtype, device)
        .unwrap_or_else(|e| panic!("load {}: {e}", a.base));
    let load_s = t.elapsed().as_secs_f64();
    let batch = synthetic_video_prompt::<B>(&model.cfg, a.grid, a.text, device);
    let prompt_len = batch.ids[0].len();
    let timed = |f: &mut dyn FnMut()| -> f64 {
        f();
        median(
            (0..a.reps)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    // Reading one logit back waits for the device.
    let prefill = timed(&mut || {
        let logits = model.forward(&batch, false, None).expect("forward").logits;
        std::hint::black_box(host(logits.narrow(1, 0, 1).narrow(2, 0, 1)));
    });
    let gen = |n: usize| generate(&model, &batch, &GenerationConfig::greedy(n, vec![])).unwrap();
    let g_new = timed(&mut || {
        assert_eq!(gen(a.new).tokens[0].len(), a.new);
    });
    let g_1 = timed(&mut || {
        gen(1);
    });
    json!({
        "impl": format!("evalverse-{name}"),
        "dtype": format!("{:?}", a.dtype),
        "load_s": load_s,
        "prompt_tokens": prompt_len,
        "new_tokens": a.new,
        "reps": a.reps,
        "prefill_s": prefill,
        "prefill_tok_s": prompt_len as f64 / prefill,
        "generate_new_s": g_new,
        "generate_1_s": g_1,
        "decode_s_per_token": (g_new - g_1) / (a.new - 1) as f64,
        "decode_tok_s": (a.new - 1) as f64 / (g_new - g_1),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .map(|i| args[i + 1].clone())
    };
    let num = |f: &str, default: usize| value(f).map_or(default, |v| v.parse().expect("a number"));
    let cpu = has("--cpu");
    let wgpu = has("--wgpu");
    let cmd = args.first().map(String::as_str).unwrap_or("");
    macro_rules! on_device {
        ($f:ident ( $($arg:expr),* )) => {{
            if cpu {
                $f::<Cpu>($($arg,)* &Default::default())
            } else if wgpu {
                #[cfg(feature = "wgpu")]
                {
                    $f::<burn::backend::Wgpu>($($arg,)* &burn::backend::wgpu::WgpuDevice::default())
                }
                #[cfg(not(feature = "wgpu"))]
                {
                    eprintln!("gpu_check: --wgpu: build with --features wgpu");
                    return ExitCode::from(2);
                }
            } else {
                #[cfg(feature = "cuda")]
                {
                    $f::<burn::backend::Cuda>($($arg,)* &burn::backend::cuda::CudaDevice::new(0))
                }
                #[cfg(not(feature = "cuda"))]
                {
                    eprintln!("gpu_check: built without CUDA: add --cpu, or build with --features cuda");
                    return ExitCode::from(2);
                }
            }
        }};
    }
    let (out, ok) = match cmd {
        "parity" => on_device!(parity(!wgpu)),
        "attention" => on_device!(attention_check()),
        "generate" => {
            let grid: Vec<usize> = value("--grid")
                .unwrap_or_else(|| "8,32,32".into())
                .split(',')
                .map(|x| x.parse().expect("--grid T,H,W"))
                .collect();
            let a = GenArgs {
                base: args.get(1).cloned().expect("gpu_check generate BASE"),
                dtype: if has("--bf16") {
                    DType::BF16
                } else {
                    DType::F32
                },
                grid: [grid[0], grid[1], grid[2]],
                text: num("--text", 32),
                new: num("--new", 64).max(2),
                reps: num("--reps", 3).max(1),
            };
            let name = if cpu {
                "flex"
            } else if wgpu {
                "wgpu"
            } else {
                "cuda"
            };
            (on_device!(generate_bench(&a, name)), true)
        }
        _ => {
            eprintln!(
                "usage: gpu_check parity|attention|generate BASE [--cpu|--wgpu] (see the source's docs)"
            );
            return ExitCode::from(2);
        }
    };
    println!("{out}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
