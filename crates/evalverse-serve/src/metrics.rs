//! The server's metrics in the Prometheus text exposition format (version 0.0.4): request and
//! error counters by endpoint and status, the queue depth, histograms of batch sizes, queue
//! time, decode time and inference time, and judgements served.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// A histogram with fixed upper bounds (cumulative buckets, sum and count).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

const SECONDS: &[f64] = &[
    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Everything `/metrics` reports.
pub struct Metrics {
    /// (endpoint, status code) -> count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub queue_depth: AtomicI64,
    pub in_flight: AtomicI64,
    pub judgements: AtomicU64,
    pub batch_clips: Histogram,
    pub queue_seconds: Histogram,
    pub decode_seconds: Histogram,
    pub inference_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            queue_depth: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            judgements: AtomicU64::new(0),
            batch_clips: Histogram::new(SIZES),
            queue_seconds: Histogram::new(SECONDS),
            decode_seconds: Histogram::new(SECONDS),
            inference_seconds: Histogram::new(SECONDS),
        }
    }
}

impl Metrics {
    pub fn request(&self, endpoint: &str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP evalverse_requests_total HTTP requests by endpoint and status.\n# TYPE evalverse_requests_total counter\n");
        let map = self.requests.lock().expect("metrics lock");
        for ((e, c), n) in map.iter() {
            let _ = writeln!(
                s,
                "evalverse_requests_total{{endpoint=\"{e}\",status=\"{c}\"}} {n}"
            );
        }
        s.push_str("# HELP evalverse_errors_total Failed requests by class (client 4xx, server 5xx).\n# TYPE evalverse_errors_total counter\n");
        for class in ["client", "server"] {
            let n: u64 = map
                .iter()
                .filter(|((_, c), _)| match class {
                    "client" => (400..500).contains(c),
                    _ => *c >= 500,
                })
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(s, "evalverse_errors_total{{class=\"{class}\"}} {n}");
        }
        drop(map);
        for (name, help, v) in [
            (
                "evalverse_queue_depth",
                "Clips waiting for the model.",
                self.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "evalverse_requests_in_flight",
                "Requests being served.",
                self.in_flight.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP evalverse_judgements_total Clip x dimension judgements served (rate() gives judgements/s).\n# TYPE evalverse_judgements_total counter\nevalverse_judgements_total {}",
            self.judgements.load(Ordering::Relaxed)
        );
        self.batch_clips.render(
            "evalverse_batch_clips",
            "Clips judged together in one model batch.",
            &mut s,
        );
        self.queue_seconds.render(
            "evalverse_queue_seconds",
            "Time a request waited before its batch started.",
            &mut s,
        );
        self.decode_seconds.render(
            "evalverse_decode_seconds",
            "Decoding and operator measurement per batch.",
            &mut s,
        );
        self.inference_seconds.render(
            "evalverse_inference_seconds",
            "Model time per batch.",
            &mut s,
        );
        s
    }
}
