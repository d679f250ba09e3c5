//! `evalverse judge VIDEO --prompt TEXT`: one clip judged on the taxonomy's dimensions by a base
//! model + adapter; prints each dimension's rationale, score (or N/A) and soft score.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use evalverse_data::cache::CachedClip;
use evalverse_data::prompts::{group_units_with, judge_question, JudgeExample};
use evalverse_data::taxonomy::Taxonomy;
use evalverse_data::video::{preprocess_video, PatchSpec};
use evalverse_eval::harness::{judge_units, JudgeSettings, Verdict};

use crate::Failure;

pub struct JudgeArgs<'a> {
    pub video: &'a Path,
    pub prompt: &'a str,
    pub checkpoint: &'a str,
    pub base: Option<&'a str>,
    pub dimensions: &'a [String],
    pub taxonomy: &'a str,
    pub max_new_tokens: usize,
    pub json: bool,
    /// Where the judge runs (`cuda` needs a `--features cuda` build).
    pub device: evalverse_train::recipe::Device,
    /// Dtype of the base weights.
    pub dtype: evalverse_train::recipe::Dtype,
}

pub fn judge(a: &JudgeArgs) -> Result<ExitCode, Failure> {
    use evalverse_train::recipe::Device;
    match a.device {
        Device::Cpu => judge_on::<evalverse_model::Cpu>(a, &Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            judge_on::<burn::backend::Cuda>(a, &burn::backend::cuda::CudaDevice::new(0))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => Err(Failure::Usage(anyhow!(
            "--device cuda: this evalverse was built without CUDA \
             (cargo build --release -p evalverse-cli --features cuda)"
        ))),
    }
}

fn judge_on<B: evalverse_model::ModelBackend>(
    a: &JudgeArgs,
    device: &B::Device,
) -> Result<ExitCode, Failure> {
    let usage = |m: String| Failure::Usage(anyhow!(m));
    let tax = Taxonomy::load(a.taxonomy, Path::new("."))
        .map_err(|e| usage(format!("--taxonomy {}: {e}", a.taxonomy)))?;
    for d in a.dimensions {
        if tax.dimension(d).is_none() {
            return Err(usage(format!(
                "dimension '{d}' is not in taxonomy '{}' (known: {})",
                tax.name,
                tax.dimension_ids().join(", ")
            )));
        }
    }
    if !a.video.is_file() {
        return Err(usage(format!("{}: no such video file", a.video.display())));
    }
    let (base, adapter, frames, _) = crate::eval::resolve_checkpoint(a.checkpoint, a.base)?;
    let (model, tok, head) = crate::eval::load_judge::<B>(
        &base,
        adapter.as_deref(),
        evalverse_train::runtime::dtype(a.dtype),
        device,
    )?;
    let vision = preprocess_video(a.video, &frames, &PatchSpec::default())
        .map_err(|e| Failure::Runtime(anyhow!("{e}")))?; // DataError names the file
    let clips = BTreeMap::from([(
        a.video.to_path_buf(),
        CachedClip {
            vision,
            audio: None,
        },
    )]);
    let id = a
        .video
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let examples: Vec<JudgeExample> = tax
        .dimensions
        .iter()
        .filter(|d| a.dimensions.is_empty() || a.dimensions.contains(&d.id))
        .map(|d| JudgeExample {
            clip_id: id.clone(),
            prompt_group: String::new(),
            generator: String::new(),
            video: a.video.to_path_buf(),
            has_audio: false,
            dimension: d.id.clone(),
            question: judge_question(&tax, d, a.prompt),
            answer: String::new(),
            rationale: String::new(),
            score: None,
            mean: None,
            histogram: vec![],
        })
        .collect();
    // Judged as the run was trained: one prompt per dimension or per aspect.
    let unit = match Path::new(a.checkpoint).join("recipe.toml") {
        r if r.is_file() => {
            evalverse_train::recipe::Recipe::load(&r)
                .map_err(|e| usage(e.to_string()))?
                .data
                .unit
        }
        _ => Default::default(),
    };
    let units = group_units_with(&tax, examples, unit, &|_| (a.prompt.to_string(), None));
    let judgements = judge_units(
        &model,
        &tok,
        &tax,
        &units,
        &clips,
        &JudgeSettings {
            max_new_tokens: a.max_new_tokens,
            batch_size: 8,
            head,
        },
        |_, _| {},
    )
    .map_err(|m| Failure::Runtime(anyhow!(m)))?;
    if a.json {
        for j in &judgements {
            println!("{}", serde_json::to_string(j).expect("json"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    for j in &judgements {
        let name = tax
            .dimension(&j.dimension)
            .map(|d| d.name.as_str())
            .unwrap_or(&j.dimension);
        let verdict = match j.verdict {
            Verdict::Score(v) => format!("{v}"),
            Verdict::NotApplicable => "N/A".into(),
            Verdict::Malformed => "malformed answer".into(),
        };
        println!("{name}: {verdict} (soft {:.2})", j.soft);
        for line in j.answer.trim().lines() {
            println!("    {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
