//! `evalverse quickstart`: the whole pipeline on CPU with a tiny Qwen2.5-VL
//! (`evalverse_eval::quickstart`); Ctrl-C stops a training stage with a checkpoint, and the
//! next run resumes it.

use std::process::ExitCode;

use evalverse_eval::quickstart::{Outcome, QuickstartArgs};

use crate::Failure;

pub fn quickstart(a: &QuickstartArgs) -> Result<ExitCode, Failure> {
    crate::train::install_interrupt_handler();
    match evalverse_eval::quickstart::quickstart(a)? {
        Outcome::Done(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted => Ok(ExitCode::from(1)),
    }
}
