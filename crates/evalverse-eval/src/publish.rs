//! Export (`evalverse export RUN --format peft|merged|judge`): a folder to publish. `peft`: the run's final
//! adapter (for a preference run, the SFT and preference adapters stacked into one) in PEFT's
//! format; `merged`: the base with that adapter folded in, in the Hugging Face layout (config,
//! safetensors shards + index, tokenizer, chat template, processor configs); `judge`: the judge
//! bundle (`evalverse_judge::bundle`: adapter, reward head, fusion model, gate policy, frames,
//! taxonomy, base fingerprint, eval figures) that `judge`, `score` and `eval --judge` run. All get a model card
//! README.md (YAML front matter as the Hub reads it; taxonomy, recipe, data, eval table with CIs).
//! RUN is resolved as `evalverse eval --checkpoint` resolves it, so the export is what eval judges.
//! Written to a temporary folder and renamed: a failed export leaves nothing behind.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_model::config::{Family, QwenVlConfig};
use evalverse_model::export::{companion_files, write_merged, Adapter, MergeOptions};
use evalverse_model::weights::ModelSource;
use serde_json::Value;

use crate::error::{Context, RunError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
    Peft,
    /// Merged full weights in the Hugging Face layout.
    Merged,
    /// A judge bundle: everything the composed judge needs except the base weights.
    Judge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    /// Each tensor keeps the base checkpoint's dtype.
    Base,
    F32,
    Bf16,
    F16,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "peft" => Ok(Format::Peft),
            "merged" => Ok(Format::Merged),
            "judge" => Ok(Format::Judge),
            o => Err(format!("'{o}' (allowed: peft, merged, judge)")),
        }
    }
}

impl std::str::FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "base" => Ok(ExportDtype::Base),
            "f32" => Ok(ExportDtype::F32),
            "bf16" => Ok(ExportDtype::Bf16),
            "f16" => Ok(ExportDtype::F16),
            o => Err(format!("'{o}' (allowed: base, f32, bf16, f16)")),
        }
    }
}

pub struct ExportArgs<'a> {
    pub checkpoint: &'a str,
    pub base: Option<&'a str>,
    pub format: Format,
    pub out: Option<&'a Path>,
    pub max_shard_size: &'a str,
    pub dtype: ExportDtype,
    pub eval: Option<&'a Path>,
    pub base_name: Option<&'a str>,
    pub force: bool,
    /// `--format judge`: the fitted fusion model (a `evalverse fuse` folder or its
    /// fusion_model.json), the gate policy and the rationale length the bundle judges with.
    pub fusion: Option<&'a Path>,
    pub gate: Option<evalverse_judge::GatePolicy>,
    pub max_new_tokens: Option<usize>,
}

/// "2GB", "500MB", "400KB", "1GiB" or a byte count (transformers' units: KB = 1000, KiB = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 2GB, 500MB, 400KB)"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        u => {
            return Err(format!(
                "'{s}': unknown unit '{u}' (B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = (n * mult as f64).round();
    if !(bytes >= 1.0) {
        return Err(format!("'{s}': the shard size must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// `hf:ORG/NAME[@REV]` -> ORG/NAME (the Hub's `base_model`); a folder stays as given.
fn hub_name(base: &str) -> String {
    match ModelSource::parse(base) {
        Ok(ModelSource::Hub { repo, .. }) => repo,
        _ => base.to_string(),
    }
}

/// The transformers class that loads a checkpoint of this family (the model card's usage code).
pub fn architecture(family: Family) -> &'static str {
    match family {
        Family::Qwen2Vl => "Qwen2VLForConditionalGeneration",
        Family::Qwen2_5Vl => "Qwen2_5_VLForConditionalGeneration",
        Family::Qwen3Vl => "Qwen3VLForConditionalGeneration",
    }
}

/// The family of the base, from its config.json: the card names the class that loads it.
fn base_family(base: &str) -> Result<Family, RunError> {
    let files = ModelSource::parse(base)
        .and_then(|s| s.resolve())
        .map_err(|e| {
            RunError::Usage(format!(
                "base {base}: {e} (its config.json names the architecture the model card loads)"
            ))
        })?;
    QwenVlConfig::from_file(&files.config)
        .map(|c| c.family)
        .map_err(|e| RunError::Usage(format!("base {base}: {e}")))
}

fn copy(from: &Path, to: &Path) -> Result<(), RunError> {
    std::fs::copy(from, to).ctx(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Write the export `a` asks for; returns a one-line summary naming the folder.
pub fn export(a: &ExportArgs) -> Result<String, RunError> {
    let usage = RunError::Usage;
    if a.checkpoint == "none" {
        return Err(usage(
            "export needs a training run or an adapter folder, not \"none\"".into(),
        ));
    }
    let resolved = evalverse_train::judge_spec::resolve(a.checkpoint, a.base)?;
    let base = resolved.spec.base.clone();
    let default_eval = resolved.default_out.clone();
    let adapter = resolved
        .spec
        .adapter
        .clone()
        .expect("a run or adapter folder resolves to an adapter");
    let max_shard =
        parse_size(a.max_shard_size).map_err(|m| usage(format!("--max-shard-size {m}")))?;
    let src = Path::new(a.checkpoint);
    // A run folder, or an adapter inside one (RUN/adapter): the card then has recipe and data.
    let run = [src, adapter.parent().unwrap_or(src)]
        .into_iter()
        .find(|p| p.join("recipe.toml").is_file())
        .map(Path::to_path_buf);
    let out = a.out.map(Path::to_path_buf).unwrap_or_else(|| {
        src.join(match a.format {
            Format::Peft => "export-peft",
            Format::Merged => "export-merged",
            Format::Judge => "export-judge",
        })
    });
    let non_empty = out.is_dir()
        && std::fs::read_dir(&out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
    if out.exists() && !out.is_dir() {
        return Err(usage(format!(
            "--out {}: exists and is not a folder",
            out.display()
        )));
    }
    if non_empty && !a.force {
        return Err(usage(format!(
            "--out {}: folder is not empty; pass --force to replace it",
            out.display()
        )));
    }
    // The adapter is read strictly for both formats: a broken adapter is never published.
    let ad = Adapter::read(&adapter)
        .map_err(|e| usage(format!("adapter {}: {e}", adapter.display())))?;
    let family = base_family(&base)?;

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .ok_or_else(|| usage(format!("--out {}: not a folder name", out.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ctx(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    let result = match a.format {
        Format::Judge => write_judge(
            a,
            &resolved,
            &ad,
            family,
            run.as_deref(),
            &default_eval,
            &tmp,
        ),
        _ => write_export(
            a,
            family,
            &base,
            &adapter,
            &ad,
            run.as_deref(),
            &default_eval,
            max_shard,
            &tmp,
        ),
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Swap into place: the old folder (if --force) is moved aside, then removed.
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(&out, &old).ctx(|| format!("moving {} aside", out.display()))?;
        std::fs::rename(&tmp, &out)
            .ctx(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
        std::fs::remove_dir_all(&old).ctx(|| format!("removing {}", old.display()))?;
    } else {
        std::fs::rename(&tmp, &out)
            .ctx(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    }
    Ok(format!("{summary} -> {}", out.display()))
}

/// `--format judge`: the bundle, written into `tmp`.
fn write_judge(
    a: &ExportArgs,
    resolved: &evalverse_train::judge_spec::ResolvedJudge,
    ad: &Adapter,
    family: Family,
    run: Option<&Path>,
    default_eval: &Path,
    tmp: &Path,
) -> Result<String, RunError> {
    if a.dtype != ExportDtype::Base {
        return Err(RunError::Usage(format!(
            "--dtype applies to --format merged only"
        )));
    }
    let mut spec = resolved.spec.clone();
    if let Some(g) = a.gate {
        spec.gate = g;
    }
    if let Some(n) = a.max_new_tokens {
        spec.max_new_tokens = n;
    }
    let fusion = a.fusion.map(crate::fusion::read_model).transpose()?;
    // The taxonomy the run was trained on (its dataset's), else the built-in one.
    let taxonomy = run
        .and_then(|r| evalverse_train::recipe::Recipe::load(&r.join("recipe.toml")).ok())
        .map(|r| Dataset::load(&r.data.dataset).map(|d| d.taxonomy))
        .transpose()?
        .unwrap_or_else(evalverse_data::taxonomy::Taxonomy::evalverse);
    if let Some(f) = &fusion {
        for d in f.dimensions.keys() {
            if taxonomy.dimension(d).is_none() {
                return Err(RunError::Usage(format!(
                    "the fusion model fits dimension '{d}', which taxonomy '{}' lacks",
                    taxonomy.name
                )));
            }
        }
    }
    let eval_dir = a.eval.unwrap_or(default_eval);
    let base_name = a
        .base_name
        .map(str::to_owned)
        .unwrap_or_else(|| hub_name(&spec.base));
    let card = model_card(
        Format::Judge,
        family,
        &base_name,
        &spec.base,
        spec.adapter.as_deref().expect("adapter"),
        ad,
        run,
        eval_dir,
        &[
            "judge.json".into(),
            "adapter/".into(),
            "taxonomy.toml".into(),
        ],
    )?;
    let m = evalverse_judge::bundle::write(
        tmp,
        &evalverse_judge::bundle::BundleParts {
            spec: &spec,
            taxonomy: &taxonomy,
            fusion: fusion.as_ref(),
            eval: eval_dir.join("report.json").is_file().then_some(eval_dir),
            card: &card,
            exported_from: a.checkpoint,
        },
    )?;
    Ok(format!(
        "judge bundle: adapter rank {}, {}, fusion {}, gate {}, {} parts, base {} ({} files fingerprinted)",
        ad.rank,
        if evalverse_model::reward::RewardHead::load(&tmp.join("adapter"))
            .map_err(|e| RunError::Usage(e.to_string()))?
            .is_some()
        {
            "reward head"
        } else {
            "score tokens"
        },
        fusion
            .as_ref()
            .map(|f| format!("{} dimensions", f.dimensions.len()))
            .unwrap_or_else(|| "none".into()),
        spec.gate,
        m.parts.len(),
        m.base.source,
        m.base.files.len()
    ))
}

#[allow(clippy::too_many_arguments)]
fn write_export(
    a: &ExportArgs,
    family: Family,
    base: &str,
    adapter: &Path,
    ad: &Adapter,
    run: Option<&Path>,
    default_eval: &Path,
    max_shard: u64,
    tmp: &Path,
) -> Result<String, RunError> {
    let usage = RunError::Usage;
    let base_name = a
        .base_name
        .map(str::to_owned)
        .unwrap_or_else(|| hub_name(base));
    let summary;
    let mut files_written: Vec<String> = Vec::new();
    match a.format {
        Format::Judge => unreachable!("write_judge writes a judge bundle"),
        Format::Peft => {
            if a.dtype != ExportDtype::Base {
                return Err(usage("--dtype applies to --format merged only".into()));
            }
            let cfg_path = adapter.join("adapter_config.json");
            let text = std::fs::read_to_string(&cfg_path)
                .ctx(|| format!("reading {}", cfg_path.display()))?;
            let mut v: Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: {e}", cfg_path.display())))?;
            v["base_model_name_or_path"] = Value::String(base_name.clone());
            std::fs::write(
                tmp.join("adapter_config.json"),
                serde_json::to_string_pretty(&v).expect("json"),
            )
            .ctx(|| format!("writing into {}", tmp.display()))?;
            copy(
                &adapter.join("adapter_model.safetensors"),
                &tmp.join("adapter_model.safetensors"),
            )?;
            files_written.extend([
                "adapter_config.json".into(),
                "adapter_model.safetensors".into(),
            ]);
            let sidecar = adapter.join(evalverse_model::lora::SIDECAR);
            if sidecar.is_file() {
                copy(&sidecar, &tmp.join(evalverse_model::lora::SIDECAR))?;
                files_written.push(evalverse_model::lora::SIDECAR.into());
            }
            summary = format!(
                "PEFT adapter: rank {}, {} modules, base {base_name}",
                ad.rank,
                ad.modules().count()
            );
        }
        Format::Merged => {
            let files = ModelSource::parse(base)
                .and_then(|s| s.resolve())
                .map_err(|e| usage(format!("base {base}: {e}")))?;
            let dtype = match a.dtype {
                ExportDtype::Base => None,
                ExportDtype::F32 => Some(safetensors::Dtype::F32),
                ExportDtype::Bf16 => Some(safetensors::Dtype::BF16),
                ExportDtype::F16 => Some(safetensors::Dtype::F16),
            };
            let s = write_merged(
                &files,
                Some(ad),
                tmp,
                &MergeOptions {
                    max_shard_bytes: max_shard,
                    dtype,
                },
            )
            .map_err(|e| {
                usage(format!(
                    "adapter {} does not fit base {base}: {e}",
                    adapter.display()
                ))
            })?;
            if s.merged_modules != ad.modules().count() {
                return Err(RunError::Runtime(format!(
                    "merged {} of the adapter's {} modules",
                    s.merged_modules,
                    ad.modules().count()
                )));
            }
            files_written.extend(s.files.iter().cloned());
            if s.files.len() > 1 {
                files_written.push(evalverse_model::export::INDEX.into());
            }
            // config.json as the base has it; torch_dtype follows a requested dtype.
            let text = std::fs::read_to_string(&files.config)
                .ctx(|| format!("reading {}", files.config.display()))?;
            let config = match dtype {
                None => text,
                Some(d) => {
                    let mut v: Value = serde_json::from_str(&text)
                        .map_err(|e| usage(format!("{}: {e}", files.config.display())))?;
                    let name = match d {
                        safetensors::Dtype::BF16 => "bfloat16",
                        safetensors::Dtype::F16 => "float16",
                        _ => "float32",
                    };
                    v["torch_dtype"] = Value::String(name.into());
                    if let Some(tc) = v.get_mut("text_config").filter(|t| t.is_object()) {
                        tc["torch_dtype"] = Value::String(name.into());
                    }
                    serde_json::to_string_pretty(&v).expect("json")
                }
            };
            std::fs::write(tmp.join("config.json"), config)
                .ctx(|| format!("writing into {}", tmp.display()))?;
            files_written.push("config.json".into());
            let mut companions: Vec<(PathBuf, String)> =
                companion_files(files.config.parent().unwrap_or(Path::new(".")))
                    .into_iter()
                    .map(|p| {
                        let n = p.file_name().expect("file").to_string_lossy().into_owned();
                        (p, n)
                    })
                    .collect();
            if !companions.iter().any(|(_, n)| n == "tokenizer.json") {
                // The recipe's tokenizer, or the hub cache's, when the base folder has none.
                let recipe_tok = run
                    .and_then(|r| {
                        evalverse_train::recipe::Recipe::load(&r.join("recipe.toml")).ok()
                    })
                    .and_then(|r| r.model.tokenizer);
                if let Some(t) = recipe_tok.or(files.tokenizer.clone()) {
                    companions.push((t, "tokenizer.json".into()));
                }
            }
            for (from, name) in &companions {
                copy(from, &tmp.join(name))?;
                files_written.push(name.clone());
            }
            summary = format!(
                "merged weights: {} tensors ({} with LoRA folded in), {} parameters, {} file(s), {}",
                s.tensors,
                s.merged_modules,
                s.parameters,
                s.files.len(),
                s.dtypes.join("/")
            );
        }
    }
    // A Bradley-Terry run's reward head goes with either format (evaluation scores with it).
    if evalverse_model::reward::RewardHead::load(adapter)
        .map_err(|e| usage(e.to_string()))?
        .is_some()
    {
        for name in [
            evalverse_model::reward::WEIGHTS,
            evalverse_model::reward::CONFIG,
        ] {
            copy(&adapter.join(name), &tmp.join(name))?;
            files_written.push(name.into());
        }
    }
    let card = model_card(
        a.format,
        family,
        &base_name,
        base,
        adapter,
        ad,
        run,
        a.eval
            .map(Path::to_path_buf)
            .unwrap_or_else(|| default_eval.to_path_buf())
            .as_path(),
        &files_written,
    )?;
    std::fs::write(tmp.join("README.md"), card)
        .ctx(|| format!("writing into {}", tmp.display()))?;
    Ok(summary)
}

fn ci(v: &Value) -> String {
    match (
        v["estimate"].as_f64(),
        v["lower"].as_f64(),
        v["upper"].as_f64(),
    ) {
        (Some(e), Some(l), Some(u)) => format!("{e:.3} [{l:.3}, {u:.3}]"),
        (Some(e), _, _) => format!("{e:.3} (no interval)"),
        _ => "-".into(),
    }
}

fn num(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.3}"))
        .unwrap_or_else(|| "-".into())
}

/// The eval section from report.json (the schema of evalverse_eval::report::Report).
fn eval_section(report: &Path) -> Result<String, RunError> {
    let text = std::fs::read_to_string(report).ctx(|| format!("reading {}", report.display()))?;
    let r: Value = serde_json::from_str(&text)
        .map_err(|e| RunError::Usage(format!("{}: not valid JSON: {e}", report.display())))?;
    if !r["dimensions"].is_array() || !r["overall"].is_object() {
        return Err(RunError::Usage(format!(
            "{}: not an evalverse report (no \"dimensions\" / \"overall\")",
            report.display()
        )));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Judged by `evalverse eval` on dataset `{}`, split `{}`: {} judgements, {} malformed answers, {} clips skipped. \
         Soft scores (expected score over the score tokens) against the held-out experts' mean; \
         95% percentile bootstrap intervals over prompt groups ({} resamples). Human ceiling: \
         leave-one-rater-out SRCC of the experts on the same clips.\n",
        r["dataset"].as_str().unwrap_or("?"),
        r["split"].as_str().unwrap_or("?"),
        r["judged"],
        r["malformed"],
        r["skipped_clips"].as_array().map(Vec::len).unwrap_or(0),
        r["bootstrap_resamples"],
    );
    s.push_str("| aspect / stage | SRCC | PLCC | pairwise acc | human ceiling SRCC |\n|---|---|---|---|---|\n");
    let groups = r["aspects"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(r["stages"].as_array().into_iter().flatten())
        .chain(std::iter::once(&r["overall"]));
    for g in groups {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            g["name"].as_str().unwrap_or("?"),
            ci(&g["srcc"]),
            ci(&g["plcc"]),
            ci(&g["pairwise_accuracy"]),
            num(&g["human_ceiling_srcc"])
        );
    }
    s.push_str("\n| dimension | n | malformed | SRCC | PLCC | pairwise acc | MAE | human ceiling SRCC |\n|---|---|---|---|---|---|---|---|\n");
    for d in r["dimensions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            d["dimension"].as_str().unwrap_or("?"),
            d["judged"],
            d["malformed"],
            ci(&d["soft_srcc_ci"]),
            ci(&d["soft_plcc_ci"]),
            ci(&d["soft_pairwise_ci"]),
            num(&d["soft"]["mae"]),
            num(&d["human_ceiling_srcc"])
        );
    }
    Ok(s)
}

fn data_section(ds: &Dataset, dims: &[String]) -> String {
    let mut s = format!(
        "Dataset `{}` (`{}`, manifest `{}`): {} clips, {} rankings, {} pairs. Splits are by prompt group.\n\n| split | clips | prompt groups | annotations |\n|---|---|---|---|\n",
        ds.config.name,
        ds.root.display(),
        ds.manifest_path.display(),
        ds.clips.len(),
        ds.rankings.len(),
        ds.pairs.len()
    );
    for split in Split::ALL {
        let clips: Vec<_> = ds.clips_in(split).collect();
        let groups: BTreeSet<&str> = clips.iter().map(|c| c.prompt_group.as_str()).collect();
        let notes: usize = clips.iter().map(|c| c.annotations.len()).sum();
        let _ = writeln!(
            s,
            "| {split} | {} | {} | {notes} |",
            clips.len(),
            groups.len()
        );
    }
    let _ = writeln!(
        s,
        "\nDimensions trained: {}.",
        if dims.is_empty() {
            "all of the taxonomy's".to_string()
        } else {
            dims.join(", ")
        }
    );
    s
}

fn taxonomy_section(tax: &evalverse_data::taxonomy::Taxonomy) -> String {
    let mut s = format!(
        "Taxonomy `{}`{}: {} stages, {} aspects, {} dimensions.\n\n| stage | aspect | dimensions |\n|---|---|---|\n",
        tax.name,
        tax.version.as_ref().map(|v| format!(" v{v}")).unwrap_or_default(),
        tax.stages.len(),
        tax.aspects.len(),
        tax.dimensions.len()
    );
    for stage in &tax.stages {
        for aspect in tax.aspects.iter().filter(|a| a.stage == stage.id) {
            let dims: Vec<&str> = tax
                .dimensions
                .iter()
                .filter(|d| d.aspect.as_deref() == Some(aspect.id.as_str()))
                .map(|d| d.id.as_str())
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                stage.name,
                aspect.name,
                dims.join(", ")
            );
        }
    }
    let other: Vec<&str> = tax
        .dimensions
        .iter()
        .filter(|d| d.aspect.is_none())
        .map(|d| d.id.as_str())
        .collect();
    if !other.is_empty() {
        let _ = writeln!(s, "| - | (rightness) | {} |", other.join(", "));
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn model_card(
    format: Format,
    family: Family,
    base_name: &str,
    base: &str,
    adapter: &Path,
    ad: &Adapter,
    run: Option<&Path>,
    eval_dir: &Path,
    files: &[String],
) -> Result<String, RunError> {
    let (library, kind_tag) = match format {
        Format::Peft => ("peft", "lora"),
        Format::Merged => ("transformers", "merged-lora"),
        Format::Judge => ("evalverse", "judge-bundle"),
    };
    let (model_type, class) = (family.model_type(), architecture(family));
    let mut s = format!(
        "---\nbase_model: {base_name}\nlibrary_name: {library}\npipeline_tag: video-text-to-text\ntags:\n- evalverse\n- video-evaluation\n- llm-as-judge\n- {model_type}\n- {kind_tag}\n---\n\n"
    );
    let title = run
        .and_then(|r| r.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "adapter".into());
    let _ = writeln!(
        s,
        "# evalverse judge: {title}\n\nA video judge fine-tuned with [evalverse](https://github.com/evalverse/evalverse) \
         from `{base_name}` with LoRA (rank {}, {} modules). {}\n",
        ad.rank,
        ad.modules().count(),
        match format {
            Format::Peft => "This folder is the PEFT adapter; load it on the base model.",
            Format::Merged => "This folder holds the full weights with the adapter merged in (Hugging Face layout); it loads without PEFT.",
            Format::Judge => "This folder is an evalverse judge bundle: the adapter, the reward head, the fusion model and the gate policy of the composed judge, checked against the base weights' fingerprint when loaded.",
        }
    );
    if format == Format::Judge {
        let _ = writeln!(
            s,
            "## Usage\n\n```bash\nevalverse judge VIDEO.mp4 --prompt \"the generation prompt\" --judge THIS_FOLDER\nevalverse score list.jsonl --judge THIS_FOLDER --out results.jsonl\nevalverse eval --judge THIS_FOLDER --data DATASET\n```\n\nThe base weights are not included: `{base}` (or pass `--base`; a base whose config or safetensors headers differ is refused).\n"
        );
    } else {
        s.push_str("## Usage\n\n```python\n");
    }
    match format {
        Format::Judge => {}
        Format::Peft => {
            let _ = writeln!(
                s,
                "from peft import PeftModel\nfrom transformers import {class}\n\nbase = {class}.from_pretrained(\"{base_name}\")\nmodel = PeftModel.from_pretrained(base, \"PATH/TO/THIS/FOLDER\")"
            );
        }
        Format::Merged => {
            let _ = writeln!(
                s,
                "from transformers import {class}\n\nmodel = {class}.from_pretrained(\"PATH/TO/THIS/FOLDER\")"
            );
        }
    }
    match format {
        Format::Peft => s.push_str(
            "```\n\nWith evalverse: `evalverse eval --checkpoint THIS_FOLDER --base BASE --data DATASET`.\n\n",
        ),
        Format::Merged => s.push_str(
            "```\n\nWith evalverse: `evalverse eval --checkpoint none --base THIS_FOLDER --data DATASET`.\n\n",
        ),
        Format::Judge => {}
    }
    let _ = writeln!(
        s,
        "Exported from `{}` (adapter `{}`, base `{base}`). Files: {}.\n",
        run.map(|r| r.display().to_string())
            .unwrap_or_else(|| adapter.display().to_string()),
        adapter.display(),
        files
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let recipe = match run {
        Some(r) => {
            let path = r.join("recipe.toml");
            let text =
                std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
            let parsed = evalverse_train::recipe::Recipe::load(&path)
                .map_err(|e| RunError::Usage(e.to_string()))?;
            Some((text, parsed))
        }
        None => None,
    };
    let dataset = recipe.as_ref().map(|(_, r)| {
        (
            r.data.dataset.clone(),
            Dataset::load(&r.data.dataset),
            r.data.dimensions.clone(),
        )
    });

    s.push_str("## Taxonomy\n\n");
    match &dataset {
        Some((_, Ok(ds), _)) => s.push_str(&taxonomy_section(&ds.taxonomy)),
        Some((p, Err(e), _)) => {
            let _ = writeln!(s, "The training dataset `{}` could not be read at export time ({e}), so its taxonomy is not summarised here.", p.display());
        }
        None => s.push_str(
            "Not recorded: this export was made from an adapter folder without its training run.\n",
        ),
    }
    s.push_str("\n## Training recipe\n\n");
    match &recipe {
        Some((text, r)) => {
            let stage = match &r.stage {
                evalverse_train::recipe::StageConfig::Sft => "chain-of-thought SFT".to_string(),
                evalverse_train::recipe::StageConfig::Caption => {
                    "caption pretraining (clip, dense caption)".to_string()
                }
                evalverse_train::recipe::StageConfig::Preference { strategy } => format!(
                    "preference calibration on the SFT adapter `{}` ({}); the adapter here stacks SFT and preference adapters exactly",
                    r.model.adapter.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
                    serde_json::to_string(strategy).unwrap_or_default()
                ),
            };
            let _ = writeln!(s, "Stage: {stage}. The resolved recipe, as written into the run folder:\n\n```toml\n{}\n```", text.trim_end());
        }
        None => s.push_str("Not recorded (adapter folder without its run).\n"),
    }
    s.push_str("\n## Data\n\n");
    match &dataset {
        Some((_, Ok(ds), dims)) => s.push_str(&data_section(ds, dims)),
        Some((p, Err(_), _)) => {
            let _ = writeln!(
                s,
                "Dataset `{}` (not readable at export time).",
                p.display()
            );
        }
        None => s.push_str("Not recorded.\n"),
    }
    s.push_str("\n## Evaluation\n\n");
    let report = eval_dir.join("report.json");
    if report.is_file() {
        s.push_str(&eval_section(&report)?);
    } else {
        let _ = writeln!(
            s,
            "No evaluation was run for this export (no `{}`). Run `evalverse eval --checkpoint RUN --data DATASET` first, or pass `--eval DIR`.",
            report.display()
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_sizes_parse_in_transformers_units() {
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("400KB"), Ok(400_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("GB").is_err());
    }

    fn families() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../evalverse-model/tests/fixtures/families")
    }

    #[test]
    fn card_loads_the_base_with_its_familys_class() {
        let base = families().join("qwen3_vl");
        let base = base.to_str().unwrap();
        let family = base_family(base).unwrap();
        assert_eq!(family, Family::Qwen3Vl);
        let adapter = families().join("lora_qwen3_vl");
        let ad = Adapter::read(&adapter).unwrap();
        let eval = tempfile::tempdir().unwrap();
        for format in [Format::Peft, Format::Merged] {
            let card = model_card(
                format,
                family,
                "org/base",
                base,
                &adapter,
                &ad,
                None,
                eval.path(),
                &[],
            )
            .unwrap();
            assert!(
                card.contains("from transformers import Qwen3VLForConditionalGeneration"),
                "{card}"
            );
            assert!(card.contains("- qwen3_vl\n"), "{card}");
            assert!(!card.contains("Qwen2_5"), "{card}");
        }
        let tiny =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../evalverse-model/tests/fixtures/tiny_a");
        assert_eq!(
            base_family(tiny.to_str().unwrap()).unwrap(),
            Family::Qwen2_5Vl
        );
        assert_eq!(
            base_family(families().join("qwen2_vl").to_str().unwrap()).unwrap(),
            Family::Qwen2Vl
        );
    }

    #[test]
    fn card_refuses_a_base_without_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let e = base_family(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
