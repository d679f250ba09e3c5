//! Leaderboard: several evaluated judges (eval folders with judgements.jsonl) in one table, per
//! dimension and overall (macro soft SRCC), with 95% bootstrap intervals, and each judge compared
//! with the first by a paired bootstrap over prompt groups (Koehn 2004): the same resampled groups
//! score both judges, so the interval of the difference and its p-value account for the shared clips.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::bootstrap::{bootstrap, paired_bootstrap, ConfidenceInterval, PairedComparison};
use crate::metrics::sample_metrics;
use evalverse_judge::harness::Judgement;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub run: String,
    /// dimension (or "overall") -> soft SRCC with CI.
    pub srcc: BTreeMap<String, Option<ConfidenceInterval>>,
    /// dimension (or "overall") -> comparison with the first run (None for the first).
    pub versus_first: BTreeMap<String, Option<PairedComparison>>,
}

/// Soft SRCC of one dimension (None = macro over all) on resampled prompt groups.
fn srcc(
    js: &[Judgement],
    groups: &BTreeMap<String, usize>,
    picked: &[usize],
    dim: Option<&str>,
) -> Option<f64> {
    let dims: BTreeSet<&str> = js
        .iter()
        .map(|j| j.dimension.as_str())
        .filter(|d| dim.is_none_or(|x| x == *d))
        .collect();
    let mut vals = Vec::new();
    for d in dims {
        let (mut p, mut w, mut g) = (vec![], vec![], vec![]);
        for (copy, &pg) in picked.iter().enumerate() {
            for j in js
                .iter()
                .filter(|j| j.dimension == d && groups.get(&j.prompt_group) == Some(&pg))
                // The clips both the judge and the experts scored, as in the reports.
                .filter(|j| j.verdict != evalverse_judge::harness::Verdict::NotApplicable)
            {
                if let Some(m) = j.expert_mean {
                    p.push(j.soft);
                    w.push(m);
                    g.push(copy);
                }
            }
        }
        if let Some(c) = sample_metrics(&p, &w, &g).ok().and_then(|m| m.srcc) {
            vals.push(c.statistic);
        }
    }
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

pub fn build(
    runs: &[(String, Vec<Judgement>)],
    resamples: usize,
    seed: u64,
) -> Result<Vec<Entry>, String> {
    let first = runs.first().ok_or("no runs given")?;
    let key = |js: &[Judgement]| -> BTreeSet<(String, String)> {
        js.iter()
            .map(|j| (j.clip_id.clone(), j.dimension.clone()))
            .collect()
    };
    for (name, js) in &runs[1..] {
        if key(js) != key(&first.1) {
            return Err(format!("{name} judged other clips or dimensions than {}; compare runs on the same split and dimensions", first.0));
        }
    }
    let groups: BTreeMap<String, usize> = first
        .1
        .iter()
        .map(|j| j.prompt_group.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, g)| (g, i))
        .collect();
    let n = groups.len();
    let mut dims: Vec<Option<String>> = first
        .1
        .iter()
        .map(|j| j.dimension.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(Some)
        .collect();
    dims.push(None);
    Ok(runs
        .iter()
        .enumerate()
        .map(|(k, (name, js))| {
            let mut e = Entry {
                run: name.clone(),
                srcc: BTreeMap::new(),
                versus_first: BTreeMap::new(),
            };
            for d in &dims {
                let label = d.clone().unwrap_or_else(|| "overall".into());
                e.srcc.insert(
                    label.clone(),
                    bootstrap(n, resamples, seed, |p| srcc(js, &groups, p, d.as_deref())),
                );
                let cmp = (k > 0)
                    .then(|| {
                        paired_bootstrap(
                            n,
                            resamples,
                            seed,
                            |p| srcc(js, &groups, p, d.as_deref()),
                            |p| srcc(&first.1, &groups, p, d.as_deref()),
                        )
                    })
                    .flatten();
                e.versus_first.insert(label, cmp);
            }
            e
        })
        .collect())
}

pub fn markdown(entries: &[Entry]) -> String {
    let Some(first) = entries.first() else {
        return String::new();
    };
    let cols: Vec<&String> = first.srcc.keys().collect();
    let mut s = String::from("| run |");
    for c in &cols {
        let _ = write!(s, " {c} |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(cols.len()));
    s.push('\n');
    for e in entries {
        let _ = write!(s, "| {} |", e.run);
        for c in &cols {
            let cell = match &e.srcc[*c] {
                Some(ci) => ci.to_string(),
                None => "-".into(),
            };
            let mark = match &e.versus_first[*c] {
                Some(p) if p.p_value < 0.05 => format!(
                    " {}{:.3}*",
                    if p.difference >= 0.0 { "+" } else { "" },
                    p.difference
                ),
                Some(p) => format!(
                    " {}{:.3}",
                    if p.difference >= 0.0 { "+" } else { "" },
                    p.difference
                ),
                None => String::new(),
            };
            let _ = write!(s, " {cell}{mark} |");
        }
        s.push('\n');
    }
    s.push_str("\nSoft-score SRCC with 95% bootstrap intervals over prompt groups; the signed number is the difference from the first run, * when a paired bootstrap gives p < 0.05.\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use evalverse_judge::harness::Verdict;

    fn j(clip: &str, group: &str, soft: f64, mean: f64) -> Judgement {
        Judgement {
            clip_id: clip.into(),
            prompt_group: group.into(),
            generator: "g".into(),
            dimension: "lens".into(),
            answer: String::new(),
            verdict: Verdict::Malformed,
            soft,
            distribution: vec![],
            expert_mean: Some(mean),
            expert_na: false,
            ..Default::default()
        }
    }

    #[test]
    fn a_judge_that_ranks_like_the_experts_beats_one_that_ranks_backwards() {
        let mut good = vec![];
        let mut bad = vec![];
        for g in 0..12 {
            for k in 0..4 {
                let m = 1.0 + k as f64 + 0.1 * g as f64;
                good.push(j(&format!("c{g}_{k}"), &format!("g{g}"), m, m));
                bad.push(j(&format!("c{g}_{k}"), &format!("g{g}"), -m, m));
            }
        }
        let e = build(&[("bad".into(), bad), ("good".into(), good)], 200, 1).unwrap();
        let cmp = e[1].versus_first["overall"].unwrap();
        assert!(cmp.difference > 1.9 && cmp.p_value < 0.05, "{cmp:?}");
        assert!(markdown(&e).contains('*'));
    }

    #[test]
    fn runs_on_different_clips_are_refused() {
        let a = vec![j("c1", "g1", 1.0, 1.0), j("c2", "g1", 2.0, 2.0)];
        let b = vec![j("c1", "g1", 1.0, 1.0), j("c3", "g1", 2.0, 2.0)];
        assert!(build(&[("a".into(), a), ("b".into(), b)], 10, 0)
            .unwrap_err()
            .contains("other clips"));
    }
}
