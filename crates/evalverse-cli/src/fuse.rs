//! `evalverse fuse`: learned fusion of the judge's soft scores with perception-operator evidence
//! (docs/OPERATORS.md; `evalverse_eval::fusion::run_fuse`). Pools the judgements of eval
//! folders, fits a regressor per dimension on the train split, reports VLM-only, operators-only
//! and fused agreement on the test split (fusion.json, a table on stdout), writes the fused
//! judge's report (fused/) and the fitted model (fusion_model.json, for
//! `evalverse export RUN --format judge --fusion DIR`).

use std::process::ExitCode;

pub use evalverse_eval::fusion::FuseArgs;

use crate::Failure;

pub fn fuse(a: &FuseArgs) -> Result<ExitCode, Failure> {
    let (f, r, out) = evalverse_eval::fusion::run_fuse(a)?;
    print!("{}", evalverse_eval::fusion::table(&f));
    if let Some(o) = r.overall.srcc {
        println!("\nfused judge, all test dimensions: SRCC {o}");
    }
    println!(
        "-> {} and {}",
        out.join("fusion.json").display(),
        out.join("fused/report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}
