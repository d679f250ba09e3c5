//! Parity with transformers 4.57.1 on the Qwen2-VL and Qwen3-VL families: tiny random checkpoints
//! made by scripts/make_family_fixtures.py (fixtures/families/), a batch of two left-padded
//! prompts with one video each (grids (2, 4, 6) and (3, 2, 2) patches). Qwen2-VL: original key
//! layout, untied head, LayerNorm + QuickGELU vision blocks with full attention per temporal
//! patch, the frame index as M-RoPE time. Qwen3-VL: `model.visual.*` / `model.language_model.*`
//! keys, tied head, patch 16 with a bias, an 8x8 position table interpolated to each grid,
//! DeepStack at vision layers 0 and 2, head_dim 24 (not hidden / heads), q/k norm, interleaved
//! M-RoPE, per-frame prompt blocks. Position ids must match exactly; the vision output (and each
//! DeepStack level), every layer's hidden states and the logits within the relative 1e-4 that
//! Qwen2.5-VL meets in tests/parity.rs.

mod common;

use burn::tensor::{DType, Tensor, TensorData};
use common::{fixtures, Case};
use evalverse_model::config::{Family, QwenVlConfig};
use evalverse_model::position::MediaGrid;
use evalverse_model::{Batch, Cpu, QwenVl};

const TOL: f64 = 1e-4;

/// The case's batch: ids, mask, all pixel rows, one video per sequence.
fn batch<B: burn::tensor::backend::Backend>(case: &Case, device: &B::Device) -> Batch<B> {
    let (ids, shape) = case.get("input_ids");
    let (b, l) = (shape[0], shape[1]);
    let mask = case.ints("attention_mask");
    let (pv, ps) = case.get("pixel_values_videos");
    let grids = case.ints("video_grid_thw");
    let spg = &case.get("second_per_grid_ts").0;
    Batch {
        ids: (0..b)
            .map(|i| ids[i * l..(i + 1) * l].iter().map(|&x| x as u32).collect())
            .collect(),
        mask: (0..b)
            .map(|i| mask[i * l..(i + 1) * l].iter().map(|&x| x == 1).collect())
            .collect(),
        pixel_values: Some(Tensor::from_data(
            TensorData::new(pv.iter().map(|&x| x as f32).collect(), [ps[0], ps[1]]),
            device,
        )),
        media: (0..b)
            .map(|i| {
                vec![MediaGrid {
                    is_video: true,
                    grid_thw: [0, 1, 2].map(|k| grids[3 * i + k] as usize),
                    second_per_grid: spg[i],
                }]
            })
            .collect(),
        vision_embeds: None,
    }
}

/// Max |got - want| / max |want| over the rows (of `width` values) where `keep` is true.
fn rel<const D: usize>(got: Tensor<Cpu, D>, want: &[f64], keep: &[bool], width: usize) -> f64 {
    let got: Vec<f32> = got.into_data().convert::<f32>().to_vec().unwrap();
    let (md, mr) = common::max_diff(&got, want, keep, width);
    assert!(mr > 0.1, "reference values are degenerate (max |ref| {mr})");
    md / mr
}

fn check_family(family: &str) {
    let device = Default::default();
    let dir = fixtures().join("families").join(family);
    let model = QwenVl::<Cpu>::from_source(dir.to_str().unwrap(), DType::F32, &device).unwrap();
    assert_eq!(model.cfg.family.model_type(), family);
    let case = Case::load(&format!("families/case_{family}.safetensors"));
    let batch = batch(&case, &device);
    let out = model.forward(&batch, true, None).unwrap();
    let got_pos: Vec<i64> = out
        .position_ids
        .iter()
        .flat_map(|a| a.iter().flatten().copied())
        .collect();
    assert_eq!(got_pos, case.ints("position_ids"), "{family}: position ids");
    assert_eq!(
        out.rope_deltas,
        case.ints("rope_deltas"),
        "{family}: rope deltas"
    );

    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let d = model.cfg.text.hidden_size;
    let mut report = vec![];
    let grids: Vec<[usize; 3]> = batch.media.iter().flatten().map(|m| m.grid_thw).collect();
    let vis = model
        .visual
        .forward(batch.pixel_values.clone().unwrap(), &grids);
    let n_tok = vis.dims()[0];
    let levels = model.cfg.vision.deepstack_visual_indexes.len();
    assert_eq!(vis.dims()[1], d * (1 + levels));
    let mut names = vec!["video_embeds".to_string()];
    names.extend((0..levels).map(|j| format!("deepstack_{j}")));
    for (k, name) in names.iter().enumerate() {
        let part = vis.clone().narrow(1, k * d, d);
        let r = rel(part, &case.get(name).0, &vec![true; n_tok], d);
        report.push(format!("{name} {r:.1e}"));
        assert!(r < TOL, "{family}: {name} rel err {r}");
    }
    let n_layers = model.cfg.text.num_hidden_layers;
    assert_eq!(out.hidden_states.len(), n_layers + 1);
    let mut hidden_names = vec!["hidden_embed".to_string()];
    hidden_names.extend((0..n_layers).map(|i| format!("hidden_layer_{i}")));
    for (k, name) in hidden_names.iter().enumerate() {
        let r = rel(out.hidden_states[k].clone(), &case.get(name).0, &keep, d);
        report.push(format!("{name} {r:.1e}"));
        assert!(r < TOL, "{family}: {name} rel err {r}");
    }
    let r = rel(
        out.last_hidden.clone(),
        &case.get("hidden_final_norm").0,
        &keep,
        d,
    );
    assert!(r < TOL, "{family}: final norm rel err {r}");
    let v = model.cfg.text.vocab_size;
    let got: Vec<f32> = out
        .logits
        .clone()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let (md, mr) = common::max_diff(&got, &case.get("logits").0, &keep, v);
    report.push(format!(
        "logits max|d| {md:.2e} (max|ref| {mr:.2}, rel {:.1e})",
        md / mr
    ));
    println!("{family}: {}", report.join("; "));
    assert!(md / mr < TOL, "{family}: logits rel err {}", md / mr);
}

#[test]
fn qwen2_vl_video_batch_matches_transformers() {
    check_family("qwen2_vl");
}

#[test]
fn qwen3_vl_video_batch_matches_transformers() {
    check_family("qwen3_vl");
}

/// DeepStack changes what the decoder computes: without its additions the Qwen3-VL logits leave
/// the reference (so the parity above is not met by the main merger alone).
#[test]
fn qwen3_vl_without_deepstack_misses_the_reference() {
    let device = Default::default();
    let dir = fixtures().join("families/qwen3_vl");
    let model = QwenVl::<Cpu>::from_source(dir.to_str().unwrap(), DType::F32, &device).unwrap();
    let case = Case::load("families/case_qwen3_vl.safetensors");
    let batch = batch(&case, &device);
    let (h, _) = model.embed_batch_deepstack(&batch).unwrap();
    let (pos, _) = model.positions(&batch).unwrap();
    let (cos, sin) = model.model.mrope(&pos, &device);
    let mask = evalverse_model::model::causal_mask::<Cpu>(&batch.mask, 0, &device);
    let (last, _) = model.model.forward(h, &cos, &sin, Some(mask), None, false);
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let r = rel(
        model.head(last),
        &case.get("logits").0,
        &keep,
        model.cfg.text.vocab_size,
    );
    assert!(
        r > 1e-2,
        "logits without DeepStack are within {r} of the reference"
    );
}

#[test]
fn qwen2_vl_flat_hub_config_reads_as_the_saved_one() {
    let fx = fixtures().join("families");
    let saved = QwenVlConfig::from_file(&fx.join("qwen2_vl/config.json")).unwrap();
    let flat = QwenVlConfig::from_file(&fx.join("qwen2_vl.hub_flat.json")).unwrap();
    assert_eq!(flat, saved);
    // Qwen2-VL's vision keys: embed_dim is the ViT width, hidden_size the merger output,
    // mlp_ratio the MLP width.
    assert_eq!(saved.family, Family::Qwen2Vl);
    assert_eq!(saved.vision.hidden_size, 32);
    assert_eq!(saved.vision.out_hidden_size, 64);
    assert_eq!(saved.vision.intermediate_size, 64);
    assert_eq!(saved.vision.window_size, None);
}

#[test]
fn qwen3_vl_config_reads_its_family_choices() {
    let c = QwenVlConfig::from_file(&fixtures().join("families/qwen3_vl/config.json")).unwrap();
    assert_eq!(c.family, Family::Qwen3Vl);
    assert_eq!(c.text.head_dim, 24);
    assert!(c.text.qk_norm && c.text.mrope_interleaved && !c.text.qkv_bias);
    assert_eq!(c.vision.num_position_embeddings, Some(64));
    assert_eq!(c.vision.deepstack_visual_indexes, vec![0, 2]);
    assert!(c.vision.patch_bias);
}

/// `model init --family F` (init::write_random_checkpoint of `small_config_for(F, ..)`): a random
/// checkpoint of each family that loads through the same path as a downloaded one (every tensor
/// taken, none left over) and runs a video prompt to finite logits.
#[test]
fn init_writes_a_loadable_checkpoint_of_each_family() {
    use evalverse_model::init::{small_config_for, write_random_checkpoint};
    for family in [Family::Qwen2Vl, Family::Qwen2_5Vl, Family::Qwen3Vl] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_config_for(family, 151_936, 32, 2, 2, 1, 32, 2);
        write_random_checkpoint(dir.path(), &cfg, 7).unwrap();
        let device = Default::default();
        let model =
            QwenVl::<Cpu>::from_source(dir.path().to_str().unwrap(), DType::F32, &device).unwrap();
        assert_eq!(model.cfg.family, family);
        let batch = evalverse_model::model::synthetic_video_prompt::<Cpu>(
            &model.cfg,
            [2, 4, 4],
            3,
            &device,
        );
        let out = model.forward(&batch, false, None).unwrap();
        let logits: Vec<f32> = out.logits.into_data().convert::<f32>().to_vec().unwrap();
        assert!(logits.iter().all(|x| x.is_finite()), "{family:?}");
        let stored = safetensors::SafeTensors::deserialize(
            &std::fs::read(dir.path().join("model.safetensors")).unwrap(),
        )
        .unwrap()
        .names()
        .into_iter()
        .any(|k| k.starts_with("model.visual."));
        // Qwen3-VL's transformers class reads only its own key layout.
        assert_eq!(stored, family == Family::Qwen3Vl, "{family:?} key layout");
    }
}

/// A PEFT adapter on each new family (the seven language-model projections and vision modules
/// named by the family: Qwen2-VL `mlp.fc1`, Qwen3-VL `mlp.linear_fc1` and the DeepStack mergers'
/// `linear_fc2`; scripts/make_family_lora_fixtures.py) loads by its PEFT names and gives PEFT's
/// logits.
#[test]
fn peft_adapters_on_the_new_families_give_peft_logits() {
    for (family, modules) in [("qwen2_vl", 17), ("qwen3_vl", 27)] {
        let r = adapter_logits_rel(
            family,
            &format!("lora_{family}"),
            modules,
            "peft_adapter_logits",
        );
        println!("{family}: PEFT adapter logits rel err {r:.1e}");
        assert!(r < TOL, "{family}: PEFT adapter logits rel err {r}");
    }
}

/// The relative error of evalverse's logits with the adapter in `families/<adapter>` (which must
/// adapt `modules` linears) loaded on `family`'s fixture, against the fixture's `key` logits.
fn adapter_logits_rel(family: &str, adapter: &str, modules: usize, key: &str) -> f64 {
    let device = Default::default();
    let fx = fixtures().join("families");
    let mut model =
        QwenVl::<Cpu>::from_source(fx.join(family).to_str().unwrap(), DType::F32, &device).unwrap();
    evalverse_model::lora::load_peft(&mut model, &fx.join(adapter)).unwrap();
    let mut adapted = 0;
    model.for_each_linear(|_, l| adapted += l.lora.is_some() as usize);
    assert_eq!(adapted, modules, "{family}: adapted modules");
    let case = Case::load(&format!("families/case_{family}.safetensors"));
    let batch = batch(&case, &device);
    let out = model.forward(&batch, false, None).unwrap();
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let want = Case::load(&format!("families/lora_{family}_logits.safetensors"));
    rel(
        out.logits,
        &want.get(key).0,
        &keep,
        model.cfg.text.vocab_size,
    )
}

/// `export --format merged` of a Qwen3-VL base with an adapter: written in Qwen3-VL's own key
/// layout (its transformers class has no conversion from `visual.*` / `model.*`), and the merged
/// folder gives the logits PEFT gives for base + adapter.
#[test]
fn qwen3_vl_merged_export_keeps_its_key_layout_and_the_adapters_logits() {
    use evalverse_model::export::{write_merged, Adapter, MergeOptions};
    use evalverse_model::weights::CheckpointFiles;
    let fx = fixtures().join("families");
    let files = CheckpointFiles::in_folder(&fx.join("qwen3_vl")).unwrap();
    let adapter = Adapter::read(&fx.join("lora_qwen3_vl")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let summary = write_merged(
        &files,
        Some(&adapter),
        out.path(),
        &MergeOptions {
            max_shard_bytes: 1 << 30,
            dtype: None,
        },
    )
    .unwrap();
    assert_eq!(summary.merged_modules, 27);
    std::fs::copy(
        fx.join("qwen3_vl/config.json"),
        out.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect();
    assert!(
        names
            .iter()
            .all(|k| k.starts_with("model.visual.") || k.starts_with("model.language_model.")),
        "{names:?}"
    );
    let device = Default::default();
    let model =
        QwenVl::<Cpu>::from_source(out.path().to_str().unwrap(), DType::F32, &device).unwrap();
    let case = Case::load("families/case_qwen3_vl.safetensors");
    let batch = batch(&case, &device);
    let logits = model.forward(&batch, false, None).unwrap().logits;
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let want = Case::load("families/lora_qwen3_vl_logits.safetensors");
    let r = rel(
        logits,
        &want.get("peft_adapter_logits").0,
        &keep,
        model.cfg.text.vocab_size,
    );
    assert!(r < TOL, "merged export logits rel err {r}");
}

/// Greedy generation with the KV cache on the left-padded video batch (positions continue at
/// index + rope delta; DeepStack only in the prefill) gives the tokens transformers' generate
/// gives (each step's best token leads by more than 1e-3 in the fixture).
#[test]
fn greedy_generation_matches_transformers_on_the_new_families() {
    use evalverse_model::generate::{generate, GenerationConfig};
    for family in ["qwen2_vl", "qwen3_vl"] {
        let device = Default::default();
        let fx = fixtures().join("families");
        let model =
            QwenVl::<Cpu>::from_source(fx.join(family).to_str().unwrap(), DType::F32, &device)
                .unwrap();
        let case = Case::load(&format!("families/case_{family}.safetensors"));
        let (want, shape) = case.get("generated_ids");
        let n = shape[1];
        let got = generate(
            &model,
            &batch(&case, &device),
            &GenerationConfig::greedy(n, vec![]),
        )
        .unwrap();
        for (i, toks) in got.tokens.iter().enumerate() {
            let want: Vec<u32> = want[i * n..(i + 1) * n].iter().map(|&x| x as u32).collect();
            assert_eq!(toks, &want, "{family}: sequence {i}");
        }
    }
}

/// bf16 base weights (the GPU path) on Qwen3-VL: held in bf16, and the logits follow
/// transformers' f32 logits to bf16 precision (the bound Qwen2.5-VL meets in tests/parity.rs).
#[test]
fn qwen3_vl_bf16_weights_follow_the_f32_logits() {
    let device = Default::default();
    let dir = fixtures().join("families/qwen3_vl");
    let model = QwenVl::<Cpu>::from_source(dir.to_str().unwrap(), DType::BF16, &device).unwrap();
    let layer = &model.model.layers[0];
    let norm = layer.self_attn.q_norm.as_ref().unwrap();
    let table = model.visual.pos_embed.as_ref().unwrap();
    for (name, dtype) in [
        ("q_norm", norm.weight.val().dtype()),
        ("pos_embed", table.val().dtype()),
        ("patch_embed", model.visual.patch_embed.weight.val().dtype()),
    ] {
        assert_eq!(dtype, DType::BF16, "{name}");
    }
    let case = Case::load("families/case_qwen3_vl.safetensors");
    let batch = batch(&case, &device);
    let out = model.forward(&batch, false, None).unwrap();
    let keep: Vec<bool> = batch.mask.iter().flatten().copied().collect();
    let r = rel(
        out.logits.cast(DType::F32),
        &case.get("logits").0,
        &keep,
        model.cfg.text.vocab_size,
    );
    println!("qwen3_vl bf16 weights: logits rel err {r:.2e}");
    assert!(r < 5e-2, "bf16 logits rel err {r}");
}

/// Keys a config.json may leave out take transformers 4.57's defaults, not a guess: Qwen3-VL's
/// head_dim 128 (not hidden / heads; here it then contradicts mrope_section, which is refused),
/// Qwen2-VL's rms_norm_eps 1e-5, its vision hidden_act quick_gelu and mlp_ratio 4.
#[test]
fn absent_keys_take_the_transformers_defaults() {
    let fx = fixtures().join("families");
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fx.join(p)).unwrap()).unwrap()
    };
    let mut q3 = read("qwen3_vl/config.json");
    q3["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("head_dim");
    let e = QwenVlConfig::from_json_str(&q3.to_string(), std::path::Path::new("config.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("head_dim/2 = 64"), "{e}");
    let mut q2 = read("qwen2_vl/config.json");
    q2["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("rms_norm_eps");
    let v = q2["vision_config"].as_object_mut().unwrap();
    v.remove("hidden_act");
    v.remove("mlp_ratio");
    let c =
        QwenVlConfig::from_json_str(&q2.to_string(), std::path::Path::new("config.json")).unwrap();
    assert_eq!(c.text.rms_norm_eps, 1e-5);
    assert_eq!(
        c.vision.hidden_act,
        evalverse_model::config::Activation::QuickGelu
    );
    assert_eq!(c.vision.intermediate_size, 4 * 32);
}

/// Training through the new blocks: with a PEFT adapter on Qwen3-VL (decoder projections, which
/// feed q/k RMSNorm and interleaved M-RoPE; vision linear_fc1, behind LayerNorm and GELU-tanh;
/// DeepStack merger linear_fc2, whose output reaches the decoder only through the DeepStack
/// addition), autodiff's gradient of a fixed linear function of the logits with respect to
/// lora_B entries equals the central finite difference, and the frozen base gets no gradient.
#[test]
fn qwen3_vl_lora_gradients_match_finite_differences() {
    use burn::backend::Autodiff;
    use burn::module::Param;
    type Ad = Autodiff<Cpu>;
    let fx = fixtures().join("families");
    let case = Case::load("families/case_qwen3_vl.safetensors");
    let device = Default::default();
    let load = || {
        let mut m =
            QwenVl::<Cpu>::from_source(fx.join("qwen3_vl").to_str().unwrap(), DType::F32, &device)
                .unwrap();
        evalverse_model::lora::load_peft(&mut m, &fx.join("lora_qwen3_vl")).unwrap();
        m
    };
    // Fixed weights over the logits, zero at padding: loss = sum(logits * w).
    let b = batch::<Cpu>(&case, &device);
    let (bl, v) = (b.ids.len() * b.ids[0].len(), 256);
    let keep: Vec<bool> = b.mask.iter().flatten().copied().collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let w: Vec<f32> = (0..bl * v)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let u = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            if keep[i / v] {
                (u * 0.05) as f32
            } else {
                0.0
            }
        })
        .collect();
    let wt = |dev: &_| {
        Tensor::<Cpu, 3>::from_data(
            TensorData::new(w.clone(), [b.ids.len(), b.ids[0].len(), v]),
            dev,
        )
    };
    let loss_of = |m: &QwenVl<Cpu>| -> f64 {
        let lg = m
            .forward(&batch::<Cpu>(&case, &device), false, None)
            .unwrap()
            .logits;
        (lg * wt(&device)).sum().into_scalar() as f64
    };

    let mut ad =
        QwenVl::<Ad>::from_source(fx.join("qwen3_vl").to_str().unwrap(), DType::F32, &device)
            .unwrap();
    evalverse_model::lora::load_peft(&mut ad, &fx.join("lora_qwen3_vl")).unwrap();
    let logits = ad
        .forward(&batch::<Ad>(&case, &device), false, None)
        .unwrap()
        .logits;
    let loss = (logits * Tensor::<Ad, 3>::from_inner(wt(&device))).sum();
    let grads = loss.backward();
    assert!(ad.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .val()
        .grad(&grads)
        .is_none());
    let paths = [
        "model.layers.0.self_attn.q_proj",
        "visual.blocks.1.mlp.linear_fc1",
        "visual.deepstack_merger_list.1.linear_fc2",
    ];
    let mut picked: Vec<(String, usize, f64)> = vec![];
    ad.for_each_linear(|path, lin| {
        if paths.contains(&path) {
            let g: Vec<f32> = lin
                .lora
                .as_ref()
                .unwrap()
                .lora_b
                .val()
                .grad(&grads)
                .expect("lora_B has a gradient")
                .into_data()
                .to_vec()
                .unwrap();
            // The entry with the largest gradient.
            let (i, gi) = g
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            picked.push((path.to_string(), i, *gi as f64));
        }
    });
    assert_eq!(picked.len(), 3);
    let h = 1e-2f32;
    for (path, i, g) in picked {
        let at = |delta: f32| {
            let mut m = load();
            m.for_each_linear(|p, lin| {
                if p == path {
                    let l = lin.lora.as_mut().unwrap();
                    let t = l.lora_b.val();
                    let dims = t.dims();
                    let mut vals: Vec<f32> = t.into_data().to_vec().unwrap();
                    vals[i] += delta;
                    l.lora_b =
                        Param::from_tensor(Tensor::from_data(TensorData::new(vals, dims), &device));
                }
            });
            loss_of(&m)
        };
        let fd = (at(h) - at(-h)) / (2.0 * h as f64);
        let rel = (fd - g).abs() / g.abs().max(1e-12);
        println!("{path}: autodiff {g:.6e}, finite difference {fd:.6e} (rel {rel:.1e})");
        assert!(g.abs() > 1e-4, "{path}: gradient too small to check ({g})");
        assert!(rel < 2e-3, "{path}: autodiff {g} vs finite difference {fd}");
    }
}

/// The published sizes parse and give the published parameter counts
/// (../shared/reference/QWEN_VL.md §1.0, computed from the released configs): the tensor
/// inventory the loader and `model init` share (`init::tensor_shapes`) has the right modules
/// and shapes at full size (Qwen3-VL-4B's head_dim 128 with hidden 2560 and 32 heads, DeepStack
/// mergers over 4x the ViT width, the 48x48 position table, Qwen2-VL's mlp_ratio).
#[test]
fn published_sizes_give_the_published_parameter_counts() {
    use evalverse_model::init::tensor_shapes;
    let qwen3 = |vd: usize,
                 vi: usize,
                 depth: usize,
                 ds: [usize; 3],
                 d: usize,
                 i: usize,
                 l: usize,
                 h: usize,
                 tied: bool| {
        serde_json::json!({
            "model_type": "qwen3_vl", "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "tie_word_embeddings": tied,
            "text_config": {"vocab_size": 151936, "hidden_size": d, "intermediate_size": i,
                "num_hidden_layers": l, "num_attention_heads": h, "num_key_value_heads": 8,
                "head_dim": 128, "rms_norm_eps": 1e-6, "rope_theta": 5000000,
                "rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_type": "default"},
                "max_position_embeddings": 262144, "tie_word_embeddings": tied, "attention_bias": false},
            "vision_config": {"depth": depth, "hidden_size": vd, "intermediate_size": vi, "num_heads": 16,
                "in_channels": 3, "out_hidden_size": d, "patch_size": 16, "spatial_merge_size": 2,
                "temporal_patch_size": 2, "num_position_embeddings": 2304, "hidden_act": "gelu_pytorch_tanh",
                "deepstack_visual_indexes": ds}
        })
    };
    let qwen2 = |d: usize, i: usize, h: usize, kv: usize, vocab: usize, tied: bool| {
        serde_json::json!({
            "model_type": "qwen2_vl", "vocab_size": vocab, "hidden_size": d, "intermediate_size": i,
            "num_hidden_layers": 28, "num_attention_heads": h, "num_key_value_heads": kv,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
            "tie_word_embeddings": tied, "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16,
                "in_chans": 3, "hidden_size": d, "patch_size": 14, "spatial_merge_size": 2,
                "spatial_patch_size": 14, "temporal_patch_size": 2}
        })
    };
    let cases = [
        (
            "Qwen3-VL-2B",
            qwen3(1024, 4096, 24, [5, 11, 17], 2048, 6144, 28, 16, true),
            407.0,
            1720.6,
        ),
        (
            "Qwen3-VL-4B",
            qwen3(1024, 4096, 24, [5, 11, 17], 2560, 9728, 36, 32, true),
            415.3,
            4022.5,
        ),
        (
            "Qwen3-VL-8B",
            qwen3(1152, 4304, 27, [8, 16, 24], 4096, 12288, 36, 32, false),
            576.4,
            8190.7,
        ),
        (
            "Qwen2-VL-2B",
            qwen2(1536, 8960, 12, 2, 151936, true),
            665.3,
            1543.7,
        ),
        (
            "Qwen2-VL-7B",
            qwen2(3584, 18944, 28, 4, 152064, false),
            675.8,
            7615.6,
        ),
    ];
    for (name, json, vision_m, lm_m) in cases {
        let cfg =
            QwenVlConfig::from_json_str(&json.to_string(), std::path::Path::new(name)).unwrap();
        let (mut vision, mut lm) = (0usize, 0usize);
        for (key, shape) in tensor_shapes(&cfg) {
            let n: usize = shape.iter().product();
            if key.starts_with("visual.") {
                vision += n;
            } else {
                lm += n;
            }
        }
        let (v, l) = (vision as f64 / 1e6, lm as f64 / 1e6);
        println!("{name}: vision {v:.1}M, LM {l:.1}M");
        assert!(
            (v - vision_m).abs() < 0.06,
            "{name}: vision {v:.2}M, published {vision_m}M"
        );
        assert!(
            (l - lm_m).abs() < 0.06,
            "{name}: LM {l:.2}M, published {lm_m}M"
        );
    }
}

/// The other direction: an adapter evalverse wrote on each new family (random B; the seven
/// language-model projections and every vision module named fc1 / linear_fc1, the mergers'
/// included; examples/make_lora_fixture.rs) loads in PEFT, and PEFT's logits for it are
/// evalverse's.
#[test]
fn evalverse_adapters_on_the_new_families_give_the_logits_peft_computes() {
    for (family, modules) in [("qwen2_vl", 17), ("qwen3_vl", 28)] {
        let adapter = format!("lora_evalverse_{family}");
        let r = adapter_logits_rel(family, &adapter, modules, "evalverse_adapter_logits");
        println!("{family}: evalverse adapter in PEFT: logits rel err {r:.1e}");
        assert!(r < TOL, "{family}: evalverse adapter logits rel err {r}");
    }
}
