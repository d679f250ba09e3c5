//! `evalverse ablate ABLATION.toml`: one recipe, several variants (each a set of recipe keys laid
//! over it), the same data and seeds; trains each variant (or reuses / resumes it), judges each
//! on the same split, and prints one leaderboard with paired-bootstrap significance against the
//! first variant. File format (see recipes/ablations/calibration.toml):
//!
//! ```toml
//! output_dir = "runs/ablations/calibration"
//! recipe = "recipes/quickstart/calibrated.toml"
//! [eval]                      # optional: split, max_new_tokens, batch_size, bootstrap, seed
//! [[variant]]
//! name = "none"               # train = false: judge the recipe's starting adapter as it is
//! train = false
//! [[variant]]
//! name = "dpo_sigmoid"
//! set = { stage = { kind = "preference", strategy = { name = "dpo", loss = "sigmoid" } } }
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use evalverse_data::split::Split;
use evalverse_train::recipe::Recipe;
use serde::Deserialize;

use crate::Failure;
use evalverse_eval::pipeline::EvalArgs;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ablation {
    /// Folder of the variants' runs and the leaderboard.
    output_dir: PathBuf,
    /// The recipe the variants change.
    recipe: PathBuf,
    #[serde(default)]
    eval: EvalSettings,
    variant: Vec<Variant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalSettings {
    #[serde(default = "default_split")]
    split: Split,
    #[serde(default = "default_tokens")]
    max_new_tokens: usize,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_bootstrap")]
    bootstrap: usize,
    #[serde(default)]
    seed: u64,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            split: default_split(),
            max_new_tokens: default_tokens(),
            batch_size: default_batch(),
            bootstrap: default_bootstrap(),
            seed: 0,
        }
    }
}

fn default_split() -> Split {
    Split::Test
}
fn default_tokens() -> usize {
    48
}
fn default_batch() -> usize {
    16
}
fn default_bootstrap() -> usize {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Variant {
    /// Folder name and leaderboard label (letters, digits, '_' and '-').
    name: String,
    /// false: no training; the recipe's model.adapter (or the bare base) is judged as it is.
    #[serde(default = "yes")]
    train: bool,
    /// Recipe keys laid over the recipe (tables merge key by key; other values replace).
    #[serde(default)]
    set: toml::Table,
}

fn yes() -> bool {
    true
}

/// Lay `over` onto `base`: tables merge recursively, everything else replaces. A table that
/// replaces a tagged enum (e.g. `stage.strategy`) replaces it whole when its tag changes.
fn overlay(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if !["name", "kind"]
                    .iter()
                    .any(|t| o.get(*t).is_some() && b.get(*t) != o.get(*t)) =>
            {
                overlay(b, o)
            }
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The recipe of one variant, its output folder set to `<output_dir>/<name>`.
fn variant_recipe(ab: &Ablation, text: &str, v: &Variant) -> Result<(Recipe, String), String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    overlay(&mut table, &v.set);
    let run = table
        .entry("run")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    if let toml::Value::Table(run) = run {
        run.insert(
            "output_dir".into(),
            toml::Value::String(ab.output_dir.join(&v.name).display().to_string()),
        );
    }
    let merged = toml::to_string_pretty(&table).map_err(|e| e.to_string())?;
    let origin = PathBuf::from(format!("{} + variant {}", ab.recipe.display(), v.name));
    let r = Recipe::parse(&merged, &origin).map_err(|e| e.to_string())?;
    Ok((r, merged))
}

pub fn ablate(path: &Path) -> Result<ExitCode, Failure> {
    let usage = |m: String| Failure::Usage(anyhow!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| usage(e.to_string()))?;
    let ab: Ablation = toml::from_str(&text).map_err(|e| usage(e.to_string()))?;
    if ab.variant.is_empty() {
        return Err(usage("no [[variant]]".into()));
    }
    let mut names = std::collections::BTreeSet::new();
    for v in &ab.variant {
        if v.name.is_empty()
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(usage(format!(
                "variant name '{}' must be letters, digits, '_' or '-'",
                v.name
            )));
        }
        if !names.insert(v.name.as_str()) {
            return Err(usage(format!("variant '{}' appears twice", v.name)));
        }
        if !v.train && !v.set.is_empty() {
            return Err(usage(format!(
                "variant '{}': train = false judges the recipe's starting point; `set` would be ignored",
                v.name
            )));
        }
    }
    let recipe_text = std::fs::read_to_string(&ab.recipe)
        .map_err(|e| usage(format!("recipe {}: {e}", ab.recipe.display())))?;
    // Check every variant before training any.
    let mut recipes = Vec::new();
    for v in &ab.variant {
        let (r, merged) = variant_recipe(&ab, &recipe_text, v).map_err(&usage)?;
        recipes.push((r, merged));
    }
    std::fs::create_dir_all(&ab.output_dir).with_context(|| ab.output_dir.display().to_string())?;
    let mut evals = Vec::new();
    for (v, (r, merged)) in ab.variant.iter().zip(&recipes) {
        let dir = ab.output_dir.join(&v.name);
        let eval_dir = dir.join("eval");
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let checkpoint = if v.train {
            let recipe_path = ab.output_dir.join(format!("{}.toml", v.name));
            std::fs::write(&recipe_path, merged)
                .with_context(|| recipe_path.display().to_string())?;
            if dir.join("adapter/adapter_config.json").is_file() {
                eprintln!("[ablate] {}: reusing {}", v.name, dir.display());
            } else {
                let resume = evalverse_train::checkpoint::latest(&dir).is_some();
                eprintln!("[ablate] {}: training {}", v.name, recipe_path.display());
                if !crate::train::run_stage(&recipe_path, resume)? {
                    return Ok(ExitCode::from(1));
                }
            }
            dir.display().to_string()
        } else {
            match &r.model.adapter {
                Some(a) => a.display().to_string(),
                None => "none".into(),
            }
        };
        if eval_dir.join("judgements.jsonl").is_file() {
            eprintln!("[ablate] {}: reusing {}", v.name, eval_dir.display());
        } else {
            eprintln!("[ablate] {}: judging the {} split", v.name, ab.eval.split);
            crate::eval::run(&EvalArgs {
                judge: crate::judging::JudgeOptions {
                    bundle: None,
                    checkpoint: Some(&checkpoint),
                    base: Some(&r.model.source),
                    fusion: None,
                    verify_base: false,
                    gate: None,
                    max_new_tokens: Some(ab.eval.max_new_tokens),
                    // Judged where the recipe trains.
                    device: r.run.device,
                    dtype: r.model.dtype,
                },
                data: &r.data.dataset,
                split: ab.eval.split,
                dimensions: &r.data.dimensions,
                out: Some(&eval_dir),
                batch_size: ab.eval.batch_size,
                bootstrap: ab.eval.bootstrap,
                seed: ab.eval.seed,
                pairwise: false,
                // Every variant, trained or not, on the recipe's frames.
                frames: Some(&r.data.frames),
                show_progress: true,
            })?;
        }
        evals.push(eval_dir);
    }
    crate::leaderboard::leaderboard(
        &evals,
        ab.eval.bootstrap,
        ab.eval.seed,
        Some(&ab.output_dir.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_merges_tables_and_replaces_a_strategy_whose_tag_changes() {
        let mut base: toml::Table = toml::from_str(
            "[optim]\nlr = 1e-3\nweight_decay = 0.0\n[stage]\nkind = \"preference\"\nstrategy = { name = \"dpo\", loss = \"sigmoid\", beta = 0.1 }\n",
        )
        .unwrap();
        let over: toml::Table = toml::from_str(
            "optim = { lr = 5e-4 }\nstage = { kind = \"preference\", strategy = { name = \"bt\", ties = \"davidson\" } }\n",
        )
        .unwrap();
        overlay(&mut base, &over);
        assert_eq!(base["optim"]["lr"].as_float(), Some(5e-4));
        assert_eq!(base["optim"]["weight_decay"].as_float(), Some(0.0));
        let strategy = base["stage"]["strategy"].as_table().unwrap();
        assert_eq!(strategy["name"].as_str(), Some("bt"));
        assert!(
            strategy.get("loss").is_none(),
            "a dpo key must not leak into bt"
        );
        // Same tag: keys merge.
        let over: toml::Table =
            toml::from_str("stage = { strategy = { name = \"bt\", nu = 2.0 } }\n").unwrap();
        overlay(&mut base, &over);
        let strategy = base["stage"]["strategy"].as_table().unwrap();
        assert_eq!(strategy["ties"].as_str(), Some("davidson"));
        assert_eq!(strategy["nu"].as_float(), Some(2.0));
    }
}
