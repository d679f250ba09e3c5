//! What a synthetic clip is made of: its prompt group (setting, mood, character, task) and the
//! defects its generator put in it. Every defect is a number in [0, 1] (0: none) that the
//! renderer turns into a measurable property, and the panel turns into per-dimension quality
//! (the mapping is `quality` below, documented in docs/SYNTH.md).

use serde::Serialize;

use crate::manifest::Task;
use crate::rng::Rng;

pub const SETTINGS: [&str; 5] = [
    "forest clearing",
    "rain-soaked city street",
    "desert canyon",
    "candle-lit interior",
    "seaside cliff",
];
pub const CHARACTERS: [&str; 5] = [
    "a detective in a long coat",
    "a young dancer",
    "an old fisherman",
    "a knight in armour",
    "a street musician",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mood {
    Tense,
    Warm,
    Melancholic,
    Joyful,
}

pub const MOODS: [Mood; 4] = [Mood::Tense, Mood::Warm, Mood::Melancholic, Mood::Joyful];

impl Mood {
    pub fn word(&self) -> &'static str {
        match self {
            Mood::Tense => "tense",
            Mood::Warm => "warm",
            Mood::Melancholic => "melancholic",
            Mood::Joyful => "joyful",
        }
    }
    /// (sky top, sky at horizon, ground) in linear-ish RGB 0..1: the grade that carries the mood.
    pub fn palette(&self) -> [[f32; 3]; 3] {
        match self {
            Mood::Tense => [[0.05, 0.07, 0.18], [0.35, 0.12, 0.14], [0.12, 0.12, 0.16]],
            Mood::Warm => [[0.55, 0.45, 0.35], [0.95, 0.62, 0.30], [0.45, 0.32, 0.20]],
            Mood::Melancholic => [[0.38, 0.42, 0.50], [0.62, 0.65, 0.70], [0.30, 0.33, 0.36]],
            Mood::Joyful => [[0.30, 0.60, 0.95], [0.80, 0.92, 1.00], [0.35, 0.70, 0.25]],
        }
    }
}

/// A prompt group: one prompt, rendered by every generator.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSpec {
    pub id: String,
    pub task: Task,
    pub setting: usize,
    pub mood: Mood,
    /// Index into CHARACTERS; None for a pure landscape prompt.
    pub character: Option<usize>,
    /// Costume hue in degrees (the character's identity colour).
    pub costume_hue: f32,
    pub shots: usize,
    pub has_audio: bool,
    pub speech: bool,
    pub music: bool,
    pub duration_s: f64,
    pub prompt: String,
}

impl GroupSpec {
    pub fn sample(id: String, task: Task, rng: &mut Rng) -> Self {
        let setting = rng.below(SETTINGS.len());
        let mood = *rng.pick(&MOODS);
        let character = if task == Task::R2v || task == Task::Av || rng.chance(0.8) {
            Some(rng.below(CHARACTERS.len()))
        } else {
            None
        };
        let shots = if task == Task::Multishot { 3 } else { 1 };
        let has_audio = task == Task::Av || (task == Task::Multishot && rng.chance(0.5));
        let speech = task == Task::Av && character.is_some() && rng.chance(0.75);
        let music = has_audio && (!speech || rng.chance(0.3));
        let duration_s = if task == Task::Multishot { 4.0 } else { 3.0 };
        let subject = character
            .map(|c| CHARACTERS[c])
            .unwrap_or("the empty landscape");
        let mut prompt = format!(
            "A {} scene: {} in a {}. The camera drifts slowly; the {} mood builds toward the end.",
            mood.word(),
            subject,
            SETTINGS[setting],
            mood.word()
        );
        if shots > 1 {
            prompt.push_str(&format!(
                " Told in {shots} shots: wide, medium, close, keeping screen direction."
            ));
        }
        if speech {
            prompt
                .push_str(" The character speaks a short line; a lamp flashes with a sharp click.");
        } else if has_audio {
            prompt.push_str(" Ambient sound and a soft score; a lamp flashes with a sharp click.");
        }
        GroupSpec {
            id,
            task,
            setting,
            mood,
            character,
            costume_hue: rng.range(0.0, 360.0) as f32,
            shots,
            has_audio,
            speech,
            music,
            duration_s,
            prompt,
        }
    }
}

/// Defects in [0, 1]; `exposure_sign` says whether exposure errs over (+1) or under (-1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Defects {
    pub exposure: f64,
    pub exposure_sign: f64,
    pub blur: f64,
    pub shake: f64,
    pub placement: f64,
    pub size: f64,
    pub cast: f64,
    pub flat_light: f64,
    pub light_flip: f64,
    pub flicker: f64,
    pub drift: f64,
    pub boil: f64,
    pub scene: f64,
    pub jerk: f64,
    pub expr_static: f64,
    pub mood_mismatch: f64,
    pub prog_flat: f64,
    pub cut_erratic: f64,
    pub continuity: f64,
    pub sync: f64,
    pub noise: f64,
}

/// A simulated generator: the mean of each defect, and how much clips vary around it.
#[derive(Debug, Clone, Serialize)]
pub struct Generator {
    pub name: &'static str,
    pub description: &'static str,
    pub mean: Defects,
    pub spread: f64,
}

fn profile(base: f64) -> Defects {
    Defects {
        exposure: base,
        exposure_sign: 1.0,
        blur: base,
        shake: base,
        placement: base,
        size: base,
        cast: base,
        flat_light: base,
        light_flip: base,
        flicker: base,
        drift: base,
        boil: base,
        scene: base,
        jerk: base,
        expr_static: base,
        mood_mismatch: base,
        prog_flat: base,
        cut_erratic: base,
        continuity: base,
        sync: base,
        noise: base,
    }
}

/// The simulated generators, each with its own defect profile.
pub fn generators() -> Vec<Generator> {
    vec![
        Generator {
            name: "aurora-2",
            description: "strong all-rounder; slight softness",
            mean: Defects {
                blur: 0.25,
                ..profile(0.08)
            },
            spread: 0.12,
        },
        Generator {
            name: "borealis-1.5",
            description: "good framing and sound; colour cast and flicker",
            mean: Defects {
                cast: 0.65,
                flicker: 0.55,
                mood_mismatch: 0.45,
                ..profile(0.15)
            },
            spread: 0.15,
        },
        Generator {
            name: "cinetic-v3",
            description: "clean image; shaky camera, erratic cutting, poor composition",
            mean: Defects {
                shake: 0.7,
                cut_erratic: 0.75,
                placement: 0.6,
                size: 0.5,
                jerk: 0.45,
                ..profile(0.12)
            },
            spread: 0.15,
        },
        Generator {
            name: "dreamloom-xl",
            description: "painterly; blurry, boiling textures, identity drift, broken continuity",
            mean: Defects {
                blur: 0.6,
                boil: 0.7,
                drift: 0.65,
                continuity: 0.65,
                scene: 0.4,
                expr_static: 0.5,
                ..profile(0.2)
            },
            spread: 0.15,
        },
        Generator {
            name: "echo-base",
            description: "weak baseline; exposure errors, flat light, desynced noisy audio",
            mean: Defects {
                exposure: 0.6,
                flat_light: 0.7,
                light_flip: 0.5,
                sync: 0.7,
                noise: 0.7,
                prog_flat: 0.7,
                ..profile(0.35)
            },
            spread: 0.18,
        },
    ]
}

impl Generator {
    /// Draw one clip's defects around the generator's profile.
    pub fn sample(&self, rng: &mut Rng) -> Defects {
        let mut d = self.mean;
        let mut f = |m: f64| (m + self.spread * rng.normal()).clamp(0.0, 1.0);
        d.exposure = f(d.exposure);
        d.blur = f(d.blur);
        d.shake = f(d.shake);
        d.placement = f(d.placement);
        d.size = f(d.size);
        d.cast = f(d.cast);
        d.flat_light = f(d.flat_light);
        d.light_flip = f(d.light_flip);
        d.flicker = f(d.flicker);
        d.drift = f(d.drift);
        d.boil = f(d.boil);
        d.scene = f(d.scene);
        d.jerk = f(d.jerk);
        d.expr_static = f(d.expr_static);
        d.mood_mismatch = f(d.mood_mismatch);
        d.prog_flat = f(d.prog_flat);
        d.cut_erratic = f(d.cut_erratic);
        d.continuity = f(d.continuity);
        d.sync = f(d.sync);
        d.noise = f(d.noise);
        d.exposure_sign = if rng.chance(0.5) { 1.0 } else { -1.0 };
        d
    }
}

/// Quality in [0, 1] of each dimension from the defects: 1 - clamp(sum of weight * defect).
/// This table is the property-to-score mapping of docs/SYNTH.md.
pub fn quality(dimension: &str, d: &Defects) -> f64 {
    let terms: &[(f64, f64)] = &match dimension {
        "character" => vec![
            (0.6, d.size),
            (0.3, d.placement),
            (0.3, d.drift),
            (0.2, d.cast),
        ],
        "scene" => vec![(0.9, d.scene), (0.25, d.boil)],
        "consistency" => vec![(1.0, d.drift), (0.4, d.continuity)],
        "action" => vec![(0.8, d.jerk), (0.2, d.expr_static)],
        "expression" => vec![(0.9, d.expr_static), (0.2, d.blur)],
        "composition" => vec![(0.7, d.placement), (0.5, d.size)],
        "lens" => vec![(0.7, d.blur), (0.7, d.exposure)],
        "pacing" => vec![(1.0, d.shake), (0.2, d.jerk)],
        "visual_quality" => vec![(0.6, d.flicker), (0.5, d.boil), (0.25, d.blur)],
        "chromaticity" => vec![(0.9, d.cast), (0.25, d.mood_mismatch)],
        "materiality" => vec![(0.95, d.boil), (0.2, d.blur)],
        "lighting" => vec![(0.6, d.flat_light), (0.6, d.light_flip), (0.25, d.exposure)],
        "grounding" => vec![(0.9, d.mood_mismatch), (0.2, d.cast)],
        "progression" => vec![(0.95, d.prog_flat)],
        "logic" => vec![(1.0, d.continuity)],
        "rhythm" => vec![(1.0, d.cut_erratic)],
        "vocal" => vec![(1.0, d.sync), (0.35, d.noise)],
        "soundscape" => vec![(0.85, d.noise), (0.4, d.sync)],
        "prompt_following" => vec![(0.5, d.mood_mismatch), (0.3, d.scene), (0.3, d.size)],
        "temporal_consistency" => vec![(0.6, d.flicker), (0.4, d.drift), (0.3, d.boil)],
        "physical_plausibility" => vec![(0.8, d.jerk), (0.35, d.scene)],
        _ => vec![],
    };
    (1.0 - terms.iter().map(|(w, x)| w * x).sum::<f64>()).clamp(0.0, 1.0)
}

/// One generated clip: which group and generator, its defects, and the derived timing facts.
#[derive(Debug, Clone, Serialize)]
pub struct ClipSpec {
    pub id: String,
    pub group: String,
    pub generator: String,
    pub defects: Defects,
    /// Shot boundaries in seconds, [start, end).
    pub shots: Vec<(f64, f64)>,
    /// Time of the visual lamp flash, seconds.
    pub event_s: f64,
    /// Audio delay relative to the picture, seconds (positive: sound late).
    pub sync_offset_s: f64,
    pub seed: u64,
}

/// Shot boundaries: even durations, pulled toward an erratic split (one very short shot) by `erratic`.
pub fn plan_shots(n: usize, duration: f64, erratic: f64, rng: &mut Rng) -> Vec<(f64, f64)> {
    if n <= 1 {
        return vec![(0.0, duration)];
    }
    let even = vec![1.0 / n as f64; n];
    let mut wild: Vec<f64> = (0..n).map(|_| rng.range(0.2, 1.0)).collect();
    let short = rng.below(n);
    wild[short] = 0.04;
    let total: f64 = wild.iter().sum();
    wild.iter_mut().for_each(|w| *w /= total);
    let mut t = 0.0;
    let mut shots = Vec::new();
    for i in 0..n {
        let frac = (1.0 - erratic) * even[i] + erratic * wild[i];
        let end = if i + 1 == n {
            duration
        } else {
            t + frac * duration
        };
        shots.push((t, end));
        t = end;
    }
    shots
}
