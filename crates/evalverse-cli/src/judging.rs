//! What `eval`, `judge` and `score` share on the command line: the backend the device names
//! (CUDA only in a `--features cuda` build). Which judge and its loading are the library's
//! (`evalverse_eval::pipeline::JudgeOptions`, `load`).

use evalverse_model::ModelBackend;
use evalverse_train::recipe::Device;

use crate::Failure;

pub use evalverse_eval::pipeline::{load, JudgeOptions};

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
            Err(Failure::Usage(anyhow::anyhow!(
                "--device cuda: this evalverse was built without CUDA \
                 (cargo build --release -p evalverse-cli --features cuda)"
            )))
        }
    }
}
