//! What `eval`, `judge` and `score` share on the command line: which judge (`--judge BUNDLE` or
//! `--checkpoint`), its overrides, and the device it runs on. Loading itself is the library's
//! (`evalverse_train::judge_spec::open`, `evalverse_judge::Judge::load`).

use std::path::Path;

use anyhow::anyhow;
use evalverse_data::taxonomy::Taxonomy;
use evalverse_judge::{GatePolicy, Judge};
use evalverse_model::ModelBackend;
use evalverse_train::judge_spec::{self, JudgeSource, OpenedJudge};
use evalverse_train::recipe::{Device, Dtype};

use crate::Failure;

/// The judge options of a judging subcommand.
pub struct JudgeOptions<'a> {
    /// `--judge BUNDLE`.
    pub bundle: Option<&'a Path>,
    /// `--checkpoint` (a run, an adapter, or "none").
    pub checkpoint: Option<&'a str>,
    pub base: Option<&'a str>,
    /// A fitted fusion model for a checkpoint judge (a fuse folder or its fusion_model.json).
    pub fusion: Option<&'a Path>,
    /// Re-hash every byte of a bundle's base weights.
    pub verify_base: bool,
    pub gate: Option<GatePolicy>,
    pub max_new_tokens: Option<usize>,
    pub device: Device,
    pub dtype: Dtype,
}

impl JudgeOptions<'_> {
    /// The judge named, with the overrides applied (not yet loaded).
    pub fn open(&self) -> Result<OpenedJudge, Failure> {
        let source = match (self.bundle, self.checkpoint) {
            (Some(b), None) => JudgeSource::Bundle(b),
            (None, Some(c)) => JudgeSource::Checkpoint(c),
            (Some(_), Some(_)) => {
                return Err(Failure::Usage(anyhow!(
                    "--judge and --checkpoint name two judges; pass one"
                )))
            }
            (None, None) => {
                return Err(Failure::Usage(anyhow!(
                    "no judge: pass --judge BUNDLE (evalverse export RUN --format judge) or \
                     --checkpoint RUN"
                )))
            }
        };
        let mut o = judge_spec::open(source, self.base, self.verify_base).map_err(train_failure)?;
        if let Some(f) = self.fusion {
            if o.bundle.is_some() {
                return Err(Failure::Usage(anyhow!(
                    "--fusion: a bundle carries its own fusion model"
                )));
            }
            o.fusion = Some(crate::export::read_fusion(f)?);
        }
        if let Some(g) = self.gate {
            o.spec.gate = g;
        }
        if let Some(n) = self.max_new_tokens {
            o.spec.max_new_tokens = n;
        }
        Ok(o)
    }
}

pub fn train_failure(e: evalverse_train::runtime::TrainError) -> Failure {
    use evalverse_train::runtime::TrainError;
    match e {
        TrainError::Config(m) => Failure::Usage(anyhow!(m)),
        other => Failure::Runtime(anyhow!(other.to_string())),
    }
}

/// Load the opened judge on backend `B`, with `taxonomy` for a checkpoint judge (a bundle
/// carries its own).
pub fn load<B: ModelBackend>(
    o: &OpenedJudge,
    taxonomy: Taxonomy,
    dtype: Dtype,
    device: &B::Device,
) -> Result<Judge<B>, Failure> {
    let tax = o.taxonomy.clone().unwrap_or(taxonomy);
    Ok(Judge::load(
        o.spec.clone(),
        tax,
        o.fusion.clone(),
        evalverse_train::runtime::dtype(dtype),
        device,
    )?)
}

/// Work generic over the backend, run on the one `--device` names.
pub trait OnBackend {
    type Out;
    fn run<B: ModelBackend>(self, device: &B::Device) -> Result<Self::Out, Failure>;
}

pub fn on_device<T: OnBackend>(device: Device, work: T) -> Result<T::Out, Failure> {
    match device {
        Device::Cpu => work.run::<evalverse_model::Cpu>(&Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda => work.run::<burn::backend::Cuda>(&burn::backend::cuda::CudaDevice::new(0)),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => {
            let _ = work;
            Err(Failure::Usage(anyhow!(
                "--device cuda: this evalverse was built without CUDA \
                 (cargo build --release -p evalverse-cli --features cuda)"
            )))
        }
    }
}
