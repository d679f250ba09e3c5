//! Parity of `evalverse_eval::stats` (statistics and two-sided p-values) with scipy.stats
//! pearsonr, spearmanr and kendalltau (variant 'b', method 'auto'). The fixture is written by
//! scripts/make_eval_fixtures.py, which records the scipy version it used; it holds tied
//! vectors of sizes 5, 11, 30 and 200 plus cases for each branch of Kendall's p-value.

use std::collections::BTreeMap;

use evalverse_eval::stats::{kendalltau, pearsonr, spearmanr, Correlation};
use serde_json::Value;

/// Largest |statistic − scipy's| accepted.
const STATISTIC_TOLERANCE: f64 = 1e-9;
/// Largest |p − scipy's| / scipy's accepted.
const P_VALUE_RELATIVE_TOLERANCE: f64 = 1e-6;

type Method = fn(&[f64], &[f64]) -> Option<Correlation>;
const METHODS: [(&str, Method); 3] = [
    ("pearsonr", pearsonr),
    ("spearmanr", spearmanr),
    ("kendalltau", kendalltau),
];

fn load_fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scipy.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Worst statistic and p-value differences per method, for the report.
#[derive(Default)]
struct Worst(BTreeMap<&'static str, (f64, f64)>);

impl Worst {
    fn record(&mut self, method: &'static str, statistic_diff: f64, p_rel_diff: f64) {
        let w = self.0.entry(method).or_insert((0.0, 0.0));
        w.0 = w.0.max(statistic_diff);
        w.1 = w.1.max(p_rel_diff);
    }

    fn report(&self, scipy: &str) {
        for (method, (stat, p)) in &self.0 {
            eprintln!(
                "{method} vs scipy {scipy}: max |Δ statistic| {stat:.3e}, max relative Δ p {p:.3e}"
            );
        }
    }
}

#[test]
fn correlations_and_p_values_match_scipy() {
    let fixture = load_fixture();
    let scipy = fixture["versions"]["scipy"]
        .as_str()
        .expect("scipy version");
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8, "fixture has {} cases", cases.len());
    let mut worst = Worst::default();
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let x = numbers(&case["x"]);
        let y = numbers(&case["y"]);
        for (method, f) in METHODS {
            let expected = &case[method];
            let actual = f(&x, &y);
            let (Some(stat), Some(p)) =
                (expected["statistic"].as_f64(), expected["p_value"].as_f64())
            else {
                assert_eq!(actual, None, "{name} {method}: scipy gives NaN");
                continue;
            };
            let actual = actual.unwrap_or_else(|| panic!("{name} {method}: got None"));
            let stat_diff = (actual.statistic - stat).abs();
            // Every fixture p-value is a normal number, so the relative difference is defined.
            assert!(p > 0.0, "{name} {method}: reference p = {p}");
            let p_rel = ((actual.p_value - p) / p).abs();
            assert!(
                stat_diff < STATISTIC_TOLERANCE,
                "{name} {method}: statistic {} vs scipy {stat} (diff {stat_diff:e})",
                actual.statistic
            );
            assert!(
                p_rel < P_VALUE_RELATIVE_TOLERANCE,
                "{name} {method}: p {} vs scipy {p} (relative diff {p_rel:e})",
                actual.p_value
            );
            worst.record(method, stat_diff, p_rel);
        }
    }
    worst.report(scipy);
}

#[test]
fn fixture_covers_tied_vectors_of_every_required_size() {
    let fixture = load_fixture();
    let cases = fixture["cases"].as_array().expect("cases");
    for n in [5, 11, 30, 200] {
        let tied = cases.iter().any(|c| {
            c["n"].as_u64() == Some(n)
                && c["ties_in_x"].as_bool() == Some(true)
                && c["ties_in_y"].as_bool() == Some(true)
        });
        assert!(tied, "no case of size {n} with ties in both vectors");
    }
}
