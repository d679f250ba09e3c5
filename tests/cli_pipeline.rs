//! End-to-end tests of the binary's pipeline: a cut-down quickstart (base rebuilt from the shipped
//! spec, SFT, calibration, three evaluations, the summary table), `train` killed by SIGINT and
//! resumed to the same losses as a straight run, an unreadable clip skipped and counted, `judge`
//! on one clip, and `ablate` over two variants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evalverse"))
}

fn evalverse(args: &[&str]) -> Output {
    bin().args(args).output().expect("run evalverse")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tokenizer() -> PathBuf {
    let tok = root().join("target/test-assets/qwen-tokenizer.json");
    assert!(
        tok.is_file(),
        "{} is missing: run scripts/fetch_test_assets.sh",
        tok.display()
    );
    tok
}

fn tiny_base(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    let o = evalverse(&[
        "model",
        "init",
        "--out",
        base.to_str().unwrap(),
        "--tokenizer",
        tokenizer().to_str().unwrap(),
        "--hidden",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--vision-hidden",
        "32",
        "--vision-depth",
        "1",
        "--embed-std",
        "0.3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    base
}

/// A small SFT recipe on `data`, one dimension, a checkpoint every step.
fn sft_recipe(dir: &Path, name: &str, base: &Path, data: &Path, steps: usize) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[run]
output_dir = "{out}"
seed = 3
[model]
source = "{base}"
[lora]
rank = 4
alpha = 8
dropout = 0.1
[data]
dataset = "{data}"
dimensions = ["lens"]
[data.frames]
fps = 2.0
min_frames = 2
max_frames = 2
min_pixels = 3136
max_pixels = 3136
[stage]
kind = "sft"
[optim]
lr = 1e-3
[schedule]
decay = "constant"
[train]
batch_size = 2
max_steps = {steps}
eval_every = 0
save_every = 1
keep_last = 2
[log]
progress = false
"#,
            out = dir.join(name).display(),
            base = base.display(),
            data = data.display(),
        ),
    )
    .unwrap();
    path
}

fn losses(run: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some((v.get("step")?.as_u64()?, v.get("loss")?.as_f64()?))
        })
        .collect()
}

#[test]
fn train_killed_by_sigint_resumes_to_the_losses_of_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let data = root().join("data/sample");
    let steps = 30;
    let straight = sft_recipe(dir.path(), "straight", &base, &data, steps);
    let o = evalverse(&["train", straight.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want = losses(&dir.path().join("straight"));
    assert_eq!(want.len(), steps);

    let killed = sft_recipe(dir.path(), "killed", &base, &data, steps);
    let run = dir.path().join("killed");
    let mut child = bin()
        .args(["train", killed.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the run has saved its second checkpoint.
    let started = Instant::now();
    while !run.join("checkpoints/step-000002").is_dir() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no step-000002 checkpoint after 300 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("train ended ({status}) before it could be interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("--resume"), "{said}");
    let before = losses(&run);
    assert!(
        before.len() < steps,
        "interrupted after {} of {steps} steps",
        before.len()
    );
    let o = evalverse(&["train", killed.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a second start without --resume is refused: {}",
        text(&o)
    );
    let o = evalverse(&["train", killed.to_str().unwrap(), "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got = losses(&run);
    assert_eq!(got.len(), steps);
    for (step, l) in &want {
        let g = got[step];
        assert!(
            (g - l).abs() <= 1e-5 * l.abs().max(1.0),
            "step {step}: straight {l} vs resumed {g}"
        );
    }
}

/// Every line of a run's metrics.jsonl as (step, loss) when it has a loss, in file order.
fn logged_losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some((v.get("step")?.as_u64()?, v.get("loss")?.as_f64()?))
        })
        .collect()
}

#[test]
fn resume_from_an_older_checkpoint_logs_each_step_once() {
    // A run that logged step 6 but whose last checkpoint is step 3 (killed, or a full disk while
    // saving): resumed, it trains 4..6 again and the logs hold each step once.
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let recipe = sft_recipe(dir.path(), "run", &base, &root().join("data/sample"), 6);
    let every_third = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("save_every = 1", "save_every = 3")
        .replace("keep_last = 2", "keep_last = 5");
    std::fs::write(&recipe, every_third).unwrap();
    let run = dir.path().join("run");
    let o = evalverse(&["train", recipe.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = logged_losses(&run);
    assert_eq!(first.len(), 6);
    std::fs::remove_dir_all(run.join("checkpoints/step-000006")).unwrap();
    std::fs::remove_dir_all(run.join("adapter")).unwrap();
    let o = evalverse(&["train", recipe.to_str().unwrap(), "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("step 3"), "{}", text(&o));
    let again = logged_losses(&run);
    let steps: Vec<u64> = again.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>(), "{again:?}");
    for ((s, a), (_, b)) in first.iter().zip(&again) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "step {s}: {a} vs {b}"
        );
    }
    let events: Vec<_> = std::fs::read_dir(run.join("tb"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("tfevents"))
        .collect();
    assert_eq!(events.len(), 1, "one TensorBoard event stream per run");
}

#[test]
fn resume_with_no_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = sft_recipe(
        dir.path(),
        "run",
        &dir.path().join("base"),
        &root().join("data/sample"),
        2,
    );
    let o = evalverse(&["train", recipe.to_str().unwrap(), "--resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no checkpoint to resume from"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("run/metrics.jsonl").exists());
}

#[test]
fn a_failed_train_leaves_no_recipe_behind() {
    // recipe.toml is what makes a folder a run (`eval --checkpoint RUN`): it comes with the
    // first checkpoint, not before the run has started.
    let dir = tempfile::tempdir().unwrap();
    let recipe = sft_recipe(
        dir.path(),
        "run",
        &dir.path().join("no-such-base"),
        &root().join("data/sample"),
        2,
    );
    let o = evalverse(&["train", recipe.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no-such-base"), "{}", text(&o));
    assert!(!dir.path().join("run/recipe.toml").exists());
}

#[test]
fn a_full_disk_while_logging_names_the_file() {
    // /dev/full answers every write with ENOSPC, as a full disk does.
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let recipe = sft_recipe(dir.path(), "run", &base, &root().join("data/sample"), 2);
    let metrics = dir.path().join("run/metrics.jsonl");
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::os::unix::fs::symlink("/dev/full", &metrics).unwrap();
    let o = evalverse(&["train", recipe.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains(&format!("{}: No space left on device", metrics.display())),
        "{said}"
    );
}

/// A copy of data/sample (manifest and dataset.toml; videos linked) with one video replaced by
/// garbage bytes.
fn sample_with_a_corrupt_clip(dir: &Path) -> (PathBuf, String) {
    let src = root().join("data/sample");
    let dst = dir.join("data");
    std::fs::create_dir_all(dst.join("videos")).unwrap();
    for f in ["dataset.toml", "manifest.jsonl"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    if src.join("refs").is_dir() {
        std::fs::create_dir_all(dst.join("refs")).unwrap();
        for e in std::fs::read_dir(src.join("refs")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join("refs").join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut victim = None;
    let ds = evalverse_data::dataset::Dataset::load(&src).unwrap();
    let train: Vec<String> = ds
        .clips_in(evalverse_data::split::Split::Train)
        .map(|c| c.video.clone())
        .collect();
    for e in std::fs::read_dir(src.join("videos")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let to = dst.join("videos").join(&name);
        if victim.is_none() && train.iter().any(|v| v.ends_with(&name)) {
            std::fs::write(&to, b"not an mp4 at all").unwrap();
            victim = Some(name);
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    (dst, victim.unwrap())
}

#[test]
fn an_unreadable_clip_is_skipped_and_counted_by_train() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let (data, victim) = sample_with_a_corrupt_clip(dir.path());
    let recipe = sft_recipe(dir.path(), "run", &base, &data, 1);
    let o = evalverse(&["train", recipe.to_str().unwrap()]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    let stem = victim.trim_end_matches(".mp4");
    assert!(
        said.contains(stem) && said.contains("1 unreadable clips skipped"),
        "{said}"
    );
}

#[test]
fn judge_prints_a_verdict_per_dimension_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let video = root().join("data/sample/videos/pg000_aurora.mp4");
    // `judge` of the sample clip by the untrained base on `dims`, with `extra` flags.
    let judge = |dims: &str, extra: &[&str]| {
        let mut args = vec![
            "judge",
            video.to_str().unwrap(),
            "--prompt",
            "A detective in a desert canyon.",
            "--checkpoint",
            "none",
            "--base",
            base.to_str().unwrap(),
            "--dimensions",
            dims,
        ];
        args.extend_from_slice(extra);
        evalverse(&args)
    };
    let json_lines = |o: &Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let o = judge("lens,pacing", &["--max-new-tokens", "3", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["dimension"], "lens");
    for l in &lines {
        // A base alone: the soft score is the expectation of its score-token distribution, and
        // every stage is recorded (no head, no fusion; the gate's decision kept beside it).
        let soft = l["soft"].as_f64().unwrap();
        let expected: f64 = l["distribution"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, p)| p.as_f64().unwrap() * (i + 1) as f64)
            .sum();
        assert!((soft - expected).abs() < 1e-9, "{l}");
        assert_eq!(l["token_soft"].as_f64(), Some(soft), "{l}");
        assert_eq!(l["vlm_soft"].as_f64(), Some(soft), "{l}");
        assert!(l["head_soft"].is_null() && l["fused_soft"].is_null(), "{l}");
        assert!(!l["text_verdict"].is_null(), "{l}");
        assert!(
            l["gate_na"].is_boolean(),
            "the default gate measured the clip: {l}"
        );
    }
    // Text output labels the parts of each verdict.
    let o = judge("lens", &["--max-new-tokens", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("Lens: "), "{out}");
    assert!(out.contains("VLM ") && out.contains("rationale"), "{out}");
    // A folder is not a video.
    let o = evalverse(&[
        "judge",
        dir.path().to_str().unwrap(),
        "--prompt",
        "x",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a folder"), "{}", text(&o));
    let o = judge("bokeh", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("'bokeh'"), "{}", text(&o));
    // The same clip with bf16 base weights: the same dimensions, soft scores close to f32's.
    let o = judge(
        "lens,pacing",
        &["--max-new-tokens", "3", "--json", "--dtype", "bf16"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bf16 = json_lines(&o);
    assert_eq!(bf16.len(), 2);
    for (x, y) in lines.iter().zip(&bf16) {
        assert_eq!(x["dimension"], y["dimension"]);
        let (p, q) = (x["soft"].as_f64().unwrap(), y["soft"].as_f64().unwrap());
        assert!(
            (p - q).abs() < 0.25,
            "{}: f32 {p} vs bf16 {q}",
            x["dimension"]
        );
    }
    // A file that is not a video: an error naming it (once), no verdict.
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, b"not a video at all").unwrap();
    let o = evalverse(&[
        "judge",
        broken.to_str().unwrap(),
        "--prompt",
        "x",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
        "--dimensions",
        "lens",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("broken.mp4").count(), 1, "{}", text(&o));
    if !cfg!(feature = "cuda") {
        let o = judge("lens", &["--device", "cuda"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("--features cuda"), "{}", text(&o));
    }
}

#[test]
fn a_cut_down_quickstart_trains_calibrates_and_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped recipes, shortened to two steps each.
    let recipes = dir.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    for name in ["sft", "calibrated"] {
        let text = std::fs::read_to_string(root().join(format!("recipes/quickstart/{name}.toml")))
            .unwrap();
        let mut t: toml::Table = toml::from_str(&text).unwrap();
        let train = t["train"].as_table_mut().unwrap();
        train.insert("max_steps".into(), 2.into());
        train.insert("batch_size".into(), 2.into());
        train.insert("eval_every".into(), 0.into());
        // Bradley-Terry generates the judge's rationales first: keep them short here too.
        if let Some(strategy) = t["stage"]
            .get_mut("strategy")
            .and_then(|s| s.as_table_mut())
        {
            strategy.insert("max_new_tokens".into(), 4.into());
        }
        std::fs::write(
            recipes.join(format!("{name}.toml")),
            toml::to_string(&t).unwrap(),
        )
        .unwrap();
    }
    let out = dir.path().join("qs");
    let run = || {
        evalverse(&[
            "quickstart",
            "--out",
            out.to_str().unwrap(),
            "--recipes",
            recipes.to_str().unwrap(),
            "--data",
            root().join("data/sample").to_str().unwrap(),
            "--base-spec",
            root().join("data/tiny-base").to_str().unwrap(),
            "--tokenizer",
            tokenizer().to_str().unwrap(),
            "--dimensions",
            "lens,rhythm",
            "--max-new-tokens",
            "4",
            "--bootstrap",
            "20",
        ])
    };
    let o = run();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    for needle in [
        "| aspect | base SRCC",
        "calibrated pair acc",
        "human ceiling SRCC",
        "| Cinematography |",
        "| Overall |",
        "fused SRCC",
        "operators-only SRCC",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    // The untrained base is judged on the frames the trained judges saw, not the Qwen defaults.
    let frames = |label: &str| -> serde_json::Value {
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("eval-{label}/report.json"))).unwrap(),
        )
        .unwrap();
        r["frames"].clone()
    };
    assert_eq!(frames("base")["max_frames"], 4, "{}", frames("base"));
    assert_eq!(frames("base"), frames("sft"));
    assert_eq!(frames("base"), frames("calibrated"));
    for f in [
        "base/config.json",
        "sft/adapter/adapter_model.safetensors",
        "calibrated/adapter/adapter_model.safetensors",
        "calibrated/adapter/reward_head.safetensors",
        "calibrated/adapter/reward_head.json",
        "eval-base/report.html",
        "eval-sft/report.json",
        "eval-calibrated/judgements.jsonl",
        "recipes/sft.toml",
        "summary.md",
        "eval-calibrated-train/judgements.jsonl",
        "fusion/fusion.json",
        "fusion/fused/report.html",
        "fusion/fused/judgements.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(
        said.contains("| judge SRCC") && said.contains("try it:"),
        "{said}"
    );
    check_composed_judge(dir.path(), &out);
    // A second run reuses every stage.
    let o = run();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    assert!(said.contains("sft: reusing"), "{said}");

    // The calibrated run scores with its reward head; a merged export carries the head, and
    // judging the merged folder gives the same soft scores.
    let merged = dir.path().join("merged");
    let o = evalverse(&[
        "export",
        out.join("calibrated").to_str().unwrap(),
        "--format",
        "merged",
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for f in ["reward_head.safetensors", "reward_head.json", "config.json"] {
        assert!(
            merged.join(f).is_file(),
            "{f} missing from the merged export"
        );
    }
    let again = dir.path().join("eval-merged");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        merged.to_str().unwrap(),
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--dimensions",
        "lens,rhythm",
        "--frames-from",
        out.join("recipes/calibrated.toml").to_str().unwrap(),
        "--max-new-tokens",
        "4",
        "--bootstrap",
        "20",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let soft = |dir: &std::path::Path| -> Vec<(String, String, f64)> {
        std::fs::read_to_string(dir.join("judgements.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["clip_id"].as_str().unwrap().to_string(),
                    v["dimension"].as_str().unwrap().to_string(),
                    v["soft"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    // The same (clip, dimension) rows, soft scores within `tol`.
    let close = |a: &[(String, String, f64)], b: &[(String, String, f64)], tol: f64| {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!((&x.0, &x.1), (&y.0, &y.1));
            assert!((x.2 - y.2).abs() < tol, "{x:?} vs {y:?} (tolerance {tol})");
        }
    };
    let a = soft(&out.join("eval-calibrated"));
    close(&a, &soft(&again), 1e-4);
    // `eval --max-new-tokens 0` of a run on lens and rhythm into `dir/name`, with `extra` flags.
    let head_eval = |run: &str, name: &str, extra: &[&str]| {
        let folder = dir.path().join(name);
        let mut args = vec![
            "eval".to_string(),
            "--checkpoint".into(),
            out.join(run).display().to_string(),
            "--data".into(),
            root().join("data/sample").display().to_string(),
            "--dimensions".into(),
            "lens,rhythm".into(),
            "--max-new-tokens".into(),
            "0".into(),
            "--bootstrap".into(),
            "20".into(),
            "--out".into(),
            folder.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = evalverse(&args.iter().map(String::as_str).collect::<Vec<_>>());
        (o, folder)
    };
    // Head-only scoring (no rationale) gives the scores judging with a rationale gives: the head
    // reads the prompt, not the answer.
    let (o, folder) = head_eval("calibrated", "eval-head-only", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    close(&a, &soft(&folder), 1e-4);
    // bf16 base weights (the adapter folded into them) judge within bf16 precision of f32.
    let (o, folder) = head_eval("calibrated", "eval-bf16", &["--dtype", "bf16"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    close(&a, &soft(&folder), 0.25);
    // Without a head there is nothing to score with: a usage error.
    let (o, _) = head_eval("sft", "eval-no-head", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("reward head"), "{}", text(&o));
}

/// One JSON object per line of `path`.
fn json_lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (clip video stem, dimension) -> (verdict, soft) of judgements.
fn verdicts(
    js: &[serde_json::Value],
    stem_of: &dyn Fn(&str) -> String,
) -> BTreeMap<(String, String), (serde_json::Value, f64)> {
    js.iter()
        .map(|j| {
            (
                (
                    stem_of(j["clip_id"].as_str().unwrap()),
                    j["dimension"].as_str().unwrap().to_string(),
                ),
                (j["verdict"].clone(), j["soft"].as_f64().unwrap()),
            )
        })
        .collect()
}

/// The quickstart's composed judge: its bundle, `judge` and `score` on the held-out clips
/// giving what `eval` wrote, the gate's N/A, fused scores on the scale, bundle refusals.
fn check_composed_judge(dir: &Path, out: &Path) {
    let bundle = out.join("judge");
    for f in [
        "judge.json",
        "adapter/adapter_model.safetensors",
        "adapter/reward_head.json",
        "fusion.json",
        "taxonomy.toml",
        "eval/report.json",
        "README.md",
    ] {
        assert!(bundle.join(f).is_file(), "bundle part {f} missing");
    }
    let data = root().join("data/sample");
    let ds = evalverse_data::dataset::Dataset::load(&data).unwrap();
    let test: Vec<_> = ds
        .clips_in(evalverse_data::split::Split::Test)
        .cloned()
        .collect();
    let stem = |id: &str| {
        let c = ds.clips.iter().find(|c| c.record.id == id).unwrap();
        Path::new(&c.record.video)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let eval_js = json_lines_of(&out.join("eval-judge/judgements.jsonl"));
    assert!(!eval_js.is_empty());
    // The gate answers N/A on its clips, and only there; fused scores stay on the 1-5 scale.
    let mut gated = 0;
    for j in &eval_js {
        let na = j["verdict"]["kind"] == "not_applicable";
        assert_eq!(j["gate_na"].as_bool(), Some(na), "{j}");
        if na {
            assert_eq!(j["na_source"], "gate", "{j}");
            gated += 1;
        }
        if let Some(f) = j["fused_soft"].as_f64() {
            assert!((1.0..=5.0).contains(&f), "{j}");
            assert_eq!(j["soft"].as_f64(), Some(f), "the fused score is final: {j}");
        }
    }
    assert!(gated > 0, "rhythm is N/A on single-shot clips");
    assert!(eval_js.iter().any(|j| j["fused_soft"].is_number()));
    for j in json_lines_of(&out.join("fusion/fused/judgements.jsonl")) {
        let s = j["soft"].as_f64().unwrap();
        assert!((1.0..=5.0).contains(&s), "fused soft off the scale: {j}");
    }
    let want = verdicts(&eval_js, &|id| stem(id));
    let cache = dir.join("judge-cache");
    // `judge` on every held-out clip gives the final scores `eval` wrote for it.
    let mut got = BTreeMap::new();
    for c in &test {
        let o = evalverse(&[
            "judge",
            ds.video_path(c).to_str().unwrap(),
            "--prompt",
            &c.prompt,
            "--judge",
            bundle.to_str().unwrap(),
            "--dimensions",
            "lens,rhythm",
            "--json",
            "--cache",
            cache.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let js: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        got.extend(verdicts(&js, &|id| id.to_string()));
    }
    let same = |got: &BTreeMap<(String, String), (serde_json::Value, f64)>, what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (k, (v, s)) in &want {
            let (gv, gs) = &got[k];
            assert!((gs - s).abs() < 1e-6, "{what} {k:?}: soft {gs} vs eval {s}");
            if v["kind"] != "score" {
                assert_eq!(gv, v, "{what} {k:?}");
            } else {
                let (a, b) = (gv["value"].as_f64().unwrap(), v["value"].as_f64().unwrap());
                assert_eq!(a, b, "{what} {k:?}");
            }
        }
    };
    same(&got, "judge");
    // `score` over a list of the same clips, a broken video and a row without a prompt.
    let list = dir.join("list.jsonl");
    let broken = dir.join("broken.mp4");
    std::fs::write(&broken, b"not a video").unwrap();
    let mut rows: Vec<String> = test
        .iter()
        .map(|c| {
            serde_json::json!({"id": stem(&c.id), "video": ds.video_path(c), "prompt": c.prompt, "dimensions": ["lens", "rhythm"]})
                .to_string()
        })
        .collect();
    rows.insert(
        1,
        serde_json::json!({"video": broken, "prompt": "x"}).to_string(),
    );
    rows.insert(
        3,
        serde_json::json!({"id": "noprompt", "video": ds.video_path(&test[0])}).to_string(),
    );
    std::fs::write(&list, rows.join("\n") + "\n").unwrap();
    let results = dir.join("results.jsonl");
    let score = || {
        evalverse(&[
            "score",
            list.to_str().unwrap(),
            "--judge",
            bundle.to_str().unwrap(),
            "--out",
            results.to_str().unwrap(),
            "--clips-per-batch",
            "5",
            "--cache",
            cache.to_str().unwrap(),
        ])
    };
    let o = score();
    assert_eq!(
        o.status.code(),
        Some(1),
        "error rows make exit 1: {}",
        text(&o)
    );
    let lines = json_lines_of(&results);
    assert_eq!(lines.len(), test.len() + 2);
    let errors: Vec<&serde_json::Value> = lines.iter().filter(|l| l["error"].is_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors
        .iter()
        .any(|e| e["error"].as_str().unwrap().contains("broken.mp4")));
    assert!(errors
        .iter()
        .any(|e| e["error"].as_str().unwrap().contains("list.jsonl:4")
            && e["error"].as_str().unwrap().contains("no prompt")));
    let from_score = |lines: &[serde_json::Value]| {
        let mut m = BTreeMap::new();
        for l in lines.iter().filter(|l| l["error"].is_null()) {
            let js: Vec<serde_json::Value> = l["judgements"].as_array().unwrap().clone();
            m.extend(verdicts(&js, &|id| id.to_string()));
        }
        m
    };
    same(&from_score(&lines), "score");
    // Killed mid-write: the last line cut short and the rest missing. A re-run finishes the
    // list, redoes the cut line, and nothing is judged twice.
    let text_of = std::fs::read_to_string(&results).unwrap();
    let keep: String = text_of.lines().take(4).map(|l| format!("{l}\n")).collect();
    let cut = &text_of.lines().nth(4).unwrap()[..20];
    std::fs::write(&results, format!("{keep}{cut}")).unwrap();
    let o = score();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("4 already done"), "{}", text(&o));
    let again = json_lines_of(&results);
    assert_eq!(again.len(), test.len() + 2);
    let ids: std::collections::BTreeSet<&str> =
        again.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), again.len(), "no id twice");
    same(&from_score(&again), "resumed score");

    // A damaged bundle, another base, another operator version: refused, naming what.
    let copy = |name: &str| {
        let to = dir.join(name);
        std::fs::create_dir_all(to.join("adapter")).unwrap();
        std::fs::create_dir_all(to.join("eval")).unwrap();
        for f in walk(&bundle) {
            let rel = f.strip_prefix(&bundle).unwrap();
            std::fs::copy(&f, to.join(rel)).unwrap();
        }
        to
    };
    let refused = |b: &Path, extra: &[&str], needle: &str| {
        let mut args = vec![
            "judge",
            test[0].video.as_str(),
            "--prompt",
            "x",
            "--judge",
            b.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = bin().current_dir(&data).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(needle), "{needle:?} not in {}", text(&o));
    };
    let b = copy("altered");
    let head = b.join("adapter/reward_head.json");
    let t = std::fs::read_to_string(&head).unwrap();
    std::fs::write(&head, t.replacen('1', "2", 1)).unwrap();
    refused(&b, &[], "adapter/reward_head.json was altered");
    let b = copy("missing");
    std::fs::remove_file(b.join("fusion.json")).unwrap();
    refused(&b, &[], "part fusion.json is missing");
    let b = copy("version");
    let m = std::fs::read_to_string(b.join("judge.json")).unwrap();
    let m = m.replace(
        &format!(
            "\"operators_version\": {}",
            evalverse_data::operators::OPERATORS_VERSION
        ),
        "\"operators_version\": 1",
    );
    std::fs::write(b.join("judge.json"), m).unwrap();
    refused(&b, &[], "operators version 1");
    let other = tiny_base(&dir.join("other"));
    refused(
        &bundle,
        &["--base", other.to_str().unwrap()],
        "not the one this judge was exported with",
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn eval_reports_the_operator_gate_and_pairwise_position_bias() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let out = dir.path().join("eval");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        "none",
        "--base",
        base.to_str().unwrap(),
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--dimensions",
        "rhythm",
        "--max-new-tokens",
        "2",
        "--bootstrap",
        "20",
        "--gate",
        "--pairwise",
        "--out",
        out.to_str().unwrap(),
    ]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    // Rhythm is N/A on single-shot clips: the gate (detected cuts) finds most of them, and
    // the composed judge (the default operators policy) answers N/A exactly there.
    let js = json_lines_of(&out.join("judgements.jsonl"));
    let (mut tp, mut expert) = (0, 0);
    for j in &js {
        let gate = j["gate_na"].as_bool().unwrap();
        assert_eq!(j["verdict"]["kind"] == "not_applicable", gate, "{j}");
        if j["expert_na"].as_bool().unwrap() {
            expert += 1;
            tp += usize::from(gate);
        }
    }
    assert!(
        expert > 0 && tp as f64 >= 0.8 * expert as f64,
        "recall {tp}/{expert}"
    );
    assert!(said.contains("operators (in use) N/A recall"), "{said}");
    // Position bias is the mean P(first shown wins) - 0.5 over the ordered judgements.
    let pairs = json_lines_of(&out.join("pairwise.jsonl"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pairwise.json")).unwrap()).unwrap();
    let overall = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["dimension"] == "overall")
        .unwrap();
    let mean: f64 = pairs
        .iter()
        .map(|p| p["p_first"].as_f64().unwrap())
        .sum::<f64>()
        / pairs.len() as f64;
    let bias = overall["position_bias"].as_f64().unwrap();
    assert!(
        (bias - (mean - 0.5)).abs() < 1e-9,
        "{bias} vs {}",
        mean - 0.5
    );
    assert!(overall["pairs"].as_u64().unwrap() > 0, "{overall}");
    let lines = std::fs::read_to_string(out.join("pairwise.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines % 2, 0, "both orders of every pair");
}

#[test]
fn an_aspect_unit_run_trains_on_one_prompt_per_aspect_and_is_judged_per_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let recipe = sft_recipe(dir.path(), "aspect", &base, &root().join("data/sample"), 2);
    let text_of = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        text_of.replace(
            "dimensions = [\"lens\"]",
            "dimensions = [\"lens\", \"pacing\"]\nunit = \"aspect\"",
        ),
    )
    .unwrap();
    let o = evalverse(&["train", recipe.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run = dir.path().join("aspect");
    let resolved = std::fs::read_to_string(run.join("recipe.toml")).unwrap();
    assert!(resolved.contains("unit = \"aspect\""), "{resolved}");
    let out = dir.path().join("eval");
    let o = evalverse(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        root().join("data/sample").to_str().unwrap(),
        "--dimensions",
        "lens,pacing",
        "--max-new-tokens",
        "3",
        "--bootstrap",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // One judgement per clip and dimension, both dimensions for every judged clip.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("judgements.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |d: &str| lines.iter().filter(|j| j["dimension"] == d).count();
    assert!(count("lens") > 0);
    assert_eq!(count("lens"), count("pacing"));
    assert_eq!(lines.len(), 2 * count("lens"));
    // Each member's soft score is read from its own part of the aspect's answer: the
    // expectation of its score-token distribution.
    for j in &lines {
        let soft = j["soft"].as_f64().unwrap();
        let expected: f64 = j["distribution"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, p)| p.as_f64().unwrap() * (i + 1) as f64)
            .sum();
        assert!((soft - expected).abs() < 1e-9, "{j}");
    }
}
