//! The synthetic cinematic dataset: real H.264 MP4s (with AAC audio where the task has sound)
//! from several simulated generators over shared prompt groups, annotated by a simulated expert
//! panel. Clip properties map onto taxonomy dimensions as documented in docs/SYNTH.md; the latent
//! truth of every clip (defects, cut times, sync offset) is written to `truth.jsonl` so that
//! perception operators can be checked against it.

#[cfg(feature = "ffmpeg")]
pub mod encode;
/// Without FFmpeg the synthetic clips cannot be written: every write is an error naming the file.
#[cfg(not(feature = "ffmpeg"))]
pub mod encode {
    use std::path::Path;

    use crate::error::{DataError, Result};
    use crate::media::NO_FFMPEG as WHY;

    pub fn write_mp4(
        path: &Path,
        _width: u32,
        _height: u32,
        _fps: u32,
        _frames: &[Vec<u8>],
        _audio: Option<(&[f32], u32)>,
    ) -> Result<()> {
        Err(DataError::encode(path, WHY))
    }

    pub fn write_png(path: &Path, _width: u32, _height: u32, _rgb: &[u8]) -> Result<()> {
        Err(DataError::encode(path, WHY))
    }
}
pub mod panel;
pub mod render;
pub mod spec;

use std::path::Path;

use serde::Serialize;

use crate::dataset::{DatasetConfig, DATASET_FILE};
use crate::error::{DataError, Result};
use crate::manifest::{
    AudioInfo, ClipRecord, RankingRecord, Record, Reference, ReferenceKind, Shot, Task,
};
use crate::rng::Rng;
use crate::split::SplitSpec;
use crate::taxonomy::Taxonomy;
use spec::{generators, ClipSpec, GroupSpec};

/// Settings of `evalverse data synth`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthConfig {
    /// Number of clips (rounded up to whole prompt groups of one clip per generator).
    pub clips: usize,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub raters: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            clips: 60,
            seed: 7,
            width: 224,
            height: 168,
            fps: 12,
            raters: 5,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    pub clips: usize,
    pub prompt_groups: usize,
    pub bytes: u64,
}

/// The latent truth of one clip, one JSON line in `truth.jsonl`.
#[derive(Debug, Serialize)]
struct Truth<'a> {
    id: &'a str,
    generator: &'a str,
    group: &'a str,
    defects: &'a spec::Defects,
    shots: &'a [(f64, f64)],
    event_s: f64,
    sync_offset_s: f64,
    true_scores: std::collections::BTreeMap<&'a str, f64>,
}

/// Generate a dataset into `out` (created; must be empty or absent).
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<SynthSummary> {
    if !cfg.width.is_multiple_of(2)
        || !cfg.height.is_multiple_of(2)
        || cfg.width < 32
        || cfg.height < 32
    {
        return Err(DataError::config(
            "--width, --height",
            format!(
                "frame size {}x{} must be even and at least 32x32",
                cfg.width, cfg.height
            ),
        ));
    }
    if cfg.clips == 0 || cfg.raters < 2 || cfg.fps == 0 {
        return Err(DataError::config(
            "--clips, --raters, --fps",
            "need at least 1 clip, 2 raters and fps > 0",
        ));
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| DataError::io(out, e))?
            .next()
            .is_some()
    {
        return Err(DataError::config(out, "--out exists and is not empty"));
    }
    for sub in ["videos", "refs"] {
        std::fs::create_dir_all(out.join(sub)).map_err(|e| DataError::io(out.join(sub), e))?;
    }
    let taxonomy = Taxonomy::evalverse();
    let gens = generators();
    let mut rng = Rng::new(cfg.seed);
    let panel = panel::raters(cfg.raters, &mut rng);
    let n_groups = cfg.clips.div_ceil(gens.len());
    let tasks = [Task::T2v, Task::Av, Task::Multishot, Task::R2v];
    let groups: Vec<GroupSpec> = (0..n_groups)
        .map(|g| GroupSpec::sample(format!("pg{g:03}"), tasks[g % tasks.len()], &mut rng))
        .collect();

    let mut records = Vec::new();
    let mut truth_lines = String::new();
    let mut caption_lines = String::new();
    let total = n_groups * gens.len();
    let mut done = 0;
    for group in &groups {
        let mut perceived: std::collections::BTreeMap<(String, String), Vec<(String, f64)>> =
            Default::default();
        let reference_path = format!("refs/{}.png", group.id);
        let mut wrote_reference = false;
        for gen in &gens {
            let id = format!(
                "{}_{}",
                group.id,
                gen.name.split('-').next().unwrap_or(gen.name)
            );
            let mut crng = Rng::derive(cfg.seed, &id);
            let defects = gen.sample(&mut crng);
            let shots = spec::plan_shots(
                group.shots,
                group.duration_s,
                defects.cut_erratic,
                &mut crng,
            );
            let event_s = crng.range(0.8, group.duration_s - 0.8);
            let sync_sign = if crng.chance(0.5) { 1.0 } else { -1.0 };
            let clip = ClipSpec {
                id: id.clone(),
                group: group.id.clone(),
                generator: gen.name.to_string(),
                defects,
                shots,
                event_s,
                sync_offset_s: if group.has_audio {
                    sync_sign * 0.4 * defects.sync
                } else {
                    0.0
                },
                seed: crng.next_u64(),
            };
            let rendered = render::render(
                &clip,
                group,
                cfg.width as usize,
                cfg.height as usize,
                cfg.fps,
            );
            let video_rel = format!("videos/{id}.mp4");
            encode::write_mp4(
                &out.join(&video_rel),
                cfg.width,
                cfg.height,
                cfg.fps,
                &rendered.frames,
                rendered.audio.as_deref().map(|a| (a, render::AUDIO_RATE)),
            )?;
            if group.task == Task::R2v && !wrote_reference {
                if let Some(r) = &rendered.reference {
                    encode::write_png(&out.join(&reference_path), cfg.width, cfg.height, r)?;
                    wrote_reference = true;
                }
            }
            let record_shots: Vec<Shot> = clip
                .shots
                .iter()
                .map(|&(s, e)| Shot {
                    start: round3(s),
                    end: round3(e),
                })
                .collect();
            let mut record = ClipRecord {
                id: id.clone(),
                task: group.task,
                prompt: group.prompt.clone(),
                video: video_rel,
                reference: (group.task == Task::R2v && group.character.is_some()).then(|| {
                    Reference {
                        kind: ReferenceKind::Image,
                        path: reference_path.clone(),
                    }
                }),
                shots: record_shots,
                audio: group.has_audio.then_some(AudioInfo {
                    speech: group.speech,
                    music: group.music,
                }),
                generator: gen.name.to_string(),
                prompt_group: group.id.clone(),
                annotations: Vec::new(),
            };
            let facts = record.facts();
            let mut arng = Rng::derive(cfg.seed ^ 0xA11CE, &id);
            for dim in &taxonomy.dimensions {
                for rater in &panel {
                    let (p, ann) = panel::rate(rater, dim, &clip, group, &facts, &mut arng);
                    if let Some(p) = p {
                        perceived
                            .entry((dim.id.clone(), rater.id.clone()))
                            .or_default()
                            .push((id.clone(), p));
                    }
                    record.annotations.push(ann);
                }
            }
            let true_scores = taxonomy
                .dimensions
                .iter()
                .filter(|d| panel::applies(d, &facts, group))
                .map(|d| {
                    (
                        d.id.as_str(),
                        round3(panel::true_score(&d.id, &clip.defects)),
                    )
                })
                .collect();
            let truth = Truth {
                id: &id,
                generator: gen.name,
                group: &group.id,
                defects: &clip.defects,
                shots: &clip.shots,
                event_s: clip.event_s,
                sync_offset_s: clip.sync_offset_s,
                true_scores,
            };
            truth_lines.push_str(&serde_json::to_string(&truth).expect("truth serialises"));
            truth_lines.push('\n');
            let caption = crate::prompts::CaptionLine {
                clip: id.clone(),
                caption: panel::caption(&taxonomy, &clip, group, &facts),
            };
            caption_lines.push_str(&serde_json::to_string(&caption).expect("caption serialises"));
            caption_lines.push('\n');
            records.push(Record::Clip(record));
            done += 1;
            progress(done, total);
        }
        for ((dim, rater), items) in perceived {
            if items.len() >= 2 {
                records.push(Record::Ranking(RankingRecord {
                    prompt_group: group.id.clone(),
                    dimension: dim,
                    rater,
                    order: panel::rank(items, 0.05),
                }));
            }
        }
    }
    if !groups.iter().any(|g| g.task == Task::R2v) {
        let _ = std::fs::remove_dir(out.join("refs"));
    }
    crate::error::write_atomic(
        &out.join("manifest.jsonl"),
        crate::manifest::to_jsonl(&records).as_bytes(),
    )?;
    crate::error::write_atomic(&out.join("truth.jsonl"), truth_lines.as_bytes())?;
    crate::error::write_atomic(&out.join("captions.jsonl"), caption_lines.as_bytes())?;
    let config = DatasetConfig {
        name: out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        manifest: "manifest.jsonl".into(),
        taxonomy: "evalverse".into(),
        splits: SplitSpec {
            seed: cfg.seed,
            ..SplitSpec::default()
        },
        provenance: Some(format!(
            "evalverse data synth --out {} --clips {} --seed {} (size {}x{}, {} fps, {} raters)",
            out.display(),
            cfg.clips,
            cfg.seed,
            cfg.width,
            cfg.height,
            cfg.fps,
            cfg.raters
        )),
    };
    let toml_text =
        toml::to_string_pretty(&config).map_err(|e| DataError::Invalid(e.to_string()))?;
    crate::error::write_atomic(
        &out.join(DATASET_FILE),
        format!("# Made by the evalverse synthetic generator; see docs/SYNTH.md.\n{toml_text}")
            .as_bytes(),
    )?;
    Ok(SynthSummary {
        clips: total,
        prompt_groups: n_groups,
        bytes: dir_size(out),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
