//! Analysis frames FROM..TO of a clip side by side as one binary PPM, to look at what the
//! operators see (e.g. around a missed or false cut reported by the `cut_features` example):
//!
//! `cargo run --release -p evalverse-data --example frame_strip -- CLIP.mp4 FROM TO OUT.ppm`

use std::io::Write;
use std::path::Path;

use evalverse_data::operators::{self, AnalysisSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: frame_strip CLIP.mp4 FROM TO OUT.ppm");
        std::process::exit(2);
    }
    let clip = operators::analyse(Path::new(&args[1]), &AnalysisSpec::default(), false)
        .unwrap_or_else(|e| panic!("{e}"));
    let n = clip.frames.len();
    let lo: usize = args[2].parse().expect("FROM is a frame index");
    let hi: usize = args[3]
        .parse::<usize>()
        .expect("TO is a frame index")
        .min(n);
    assert!(
        lo < hi,
        "FROM must be below TO (the clip has {n} analysis frames)"
    );
    let (w, h) = (clip.width, clip.height);
    let mut out = format!("P6\n{} {h}\n255\n", w * (hi - lo)).into_bytes();
    for y in 0..h {
        for f in &clip.frames[lo..hi] {
            let row = &f.rgb[y * w * 3..(y + 1) * w * 3];
            out.extend(
                row.iter()
                    .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8),
            );
        }
    }
    std::fs::File::create(&args[4])
        .and_then(|mut file| file.write_all(&out))
        .unwrap_or_else(|e| panic!("{}: {e}", args[4]));
}
