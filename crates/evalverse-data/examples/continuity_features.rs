//! Continuity and drift measurements of every multi-shot clip against the generator's truth, with
//! the true shots and with the detected ones, as CSV (see docs/OPERATORS.md):
//!
//! `cargo run --release -p evalverse-data --example continuity_features -- data/sample > c.csv`
//!
//! Columns: clip id, its `continuity` and `drift` defects, the true and the detected shot count,
//! `shot_similarity` computed on the true shots and on the detected ones (empty when the
//! detector found one shot), and `colour_drift`. Separates the measure's quality from the shot
//! detector's.

use std::path::Path;

use evalverse_data::operators::{self, continuity, motion, shots, AnalysisSpec, Evidence};

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/sample".into());
    let root = Path::new(&root);
    let text = std::fs::read_to_string(root.join("truth.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", root.join("truth.jsonl").display()));
    println!("id,continuity,drift,true_shots,detected_shots,similarity_true,similarity_detected,colour_drift");
    for (line_no, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("truth.jsonl line {}: {e}", line_no + 1));
        let id = v["id"].as_str().expect("id");
        let starts: Vec<f64> = v["shots"].as_array().expect("shots")[1..]
            .iter()
            .map(|s| s[0].as_f64().expect("shot start"))
            .collect();
        if starts.is_empty() {
            continue;
        }
        let path = root.join("videos").join(format!("{id}.mp4"));
        let clip = operators::analyse(&path, &AnalysisSpec::default(), false)
            .unwrap_or_else(|e| panic!("{e}"));
        // First analysis frame at or after each true cut.
        let truth: Vec<usize> = starts
            .iter()
            .filter_map(|&s| clip.frames.iter().position(|f| f.time_s >= s - 1e-9))
            .collect();
        let detected = shots::detect_cuts(&clip, &motion::pair_motion(&clip));
        let measured = |cuts: &[usize]| {
            let mut ev = Evidence {
                version: operators::OPERATORS_VERSION,
                operators: Default::default(),
                measurements: Vec::new(),
                shots: Vec::new(),
            };
            continuity::measure(&clip, cuts, &mut ev);
            ev
        };
        let (t, d) = (measured(&truth), measured(&detected));
        let cell = |x: Option<f64>| x.map(|x| format!("{x:.4}")).unwrap_or_default();
        println!(
            "{id},{:.3},{:.3},{},{},{},{},{}",
            v["defects"]["continuity"].as_f64().unwrap_or(0.0),
            v["defects"]["drift"].as_f64().unwrap_or(0.0),
            truth.len() + 1,
            detected.len() + 1,
            cell(t.get("shot_similarity")),
            cell(d.get("shot_similarity")),
            cell(t.get("colour_drift")),
        );
    }
}
