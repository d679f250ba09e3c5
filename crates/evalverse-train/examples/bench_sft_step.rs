//! CPU time of one LoRA SFT optimizer step in evalverse (burn Flex, Autodiff), the counterpart of
//! `scripts/bench_sft_step.py run` (see scripts/bench_sft_step.sh for the side-by-side table).
//!
//! ```sh
//! cargo run --release -p evalverse-train --example bench_sft_step -- BASE BATCH.safetensors [--steps N] [--warmup N] [--unfused] [--checkpointing] [--bf16] [--cuda|--wgpu] [--lr X]
//! cargo run --release -p evalverse-train --example bench_sft_step -- BASE synthetic:T,H,W[,TEXT[,LABELS]] [...]
//! ```
//!
//! `synthetic:T,H,W[,TEXT[,LABELS]]` builds the batch here instead of reading it (no Python
//! needed): two sequences of TEXT (default 100) random text tokens, vision_start, the video tokens
//! of grid [T, H, W], vision_end, TEXT more; loss on the last LABELS tokens (default 64, at most
//! TEXT; 16 frames at 448x448 with a 256-token target: `synthetic:8,32,32,300,256`); pixels uniform in [-1, 1), seed
//! 0 (other values than the Python batch, same layout). `--checkpointing` trains on
//! `Autodiff<Cpu, BalancedCheckpointing>` (the recipe's `train.gradient_checkpointing`): burn
//! recomputes memory-bound operations in the backward pass instead of keeping their outputs. The
//! JSON adds `peak_rss_mb`, the process's peak resident memory (VmHWM) after the steps.
//! `--cuda` (an example built with `--features cuda`) runs the same steps on burn-cuda, device
//! 0 (not yet run on a GPU); `--wgpu` (built with `--features wgpu`) on burn-wgpu with fusion,
//! which runs on Mesa's lavapipe without a GPU (f32 only; scripts/wgpu_checks.sh). `--bf16`
//! loads the base weights in bf16 (LoRA weights stay f32).
//!
//! BASE: a Qwen2.5-VL folder (`evalverse model init`); BATCH: the safetensors file written by
//! `scripts/bench_sft_step.py batch` (input_ids, attention_mask, labels_mask [b, len] i64;
//! pixel_values [rows, 1176] f32; video_grid_thw [b, 3] i64; second_per_grid_ts [b] f32), one
//! video per sequence, pixels fed to the vision tower every step (vision_embeds None), as the
//! Python side does.
//!
//! One step is what `evalverse_train::trainer::train` does per optimizer step (grad_accum 1):
//! `forward_hidden`, `label_rows` + `runtime::label_nll` (the head fused with the loss, logits
//! only at label rows; its gradient for the hidden states is computed in the forward phase),
//! `backward`, `add_lora_grads`, `clip_global_norm_device` (1.0), `AdamW::update` (lr 1e-4,
//! torch defaults) on the device, `set_lora_tensors`, and the one scalar read of the gradient
//! norm. `--host-optim` runs the host path every step took before (issue 25):
//! `accumulate_grads` (gradients downloaded), `clip_global_norm` and `AdamWState::update` in
//! f64, `set_lora_params` (weights uploaded). LoRA r 8, alpha 16, dropout 0 on the seven
//! language-model projections. Warm-up steps, then the median of N. Also the medians of the
//! phases: forward (through the loss value), backward, grads (gradients collected), optim (clip +
//! update + weights back into the model, synchronised). One JSON object on stdout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::backend::Autodiff;
use burn::tensor::{DType, ElementConversion, Tensor, TensorData};
use evalverse_model::lora::{apply_lora, set_training, LoraConfig, DEFAULT_TARGETS};
use evalverse_model::position::MediaGrid;
use evalverse_model::{Batch, Cpu, QwenVl, TrainBackend};
use evalverse_train::losses::label_rows;
use evalverse_train::optim::{
    clip_global_norm, clip_global_norm_device, scalar, AdamW, AdamWConfig, AdamWState,
};
use evalverse_train::runtime::{
    accumulate_grads, add_lora_grads, label_nll, lora_params, lora_tensors, set_lora_params,
    set_lora_tensors,
};
use safetensors::{Dtype, SafeTensors};
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

fn i64s(st: &SafeTensors, name: &str) -> (Vec<i64>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    let v = t
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

fn rows2<T: Copy>(v: &[T], shape: &[usize]) -> Vec<Vec<T>> {
    v.chunks(shape[1]).map(|c| c.to_vec()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].parse().expect("a number"))
            .unwrap_or(default)
    };
    let (base, batch_path) = (&args[0], &args[1]);
    let steps = flag("--steps", 10);
    let warmup = flag("--warmup", 2);
    let has = |name: &str| args.iter().any(|a| a == name);
    let run = Run {
        base,
        batch_path,
        steps,
        warmup,
        // The path before the fused head loss, for comparison.
        unfused: has("--unfused"),
        checkpointing: has("--checkpointing"),
        // --bf16: base weights in bf16 (LoRA weights f32), as `model.dtype = "bf16"`.
        bf16: has("--bf16"),
        host_optim: has("--host-optim"),
        lr: args
            .iter()
            .position(|a| a == "--lr")
            .map_or(1e-4, |i| args[i + 1].parse().expect("--lr X")),
    };
    if has("--wgpu") {
        #[cfg(feature = "wgpu")]
        {
            let device = burn::backend::wgpu::WgpuDevice::default();
            return match run.checkpointing {
                true => bench::<Autodiff<burn::backend::Wgpu, BalancedCheckpointing>>(run, &device),
                false => bench::<Autodiff<burn::backend::Wgpu, NoCheckpointing>>(run, &device),
            };
        }
        #[cfg(not(feature = "wgpu"))]
        panic!("--wgpu: build the example with --features wgpu");
    }
    match (has("--cuda"), run.checkpointing) {
        (false, true) => bench::<Autodiff<Cpu, BalancedCheckpointing>>(run, &Default::default()),
        (false, false) => bench::<Autodiff<Cpu, NoCheckpointing>>(run, &Default::default()),
        #[cfg(feature = "cuda")]
        (true, true) => bench::<Autodiff<burn::backend::Cuda, BalancedCheckpointing>>(
            run,
            &burn::backend::cuda::CudaDevice::new(0),
        ),
        #[cfg(feature = "cuda")]
        (true, false) => bench::<Autodiff<burn::backend::Cuda, NoCheckpointing>>(
            run,
            &burn::backend::cuda::CudaDevice::new(0),
        ),
        #[cfg(not(feature = "cuda"))]
        (true, _) => panic!("--cuda: build the example with --features cuda"),
    }
}

/// The batch tensors as the Python side writes them: (input_ids, attention_mask, labels_mask,
/// pixel_values, video_grid_thw, second_per_grid_ts) with their shapes.
type RawBatch = (
    (Vec<i64>, Vec<usize>),
    Vec<i64>,
    Vec<i64>,
    (Vec<f32>, Vec<usize>),
    Vec<i64>,
    Vec<f32>,
);

fn read_batch(path: &str) -> RawBatch {
    let bytes = std::fs::read(path).expect("batch file");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    (
        i64s(&st, "input_ids"),
        i64s(&st, "attention_mask").0,
        i64s(&st, "labels_mask").0,
        f32s(&st, "pixel_values"),
        i64s(&st, "video_grid_thw").0,
        f32s(&st, "second_per_grid_ts").0,
    )
}

/// `synthetic:T,H,W[,TEXT[,LABELS]]` (see the module docs), with the ids of `base`'s config.json.
fn synthetic_batch(base: &str, spec: &str) -> RawBatch {
    let v: Vec<usize> = spec
        .split(',')
        .map(|x| x.parse().expect("synthetic:T,H,W[,TEXT]"))
        .collect();
    let (t, h, w, text) = (v[0], v[1], v[2], v.get(3).copied().unwrap_or(100));
    let label_tokens = v.get(4).copied().unwrap_or(64).min(text);
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(base).join("config.json")).expect("config.json"),
    )
    .expect("config.json");
    let id = |k: &str| {
        cfg[k]
            .as_i64()
            .unwrap_or_else(|| panic!("config.json: {k}"))
    };
    let special = [
        "image_token_id",
        "video_token_id",
        "vision_start_token_id",
        "vision_end_token_id",
    ];
    let hi = special.iter().map(|k| id(k)).min().unwrap() as u64;
    let vc = &cfg["vision_config"];
    let merge = vc["spatial_merge_size"].as_u64().unwrap_or(2) as usize;
    let patch = vc["patch_size"].as_u64().unwrap_or(14) as usize;
    let patch_dim = 3 * vc["temporal_patch_size"].as_u64().unwrap_or(2) as usize * patch * patch;
    let n_video = t * (h / merge) * (w / merge);
    let mut rng = evalverse_data::rng::Rng::new(0);
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.extend((0..text).map(|_| (rng.next_u64() % hi) as i64));
        ids.push(id("vision_start_token_id"));
        ids.extend(std::iter::repeat_n(id("video_token_id"), n_video));
        ids.push(id("vision_end_token_id"));
        ids.extend((0..text).map(|_| (rng.next_u64() % hi) as i64));
    }
    let len = 2 * text + 2 + n_video;
    let labels: Vec<i64> = (0..2)
        .flat_map(|_| (0..len).map(|j| i64::from(j >= len - label_tokens)))
        .collect();
    let rows = 2 * t * h * w;
    let px: Vec<f32> = (0..rows * patch_dim)
        .map(|_| (rng.range(-1.0, 1.0)) as f32)
        .collect();
    (
        (ids, vec![2, len]),
        vec![1; 2 * len],
        labels,
        (px, vec![rows, patch_dim]),
        [t, h, w, t, h, w].iter().map(|&x| x as i64).collect(),
        vec![1.0, 1.0],
    )
}

/// A line of this process's /proc status (VmHWM: peak resident memory, VmRSS: resident now), MB;
/// None off Linux.
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Start VmHWM again from the resident memory now (Linux: "5" to /proc/self/clear_refs), so the
/// steps' peak is not the loading's.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What to run: the flags of the command line.
struct Run<'a> {
    base: &'a str,
    batch_path: &'a str,
    steps: usize,
    warmup: usize,
    /// The head's logits through the autodiff graph (`head_at` + `token_nll`).
    unfused: bool,
    checkpointing: bool,
    bf16: bool,
    /// The optimizer on the host (the path before issue 25) instead of the device.
    host_optim: bool,
    /// AdamW's learning rate (default 1e-4, as the PyTorch side; scripts/gpu_checks.sh uses a
    /// larger one so that a short run's loss curve moves).
    lr: f64,
}

fn bench<B: TrainBackend>(run: Run, device: &B::Device) {
    let Run {
        base,
        batch_path,
        steps,
        warmup,
        unfused,
        checkpointing,
        bf16,
        host_optim,
        lr,
    } = run;
    let device = device.clone();

    // ---- batch
    let ((ids, ids_shape), mask, lab, (px, px_shape), grid, spg) =
        match batch_path.strip_prefix("synthetic:") {
            Some(spec) => synthetic_batch(base, spec),
            None => read_batch(batch_path),
        };
    let ids: Vec<Vec<u32>> = rows2(&ids, &ids_shape)
        .into_iter()
        .map(|r| r.into_iter().map(|t| t as u32).collect())
        .collect();
    let mask: Vec<Vec<bool>> = rows2(&mask, &ids_shape)
        .into_iter()
        .map(|r| r.into_iter().map(|m| m != 0).collect())
        .collect();
    let labels: Vec<Vec<bool>> = rows2(&lab, &ids_shape)
        .into_iter()
        .map(|r| r.into_iter().map(|m| m != 0).collect())
        .collect();
    let media: Vec<Vec<MediaGrid>> = (0..ids.len())
        .map(|i| {
            vec![MediaGrid {
                is_video: true,
                grid_thw: [
                    grid[3 * i] as usize,
                    grid[3 * i + 1] as usize,
                    grid[3 * i + 2] as usize,
                ],
                second_per_grid: spg[i] as f64,
            }]
        })
        .collect();
    let tokens: usize = mask.iter().flatten().filter(|m| **m).count();

    // ---- model
    let dtype = if bf16 { DType::BF16 } else { DType::F32 };
    let mut model = QwenVl::<B>::from_source(base, dtype, &device).expect("load model");
    let lora = LoraConfig {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
        include_vision: false,
        use_rslora: false,
        seed: 0,
    };
    apply_lora(&mut model, &lora).expect("apply_lora");
    set_training(&mut model, true);
    let (mut params, shapes) = lora_params(&mut model);
    let n_lora: usize = params.values().map(Vec::len).sum();
    let cfg = AdamWConfig {
        lr,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.01, // torch.optim.AdamW's default
        grad_clip: 1.0,
    };
    let mut opt = AdamWState::default();
    let mut dopt = AdamW::<B::InnerBackend>::default();
    let (rows, targets) = label_rows(&ids, &labels);
    let n = rows.len();
    let loaded_rss = status_mb("VmRSS:");
    let peak_reset = reset_peak_rss();

    // ---- steps
    let (mut total, mut fwd, mut bwd, mut grd, mut opt_t, mut losses) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        // The batch is built inside the step, as sft.rs's make_batch does each micro-batch.
        let batch = Batch::<B> {
            ids: ids.clone(),
            mask: mask.clone(),
            pixel_values: Some(Tensor::from_data(
                TensorData::new(px.clone(), [px_shape[0], px_shape[1]]),
                &device,
            )),
            media: media.clone(),
            vision_embeds: None,
        };
        let (h, ..) = model.forward_hidden(&batch, false, None).expect("forward");
        let loss = if unfused {
            evalverse_train::losses::token_nll(
                model.head_at(h, &rows),
                Tensor::<B, 1, burn::tensor::Int>::from_data(
                    TensorData::new(targets.clone(), [n]),
                    &device,
                ),
            )
        } else {
            label_nll(&model, h, &rows, targets.clone())
        };
        let value: f64 = loss.clone().into_scalar().elem();
        let t1 = Instant::now();
        let grads = loss.backward();
        // On a GPU backward() returns once its kernels are queued: wait for them, so that the
        // backward phase is timed as run (and CubeCL's profiler, CUBECL_DEBUG_OPTION=profile,
        // prints its per-kernel summary here, once per step).
        B::sync(&device).expect("device sync after backward");
        let t2 = Instant::now();
        let t3;
        if host_optim {
            let mut acc: BTreeMap<String, Vec<f32>> = BTreeMap::new();
            accumulate_grads(&mut model, &grads, 1.0, &mut acc);
            t3 = Instant::now();
            clip_global_norm(&mut acc, cfg.grad_clip);
            opt.update(&cfg, cfg.lr, &mut params, &acc);
            set_lora_params(&mut model, &params, &shapes);
        } else {
            let mut acc = BTreeMap::new();
            add_lora_grads(&mut model, &grads, &mut acc);
            t3 = Instant::now();
            let norm = clip_global_norm_device(&mut acc, cfg.grad_clip, &device);
            let mut p = lora_tensors(&mut model);
            dopt.update(&cfg, cfg.lr, &mut p, &acc);
            set_lora_tensors(&mut model, &mut p);
            std::hint::black_box(scalar(norm));
        }
        B::sync(&device).expect("device sync after the update");
        let t4 = Instant::now();
        losses.push(value);
        if i >= warmup {
            total.push((t4 - t0).as_secs_f64());
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            grd.push((t3 - t2).as_secs_f64());
            opt_t.push((t4 - t3).as_secs_f64());
        }
    }
    let step = median(total.clone());
    println!(
        "{}",
        json!({
            "impl": "evalverse",
            "backend": std::any::type_name::<B>(),
            "lr": lr,
            "optimizer": if host_optim { "host" } else { "device" },
            "tokens_per_step": tokens,
            "label_tokens": n,
            "lora_params": n_lora,
            "step_s": step,
            "step_all_s": total,
            "tok_s": tokens as f64 / step,
            "forward_s": median(fwd),
            "backward_s": median(bwd),
            "grads_s": median(grd),
            "optim_s": median(opt_t),
            "losses": losses,
            "checkpointing": checkpointing,
            "base_dtype": if bf16 { "bf16" } else { "f32" },
            "peak_rss_mb": status_mb("VmHWM:"),
            // Resident after loading, and the steps' own peak (model included) where it could be
            // measured apart from the loading's.
            "loaded_rss_mb": loaded_rss,
            "steps_peak_rss_mb": if peak_reset { status_mb("VmHWM:") } else { None },
        })
    );
}
