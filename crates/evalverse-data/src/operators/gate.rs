//! Context gating: does a dimension apply to this clip? The taxonomy's applicability rule
//! (always | context | multi_shot | audio | speech) is decided on what the operators detected
//! (shot count, audio presence, speech) instead of what the manifest declares, falling back to
//! the manifest for a fact no operator measured. Context dimensions (those about a character)
//! are decided from the generation prompt: N/A when it asks for an empty scene (`NO_SUBJECT_CUES`).
//! This last rule is a keyword heuristic, not perception; docs/OPERATORS.md gives its figures.

use super::Evidence;
use crate::manifest::ClipRecord;
use crate::taxonomy::{Applicability, ClipFacts, Dimension};

/// Phrases of a prompt that asks for no character on screen.
pub const NO_SUBJECT_CUES: [&str; 6] = [
    "empty landscape",
    "empty scene",
    "no people",
    "nobody",
    "no one",
    "unpopulated",
];

/// Where a gate decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSource {
    /// The rule is "always".
    Rule,
    /// A detected fact (shots, audio, speech).
    Evidence,
    /// The manifest's declared fact (no operator measured it).
    Manifest,
    /// The prompt (context rule).
    Prompt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateDecision {
    pub applies: bool,
    pub source: GateSource,
    /// Why, in a few words (for reports and prompts).
    pub reason: String,
}

/// The clip facts the gate uses: detected where evidence has them, else declared.
pub fn detected_facts(clip: &ClipRecord, ev: &Evidence) -> (ClipFacts, [GateSource; 3]) {
    facts_over(&clip.facts(), ev)
}

/// `detected_facts` from declared facts (a clip outside a dataset declares none of its own:
/// pass `ClipFacts::unknown()`; with every operator measured, nothing declared is used).
fn facts_over(declared: &ClipFacts, ev: &Evidence) -> (ClipFacts, [GateSource; 3]) {
    let shots = ev.get("shot_count").map(|n| n.round() as usize);
    let audio = ev.get("audio_present").map(|v| v > 0.5);
    // Speech needs audio: an absent track means no speech even if no speech figure was computed.
    let speech = match (audio, ev.get("speech")) {
        (Some(false), _) => Some(false),
        (_, Some(s)) => Some(s > 0.5),
        _ => None,
    };
    let src = |o: bool| {
        if o {
            GateSource::Evidence
        } else {
            GateSource::Manifest
        }
    };
    (
        ClipFacts {
            shots: shots.unwrap_or(declared.shots),
            has_audio: audio.unwrap_or(declared.has_audio),
            has_speech: speech.unwrap_or(declared.has_speech),
        },
        [
            src(shots.is_some()),
            src(audio.is_some()),
            src(speech.is_some()),
        ],
    )
}

/// Decide whether `dim` applies to `clip` given the operators' evidence.
pub fn gate(dim: &Dimension, clip: &ClipRecord, ev: &Evidence) -> GateDecision {
    gate_on(dim, &clip.prompt, &clip.facts(), ev)
}

/// `gate` for a clip given by its generation prompt and declared facts (the manifest's, or
/// `ClipFacts::unknown()` for a clip outside a dataset).
pub fn gate_on(dim: &Dimension, prompt: &str, declared: &ClipFacts, ev: &Evidence) -> GateDecision {
    let (facts, src) = facts_over(declared, ev);
    let decided = |applies: bool, source: GateSource, reason: String| GateDecision {
        applies,
        source,
        reason,
    };
    match &dim.applicability {
        Applicability::Always { .. } => {
            decided(true, GateSource::Rule, "applies to every clip".into())
        }
        Applicability::MultiShot { min_shots, .. } => decided(
            facts.shots >= *min_shots,
            src[0],
            format!("{} shot(s), needs {min_shots}", facts.shots),
        ),
        Applicability::Audio { .. } => decided(
            facts.has_audio,
            src[1],
            if facts.has_audio {
                "has an audio track"
            } else {
                "silent"
            }
            .into(),
        ),
        Applicability::Speech { .. } => decided(
            facts.has_speech,
            src[2],
            if facts.has_speech {
                "speech detected"
            } else {
                "no speech"
            }
            .into(),
        ),
        Applicability::Context { .. } => {
            let prompt = prompt.to_lowercase();
            match NO_SUBJECT_CUES.iter().find(|c| prompt.contains(*c)) {
                Some(cue) => decided(
                    false,
                    GateSource::Prompt,
                    format!("prompt asks for '{cue}'"),
                ),
                None => decided(
                    true,
                    GateSource::Prompt,
                    "no empty-scene cue in the prompt".into(),
                ),
            }
        }
    }
}
