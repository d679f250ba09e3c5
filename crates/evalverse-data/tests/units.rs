//! Response units (recipe key `data.unit`): grouping data/sample's per-dimension examples into
//! aspect prompts and splitting an aspect answer back into its dimensions.

use std::path::Path;

use evalverse_data::dataset::Dataset;
use evalverse_data::prompts::{build, group_units, split_unit_answer, ResponseUnit};
use evalverse_data::split::Split;

fn sample() -> Dataset {
    Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")).unwrap()
}

#[test]
fn dimension_units_are_the_examples_unchanged() {
    let ds = sample();
    let examples = build(&ds, Split::Test, &[]).unwrap();
    let units = group_units(&ds, examples.clone(), ResponseUnit::Dimension, &|_| None);
    assert_eq!(units.len(), examples.len());
    for (u, e) in units.iter().zip(&examples) {
        assert_eq!(
            (&u.question, &u.answer, &u.unit),
            (&e.question, &e.answer, &e.dimension)
        );
        assert_eq!(u.members, vec![e.clone()]);
        assert_eq!(u.headings(&ds.taxonomy), vec![None]);
    }
}

#[test]
fn aspect_units_cover_every_dimension_once_per_clip() {
    let ds = sample();
    let tax = &ds.taxonomy;
    let examples = build(&ds, Split::Test, &[]).unwrap();
    let clips: std::collections::BTreeSet<_> = examples.iter().map(|e| &e.clip_id).collect();
    let units = group_units(&ds, examples.clone(), ResponseUnit::Aspect, &|_| None);
    // 15 cinematic dimensions in 7 aspects + 3 rightness dimensions alone = 10 units per clip.
    let per_clip = tax.aspects.len() + tax.dimensions.iter().filter(|d| d.aspect.is_none()).count();
    assert_eq!(per_clip, 10);
    assert_eq!(units.len(), clips.len() * per_clip);
    let members: Vec<_> = units.iter().flat_map(|u| u.members.clone()).collect();
    assert_eq!(members.len(), examples.len());
    for e in &examples {
        assert!(members.contains(e), "{} {} lost", e.clip_id, e.dimension);
    }
    let cam = units
        .iter()
        .find(|u| u.unit == "cinematography" && u.members.len() > 1)
        .expect("a cinematography unit");
    let names: Vec<String> = cam
        .members
        .iter()
        .map(|m| tax.dimension(&m.dimension).unwrap().name.clone())
        .collect();
    assert!(cam
        .question
        .starts_with("Evaluate the Cinematography of this clip on"));
    for (n, m) in names.iter().zip(&cam.members) {
        assert!(
            cam.question.contains(&format!("\n{n}: ")),
            "{n} missing from the question"
        );
        assert!(
            cam.answer.contains(&format!("{n}: {}", m.answer.trim())),
            "{n}'s answer missing"
        );
    }
    // The expert answer splits back into each member's own answer.
    let parts = split_unit_answer(&cam.answer, &cam.headings(tax));
    for (p, m) in parts.iter().zip(&cam.members) {
        assert_eq!(p.unwrap().1.trim(), m.answer.trim());
    }
    // A rightness dimension keeps its own prompt.
    let pf = units.iter().find(|u| u.unit == "prompt_following").unwrap();
    assert_eq!(pf.members.len(), 1);
    assert_eq!(pf.question, pf.members[0].question);
    assert_eq!(pf.headings(tax), vec![None]);
}

#[test]
fn a_missing_or_reordered_heading_is_found_or_reported() {
    let h = |s: &str| Some(s.to_string());
    let headings = vec![h("Lens:"), h("Pacing:"), h("Composition:")];
    let answer = "Pacing: jittery.\nScore: 2\nLens: sharp, the Lens: word inside.\nScore: 4";
    let parts = split_unit_answer(answer, &headings);
    assert_eq!(
        parts[0].unwrap().1.trim(),
        "sharp, the Lens: word inside.\nScore: 4"
    );
    assert_eq!(parts[1].unwrap().1.trim(), "jittery.\nScore: 2");
    assert_eq!(parts[2], None);
    assert_eq!(
        split_unit_answer("Score: 3", &[None]),
        vec![Some((0, "Score: 3"))]
    );
}
