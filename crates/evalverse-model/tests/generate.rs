//! Generation with the KV cache agrees with recomputing the whole sequence, a left-padded batch
//! generates what each prompt generates alone, stop tokens stop, and the score readout is a
//! distribution over the score tokens.

mod common;

use burn::tensor::activation::log_softmax;
use burn::tensor::DType;
use common::{batch, fixtures, load_case};
use evalverse_model::generate::{generate, pick, score_distribution, GenerationConfig};
use evalverse_model::{Batch, Cpu, QwenVl};

fn model() -> QwenVl<Cpu> {
    QwenVl::<Cpu>::from_source(
        fixtures().join("tiny_a").to_str().unwrap(),
        DType::F32,
        &Default::default(),
    )
    .unwrap()
}

/// Sequence `i` of a batch alone, padding removed, with its own video rows.
fn single(b: &Batch<Cpu>, i: usize) -> Batch<Cpu> {
    let keep: Vec<usize> = (0..b.ids[i].len()).filter(|&j| b.mask[i][j]).collect();
    let rows_before: usize = b.media[..i]
        .iter()
        .flatten()
        .map(|m| m.grid_thw.iter().product::<usize>())
        .sum();
    let rows: usize = b.media[i]
        .iter()
        .map(|m| m.grid_thw.iter().product::<usize>())
        .sum();
    Batch {
        ids: vec![keep.iter().map(|&j| b.ids[i][j]).collect()],
        mask: vec![vec![true; keep.len()]],
        pixel_values: b
            .pixel_values
            .clone()
            .map(|p| p.narrow(0, rows_before, rows)),
        media: vec![b.media[i].clone()],
        vision_embeds: None,
    }
}

#[test]
fn greedy_generation_with_cache_matches_full_recompute() {
    let m = model();
    let b = batch(&load_case("case_video_a.safetensors"), &Default::default());
    let cfg = GenerationConfig::greedy(6, vec![]);
    let g = generate(&m, &b, &cfg).unwrap();
    for i in 0..2 {
        assert_eq!(g.tokens[i].len(), 6);
        let mut full = single(&b, i);
        let prompt = full.ids[0].len();
        full.ids[0].extend(&g.tokens[i]);
        full.mask[0].extend(vec![true; 6]);
        let out = m.forward(&full, false, None).unwrap();
        let lp: Vec<f32> = log_softmax(out.logits, 2)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        let v = m.cfg.text.vocab_size;
        for k in 0..6 {
            let row = &lp[(prompt - 1 + k) * v..(prompt + k) * v];
            let argmax = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32;
            assert_eq!(argmax, g.tokens[i][k], "sequence {i} step {k}");
            let want = row[g.tokens[i][k] as usize];
            assert!(
                (want - g.logprobs[i][k]).abs() < 1e-4,
                "sequence {i} step {k}: {want} vs {}",
                g.logprobs[i][k]
            );
        }
    }
}

#[test]
fn left_padded_batch_generates_what_each_prompt_generates_alone() {
    let m = model();
    let b = batch(&load_case("case_video_a.safetensors"), &Default::default());
    let cfg = GenerationConfig::greedy(5, vec![]);
    let together = generate(&m, &b, &cfg).unwrap();
    for i in 0..2 {
        let alone = generate(&m, &single(&b, i), &cfg).unwrap();
        assert_eq!(alone.tokens[0], together.tokens[i], "sequence {i}");
    }
}

#[test]
fn generation_stops_at_a_stop_token() {
    let m = model();
    let b = batch(&load_case("case_text_a.safetensors"), &Default::default());
    let free = generate(&m, &b, &GenerationConfig::greedy(4, vec![])).unwrap();
    let stop = free.tokens[0][1];
    let g = generate(&m, &b, &GenerationConfig::greedy(4, vec![stop])).unwrap();
    assert_eq!(g.tokens[0], free.tokens[0][..2].to_vec());
    assert!(g.stopped[0]);
}

#[test]
fn tiny_top_p_sampling_is_greedy_and_full_sampling_is_seeded() {
    let logits = vec![0.1f32, 2.0, -1.0, 1.9];
    let mut rng = evalverse_data::rng::Rng::new(1);
    assert_eq!(pick(&logits, 1.0, 1e-6, &mut rng), 1);
    assert_eq!(pick(&logits, 0.0, 1.0, &mut rng), 1);
    let draws = |seed| {
        let mut r = evalverse_data::rng::Rng::new(seed);
        (0..50)
            .map(|_| pick(&logits, 1.0, 1.0, &mut r))
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(3), draws(3));
    assert!(
        draws(3).contains(&3),
        "token 3 has ~38% mass and must be drawn in 50 samples"
    );
}

#[test]
fn score_readout_is_the_renormalised_distribution_over_score_tokens() {
    let m = model();
    let b = batch(&load_case("case_text_a.safetensors"), &Default::default());
    let score_tokens = [10u32, 11, 12, 13, 14];
    let dist = score_distribution(&m, &b, &score_tokens).unwrap();
    let out = m.forward(&b, false, None).unwrap();
    let [_, l, v] = out.logits.dims();
    let last: Vec<f32> = out
        .logits
        .narrow(1, l - 1, 1)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    for (i, (p, mass)) in dist.iter().enumerate() {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(*mass > 0.0 && *mass < 1.0);
        let row = &last[i * v..(i + 1) * v];
        let e: Vec<f32> = score_tokens
            .iter()
            .map(|&t| row[t as usize].exp())
            .collect();
        let z: f32 = e.iter().sum();
        for (k, pk) in p.iter().enumerate() {
            assert!((pk - e[k] / z).abs() < 1e-5);
        }
    }
}
