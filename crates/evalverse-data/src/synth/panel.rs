//! The simulated expert panel. Each rater has a bias and a noise level; a rater perceives the
//! clip's true quality per dimension (from `spec::quality`) plus their bias and noise, scores it on
//! the 1-5 scale, writes a rationale citing the measured property behind the score, answers N/A
//! where the dimension does not apply, and ranks the clips of each prompt group per dimension.

use super::spec::{quality, ClipSpec, Defects, GroupSpec, SETTINGS};
use crate::manifest::{Annotation, Score};
use crate::rng::Rng;
use crate::taxonomy::{Applicability, ClipFacts, Dimension};

#[derive(Debug, Clone)]
pub struct Rater {
    pub id: String,
    pub bias: f64,
    pub noise: f64,
}

pub fn raters(n: usize, rng: &mut Rng) -> Vec<Rater> {
    (0..n)
        .map(|i| Rater {
            id: format!("expert_{:02}", i + 1),
            bias: 0.25 * rng.normal(),
            noise: rng.range(0.25, 0.55),
        })
        .collect()
}

/// Whether the dimension applies to the clip, as the panel judges it (context rules: a character
/// must be on screen).
pub fn applies(dim: &Dimension, facts: &ClipFacts, group: &GroupSpec) -> bool {
    match dim.applicability.applies(facts) {
        Some(a) => a,
        None => match &dim.applicability {
            Applicability::Context { .. } => group.character.is_some(),
            _ => true,
        },
    }
}

/// True score on the 1-5 scale (continuous).
pub fn true_score(dim: &str, d: &Defects) -> f64 {
    1.0 + 4.0 * quality(dim, d)
}

fn verdict(score: f64) -> &'static str {
    match score as i64 {
        1 => "very poor",
        2 => "poor",
        3 => "acceptable",
        4 => "good",
        _ => "excellent",
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// The evidence sentence for a dimension: what an expert sees, quantified from the clip's properties.
pub fn evidence(dim: &str, clip: &ClipSpec, group: &GroupSpec) -> String {
    let d = &clip.defects;
    let stops = d.exposure * d.exposure_sign * 1.6;
    match dim {
        "character" => format!(
            "The character fills about {} of the frame height{}; costume colour {}.",
            pct((0.5 * (1.0 + 0.8 * d.size)).min(0.95)),
            if d.placement > 0.5 { " and is partly cut by the left edge" } else { "" },
            if d.drift > 0.4 { "wanders during the shot" } else { "reads clearly" }
        ),
        "scene" => format!(
            "The {} {}{}.",
            SETTINGS[group.setting],
            if d.scene > 0.4 {
                format!("has a horizon tilted by about {:.0} degrees", (0.5 * d.scene).atan().to_degrees())
            } else {
                "sits on a level horizon".into()
            },
            if d.scene > 0.5 { " and sky and ground colours are swapped, which is implausible" } else { "" }
        ),
        "consistency" => format!(
            "The costume hue drifts by about {:.0} degrees over the clip{}.",
            110.0 * d.drift,
            if group.task == crate::manifest::Task::R2v { " relative to the reference image" } else { "" }
        ),
        "action" => format!(
            "Motion is {}; I count stutters in about {} of frames.",
            if d.jerk > 0.4 { "jerky, with holds and jumps" } else { "smooth and continuous" },
            pct(0.35 * d.jerk)
        ),
        "expression" => format!(
            "The mouth and face {}.",
            if d.expr_static > 0.5 { "barely change, the expression is frozen" } else { "move naturally through the shot" }
        ),
        "composition" => format!(
            "The subject sits at about {} of the frame width (a third is 33%) and {}.",
            pct((1.0 / 3.0 - 0.42 * d.placement).max(0.0)),
            if d.size > 0.5 { "the shot size is off for the action" } else { "the shot size suits the action" }
        ),
        "lens" => format!(
            "Exposure is {:+.1} stops from normal and the image is {} (blur radius about {} px).",
            stops,
            if d.blur > 0.4 { "soft" } else { "sharp" },
            (d.blur * 4.0).round()
        ),
        "pacing" => format!(
            "The camera {} (jitter about {:.1}% of the frame per frame).",
            if d.shake > 0.4 { "shakes without motivation" } else { "drifts smoothly" },
            3.5 * d.shake
        ),
        "visual_quality" => format!(
            "Brightness flickers by about {} frame to frame and {} of the ground texture re-draws each frame.",
            pct(0.22 * d.flicker),
            pct(d.boil)
        ),
        "chromaticity" => format!(
            "{} colour cast{}.",
            if d.cast > 0.4 { "A strong" } else if d.cast > 0.15 { "A mild" } else { "No noticeable" },
            if d.mood_mismatch > 0.4 { "; the grade works against the mood" } else { "" }
        ),
        "materiality" => format!(
            "Surface texture is {} ({} of it changes between frames).",
            if d.boil > 0.4 { "boiling and unstable" } else { "stable and readable" },
            pct(d.boil)
        ),
        "lighting" => format!(
            "The key light is {}{}.",
            if d.flat_light > 0.5 { "flat, with little modelling" } else { "directional and sculpts the subject" },
            if d.light_flip > 0.4 { " and its direction swings during the shot" } else { "" }
        ),
        "grounding" => format!(
            "The prompt asks for a {} mood; the palette {}.",
            group.mood.word(),
            if d.mood_mismatch > 0.4 { "reads as the opposite mood" } else { "supports it" }
        ),
        "progression" => format!(
            "Saturation and contrast {} over the clip.",
            if d.prog_flat > 0.5 { "stay flat" } else { "build steadily" }
        ),
        "logic" => format!(
            "Across the cuts the costume hue jumps by about {:.0} degrees{}.",
            120.0 * d.continuity,
            if d.continuity > 0.5 { " and screen direction flips" } else { "" }
        ),
        "rhythm" => {
            let durs: Vec<String> = clip.shots.iter().map(|(s, e)| format!("{:.1}s", e - s)).collect();
            format!("Shot durations are {}{}.", durs.join(", "), if d.cut_erratic > 0.5 { ", erratic" } else { ", evenly paced" })
        }
        "vocal" => format!(
            "The voice is {:+.0} ms off the mouth movement, over {} background hiss.",
            1000.0 * clip.sync_offset_s,
            if d.noise > 0.4 { "noticeable" } else { "little" }
        ),
        "soundscape" => format!(
            "The ambience is {}; the click lands {:+.0} ms from the flash.",
            if d.noise > 0.4 { "hissy" } else { "clean" },
            1000.0 * clip.sync_offset_s
        ),
        "prompt_following" => format!(
            "It shows the {} with a {} mood{}.",
            SETTINGS[group.setting],
            if d.mood_mismatch > 0.4 { "contradicting" } else { "matching" },
            if d.size > 0.6 { ", but the subject is badly sized" } else { "" }
        ),
        "temporal_consistency" => format!(
            "Flicker about {} and colour drift about {:.0} degrees over time.",
            pct(0.22 * d.flicker),
            110.0 * d.drift
        ),
        "physical_plausibility" => format!(
            "Motion {} and the environment {}.",
            if d.jerk > 0.4 { "jumps between frames" } else { "is continuous" },
            if d.scene > 0.5 { "defies gravity" } else { "is physically plausible" }
        ),
        _ => String::from("No specific evidence."),
    }
}

/// A dense caption of the clip for caption pretraining: the generation prompt, then the measured
/// evidence of every dimension that applies (the same sentences the raters cite). No scores.
pub fn caption(
    taxonomy: &crate::taxonomy::Taxonomy,
    clip: &ClipSpec,
    group: &GroupSpec,
    facts: &ClipFacts,
) -> String {
    let mut out = group.prompt.clone();
    for dim in &taxonomy.dimensions {
        if applies(dim, facts, group) {
            out.push(' ');
            out.push_str(&evidence(&dim.id, clip, group));
        }
    }
    out
}

/// One rater's perceived value (continuous) and answer on one dimension.
pub fn rate(
    rater: &Rater,
    dim: &Dimension,
    clip: &ClipSpec,
    group: &GroupSpec,
    facts: &ClipFacts,
    rng: &mut Rng,
) -> (Option<f64>, Annotation) {
    if !applies(dim, facts, group) {
        let reason = match &dim.applicability {
            Applicability::MultiShot { .. } => {
                "Single continuous shot, so there is no cutting to judge."
            }
            Applicability::Speech { .. } => "There is no speech in this clip.",
            Applicability::Audio { .. } => "The clip is silent.",
            _ => "No character appears on screen.",
        };
        return (
            None,
            Annotation {
                rater: rater.id.clone(),
                dimension: dim.id.clone(),
                score: Score::NotApplicable,
                rationale: Some(format!("{reason} Not applicable.")),
            },
        );
    }
    let perceived = true_score(&dim.id, &clip.defects) + rater.bias + rater.noise * rng.normal();
    let score = perceived.round().clamp(1.0, 5.0);
    let rationale = format!(
        "{} Overall {}, so I give {}.",
        evidence(&dim.id, clip, group),
        verdict(score),
        score as i64
    );
    (
        Some(perceived),
        Annotation {
            rater: rater.id.clone(),
            dimension: dim.id.clone(),
            score: Score::Value(score),
            rationale: Some(rationale),
        },
    )
}

/// Rank clips by perceived value, best first; values within `tie` are tied (same tier).
pub fn rank(mut items: Vec<(String, f64)>, tie: f64) -> Vec<Vec<String>> {
    items.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut tiers: Vec<(f64, Vec<String>)> = Vec::new();
    for (id, v) in items {
        match tiers.last_mut() {
            Some((top, tier)) if (*top - v).abs() < tie => tier.push(id),
            _ => tiers.push((v, vec![id])),
        }
    }
    tiers.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_orders_best_first_and_ties_close_values() {
        let r = rank(
            vec![("a".into(), 2.0), ("b".into(), 4.0), ("c".into(), 2.01)],
            0.05,
        );
        assert_eq!(
            r,
            vec![
                vec!["b".to_string()],
                vec!["c".to_string(), "a".to_string()]
            ]
        );
    }

    #[test]
    fn defect_free_clip_scores_five_and_defects_lower_it() {
        let clean = Defects::default();
        assert_eq!(true_score("lens", &clean), 5.0);
        let blurry = Defects {
            blur: 1.0,
            exposure: 1.0,
            ..Defects::default()
        };
        assert_eq!(true_score("lens", &blurry), 1.0);
        let half = Defects {
            shake: 0.5,
            ..Defects::default()
        };
        assert!((true_score("pacing", &half) - 3.0).abs() < 1e-12);
    }
}
