//! Parity of `evalverse_data::agreement` with scipy.stats and the PyPI `krippendorff` package.
//! The fixture is produced by scripts/make_agreement_fixtures.py (versions recorded inside it);
//! a `null` expected value means the reference returned NaN, which must be `None` here.

use std::collections::BTreeMap;

use evalverse_data::agreement::*;
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn load_fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/agreement.json");
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

fn ratings(v: &Value) -> Vec<Vec<Option<f64>>> {
    v.as_array()
        .expect("array of units")
        .iter()
        .map(|unit| {
            unit.as_array()
                .expect("array of ratings")
                .iter()
                .map(Value::as_f64)
                .collect()
        })
        .collect()
}

/// Records |actual − expected| per statistic; both must be undefined or both defined.
#[derive(Default)]
struct Differences(BTreeMap<&'static str, f64>);

impl Differences {
    fn check(&mut self, stat: &'static str, case: &str, actual: Option<f64>, expected: &Value) {
        let expected = expected.as_f64();
        let diff = match (actual, expected) {
            (Some(a), Some(e)) => (a - e).abs(),
            (None, None) => 0.0,
            _ => panic!("{case} {stat}: got {actual:?}, reference {expected:?}"),
        };
        assert!(
            diff < TOLERANCE,
            "{case} {stat}: got {actual:?}, reference {expected:?}, diff {diff:e}"
        );
        let max = self.0.entry(stat).or_insert(0.0);
        *max = max.max(diff);
    }

    fn report(&self) {
        for (stat, max) in &self.0 {
            println!("max |diff| {stat:<20} {max:.3e}");
        }
    }
}

#[test]
fn correlations_match_scipy() {
    let fixture = load_fixture();
    println!("reference versions: {}", fixture["versions"]);
    let mut diffs = Differences::default();
    let cases = fixture["correlation_cases"]
        .as_array()
        .expect("correlation_cases");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let (x, y) = (numbers(&case["x"]), numbers(&case["y"]));
        diffs.check("pearson", name, pearson(&x, &y), &case["pearson"]);
        diffs.check("spearman", name, spearman(&x, &y), &case["spearman"]);
        diffs.check(
            "kendall_tau_b",
            name,
            kendall_tau_b(&x, &y),
            &case["kendall_tau_b"],
        );
    }
    diffs.report();
}

#[test]
fn krippendorff_alpha_matches_krippendorff_package() {
    let fixture = load_fixture();
    println!("reference versions: {}", fixture["versions"]);
    let mut diffs = Differences::default();
    let cases = fixture["alpha_cases"].as_array().expect("alpha_cases");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let data = ratings(&case["data"]);
        for (stat, metric) in [
            ("alpha_interval", AlphaMetric::Interval),
            ("alpha_ordinal", AlphaMetric::Ordinal),
            ("alpha_nominal", AlphaMetric::Nominal),
        ] {
            let key = &stat["alpha_".len()..];
            diffs.check(stat, name, krippendorff_alpha(&data, metric), &case[key]);
        }
    }
    diffs.report();
}

#[test]
fn leave_one_rater_out_matches_scipy_spearman_reference() {
    let fixture = load_fixture();
    let mut diffs = Differences::default();
    for case in fixture["alpha_cases"].as_array().expect("alpha_cases") {
        let name = case["name"].as_str().expect("case name");
        let summary = leave_one_rater_out_srcc(&ratings(&case["data"]));
        let expected = case["loro"]["per_rater"].as_array().expect("per_rater");
        assert_eq!(
            summary.per_rater.len(),
            expected.len(),
            "{name}: number of raters"
        );
        for (actual, expected) in summary.per_rater.iter().zip(expected) {
            diffs.check("loro_per_rater", name, *actual, expected);
        }
        diffs.check("loro_mean", name, summary.mean, &case["loro"]["mean"]);
    }
    diffs.report();
}
