//! The `evalverse` binary: turns expert annotations of cinematic video into a calibrated VLM
//! judge and measures its agreement with held-out experts. Exit codes: 0 ok, 1 runtime failure,
//! 2 usage or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod data;
mod eval;
mod fuse;
mod leaderboard;
mod model;
mod train;

#[derive(Parser)]
#[command(name = "evalverse", version, about = "Expert-calibrated VLM judges of cinematic video", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Annotated datasets: validate, statistics, synthetic data.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a judge from a recipe (stage sft or preference); Ctrl-C saves a checkpoint.
    Train(TrainArgs),
    /// Judge a split with a base model + adapter and report agreement with the experts.
    Eval(EvalCmd),
    /// Compare evaluated judges (eval folders or runs with eval/) in one table with significance.
    Leaderboard(LeaderboardArgs),
    /// Fuse the judge's soft scores with perception-operator evidence (fit on train, report test).
    Fuse(FuseArgs),
    /// Model checkpoints: make a fresh random one for tests and CPU experiments.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Check every record of a dataset (manifest, taxonomy, files, decoding); exits 1 on any problem.
    Validate(ValidateArgs),
    /// Counts per split, dimension, generator and task, and inter-rater agreement per dimension.
    Stats(StatsArgs),
    /// Generate a synthetic cinematic dataset (H.264 MP4s with audio, simulated expert panel).
    Synth(SynthArgs),
}

#[derive(Args)]
struct EvalCmd {
    /// A training run folder (recipe.toml + adapter/), a PEFT adapter folder, or "none" (the base alone).
    #[arg(long)]
    checkpoint: String,
    /// Base model (folder or hf:ORG/NAME[@REV]); default: the run's recipe or the adapter's base.
    #[arg(long)]
    base: Option<String>,
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
    /// Longest rationale generated, in tokens.
    #[arg(long, default_value_t = 96)]
    max_new_tokens: usize,
    /// Prompts judged together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    /// Ridge penalty on standardised features.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Operators to measure (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    operators: Vec<String>,
    /// Where fusion.json and the evidence cache go (default: the first --run).
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
    /// Write a Qwen2.5-VL checkpoint with random weights (HF layout) and the given tokenizer.
    Init(InitArgs),
}

#[derive(Args)]
struct InitArgs {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// tokenizer.json to ship with the model (the Qwen tokenizer; scripts/fetch_test_assets.sh fetches it).
    #[arg(long)]
    tokenizer: PathBuf,
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

/// A failure and the exit code it maps to.
pub enum Failure {
    /// Bad usage or configuration (exit 2).
    Usage(anyhow::Error),
    /// Runtime failure (exit 1).
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let e = e.into();
        match e.downcast_ref::<evalverse_data::DataError>() {
            Some(evalverse_data::DataError::Config { .. }) => Failure::Usage(e),
            _ => Failure::Runtime(e),
        }
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
        Command::Leaderboard(a) => {
            leaderboard::leaderboard(&a.runs, a.bootstrap, a.seed, a.out.as_ref())
        }
        Command::Fuse(a) => fuse::fuse(&fuse::FuseArgs {
            runs: &a.runs,
            data: &a.data,
            regressor: &a.regressor,
            lambda: a.lambda,
            operators: &a.operators,
            out: a.out.as_deref(),
            bootstrap: a.bootstrap,
            seed: a.seed,
        }),
        Command::Eval(a) => eval::eval(&eval::EvalArgs {
            checkpoint: &a.checkpoint,
            base: a.base.as_deref(),
            data: &a.data,
            split: a.split,
            dimensions: &a.dimensions,
            out: a.out.as_deref(),
            max_new_tokens: a.max_new_tokens,
            batch_size: a.batch_size,
            bootstrap: a.bootstrap,
            seed: a.seed,
        }),
        Command::Model(ModelCommand::Init(a)) => model::init(&model::InitArgs {
            out: &a.out,
            tokenizer: &a.tokenizer,
            hidden: a.hidden,
            layers: a.layers,
            heads: a.heads,
            kv_heads: a.kv_heads,
            vision_hidden: a.vision_hidden,
            vision_depth: a.vision_depth,
            seed: a.seed,
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
