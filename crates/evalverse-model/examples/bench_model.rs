//! CPU throughput of evalverse's Qwen2.5-VL (burn Flex backend): prefill tokens/s and generated
//! tokens/s on a checkpoint folder, the counterpart of `scripts/bench_model.py run` (same prompt
//! shape; see scripts/bench_model.sh for the side-by-side table).
//!
//! ```sh
//! cargo run --release -p evalverse-model --example bench_model -- DIR [--reps N] [--stages] [--layer] [--ops] [--skip-e2e]
//! ```
//!
//! Prompt (batch 1, 322 tokens): 32 text tokens, vision_start, 256 video tokens (grid [4, 16, 16]
//! = 1024 patch rows, second_per_grid 1.0), vision_end, 32 text tokens; token ids and pixels are
//! deterministic pseudo-random (seed 0), not the Python side's values (only the lengths match).
//!
//! Measurements (one warm-up, then the median of `--reps`, default 3):
//! * prefill: `model.forward(&batch, false, None)` (vision tower + decoder + logits at every
//!   position, as the Python side's full forward);
//! * generate_64 / generate_1: `generate` with 64 / 1 new tokens, greedy, no stop tokens;
//! * decode: 64 tokens = 1 from the prefill logits + 63 decode steps, so
//!   decode_tok_s = 63 / (generate_64 - generate_1); also `decode_tok_s_minus_forward` =
//!   64 / (generate_64 - prefill).
//!
//! `--stages` adds the parts of a prefill (vision tower, decoder layers, lm_head) and of a decode
//! step; `--layer` the per-op times of decoder layer 0 (prefill and one decode step); `--ops`
//! burn Flex throughput of the matmul / attention shapes the model runs. `--skip-e2e` leaves out
//! the end-to-end measurements. `--gen-loop N` / `--prefill-loop N` / `--vision-loop N` only run
//! `generate` (64 new tokens) / `model.forward` / the vision tower N times, for a profiler.
//! One JSON object on stdout.

use std::time::Instant;

use burn::tensor::{DType, Int, Tensor, TensorData};
use evalverse_data::rng::Rng;
use evalverse_model::generate::{generate, GenerationConfig};
use evalverse_model::model::{causal_mask, synthetic_video_prompt};
use evalverse_model::nn::{attention, repeat_kv};
use evalverse_model::text::KvCache;
use evalverse_model::{Batch, Cpu, QwenVl};
use serde_json::{json, Value};

/// Text tokens before and after the video.
const TEXT_TOKENS: usize = 32;
const GRID: [usize; 3] = [4, 16, 16];
const NEW_TOKENS: usize = 64;

type Dev = burn::tensor::Device<Cpu>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One warm-up call, then `reps` timed calls: (median seconds, all seconds).
fn timed<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, Vec<f64>) {
    std::hint::black_box(f());
    let all: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    (median(all.clone()), all)
}

/// Flex runs eagerly; reading one element makes sure a result exists before the clock stops.
fn touch<const D: usize>(t: Tensor<Cpu, D>) -> f32 {
    let n = t.shape().num_elements();
    t.reshape([n])
        .narrow(0, 0, 1)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap()[0]
}

/// Times of the parts of a prefill and of one decode step.
fn stages(model: &QwenVl<Cpu>, batch: &Batch<Cpu>, reps: usize, device: &Dev) -> Value {
    let px = batch.pixel_values.clone().unwrap();
    let (vision, _) = timed(reps, || touch(model.visual.forward(px.clone(), &[GRID])));
    let (embed, _) = timed(reps, || touch(model.embed_batch(batch).unwrap()));
    let h = model.embed_batch(batch).unwrap();
    let (pos, _) = model.positions(batch).unwrap();
    let (cos, sin) = model.model.mrope(&pos, device);
    let mask = causal_mask::<Cpu>(&batch.mask, 0, device);
    let (decoder, _) = timed(reps, || {
        let (o, _) = model
            .model
            .forward(h.clone(), &cos, &sin, Some(mask.clone()), None, false);
        touch(o)
    });
    let (last, _) = model
        .model
        .forward(h.clone(), &cos, &sin, Some(mask.clone()), None, false);
    let (head, _) = timed(reps, || touch(model.head(last.clone())));
    let (head_last, _) = timed(reps, || {
        let l = last.dims()[1];
        touch(model.head(last.clone().narrow(1, l - 1, 1)))
    });

    // One decode step at a 322 + 32 token cache, split into decoder / head.
    let mut cache = KvCache::new(model.cfg.text.num_hidden_layers);
    let out = model.forward(batch, false, Some(&mut cache)).unwrap();
    let delta = out.rope_deltas[0];
    let step = 32;
    let mut key_mask = batch.mask.clone();
    for _ in 0..step {
        let ids = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![7i64], [1, 1]), device);
        key_mask[0].push(true);
        let p = vec![vec![cache.len() as i64 + delta]];
        let (c, s) = model.model.mrope(&[p.clone(), p.clone(), p], device);
        let m = causal_mask::<Cpu>(&key_mask, cache.len(), device);
        let (o, _) = model.model.forward(
            model.model.embed(ids),
            &c,
            &s,
            Some(m),
            Some(&mut cache),
            false,
        );
        touch(o);
    }
    // Re-run the same step against a fixed cache (cloned per call so it does not grow).
    let ids = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![7i64], [1, 1]), device);
    key_mask[0].push(true);
    let p = vec![vec![cache.len() as i64 + delta]];
    let (c, s) = model.model.mrope(&[p.clone(), p.clone(), p], device);
    let m = causal_mask::<Cpu>(&key_mask, cache.len(), device);
    let (dec_step, _) = timed(reps.max(5), || {
        let mut cc = cache.clone();
        let (o, _) = model.model.forward(
            model.model.embed(ids.clone()),
            &c,
            &s,
            Some(m.clone()),
            Some(&mut cc),
            false,
        );
        touch(o)
    });
    let x1 = last.clone().narrow(1, 0, 1);
    let (head_step, _) = timed(reps.max(5), || touch(model.head(x1.clone())));
    json!({
        "vision_s": vision,
        "embed_batch_incl_vision_s": embed,
        "decoder_s": decoder,
        "lm_head_all_positions_s": head,
        "lm_head_last_position_s": head_last,
        "decode_step_decoder_s": dec_step,
        "decode_step_lm_head_s": head_step,
        "decode_step_cache_len": cache.len(),
    })
}

/// burn Flex throughput of the shapes the model runs (GFLOP/s, median of `reps` after a warm-up).
fn ops(reps: usize, device: &Dev) -> Value {
    let mut rng = Rng::new(3);
    let mut rand = |shape: &[usize]| -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect()
    };
    let mut out = serde_json::Map::new();
    // (name, m, k, n): x [m, k] @ w [k, n], w stored as the model does (a transposed [n, k] tensor).
    let shapes: [(&str, usize, usize, usize); 9] = [
        ("prefill q/o_proj 322x512x512", 322, 512, 512),
        ("prefill k/v_proj 322x512x128", 322, 512, 128),
        ("prefill gate/up 322x512x1408", 322, 512, 1408),
        ("prefill down 322x1408x512", 322, 1408, 512),
        ("prefill lm_head 322x512x32000", 322, 512, 32000),
        ("vision qkv 1024x256x768", 1024, 256, 768),
        ("vision mlp 1024x256x640", 1024, 256, 640),
        ("decode gate/up 1x512x1408", 1, 512, 1408),
        ("decode lm_head 1x512x32000", 1, 512, 32000),
    ];
    for (name, m, k, n) in shapes {
        let x = Tensor::<Cpu, 3>::from_data(TensorData::new(rand(&[1, m, k]), [1, m, k]), device);
        let w_hf = Tensor::<Cpu, 2>::from_data(TensorData::new(rand(&[n, k]), [n, k]), device);
        let w_t = w_hf.clone().transpose(); // as nn::Linear holds it: a transposed view
        let w_c = Tensor::<Cpu, 2>::from_data(w_t.clone().into_data(), device); // contiguous [k, n]
        let flops = 2.0 * (m * k * n) as f64;
        let reps_here = if m == 1 { reps.max(20) } else { reps.max(5) };
        let (t_view, _) = timed(reps_here, || {
            touch(burn::tensor::module::linear(x.clone(), w_t.clone(), None))
        });
        let (t_cont, _) = timed(reps_here, || {
            touch(burn::tensor::module::linear(x.clone(), w_c.clone(), None))
        });
        out.insert(
            format!("linear {name}"),
            json!({
                "weight_transposed_view_s": t_view, "gflops_transposed_view": flops / t_view / 1e9,
                "weight_contiguous_s": t_cont, "gflops_contiguous": flops / t_cont / 1e9,
            }),
        );
    }
    // Attention as nn::attention runs it (scores materialised, f32 softmax, GQA via repeat_kv).
    let att: [(&str, usize, usize, usize, usize, usize); 4] = [
        ("prefill text 1x8(kv2)x322x322x64", 1, 8, 2, 322, 322),
        ("decode text 1x8(kv2)x1x354x64", 1, 8, 2, 1, 354),
        ("vision window 16x4x64x64x64", 16, 4, 4, 64, 64),
        ("vision full 4x4x256x256x64", 4, 4, 4, 256, 256),
    ];
    for (name, b, nh, nkv, lq, lk) in att {
        let hd = 64;
        let q = Tensor::<Cpu, 4>::from_data(
            TensorData::new(rand(&[b, nh, lq, hd]), [b, nh, lq, hd]),
            device,
        );
        let k = Tensor::<Cpu, 4>::from_data(
            TensorData::new(rand(&[b, nkv, lk, hd]), [b, nkv, lk, hd]),
            device,
        );
        let v = k.clone();
        let mask = if lq > 1 && b == 1 {
            Some(causal_mask::<Cpu>(&[vec![true; lk]], lk - lq, device))
        } else {
            None
        };
        let flops = 4.0 * (b * nh * lq * lk * hd) as f64;
        let (t, _) = timed(reps.max(10), || {
            touch(attention(
                q.clone(),
                repeat_kv(k.clone(), nh / nkv),
                repeat_kv(v.clone(), nh / nkv),
                mask.clone(),
                0.125,
            ))
        });
        out.insert(
            format!("attention {name}"),
            json!({"s": t, "gflops": flops / t / 1e9}),
        );
    }
    Value::Object(out)
}

/// Per-op times of decoder layer 0 (the ops `TextModel::forward` runs, in order), for the prefill
/// (len 322, no cache) and for one decode step (len 1 after a 354-token cache), plus alternatives
/// (contiguous weights, burn's fused `module::attention`) that suggest fixes.
fn layer_ops(model: &QwenVl<Cpu>, reps: usize, device: &Dev) -> Value {
    use burn::tensor::activation::silu;
    use burn::tensor::module::attention as fused_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use evalverse_model::nn::apply_rotary;

    let layer = &model.model.layers[0];
    let a = &layer.self_attn;
    let (nh, nkv) = (a.num_heads, a.num_kv_heads);
    let hd = a.q_proj.d_out() / nh;
    let d = model.cfg.text.hidden_size;
    let contiguous = |w: &evalverse_model::nn::Linear<Cpu>| evalverse_model::nn::Linear {
        weight: burn::module::Param::from_tensor(Tensor::<Cpu, 2>::from_data(
            w.weight.val().into_data(),
            device,
        ))
        .set_require_grad(false),
        bias: w.bias.clone(),
        lora: None,
    };
    let mut one_layer = model.model.clone();
    one_layer.layers.truncate(1);
    let mut rng = Rng::new(5);
    let mut out = serde_json::Map::new();
    for (name, l, past) in [
        ("prefill_322", 322usize, 0usize),
        ("decode_past_354", 1, 354),
    ] {
        let total = past + l;
        let mut rand = |shape: [usize; 4]| {
            let n = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            Tensor::<Cpu, 4>::from_data(TensorData::new(v, shape), device)
        };
        let x = rand([1, 1, l, d]).reshape([1, l, d]);
        let pk = rand([1, nkv, past.max(1), hd]).narrow(2, 0, past.max(1));
        let pv = pk.clone();
        let pos: Vec<Vec<i64>> = vec![(past as i64..total as i64).collect()];
        let mut t = serde_json::Map::new();
        let mut time = |k: &str, reps: usize, f: &mut dyn FnMut() -> f32| {
            let (s, _) = timed(reps, f);
            t.insert(k.to_string(), json!(s * 1e3));
        };
        let r = if l == 1 { reps.max(50) } else { reps.max(10) };
        let key_mask = vec![vec![true; total]];
        time("build causal_mask", r, &mut || {
            touch(causal_mask::<Cpu>(&key_mask, past, device))
        });
        time("build mrope cos/sin", r, &mut || {
            touch(
                model
                    .model
                    .mrope(&[pos.clone(), pos.clone(), pos.clone()], device)
                    .0,
            )
        });
        let mask = causal_mask::<Cpu>(&key_mask, past, device);
        let (cos, sin) = model
            .model
            .mrope(&[pos.clone(), pos.clone(), pos.clone()], device);
        time("input_layernorm (RmsNorm)", r, &mut || {
            touch(layer.input_layernorm.forward(x.clone()))
        });
        time("q_proj (view weight)", r, &mut || {
            touch(a.q_proj.forward(x.clone()))
        });
        let qc = contiguous(&a.q_proj);
        time("q_proj (contiguous weight)", r, &mut || {
            touch(qc.forward(x.clone()))
        });
        time("k_proj (view weight)", r, &mut || {
            touch(a.k_proj.forward(x.clone()))
        });
        time("v_proj (view weight)", r, &mut || {
            touch(a.v_proj.forward(x.clone()))
        });
        let q = a
            .q_proj
            .forward(x.clone())
            .reshape([1, l, nh, hd])
            .swap_dims(1, 2);
        let k = a
            .k_proj
            .forward(x.clone())
            .reshape([1, l, nkv, hd])
            .swap_dims(1, 2);
        let v = a
            .v_proj
            .forward(x.clone())
            .reshape([1, l, nkv, hd])
            .swap_dims(1, 2);
        time("apply_rotary q", r, &mut || {
            touch(apply_rotary(q.clone(), cos.clone(), sin.clone()))
        });
        time("apply_rotary k", r, &mut || {
            touch(apply_rotary(k.clone(), cos.clone(), sin.clone()))
        });
        let q = apply_rotary(q.clone(), cos.clone(), sin.clone());
        let k = apply_rotary(k.clone(), cos.clone(), sin.clone());
        let (k, v) = if past > 0 {
            time("kv cache cat (k and v)", r, &mut || {
                touch(Tensor::cat(vec![pk.clone(), k.clone()], 2))
                    + touch(Tensor::cat(vec![pv.clone(), v.clone()], 2))
            });
            (
                Tensor::cat(vec![pk.clone(), k.clone()], 2),
                Tensor::cat(vec![pv.clone(), v.clone()], 2),
            )
        } else {
            (k, v)
        };
        let rep = nh / nkv;
        time("repeat_kv k and v", r, &mut || {
            touch(repeat_kv(k.clone(), rep)) + touch(repeat_kv(v.clone(), rep))
        });
        let (kr, vr) = (repeat_kv(k.clone(), rep), repeat_kv(v.clone(), rep));
        let scale = (hd as f64).powf(-0.5);
        time("nn::attention (matmul+mask+softmax+matmul)", r, &mut || {
            touch(attention(
                q.clone(),
                kr.clone(),
                vr.clone(),
                Some(mask.clone()),
                scale,
            ))
        });
        // nn::attention, step by step.
        let kt = kr.clone().swap_dims(2, 3);
        time("  attn: scores = q @ k^T", r, &mut || {
            touch(q.clone().matmul(kt.clone()))
        });
        let sc = q.clone().matmul(kt.clone());
        time("  attn: scores * scale", r, &mut || {
            touch(sc.clone() * scale)
        });
        time("  attn: scores + mask", r, &mut || {
            touch(sc.clone() + mask.clone())
        });
        time("  attn: softmax", r, &mut || {
            touch(burn::tensor::activation::softmax(sc.clone(), 3))
        });
        let p = burn::tensor::activation::softmax(sc.clone(), 3);
        time("  attn: probs @ v", r, &mut || {
            touch(p.clone().matmul(vr.clone()))
        });
        // GQA without repeat_kv: [b, kv, rep, l, hd] @ [b, kv, 1, hd, L] (broadcast matmul).
        time(
            "alt: GQA attention via 5-D broadcast matmul (no repeat_kv)",
            r,
            &mut || {
                let q5 = q.clone().reshape([1, nkv, rep, l, hd]);
                let k5 = k.clone().swap_dims(2, 3).unsqueeze_dim::<5>(2);
                let v5 = v.clone().unsqueeze_dim::<5>(2);
                let s5 = q5.matmul(k5) * scale + mask.clone().unsqueeze_dim::<5>(2);
                let o5 = burn::tensor::activation::softmax(s5, 4).matmul(v5);
                touch(o5.reshape([1, nh, l, hd]))
            },
        );
        let opts = AttentionModuleOptions {
            scale: Some(scale),
            softcap: None,
            is_causal: true,
        };
        time(
            "alt: burn module::attention is_causal (fused)",
            r,
            &mut || {
                touch(fused_attention(
                    q.clone(),
                    kr.clone(),
                    vr.clone(),
                    None,
                    None,
                    opts,
                ))
            },
        );
        let o = attention(q.clone(), kr.clone(), vr.clone(), Some(mask.clone()), scale);
        time("o swap_dims+reshape", r, &mut || {
            touch(o.clone().swap_dims(1, 2).reshape([1, l, nh * hd]))
        });
        let o2 = o.clone().swap_dims(1, 2).reshape([1, l, nh * hd]);
        time("o_proj (view weight)", r, &mut || {
            touch(a.o_proj.forward(o2.clone()))
        });
        time("residual add", r, &mut || touch(x.clone() + o2.clone()));
        time("post_attention_layernorm", r, &mut || {
            touch(layer.post_attention_layernorm.forward(x.clone()))
        });
        let m = &layer.mlp;
        time("gate_proj (view weight)", r, &mut || {
            touch(m.gate_proj.forward(x.clone()))
        });
        let gc = contiguous(&m.gate_proj);
        time("gate_proj (contiguous weight)", r, &mut || {
            touch(gc.forward(x.clone()))
        });
        time("up_proj (view weight)", r, &mut || {
            touch(m.up_proj.forward(x.clone()))
        });
        let g = m.gate_proj.forward(x.clone());
        let u = m.up_proj.forward(x.clone());
        time("silu(gate) * up", r, &mut || {
            touch(silu(g.clone()) * u.clone())
        });
        let gu = silu(g.clone()) * u.clone();
        time("down_proj (view weight)", r, &mut || {
            touch(m.down_proj.forward(gu.clone()))
        });
        let dc = contiguous(&m.down_proj);
        time("down_proj (contiguous weight)", r, &mut || {
            touch(dc.forward(gu.clone()))
        });
        // The whole layer as TextModel::forward runs it (plus the final norm).
        time("WHOLE layer (TextModel::forward, 1 layer)", r, &mut || {
            let mut cache = KvCache::new(1);
            if past > 0 {
                cache.layers[0] = Some((pk.clone(), pv.clone()));
            }
            let (h, _) = one_layer.forward(
                x.clone(),
                &cos,
                &sin,
                Some(mask.clone()),
                Some(&mut cache),
                false,
            );
            touch(h)
        });
        let xl = x.clone().narrow(1, l - 1, 1);
        time(
            "lm_head last position (view weight)",
            r.min(20),
            &mut || touch(model.head(xl.clone())),
        );
        if let Some(head) = &model.lm_head {
            let hc = contiguous(head);
            time(
                "lm_head last position (contiguous weight)",
                r.min(20),
                &mut || touch(hc.forward(xl.clone())),
            );
        }
        out.insert(name.to_string(), Value::Object(t));
    }
    json!({"unit": "ms, median", "layer0": out})
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps_at = args.iter().position(|a| a == "--reps");
    let reps = reps_at
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse().expect("--reps N"))
        .unwrap_or(3usize);
    let dir = args
        .iter()
        .enumerate()
        .find(|&(i, a)| {
            !a.starts_with("--")
                && (i == 0
                    || !["--reps", "--gen-loop", "--prefill-loop", "--vision-loop"]
                        .contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| "/tmp/evalverse_bench_small".into());
    let flag = |f: &str| args.iter().any(|a| a == f);
    let device = Dev::default();
    let t = Instant::now();
    let model = QwenVl::<Cpu>::from_source(&dir, DType::F32, &device).expect("load the model");
    let load_s = t.elapsed().as_secs_f64();
    let batch = synthetic_video_prompt::<Cpu>(&model.cfg, GRID, TEXT_TOKENS, &device);
    let prompt_len = batch.ids[0].len();

    // For profilers (perf record ...): only run `generate` (64 new tokens) N times, or the
    // vision tower N times, and exit.
    let count = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .map(|s| s.parse::<usize>().expect("a count"))
    };
    if let Some(n) = count("--gen-loop") {
        for _ in 0..n {
            generate(
                &model,
                &batch,
                &GenerationConfig::greedy(NEW_TOKENS, vec![]),
            )
            .unwrap();
        }
        return;
    }
    if let Some(n) = count("--prefill-loop") {
        for _ in 0..n {
            touch(model.forward(&batch, false, None).unwrap().logits);
        }
        return;
    }
    if let Some(n) = count("--vision-loop") {
        let px = batch.pixel_values.clone().unwrap();
        for _ in 0..n {
            touch(model.visual.forward(px.clone(), &[GRID]));
        }
        return;
    }
    let mut res = json!({
        "impl": "evalverse-flex",
        // Cores available; whether burn Flex uses more than one depends on burn-flex's `rayon`
        // feature (off unless a dependency turns it on).
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "load_s": load_s,
        "prompt_tokens": prompt_len,
        "new_tokens": NEW_TOKENS,
        "reps": reps,
    });
    if !flag("--skip-e2e") {
        let (prefill, prefill_all) = timed(reps, || {
            touch(model.forward(&batch, false, None).unwrap().logits)
        });
        let gen =
            |n: usize| generate(&model, &batch, &GenerationConfig::greedy(n, vec![])).unwrap();
        let (g64, g64_all) = timed(reps, || gen(NEW_TOKENS));
        let (g1, g1_all) = timed(reps, || gen(1));
        let out = gen(NEW_TOKENS);
        assert_eq!(out.tokens[0].len(), NEW_TOKENS);
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let e2e = json!({
            "prefill_s": prefill,
            "prefill_all_s": prefill_all,
            "prefill_tok_s": prompt_len as f64 / prefill,
            "prefill_tok_s_best": prompt_len as f64 / min(&prefill_all),
            "generate_64_s": g64,
            "generate_64_all_s": g64_all,
            "generate_1_s": g1,
            "generate_1_all_s": g1_all,
            "decode_s_per_token": (g64 - g1) / (NEW_TOKENS - 1) as f64,
            "decode_tok_s": (NEW_TOKENS - 1) as f64 / (g64 - g1),
            "decode_tok_s_best": (NEW_TOKENS - 1) as f64 / (min(&g64_all) - min(&g1_all)),
            "decode_tok_s_minus_forward": NEW_TOKENS as f64 / (g64 - prefill),
            "first_generated": &out.tokens[0][..8],
        });
        for (k, v) in e2e.as_object().unwrap() {
            res[k] = v.clone();
        }
    }
    if flag("--stages") {
        res["stages"] = stages(&model, &batch, reps, &device);
    }
    if flag("--layer") {
        res["layer"] = layer_ops(&model, reps, &device);
    }
    if flag("--ops") {
        res["ops"] = ops(reps, &device);
    }
    println!("{res}");
}
