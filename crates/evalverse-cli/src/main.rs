//! The `evalverse` binary: turns expert annotations of cinematic video into a calibrated VLM
//! judge and measures its agreement with held-out experts. Exit codes: 0 ok, 1 runtime failure
//! or invalid data, 2 usage or configuration error (`Failure` says which is which).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod ablate;
mod data;
mod eval;
mod export;
mod fuse;
mod judge;
mod judging;
mod leaderboard;
mod model;
mod probe;
mod quickstart;
mod score;
mod serve;
mod train;

#[derive(Parser)]
#[command(name = "evalverse", version, about = "Expert-calibrated VLM judges of cinematic video", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on CPU in about 10 minutes: tiny pretrained base, chain-of-thought SFT,
    /// preference calibration, held-out agreement per aspect (base, SFT, calibrated, human ceiling).
    Quickstart(QuickstartCmd),
    /// Annotated datasets: validate, statistics, synthetic data.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a judge from a recipe (stage sft or preference); Ctrl-C saves a checkpoint.
    Train(TrainArgs),
    /// Judge a split with a base model + adapter and report agreement with the experts.
    Eval(EvalCmd),
    /// Run an ablation: one recipe, several variants, same data and seeds, one leaderboard.
    Ablate(AblateCmd),
    /// Judge one clip with the composed judge: a verdict per dimension with its parts and rationale.
    Judge(JudgeCmd),
    /// Judge many videos (a JSONL or CSV list) into a results JSONL; re-run to resume.
    Score(ScoreCmd),
    /// Serve the judge over HTTP as a reward model (POST /v1/score; batching across requests).
    Serve(ServeCmd),
    /// Compare evaluated judges (eval folders or runs with eval/) in one table with significance.
    Leaderboard(LeaderboardArgs),
    /// Fuse the judge's soft scores with perception-operator evidence (fit on train, report test).
    Fuse(FuseArgs),
    /// Model checkpoints: make a fresh random one for tests and CPU experiments.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Export a run for publishing: a PEFT adapter folder or merged full weights, with a model card.
    Export(ExportCmd),
}

#[derive(Args)]
struct ExportCmd {
    /// A training run folder (recipe.toml + adapter/) or a PEFT adapter folder, as `eval --checkpoint`.
    checkpoint: String,
    /// peft (the adapter; preference runs: SFT + preference stacked), merged (full weights, HF
    /// layout) or judge (the judge bundle for `evalverse judge --judge`).
    #[arg(long, value_parser = |s: &str| s.parse::<export::Format>())]
    format: export::Format,
    /// Base model (folder or hf:ORG/NAME[@REV]); default: the run's recipe or the adapter's base.
    #[arg(long)]
    base: Option<String>,
    /// Output folder (default: <checkpoint>/export-<format>); must be empty unless --force.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Largest weight shard of a merged export (KB/MB/GB = 1000^n, KiB/MiB/GiB = 1024^n).
    #[arg(long, default_value = "2GB")]
    max_shard_size: String,
    /// Dtype of merged weights (base, f32, bf16, f16): base keeps each tensor's dtype.
    #[arg(long, default_value = "base", value_parser = |s: &str| s.parse::<export::ExportDtype>())]
    dtype: export::ExportDtype,
    /// Eval folder whose report.json goes into the model card (default: <checkpoint>/eval).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Base model name written into the card and adapter_config.json (e.g. Qwen/Qwen2.5-VL-7B-Instruct).
    #[arg(long)]
    base_name: Option<String>,
    /// Replace a non-empty output folder.
    #[arg(long)]
    force: bool,
    /// --format judge: the fitted fusion (an `evalverse fuse` folder or its fusion_model.json).
    #[arg(long)]
    fusion: Option<PathBuf>,
    /// --format judge: who decides N/A (operators, judge, both, off; default operators).
    #[arg(long, value_parser = parse_gate)]
    gate_policy: Option<evalverse_judge::GatePolicy>,
    /// --format judge: longest rationale per dimension the bundle judges with (default 96).
    #[arg(long)]
    max_new_tokens: Option<usize>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Check every record of a dataset (manifest, taxonomy, files, decoding); exits 1 on any problem.
    Validate(ValidateArgs),
    /// Counts per split, dimension, generator and task, and inter-rater agreement per dimension.
    Stats(StatsArgs),
    /// Generate a synthetic cinematic dataset (H.264 MP4s with audio, simulated expert panel).
    Synth(SynthArgs),
    /// Convert VideoFeedback, VideoAlign / VideoGen-RewardBench or a long CSV into a dataset.
    Import(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// Source format: videofeedback (JSON / JSONL, 5 dimensions 1-4), videoalign (pairwise CSV,
    /// A / B / same), long (CSV: clip, dimension, rater, score, prompt, generator).
    #[arg(long)]
    format: evalverse_data::import::Format,
    /// The source file (JSON, JSONL or CSV).
    #[arg(long)]
    input: PathBuf,
    /// Folder the source's video paths are relative to; videos are linked or copied into the dataset.
    #[arg(long)]
    videos: PathBuf,
    /// Output dataset folder (created; must be empty).
    #[arg(long)]
    out: PathBuf,
    /// TOML file overriding the source-to-taxonomy dimension mapping and the source scale
    /// (docs/MANIFEST.md, "Import").
    #[arg(long)]
    map: Option<PathBuf>,
    /// Map scores linearly from the source scale onto each dimension's scale (nearest level);
    /// without it, a score off the dimension's scale is an error.
    #[arg(long)]
    rescale: bool,
}

#[derive(Args)]
struct QuickstartCmd {
    /// Annotated dataset (trained on its train split, judged on its test split).
    #[arg(long, default_value = "data/sample")]
    data: PathBuf,
    /// Output folder: base, sft/, calibrated/, eval-*/, recipes/, summary.md. Existing stages are reused.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// The Qwen tokenizer.json (scripts/fetch_test_assets.sh fetches it).
    #[arg(long, default_value = "target/test-assets/qwen-tokenizer.json")]
    tokenizer: PathBuf,
    /// Folder with base.toml and the caption-pretraining adapter of the tiny base.
    #[arg(long, default_value = "data/tiny-base")]
    base_spec: PathBuf,
    /// Folder with the stage recipes sft.toml and calibrated.toml.
    #[arg(long, default_value = "recipes/quickstart")]
    recipes: PathBuf,
    /// Train and judge only these dimensions (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    dimensions: Vec<String>,
    /// Longest rationale generated when judging, in tokens.
    #[arg(long, default_value_t = 48)]
    max_new_tokens: usize,
    /// Bootstrap resamples for the 95% intervals in the reports.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
}

#[derive(Args)]
struct AblateCmd {
    /// Ablation file (TOML: output_dir, recipe, [eval], [[variant]] name/train/set); see recipes/ablations/.
    ablation: PathBuf,
}

/// Which judge, shared by `eval`, `judge` and `score`.
#[derive(Args)]
struct JudgeFlags {
    /// A judge bundle folder (`evalverse export RUN --format judge`; the quickstart writes
    /// runs/quickstart/judge).
    #[arg(long)]
    judge: Option<PathBuf>,
    /// Instead of a bundle: a training run folder (recipe.toml + adapter/), a PEFT adapter
    /// folder, or "none" (the base alone, with --base).
    #[arg(long)]
    checkpoint: Option<String>,
    /// Base model (folder or hf:ORG/NAME[@REV]); default: the bundle's, the run's recipe's or the
    /// adapter's base. A bundle checks it against the fingerprint taken at export.
    #[arg(long)]
    base: Option<String>,
    /// With --checkpoint: the fitted fusion stage (an `evalverse fuse` folder or its
    /// fusion_model.json); a bundle carries its own.
    #[arg(long)]
    fusion: Option<PathBuf>,
    /// Re-hash every byte of a bundle's base weights (the safetensors headers are always checked).
    #[arg(long)]
    verify_base: bool,
    /// Who decides N/A: operators (the context gate; default), judge (the VLM's own answer),
    /// both, off. Default: the bundle's.
    #[arg(long, value_parser = parse_gate)]
    gate_policy: Option<evalverse_judge::GatePolicy>,
    /// Longest rationale per dimension, in tokens; 0: no rationale, the reward head alone scores.
    /// Default: the bundle's (96 for a checkpoint).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Where the judge runs: cpu, or cuda (device 0; a build with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: evalverse_train::recipe::Device,
    /// Dtype of the base weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: evalverse_train::recipe::Dtype,
}

impl JudgeFlags {
    fn options(&self) -> judging::JudgeOptions<'_> {
        judging::JudgeOptions {
            bundle: self.judge.as_deref(),
            checkpoint: self.checkpoint.as_deref(),
            base: self.base.as_deref(),
            fusion: self.fusion.as_deref(),
            verify_base: self.verify_base,
            gate: self.gate_policy,
            max_new_tokens: self.max_new_tokens,
            device: self.device,
            dtype: self.dtype,
        }
    }
}

#[derive(Args)]
struct JudgeCmd {
    /// The video file.
    video: PathBuf,
    /// The prompt the clip was generated from.
    #[arg(long)]
    prompt: String,
    #[command(flatten)]
    judge: JudgeFlags,
    /// Dimensions to judge (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    dimensions: Vec<String>,
    /// Taxonomy of a --checkpoint judge: "evalverse" (built in) or a TOML file (a bundle carries its own).
    #[arg(long, default_value = "evalverse")]
    taxonomy: String,
    /// One JSON judgement per line (every stage recorded) instead of text.
    #[arg(long)]
    json: bool,
    /// Decode cache folder (default: $XDG_CACHE_HOME/evalverse or ~/.cache/evalverse).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args)]
struct ScoreCmd {
    /// The list: JSONL (video, prompt, optional reference, dimensions, id per line) or CSV with
    /// those columns; video paths relative to the list's folder.
    list: PathBuf,
    #[command(flatten)]
    judge: JudgeFlags,
    /// Results JSONL, one line per clip (appended; clips already in it are skipped).
    #[arg(long)]
    out: PathBuf,
    /// Videos decoded and judged together.
    #[arg(long, default_value_t = 8)]
    clips_per_batch: usize,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Decode cache folder (default: $XDG_CACHE_HOME/evalverse or ~/.cache/evalverse).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args)]
struct ServeCmd {
    #[command(flatten)]
    judge: JudgeFlags,
    /// Address to bind (loopback by default; 0.0.0.0 exposes the server).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Folder local video paths must lie in (repeatable); without one, only uploads are judged.
    #[arg(long = "allowed-media-root")]
    allowed_media_roots: Vec<PathBuf>,
    /// Most clips judged together in one model batch.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Longest a batch waits to fill after its first clip, in milliseconds.
    #[arg(long, default_value_t = 20)]
    max_wait_ms: u64,
    /// Requests served at once; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_concurrent: usize,
    /// Largest request body in bytes; larger gets 413.
    #[arg(long, default_value_t = 64 << 20)]
    max_body: usize,
    /// A request not answered within this many seconds gets 504.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// File holding the bearer API key every endpoint but /health requires.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Decode cache folder (default: $XDG_CACHE_HOME/evalverse or ~/.cache/evalverse).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args)]
struct EvalCmd {
    #[command(flatten)]
    judge: JudgeFlags,
    /// Dataset folder.
    #[arg(long)]
    data: PathBuf,
    /// Split to judge.
    #[arg(long, default_value = "test")]
    split: evalverse_data::split::Split,
    /// Dimensions to judge (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    dimensions: Vec<String>,
    /// Report folder (default: <run>/eval).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Prompts judged together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also judge every pair of clips of a prompt group in both orders (A/B, B/A) and report
    /// accuracy per order, order-averaged accuracy, position bias and consistency.
    #[arg(long)]
    pairwise: bool,
    /// Also print the N/A precision and recall of every gate policy (judge, operators, both)
    /// against the experts' N/A labels (always written to gate.md).
    #[arg(long)]
    gate: bool,
    /// Judge with this recipe's frame sampling ([data.frames]) instead of the checkpoint's: for
    /// --checkpoint none or an adapter folder, to judge on the same frames as a trained run.
    #[arg(long)]
    frames_from: Option<PathBuf>,
}

#[derive(Args)]
struct LeaderboardArgs {
    /// Eval folders (with judgements.jsonl) or training runs with eval/; the first is the baseline.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write leaderboard.md and leaderboard.json here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct FuseArgs {
    /// Eval folders (judgements.jsonl) or runs with eval/; their judgements are pooled and split
    /// into train and test by the dataset's prompt-group split.
    #[arg(long = "run", required = true)]
    runs: Vec<PathBuf>,
    /// Dataset folder the judgements are about.
    #[arg(long)]
    data: PathBuf,
    /// ridge (baseline) or mlp.
    #[arg(long, default_value = "ridge")]
    regressor: String,
    /// Ridge penalty on standardised features, when --cv-folds is below 2.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Choose the penalty (ridge lambda or MLP weight decay) per dimension and regressor by
    /// K-fold cross-validation over the train split's prompt groups; below 2: no choice.
    /// Default: 5 for ridge, 0 for the MLP (its grid search takes ~80 s and ranked worse).
    #[arg(long)]
    cv_folds: Option<usize>,
    /// Operators to measure (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    operators: Vec<String>,
    /// Where fusion.json, the evidence cache and the fused judge's report (fused/) go
    /// (default: the first --run).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap and the MLP.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Write a Qwen-VL checkpoint (--family qwen2_5_vl, qwen2_vl or qwen3_vl) with random weights
    /// (HF layout) and the given tokenizer.
    Init(InitArgs),
    /// Logits of a fixed probe input (parity checks; see scripts/check_export_transformers.py).
    #[command(hide = true)]
    Logits(LogitsArgs),
}

#[derive(Args)]
struct LogitsArgs {
    /// Model folder or hf:ORG/NAME[@REV].
    #[arg(long)]
    model: String,
    /// PEFT adapter attached unmerged.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Output safetensors file (inputs under transformers' argument names, and logits).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct InitArgs {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// tokenizer.json to ship with the model (the Qwen tokenizer; scripts/fetch_test_assets.sh fetches it).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Model family (config.json model_type): qwen2_5_vl, qwen2_vl or qwen3_vl (dense).
    #[arg(long, default_value = "qwen2_5_vl")]
    family: String,
    /// Text hidden size.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Key/value heads (grouped-query attention).
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// Vision tower width.
    #[arg(long, default_value_t = 64)]
    vision_hidden: usize,
    /// Vision tower blocks.
    #[arg(long, default_value_t = 2)]
    vision_depth: usize,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Standard deviation of the random weights (config initializer_range, transformers' 0.02).
    #[arg(long, default_value_t = 0.02)]
    init_std: f64,
    /// Standard deviation of the token embedding (the tied head), default --init-std. A tied
    /// head reaches logits of about std x hidden: 0.02 caps a hidden-64 model near 1.3, too
    /// flat to learn; tiny models need about 0.3.
    #[arg(long)]
    embed_std: Option<f64>,
}

#[derive(Args)]
struct TrainArgs {
    /// Recipe file (TOML); see recipes/ and the README's recipe keys.
    recipe: PathBuf,
    /// Continue from the newest checkpoint in the recipe's output folder.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// Dataset folder (holds dataset.toml and the JSONL manifest).
    dir: PathBuf,
    /// Skip decoding the media files (manifest and file checks only).
    #[arg(long)]
    no_decode: bool,
}

#[derive(Args)]
struct StatsArgs {
    /// Dataset folder.
    dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Output folder (created; must be empty).
    #[arg(long)]
    out: PathBuf,
    /// Number of clips (rounded up to whole prompt groups: one clip per simulated generator).
    #[arg(long, default_value_t = 60)]
    clips: usize,
    /// Seed of everything random (scenes, defects, raters, splits).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 224)]
    width: u32,
    /// Frame height in pixels (even).
    #[arg(long, default_value_t = 168)]
    height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 12)]
    fps: u32,
    /// Number of simulated expert raters.
    #[arg(long, default_value_t = 5)]
    raters: usize,
}

/// A failure and the exit code it maps to, the same in every subcommand:
///
/// - 2, usage or configuration: what the command was told to use cannot be used as told: a bad
///   flag or value, a named input that does not exist or is the wrong kind, a configuration file
///   (recipe, dataset.toml, taxonomy, config.json, import map, judge bundle) that is missing,
///   malformed or contradicts itself, options that contradict the inputs (an unknown dimension,
///   an adapter for another base, `--resume` with nothing to resume, a non-empty output folder).
/// - 1, runtime or invalid data: the inputs are there and well-formed, and what is in them or
///   the work fails: invalid records (manifest, import rows, judgements), a video that does not
///   decode, damaged weights, a non-finite score or loss, an I/O error while working (a full
///   disk), a training run interrupted after saving its checkpoint.
///
/// Library errors carry the class: the `Config` (or `Usage`) variants of the crates' errors are
/// 2, every other error 1, unless a subcommand says otherwise.
pub enum Failure {
    /// Bad usage or configuration (exit 2).
    Usage(anyhow::Error),
    /// Runtime failure or invalid data (exit 1).
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let e = e.into();
        let usage = matches!(
            e.downcast_ref::<evalverse_data::DataError>(),
            Some(evalverse_data::DataError::Config { .. })
        ) || matches!(
            e.downcast_ref::<evalverse_judge::JudgeError>(),
            Some(evalverse_judge::JudgeError::Config(_))
        ) || matches!(
            e.downcast_ref::<evalverse_model::ModelError>(),
            Some(evalverse_model::ModelError::Config { .. })
        ) || matches!(
            e.downcast_ref::<evalverse_eval::RunError>(),
            Some(evalverse_eval::RunError::Usage(_))
        );
        if usage {
            Failure::Usage(e)
        } else {
            Failure::Runtime(e)
        }
    }
}

fn parse_dtype(s: &str) -> Result<evalverse_train::recipe::Dtype, String> {
    use evalverse_train::recipe::Dtype;
    match s {
        "f32" => Ok(Dtype::F32),
        "bf16" => Ok(Dtype::Bf16),
        "f16" => Ok(Dtype::F16),
        other => Err(format!("'{other}' (allowed: f32, bf16, f16)")),
    }
}

fn parse_gate(s: &str) -> Result<evalverse_judge::GatePolicy, String> {
    evalverse_judge::GatePolicy::parse(s)
}

fn parse_device(s: &str) -> Result<evalverse_train::recipe::Device, String> {
    match s {
        "cpu" => Ok(evalverse_train::recipe::Device::Cpu),
        "cuda" => Ok(evalverse_train::recipe::Device::Cuda),
        other => Err(format!("'{other}' (allowed: cpu, cuda)")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Data(DataCommand::Validate(a)) => data::validate(&a.dir, !a.no_decode),
        Command::Data(DataCommand::Stats(a)) => data::stats(&a.dir, a.json),
        Command::Train(a) => train::train(&a.recipe, a.resume),
        Command::Ablate(a) => ablate::ablate(&a.ablation),
        Command::Judge(a) => judge::judge(&judge::JudgeArgs {
            judge: a.judge.options(),
            video: &a.video,
            prompt: &a.prompt,
            dimensions: &a.dimensions,
            taxonomy: &a.taxonomy,
            json: a.json,
            cache: &a.cache.clone().unwrap_or_else(judge::default_cache),
        }),
        Command::Serve(a) => serve::serve(&serve::ServeArgs {
            judge: a.judge.options(),
            host: &a.host,
            port: a.port,
            allowed_media_roots: &a.allowed_media_roots,
            max_batch: a.max_batch,
            max_wait_ms: a.max_wait_ms,
            max_concurrent: a.max_concurrent,
            max_body: a.max_body,
            timeout_s: a.timeout_s,
            api_key_file: a.api_key_file.as_deref(),
            cache: &a.cache.clone().unwrap_or_else(judge::default_cache),
        }),
        Command::Score(a) => score::score(&score::ScoreArgs {
            judge: a.judge.options(),
            list: &a.list,
            out: &a.out,
            clips_per_batch: a.clips_per_batch,
            batch_size: a.batch_size,
            cache: &a.cache.clone().unwrap_or_else(judge::default_cache),
        }),
        Command::Quickstart(a) => {
            quickstart::quickstart(&evalverse_eval::quickstart::QuickstartArgs {
                data: &a.data,
                out: &a.out,
                tokenizer: &a.tokenizer,
                base_spec: &a.base_spec,
                recipes: &a.recipes,
                dimensions: &a.dimensions,
                max_new_tokens: a.max_new_tokens,
                bootstrap: a.bootstrap,
                stop: &train::interrupted,
                log: &|line| eprintln!("{line}"),
            })
        }
        Command::Leaderboard(a) => {
            leaderboard::leaderboard(&a.runs, a.bootstrap, a.seed, a.out.as_ref())
        }
        Command::Fuse(a) => fuse::fuse(&fuse::FuseArgs {
            runs: &a.runs,
            data: &a.data,
            regressor: &a.regressor,
            lambda: a.lambda,
            cv_folds: a.cv_folds,
            operators: &a.operators,
            out: a.out.as_deref(),
            bootstrap: a.bootstrap,
            seed: a.seed,
        }),
        Command::Eval(a) => (|| {
            let frames = match &a.frames_from {
                Some(p) => Some(
                    evalverse_train::recipe::Recipe::load(p)
                        .map_err(|e| Failure::Usage(anyhow::anyhow!("--frames-from: {e}")))?
                        .data
                        .frames,
                ),
                None => None,
            };
            eval::eval(
                &evalverse_eval::pipeline::EvalArgs {
                    judge: a.judge.options(),
                    data: &a.data,
                    split: a.split,
                    dimensions: &a.dimensions,
                    out: a.out.as_deref(),
                    batch_size: a.batch_size,
                    bootstrap: a.bootstrap,
                    seed: a.seed,
                    pairwise: a.pairwise,
                    frames: frames.as_ref(),
                    show_progress: true,
                },
                a.gate,
            )
        })(),
        Command::Model(ModelCommand::Init(a)) => model::init(
            &a.out,
            &a.tokenizer,
            &model::SmallSpec {
                hidden: a.hidden,
                layers: a.layers,
                heads: a.heads,
                kv_heads: a.kv_heads,
                vision_hidden: a.vision_hidden,
                vision_depth: a.vision_depth,
                seed: a.seed,
                init_std: a.init_std,
                embed_std: a.embed_std,
            },
            &a.family,
        ),
        Command::Model(ModelCommand::Logits(a)) => {
            probe::logits(&a.model, a.adapter.as_deref(), &a.out)
        }
        Command::Export(a) => export::export(&export::ExportArgs {
            checkpoint: &a.checkpoint,
            base: a.base.as_deref(),
            format: a.format,
            out: a.out.as_deref(),
            max_shard_size: &a.max_shard_size,
            dtype: a.dtype,
            eval: a.eval.as_deref(),
            base_name: a.base_name.as_deref(),
            force: a.force,
            fusion: a.fusion.as_deref(),
            gate: a.gate_policy,
            max_new_tokens: a.max_new_tokens,
        }),
        Command::Data(DataCommand::Import(a)) => data::import(&data::ImportArgs {
            format: a.format,
            input: &a.input,
            videos: &a.videos,
            out: &a.out,
            map: a.map.as_deref(),
            rescale: a.rescale,
        }),
        Command::Data(DataCommand::Synth(a)) => {
            data::synth(&a.out, a.clips, a.seed, a.width, a.height, a.fps, a.raters)
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
