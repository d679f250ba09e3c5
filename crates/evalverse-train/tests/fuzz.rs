//! Fuzz target of the recipe parser: every recipe under recipes/ mutated through its TOML tree
//! and its bytes, and arbitrary text. The property: no panic, no hang, an error names the
//! recipe file and the key (or TOML line) it is about, and an accepted recipe round-trips
//! through the resolved TOML written beside every checkpoint. Cases: PROPTEST_CASES (default
//! 256); scripts/fuzz_long.sh runs it for minutes (FUZZ_SECONDS).

#[macro_use]
#[path = "../../evalverse-data/tests/fuzz_support/mod.rs"]
mod support;
#[path = "../../evalverse-data/tests/fuzz_support/toml_tree.rs"]
mod toml_tree;

use std::path::{Path, PathBuf};

use evalverse_train::recipe::Recipe;
use support::{fuzz, show};

/// Every recipe file of the repository.
fn recipe_files() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes"),
        &mut paths,
    );
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Words of the recipe schema that the seeds do not all spell out.
const WORDS: &[&str] = &[
    "caption",
    "sft",
    "preference",
    "bt",
    "dpo",
    "distribution",
    "sigmoid",
    "ipo",
    "hinge",
    "robust",
    "rao_kupper",
    "davidson",
    "ignore",
    "head",
    "score_tokens",
    "generated",
    "expert",
    "aspect",
    "dimension",
    "cosine",
    "linear",
    "constant",
    "cuda",
    "cpu",
    "bf16",
    "f16",
    "f32",
    "epochs",
    "max_steps",
    "grad_accum",
    "label_smoothing",
    "perturb",
    "operators",
    "shots",
    "motion",
    "sync",
    "cache_dir",
    "tokenizer",
    "adapter",
    "min_lr_ratio",
];

/// The tables of a recipe: a validation message names its key as `table.key`.
const TABLES: &[&str] = &[
    "run.",
    "model.",
    "lora.",
    "data.",
    "stage.",
    "optim.",
    "schedule.",
    "train.",
    "train:",
    "log.",
];

#[test]
fn fuzz_recipe_toml() {
    let seeds = toml_tree::seeds(recipe_files(), WORDS);
    let origin = Path::new("fuzz/recipe.toml");
    fuzz("recipe_toml", support::input(), |input| {
        let bytes = seeds.materialise(input);
        let text = String::from_utf8_lossy(&bytes);
        let r = match Recipe::parse(&text, origin) {
            Err(e) => {
                support::tally("refused");
                let m = e.to_string();
                ensure!(
                    m.starts_with("fuzz/recipe.toml: "),
                    "the error does not name the file: {m:?}"
                );
                ensure!(
                    m.contains("line ") || TABLES.iter().any(|t| m.contains(t)),
                    "the error names neither a key nor a line: {m:?} for {}",
                    show(&bytes)
                );
                return Ok(());
            }
            Ok(r) => r,
        };
        support::tally("accepted");
        let written = r.to_toml();
        let back = Recipe::parse(&written, origin)
            .map_err(|e| format!("the resolved recipe does not parse back: {e}\n{written}"))?;
        ensure!(
            back == r,
            "the resolved recipe does not round-trip:\n{written}\nfrom {}",
            show(&bytes)
        );
        Ok(())
    });
}
