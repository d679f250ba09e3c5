//! Linear-probe diagnostics of a judge's vision path: the video tokens a recipe's model (base +
//! `model.adapter` if set) feeds the language model, pooled per clip (mean and standard deviation
//! over tokens), for every clip of the recipe's dataset, one JSON line each. A ridge probe from
//! these features to the experts' mean (scripts/probe_vision.py) says whether the clip-level
//! information a judge needs reaches the language model at all, apart from whether training
//! teaches it to be read.
//!
//! ```sh
//! cargo run --release -p evalverse-train --example probe_vision -- RECIPE.toml > features.jsonl
//! ```

use burn::tensor::Tensor;
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_model::Cpu;
use evalverse_train::recipe::Recipe;
use evalverse_train::runtime;

fn main() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: probe_vision RECIPE.toml")?;
    let recipe = Recipe::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    let device = Default::default();
    let ds = Dataset::load(&recipe.data.dataset).map_err(|e| e.to_string())?;
    let (mut model, _) = runtime::load_model::<Cpu>(&recipe, &device).map_err(|e| e.to_string())?;
    evalverse_model::lora::set_training(&mut model, false);
    for split in [Split::Train, Split::Val, Split::Test] {
        let examples = runtime::judge_examples(&recipe, &ds, split).map_err(|e| e.to_string())?;
        let clips = runtime::decode_clips(&recipe, &ds, &examples, &model.cfg.vision);
        let vision = runtime::encode_vision(&model, &clips, &device);
        let mut seen = std::collections::BTreeSet::new();
        for e in &examples {
            if !seen.insert(e.clip_id.clone()) {
                continue;
            }
            let Some(v) = vision.get(&e.video) else {
                continue;
            };
            let v: Tensor<Cpu, 2> = v.clone(); // [tokens, hidden]
            let mean = v.clone().mean_dim(0);
            let std = (v - mean.clone()).powi_scalar(2).mean_dim(0).sqrt();
            let f: Vec<f32> = Tensor::cat(vec![mean, std], 1)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| format!("{e:?}"))?;
            println!(
                "{}",
                serde_json::json!({"clip_id": e.clip_id, "split": format!("{split:?}").to_lowercase(), "features": f})
            );
        }
    }
    Ok(())
}
