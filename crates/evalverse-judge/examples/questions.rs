//! The questions a judge bundle asks of a clip, as JSON: `{"system": ..., "questions": {dimension:
//! question}}`, so a reference implementation can ask exactly what the judge asks
//! (scripts/bench_serve.sh's Python reward server). Judges whose prompts carry operator evidence
//! are refused: their questions depend on the clip, not only on its prompt.
//!
//!     cargo run --release -p evalverse-judge --example questions -- BUNDLE "PROMPT"

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, prompt] = args.as_slice() else {
        eprintln!("usage: questions BUNDLE PROMPT");
        std::process::exit(2);
    };
    let fail = |m: String| -> ! {
        eprintln!("questions: {m}");
        std::process::exit(2)
    };
    let b = evalverse_judge::bundle::read(Path::new(bundle), None, false)
        .unwrap_or_else(|e| fail(e.to_string()));
    if !b.spec.prompt_operators.is_empty() {
        fail(format!(
            "{bundle}: the judge's prompts carry operator evidence; their questions depend on the clip"
        ));
    }
    let tax = &b.taxonomy;
    let questions: serde_json::Map<String, serde_json::Value> = tax
        .dimensions
        .iter()
        .map(|d| {
            let q = evalverse_data::prompts::judge_question(tax, d, prompt);
            (d.id.clone(), serde_json::Value::String(q))
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"system": evalverse_data::prompts::SYSTEM_PROMPT, "questions": questions})
    );
}
