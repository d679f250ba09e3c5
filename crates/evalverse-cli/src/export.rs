//! `evalverse export RUN --format peft|merged|judge`: a folder to publish
//! (`evalverse_eval::publish`).

use std::process::ExitCode;

pub use evalverse_eval::publish::{ExportArgs, ExportDtype, Format};

use crate::Failure;

pub fn export(a: &ExportArgs) -> Result<ExitCode, Failure> {
    println!("{}", evalverse_eval::publish::export(a)?);
    Ok(ExitCode::SUCCESS)
}
