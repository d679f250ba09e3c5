//! `evalverse serve --judge BUNDLE`: the judge as an HTTP reward server (`evalverse_serve`),
//! on loopback unless told otherwise; SIGTERM or Ctrl-C drains it and exits 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use evalverse_model::ModelBackend;

use crate::judging::{JudgeOptions, OnBackend};
use crate::Failure;

pub struct ServeArgs<'a> {
    pub judge: JudgeOptions<'a>,
    pub host: &'a str,
    pub port: u16,
    pub allowed_media_roots: &'a [PathBuf],
    pub max_batch: usize,
    pub max_wait_ms: u64,
    pub max_concurrent: usize,
    pub max_body: usize,
    pub timeout_s: u64,
    pub api_key_file: Option<&'a Path>,
    pub cache: &'a Path,
}

pub fn serve(a: &ServeArgs) -> Result<ExitCode, Failure> {
    crate::judging::on_device(a.judge.device, Run(a))
}

struct Run<'a, 'b>(&'b ServeArgs<'a>);

impl OnBackend for Run<'_, '_> {
    type Out = ExitCode;
    fn run<B: ModelBackend>(self, device: &B::Device) -> Result<ExitCode, Failure> {
        let a = self.0;
        let usage = |m: String| Failure::Usage(anyhow!(m));
        let api_key = match a.api_key_file {
            Some(p) => {
                let k = std::fs::read_to_string(p)
                    .map_err(|e| usage(format!("--api-key-file {}: {e}", p.display())))?
                    .trim()
                    .to_string();
                if k.is_empty() {
                    return Err(usage(format!("--api-key-file {}: empty", p.display())));
                }
                Some(k)
            }
            None => None,
        };
        let opened = a.judge.open()?;
        let name = opened
            .bundle
            .as_ref()
            .and_then(|b| b.dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "evalverse-judge".into());
        let tax = opened
            .taxonomy
            .clone()
            .unwrap_or_else(evalverse_data::taxonomy::Taxonomy::evalverse);
        let cfg = evalverse_serve::ServeConfig {
            allowed_media_roots: a.allowed_media_roots.to_vec(),
            max_batch: a.max_batch.max(1),
            max_wait: Duration::from_millis(a.max_wait_ms),
            max_concurrent: a.max_concurrent.max(1),
            max_body: a.max_body,
            timeout: Duration::from_secs(a.timeout_s.max(1)),
            api_key,
            cache_dir: a.cache.to_path_buf(),
            model_name: name.clone(),
            ..Default::default()
        };
        let server = evalverse_serve::start::<B>(opened, tax, a.judge.dtype, device.clone(), cfg)
            .map_err(usage)?;
        evalverse_serve::run_blocking(server, &format!("{}:{}", a.host, a.port), |addr| {
            eprintln!("serving judge '{name}' on http://{addr} (POST /v1/score, GET /health, /v1/models, /metrics)");
        })
        .map_err(|e| Failure::Runtime(anyhow!(e)))?;
        eprintln!("drained; exiting");
        Ok(ExitCode::SUCCESS)
    }
}
