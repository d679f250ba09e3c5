//! End-to-end test of `evalverse fuse`: judgements on the train and test splits of data/sample
//! (soft scores made here from the experts' means with noise, standing in for a judge), fused with
//! the perception operators' evidence; bad input is a usage error (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evalverse_data::dataset::Dataset;
use evalverse_data::rng::Rng;
use evalverse_data::split::Split;

fn evalverse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalverse"))
        .args(args)
        .output()
        .expect("run evalverse")
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Write `judgements.jsonl` for the clips of `split` on `dims` into `dir`.
fn write_judgements(ds: &Dataset, split: Split, dims: &[&str], dir: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut lines = String::new();
    for clip in ds.clips_in(split) {
        for dim in dims {
            let scores: Vec<f64> = clip
                .annotations
                .iter()
                .filter(|a| a.dimension == *dim)
                .filter_map(|a| a.score.value())
                .collect();
            if scores.is_empty() {
                continue;
            }
            let mean = scores.iter().sum::<f64>() / scores.len() as f64;
            let soft = (mean + 1.0 * rng.normal()).clamp(1.0, 5.0);
            let v = serde_json::json!({
                "clip_id": clip.id, "prompt_group": clip.prompt_group, "generator": clip.generator,
                "dimension": dim, "answer": format!("Score: {}", soft.round()),
                "verdict": {"kind": "score", "value": soft.round()}, "soft": soft,
                "distribution": [0.2, 0.2, 0.2, 0.2, 0.2], "expert_mean": mean, "expert_na": false,
            });
            lines.push_str(&v.to_string());
            lines.push('\n');
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("judgements.jsonl"), lines).unwrap();
}

#[test]
fn fuse_reports_vlm_operators_and_fused_per_dimension() {
    let ds = Dataset::load(&sample()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = (tmp.path().join("train"), tmp.path().join("test"));
    let sample_dir = sample();
    write_judgements(&ds, Split::Train, &["pacing", "visual_quality"], &train, 1);
    write_judgements(&ds, Split::Test, &["pacing", "visual_quality"], &test, 2);
    let fuse = |extra: &[&str]| {
        let mut args = vec![
            "fuse",
            "--run",
            train.to_str().unwrap(),
            "--run",
            test.to_str().unwrap(),
        ];
        args.extend_from_slice(&["--data", sample_dir.to_str().unwrap()]);
        args.extend_from_slice(extra);
        evalverse(&args)
    };
    let o = fuse(&["--bootstrap", "200", "--cv-folds", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(train.join("fusion.json")).unwrap()).unwrap();
    println!("{}", text(&o));
    let pacing = &report["dimensions"]["pacing"];
    // Without cross-validation the penalty is --lambda's (1).
    assert_eq!(pacing["operators_penalty"], 1.0, "{pacing}");
    for k in ["vlm_only", "operators_only", "fused"] {
        assert!(pacing[k]["srcc"]["estimate"].is_number(), "{k}: {pacing}");
    }
    // Pacing is mostly camera shake, which the motion operator measures: the operators alone
    // must rank the held-out clips well, and adding them to a noisy judge must help.
    let srcc = |k: &str| pacing[k]["srcc"]["estimate"].as_f64().unwrap();
    assert!(srcc("operators_only") > 0.5, "{pacing}");
    assert!(srcc("fused") > srcc("vlm_only"), "{pacing}");
    assert!(report["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "shake"));
    // The fused predictions are a judge of their own, with the eval report's figures: its soft
    // SRCC per dimension is the fused SRCC of fusion.json.
    let fused: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(train.join("fused/report.json")).unwrap())
            .unwrap();
    let dims = fused["dimensions"].as_array().unwrap();
    assert_eq!(dims.len(), 2, "{fused}");
    for d in dims {
        let name = d["dimension"].as_str().unwrap();
        let want = report["dimensions"][name]["fused"]["srcc"]["estimate"]
            .as_f64()
            .unwrap();
        let got = d["soft_srcc_ci"]["estimate"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{name}: {got} vs {want}");
    }
    assert!(train.join("fused/judgements.jsonl").is_file());

    // The default chooses ridge's penalty per dimension by grouped cross-validation: from the
    // grid, reported in the table and in fusion.json, and the fused judge still beats the noisy
    // judge alone on pacing.
    let cv = tmp.path().join("cv");
    let o = fuse(&["--bootstrap", "50", "--out", cv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("penalty (operators / fused)"),
        "{}",
        text(&o)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cv.join("fusion.json")).unwrap()).unwrap();
    let grid = evalverse_eval::fusion::RIDGE_GRID;
    for dim in ["pacing", "visual_quality"] {
        let d = &report["dimensions"][dim];
        for k in ["operators_penalty", "fused_penalty"] {
            let p = d[k].as_f64().unwrap();
            assert!(grid.contains(&p), "{dim} {k} {p} not in {grid:?}");
        }
    }
    let pacing = &report["dimensions"]["pacing"];
    let srcc = |k: &str| pacing[k]["srcc"]["estimate"].as_f64().unwrap();
    assert!(srcc("fused") > srcc("vlm_only"), "{pacing}");
}

#[test]
fn fuse_refuses_a_folder_without_judgements_and_an_unknown_regressor() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let o = evalverse(&[
        "fuse",
        "--run",
        tmp.path().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no judgements.jsonl"), "{}", text(&o));
    let o = evalverse(&[
        "fuse",
        "--run",
        tmp.path().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--regressor",
        "forest",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("ridge, mlp"), "{}", text(&o));
}
