//! Throughput of the perception operators on a folder of clips, beside the Qwen2.5-VL video
//! preprocessing they run with.
//!
//!     cargo run --release -p evalverse-data --example bench_operators -- data/sample [N] [PASSES]
//!
//! Three timed runs over the same clips (after one untimed warm-up clip): `preprocess_video` alone
//! (the decode benchmark's pipeline), `measure_clip` with every operator alone, and both per clip
//! (a cold cache: what `evalverse` pays the first time it sees a clip). Then the split of the
//! operators' time between decoding for analysis (video and audio) and the operators themselves.
//! The last line is machine-readable:
//! `RESULT clips=.. preprocess_clips_per_s=.. operators_clips_per_s=.. both_clips_per_s=..`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evalverse_data::operators::{self, AnalysisSpec, Evidence, OperatorSet, OPERATORS_VERSION};
use evalverse_data::video::{preprocess_video, FrameSpec, PatchSpec};

fn clips_in(dir: &Path) -> Vec<PathBuf> {
    let videos = dir.join("videos");
    let dir = if videos.is_dir() {
        videos
    } else {
        dir.to_path_buf()
    };
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("mp4")))
        .collect();
    clips.sort();
    clips
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().map(String::as_str).unwrap_or("data/sample"));
    let mut clips = clips_in(&dir);
    if let Some(n) = args.get(1) {
        clips.truncate(n.parse().expect("N must be a number of clips"));
    }
    let passes: usize = args
        .get(2)
        .map(|p| p.parse().expect("PASSES must be a number"))
        .unwrap_or(1);
    assert!(!clips.is_empty(), "no .mp4 clips under {}", dir.display());
    let (spec, patch) = (FrameSpec::default(), PatchSpec::default());
    let set = OperatorSet::all();
    let aspec = AnalysisSpec::default();
    let n = clips.len() * passes;
    println!(
        "{} clips x {passes} pass(es) from {}; operators: all; analysis {:?}",
        clips.len(),
        dir.display(),
        aspec
    );
    preprocess_video(&clips[0], &spec, &patch).expect("warm-up clip");
    operators::measure_clip(&clips[0], &set).expect("warm-up clip");

    let time = |f: &mut dyn FnMut(&Path)| {
        let start = Instant::now();
        for _ in 0..passes {
            for c in &clips {
                f(c);
            }
        }
        start.elapsed().as_secs_f64()
    };
    let pre = time(&mut |c| {
        let v = preprocess_video(c, &spec, &patch).unwrap_or_else(|e| panic!("{e}"));
        std::hint::black_box(&v.pixel_values);
    });
    let ops = time(&mut |c| {
        let e = operators::measure_clip(c, &set).unwrap_or_else(|e| panic!("{e}"));
        std::hint::black_box(&e);
    });
    let both = time(&mut |c| {
        let v = preprocess_video(c, &spec, &patch).unwrap_or_else(|e| panic!("{e}"));
        let e = operators::measure_clip(c, &set).unwrap_or_else(|e| panic!("{e}"));
        std::hint::black_box((&v.pixel_values, &e));
    });
    // Where the operators' time goes.
    let (mut t_decode, mut t_ops) = (Duration::ZERO, Duration::ZERO);
    for c in &clips {
        let t0 = Instant::now();
        let clip = operators::analyse(c, &aspec, true).unwrap_or_else(|e| panic!("{e}"));
        let t1 = Instant::now();
        let mut ev = Evidence {
            version: OPERATORS_VERSION,
            operators: set.clone(),
            measurements: Vec::new(),
            shots: Vec::new(),
        };
        operators::measure_analysed(&clip, &set, &mut ev);
        std::hint::black_box(&ev);
        t_decode += t1 - t0;
        t_ops += t1.elapsed();
    }
    let rate = |s: f64| n as f64 / s;
    println!(
        "preprocess_video only:         {:.2} clips/s ({pre:.3} s)",
        rate(pre)
    );
    println!(
        "operators only (all nine):     {:.2} clips/s ({ops:.3} s)",
        rate(ops)
    );
    println!(
        "preprocess + operators:        {:.2} clips/s ({both:.3} s)",
        rate(both)
    );
    let split = (t_decode + t_ops).as_secs_f64();
    println!(
        "operators' time, one pass: analysis decode {:.3} s ({:.0}%), operators {:.3} s ({:.0}%)",
        t_decode.as_secs_f64(),
        100.0 * t_decode.as_secs_f64() / split,
        t_ops.as_secs_f64(),
        100.0 * t_ops.as_secs_f64() / split
    );
    println!(
        "RESULT clips={n} preprocess_clips_per_s={:.4} operators_clips_per_s={:.4} both_clips_per_s={:.4}",
        rate(pre),
        rate(ops),
        rate(both)
    );
}
