//! The evaluation report: per dimension, aspect, stage and overall, the judge's agreement with the
//! held-out experts' mean score (SRCC, PLCC, KRCC, MAE, accuracies, pairwise accuracy with and
//! without ties, N/A gate, calibration), 95% bootstrap intervals over prompt groups, the human
//! ceiling (leave-one-rater-out SRCC) beside it, and the system-level win-ratio agreement across
//! generators (EvalVerse §7.2). Written as report.json, report.md and a self-contained report.html.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use evalverse_data::agreement::leave_one_rater_out_srcc;
use evalverse_data::dataset::Dataset;
use evalverse_data::split::Split;
use evalverse_data::stats::score_matrix;
use serde::Serialize;

use crate::bootstrap::{bootstrap, ConfidenceInterval};
use crate::metrics::{
    expected_calibration_error, na_gate, sample_metrics, system_agreement, win_ratios, Calibration,
    NaGate, SampleMetrics, SystemAgreement,
};
use evalverse_judge::harness::{Judgement, Verdict};

#[derive(Debug, Clone, Serialize)]
pub struct DimensionReport {
    pub dimension: String,
    pub aspect: Option<String>,
    pub stage: Option<String>,
    pub judged: usize,
    pub malformed: usize,
    /// Parsed scores vs the expert mean.
    pub hard: Option<SampleMetrics>,
    /// Expected scores vs the expert mean.
    pub soft: Option<SampleMetrics>,
    pub soft_srcc_ci: Option<ConfidenceInterval>,
    pub soft_plcc_ci: Option<ConfidenceInterval>,
    pub soft_pairwise_ci: Option<ConfidenceInterval>,
    /// Leave-one-rater-out SRCC of the experts on the same clips.
    pub human_ceiling_srcc: Option<f64>,
    pub na_gate: Option<NaGate>,
    pub calibration: Option<Calibration>,
    pub system: Option<SystemAgreement>,
    /// (expert mean, soft score) points, for the scatter plot.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub name: String,
    pub dimensions: Vec<String>,
    /// Macro averages over the dimensions, with bootstrap intervals over prompt groups.
    pub srcc: Option<ConfidenceInterval>,
    pub plcc: Option<ConfidenceInterval>,
    pub pairwise_accuracy: Option<ConfidenceInterval>,
    pub human_ceiling_srcc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub adapter: Option<String>,
    pub dataset: String,
    pub split: String,
    pub judged: usize,
    pub malformed: usize,
    pub skipped_clips: Vec<String>,
    pub bootstrap_resamples: usize,
    /// Prompt groups judged: the units the bootstrap resamples (intervals need two or more).
    pub prompt_groups: usize,
    /// Frame sampling the clips were judged with (set by the caller that decoded them).
    pub frames: Option<evalverse_data::video::FrameSpec>,
    pub dimensions: Vec<DimensionReport>,
    pub aspects: Vec<GroupReport>,
    pub stages: Vec<GroupReport>,
    pub overall: GroupReport,
}

/// Rows of one dimension usable for correlations: the clips both the judge and the experts
/// scored (expert mean known, the judge's verdict not N/A). The N/A decisions are measured
/// beside them (`na_gate`: precision and recall against the experts' N/A majority).
fn scored(js: &[&Judgement]) -> Vec<usize> {
    (0..js.len())
        .filter(|&i| js[i].expert_mean.is_some() && js[i].verdict != Verdict::NotApplicable)
        .collect()
}

fn group_index(js: &[&Judgement], groups: &BTreeMap<String, usize>) -> Vec<usize> {
    js.iter().map(|j| groups[&j.prompt_group]).collect()
}

/// Soft SRCC / PLCC / pairwise accuracy of a dimension on a resample of prompt groups.
fn stat_on(
    js: &[&Judgement],
    groups: &BTreeMap<String, usize>,
    picked: &[usize],
    which: usize,
) -> Option<f64> {
    let gi = group_index(js, groups);
    let mut pred = Vec::new();
    let mut want = Vec::new();
    let mut g = Vec::new();
    for (copy, &pg) in picked.iter().enumerate() {
        for (i, j) in js.iter().enumerate() {
            if gi[i] == pg && j.verdict != Verdict::NotApplicable {
                if let Some(m) = j.expert_mean {
                    pred.push(j.soft);
                    want.push(m);
                    g.push(copy);
                }
            }
        }
    }
    let m = sample_metrics(&pred, &want, &g).ok()?;
    match which {
        0 => m.srcc.map(|c| c.statistic),
        1 => m.plcc.map(|c| c.statistic),
        _ => m.pairwise_accuracy,
    }
}

pub fn build(
    ds: &Dataset,
    split: Split,
    judgements: &[Judgement],
    model: &str,
    adapter: Option<&str>,
    skipped: Vec<String>,
    resamples: usize,
    seed: u64,
) -> Report {
    let tax = &ds.taxonomy;
    let groups: BTreeMap<String, usize> = {
        let set: BTreeSet<&str> = judgements.iter().map(|j| j.prompt_group.as_str()).collect();
        set.into_iter()
            .enumerate()
            .map(|(i, g)| (g.to_string(), i))
            .collect()
    };
    let n_groups = groups.len();
    let split_clips: Vec<_> = ds.clips_in(split).collect();
    let mut dims = Vec::new();
    let mut by_dim: BTreeMap<&str, Vec<&Judgement>> = BTreeMap::new();
    for j in judgements {
        by_dim.entry(j.dimension.as_str()).or_default().push(j);
    }
    for d in &tax.dimensions {
        let Some(js) = by_dim.get(d.id.as_str()) else {
            continue;
        };
        let rows = scored(js);
        let gi = group_index(js, &groups);
        let soft = sample_metrics(
            &rows.iter().map(|&i| js[i].soft).collect::<Vec<_>>(),
            &rows
                .iter()
                .map(|&i| js[i].expert_mean.unwrap_or(0.0))
                .collect::<Vec<_>>(),
            &rows.iter().map(|&i| gi[i]).collect::<Vec<_>>(),
        )
        .ok();
        let hard_rows: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| matches!(js[i].verdict, Verdict::Score(_)))
            .collect();
        let hard = sample_metrics(
            &hard_rows
                .iter()
                .map(|&i| {
                    if let Verdict::Score(v) = js[i].verdict {
                        v
                    } else {
                        0.0
                    }
                })
                .collect::<Vec<_>>(),
            &hard_rows
                .iter()
                .map(|&i| js[i].expert_mean.unwrap_or(0.0))
                .collect::<Vec<_>>(),
            &hard_rows.iter().map(|&i| gi[i]).collect::<Vec<_>>(),
        )
        .ok();
        let ci = |which| {
            bootstrap(n_groups, resamples, seed ^ which as u64, |p| {
                stat_on(js, &groups, p, which)
            })
        };
        let (_, matrix) = score_matrix(split_clips.iter().copied(), &d.id);
        let parsed: Vec<&&Judgement> = js
            .iter()
            .filter(|j| j.verdict != Verdict::Malformed)
            .collect();
        let gate = na_gate(
            &parsed
                .iter()
                .map(|j| j.verdict == Verdict::NotApplicable)
                .collect::<Vec<_>>(),
            &parsed.iter().map(|j| j.expert_na).collect::<Vec<_>>(),
        )
        .ok();
        let scale = tax.scale(d);
        let counts: Vec<Vec<u32>> = rows
            .iter()
            .map(|&i| {
                let clip = split_clips.iter().find(|c| c.id == js[i].clip_id);
                let mut h = vec![0u32; scale.levels()];
                if let Some(c) = clip {
                    for a in c.annotations.iter().filter(|a| a.dimension == d.id) {
                        if let Some(v) = a.score.value() {
                            h[scale.level_index(v)] += 1;
                        }
                    }
                }
                h
            })
            .collect();
        let calibration = expected_calibration_error(
            &rows
                .iter()
                .map(|&i| js[i].distribution.clone())
                .collect::<Vec<_>>(),
            &counts,
            10,
        )
        .ok();
        let rg: Vec<usize> = rows.iter().map(|&i| gi[i]).collect();
        let gens: Vec<&str> = rows.iter().map(|&i| js[i].generator.as_str()).collect();
        let system = match (
            win_ratios(
                &rg,
                &gens,
                &rows.iter().map(|&i| js[i].soft).collect::<Vec<_>>(),
            ),
            win_ratios(
                &rg,
                &gens,
                &rows
                    .iter()
                    .map(|&i| js[i].expert_mean.unwrap_or(0.0))
                    .collect::<Vec<_>>(),
            ),
        ) {
            (Ok(j), Ok(h)) => Some(system_agreement(&j, &h)),
            _ => None,
        };
        dims.push(DimensionReport {
            dimension: d.id.clone(),
            aspect: d.aspect.clone(),
            stage: tax.stage_of(d).map(str::to_owned),
            judged: js.len(),
            malformed: js
                .iter()
                .filter(|j| j.verdict == Verdict::Malformed)
                .count(),
            hard,
            soft,
            soft_srcc_ci: ci(0),
            soft_plcc_ci: ci(1),
            soft_pairwise_ci: ci(2),
            human_ceiling_srcc: leave_one_rater_out_srcc(&matrix).mean,
            na_gate: gate,
            calibration,
            system,
            points: rows
                .iter()
                .map(|&i| (js[i].expert_mean.unwrap_or(0.0), js[i].soft))
                .collect(),
        });
    }
    let group = |name: &str, members: Vec<String>| -> GroupReport {
        let jss: Vec<&Vec<&Judgement>> = members
            .iter()
            .filter_map(|m| by_dim.get(m.as_str()))
            .collect();
        let macro_ci = |which: usize| {
            bootstrap(n_groups, resamples, seed ^ (7 + which as u64), |p| {
                let v: Vec<f64> = jss
                    .iter()
                    .filter_map(|js| stat_on(js, &groups, p, which))
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            })
        };
        let ceil: Vec<f64> = dims
            .iter()
            .filter(|d| members.contains(&d.dimension))
            .filter_map(|d| d.human_ceiling_srcc)
            .collect();
        GroupReport {
            name: name.to_string(),
            dimensions: members.clone(),
            srcc: macro_ci(0),
            plcc: macro_ci(1),
            pairwise_accuracy: macro_ci(2),
            human_ceiling_srcc: (!ceil.is_empty())
                .then(|| ceil.iter().sum::<f64>() / ceil.len() as f64),
        }
    };
    let present: Vec<String> = dims.iter().map(|d| d.dimension.clone()).collect();
    let aspects = tax
        .aspects
        .iter()
        .map(|a| {
            group(
                &a.name,
                dims.iter()
                    .filter(|d| d.aspect.as_deref() == Some(a.id.as_str()))
                    .map(|d| d.dimension.clone())
                    .collect(),
            )
        })
        .filter(|g| !g.dimensions.is_empty())
        .collect();
    let stages = tax
        .stages
        .iter()
        .map(|s| {
            group(
                &s.name,
                dims.iter()
                    .filter(|d| d.stage.as_deref() == Some(s.id.as_str()))
                    .map(|d| d.dimension.clone())
                    .collect(),
            )
        })
        .filter(|g| !g.dimensions.is_empty())
        .collect();
    let overall = group("Overall", present);
    Report {
        model: model.to_string(),
        adapter: adapter.map(str::to_owned),
        dataset: ds.root.display().to_string(),
        split: split.to_string(),
        judged: judgements.len(),
        malformed: judgements
            .iter()
            .filter(|j| j.verdict == Verdict::Malformed)
            .count(),
        skipped_clips: skipped,
        bootstrap_resamples: resamples,
        prompt_groups: n_groups,
        frames: None,
        dimensions: dims,
        aspects,
        stages,
        overall,
    }
}

impl Report {
    /// Why the figures come without 95% intervals, when they do.
    pub fn interval_note(&self) -> Option<String> {
        if self.bootstrap_resamples == 0 {
            Some("no intervals (0 bootstrap resamples)".into())
        } else if self.prompt_groups < 2 {
            Some(format!(
                "no intervals: the split has {} prompt group{}, and the bootstrap resamples \
                 prompt groups (a single one gives the same figure every time)",
                if self.prompt_groups == 1 { "one" } else { "no" },
                if self.prompt_groups == 1 { "" } else { "s" }
            ))
        } else {
            None
        }
    }
}

fn ci(c: &Option<ConfidenceInterval>) -> String {
    match c {
        Some(c) => c.to_string(),
        None => "-".into(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into())
}

pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# evalverse evaluation\n\nModel `{}`{}; dataset `{}`, split `{}`: {} judgements, {} malformed answers, {} clips skipped. {}.\n\n",
        r.model,
        r.adapter.as_ref().map(|a| format!(" + adapter `{a}`")).unwrap_or_default(),
        r.dataset,
        r.split,
        r.judged,
        r.malformed,
        r.skipped_clips.len(),
        r.interval_note().unwrap_or_else(|| format!(
            "95% intervals: {} bootstrap resamples of {} prompt groups",
            r.bootstrap_resamples, r.prompt_groups
        ))
    );
    s.push_str("Correlations, errors and accuracies are over the clips both the judge and the experts scored: a clip the judge calls N/A leaves the figures and enters the N/A precision / recall against the experts' N/A majority (column N/A P/R).\n\n");
    s.push_str("## By aspect (macro average over dimensions; soft scores)\n\n| aspect | SRCC | PLCC | pairwise acc | human ceiling SRCC |\n|---|---|---|---|---|\n");
    for g in r
        .aspects
        .iter()
        .chain(r.stages.iter())
        .chain(std::iter::once(&r.overall))
    {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            g.name,
            ci(&g.srcc),
            ci(&g.plcc),
            ci(&g.pairwise_accuracy),
            opt(g.human_ceiling_srcc)
        );
    }
    s.push_str("\n## By dimension\n\n| dimension | n | malformed | SRCC (soft) | PLCC (soft) | KRCC | MAE | exact | within 1 | pairwise acc | acc w/ ties | SRCC (parsed) | N/A P/R | ECE | system SRCC | human ceiling |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for d in &r.dimensions {
        let so = d.soft.as_ref();
        let _ =
            writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} |",
            d.dimension,
            d.judged,
            d.malformed,
            ci(&d.soft_srcc_ci),
            ci(&d.soft_plcc_ci),
            opt(so.and_then(|m| m.krcc.as_ref().map(|c| c.statistic))),
            opt(so.map(|m| m.mae)),
            opt(so.map(|m| m.exact_accuracy)),
            opt(so.map(|m| m.within_one_accuracy)),
            ci(&d.soft_pairwise_ci),
            opt(so.and_then(|m| m.pairwise_accuracy_with_ties.as_ref().map(|t| t.accuracy))),
            opt(d.hard.as_ref().and_then(|m| m.srcc.as_ref().map(|c| c.statistic))),
            opt(d.na_gate.as_ref().and_then(|g| g.precision)),
            opt(d.na_gate.as_ref().and_then(|g| g.recall)),
            opt(d.calibration.as_ref().map(|c| c.ece)),
            opt(d.system.as_ref().and_then(|x| x.srcc.as_ref().map(|c| c.statistic))),
            opt(d.human_ceiling_srcc),
        );
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A scatter plot (expert mean vs soft score) as inline SVG.
fn scatter(points: &[(f64, f64)]) -> String {
    let (w, h, m) = (220.0, 220.0, 24.0);
    let x = |v: f64| m + (v - 1.0) / 4.0 * (w - 2.0 * m);
    let y = |v: f64| h - m - (v - 1.0) / 4.0 * (h - 2.0 * m);
    let mut s = format!("<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\"><rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>", w - 2.0 * m, h - 2.0 * m);
    let _ = write!(
        s,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ccc\" stroke-dasharray=\"3\"/>",
        x(1.0),
        y(1.0),
        x(5.0),
        y(5.0)
    );
    for (a, b) in points {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#3366aa\" fill-opacity=\"0.6\"/>",
            x(*a),
            y(b.clamp(1.0, 5.0))
        );
    }
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">expert mean</text><text x=\"10\" y=\"{}\" font-size=\"10\" transform=\"rotate(-90 10 {})\" text-anchor=\"middle\">judge (soft)</text></svg>", w / 2.0, h - 6.0, h / 2.0, h / 2.0);
    s
}

/// Horizontal bars with CI whiskers (value in [0, 1] or [-1, 1]).
fn bars(rows: &[(String, Option<ConfidenceInterval>, Option<f64>)]) -> String {
    let (w, row_h, left) = (520.0, 22.0, 170.0);
    let h = row_h * rows.len() as f64 + 20.0;
    let x = |v: f64| left + (v.clamp(-1.0, 1.0) + 1.0) / 2.0 * (w - left - 10.0);
    let mut s = format!("<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\"><line x1=\"{}\" y1=\"0\" x2=\"{}\" y2=\"{h}\" stroke=\"#bbb\"/>", x(0.0), x(0.0));
    for (i, (name, c, ceil)) in rows.iter().enumerate() {
        let yy = 10.0 + i as f64 * row_h;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            yy + 11.0,
            esc(name)
        );
        if let Some(c) = c {
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{yy}\" width=\"{:.1}\" height=\"14\" fill=\"#6a9fd8\"/>",
                x(0.0).min(x(c.estimate)),
                (x(c.estimate) - x(0.0)).abs()
            );
            if let (Some(lower), Some(upper)) = (c.lower, c.upper) {
                let _ = write!(
                    s,
                    "<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#222\"/>",
                    x(lower),
                    yy + 7.0,
                    x(upper),
                    yy + 7.0
                );
            }
        }
        if let Some(h) = ceil {
            let _ = write!(s, "<line x1=\"{:.1}\" y1=\"{yy}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#d33\" stroke-width=\"2\"/>", x(*h), x(*h), yy + 14.0);
        }
    }
    s.push_str("</svg>");
    s
}

/// A self-contained page (no network): tables, per-dimension scatter plots, SRCC bars with CI
/// whiskers and the human ceiling (red), win ratios per generator.
pub fn html(r: &Report) -> String {
    let md = markdown(r);
    let mut s = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>evalverse evaluation</title><style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}.grid{display:flex;flex-wrap:wrap;gap:12px}.cell{border:1px solid #eee;padding:6px}</style></head><body>");
    let _ = write!(
        s,
        "<h1>evalverse evaluation</h1><p>{}</p>",
        esc(md.lines().nth(2).unwrap_or(""))
    );
    s.push_str(
        "<h2>SRCC by dimension (soft scores; bars: judge with 95% CI; red: human ceiling)</h2>",
    );
    s.push_str(&bars(
        &r.dimensions
            .iter()
            .map(|d| (d.dimension.clone(), d.soft_srcc_ci, d.human_ceiling_srcc))
            .collect::<Vec<_>>(),
    ));
    s.push_str("<h2>By aspect and stage</h2>");
    s.push_str(&bars(
        &r.aspects
            .iter()
            .chain(r.stages.iter())
            .chain(std::iter::once(&r.overall))
            .map(|g| (g.name.clone(), g.srcc, g.human_ceiling_srcc))
            .collect::<Vec<_>>(),
    ));
    // Markdown tables as HTML tables.
    for block in md.split("\n\n").filter(|b| b.starts_with('|')) {
        s.push_str("<table>");
        for (i, line) in block.lines().enumerate().filter(|(i, _)| *i != 1) {
            let tag = if i == 0 { "th" } else { "td" };
            s.push_str("<tr>");
            for cell in line.trim_matches('|').split('|') {
                let _ = write!(s, "<{tag}>{}</{tag}>", esc(cell.trim()));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Judge vs experts per dimension</h2><div class=\"grid\">");
    for d in &r.dimensions {
        let _ = write!(
            s,
            "<div class=\"cell\"><b>{}</b><br>{}</div>",
            esc(&d.dimension),
            scatter(&d.points)
        );
    }
    s.push_str("</div><h2>Win ratio per generator (system level)</h2><table><tr><th>dimension</th><th>generator</th><th>judge</th><th>experts</th></tr>");
    for d in &r.dimensions {
        if let Some(sys) = &d.system {
            for (k, g) in sys.generators.iter().enumerate() {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                    esc(&d.dimension),
                    esc(g),
                    sys.judge[k],
                    sys.human[k]
                );
            }
        }
    }
    s.push_str("</table></body></html>\n");
    s
}

pub fn write_all(r: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(r).expect("json"),
    )?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    std::fs::write(dir.join("report.html"), html(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dataset {
        Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")).unwrap()
    }

    /// Judgements of the test split's clips on `lens` (of the first `groups` prompt groups): the
    /// experts' mean plus a clip-dependent offset, so the correlations are defined and below 1.
    fn judgements(ds: &Dataset, groups: usize) -> Vec<Judgement> {
        let mut names: Vec<&str> = ds
            .clips_in(Split::Test)
            .map(|c| c.prompt_group.as_str())
            .collect();
        names.dedup();
        names.truncate(groups);
        ds.clips_in(Split::Test)
            .filter(|c| names.contains(&c.prompt_group.as_str()))
            .enumerate()
            .filter_map(|(i, c)| {
                let scores: Vec<f64> = c
                    .annotations
                    .iter()
                    .filter(|a| a.dimension == "lens")
                    .filter_map(|a| a.score.value())
                    .collect();
                let mean = (!scores.is_empty())
                    .then(|| scores.iter().sum::<f64>() / scores.len() as f64)?;
                let soft = mean + [0.9, -0.6, 0.3, -0.2, 0.7][i % 5];
                Some(Judgement {
                    clip_id: c.id.clone(),
                    prompt_group: c.prompt_group.clone(),
                    generator: c.generator.clone(),
                    dimension: "lens".into(),
                    verdict: Verdict::Score(soft.round().clamp(1.0, 5.0)),
                    soft,
                    distribution: vec![0.2; 5],
                    expert_mean: Some(mean),
                    ..Default::default()
                })
            })
            .collect()
    }

    #[test]
    fn no_bootstrap_still_reports_the_point_estimates() {
        let ds = sample();
        let r = build(
            &ds,
            Split::Test,
            &judgements(&ds, 99),
            "m",
            None,
            vec![],
            0,
            0,
        );
        let soft = r.dimensions[0]
            .soft
            .as_ref()
            .unwrap()
            .srcc
            .as_ref()
            .unwrap();
        let ci = r.dimensions[0]
            .soft_srcc_ci
            .expect("the point estimate exists");
        assert!((ci.estimate - soft.statistic).abs() < 1e-12);
        assert_eq!((ci.lower, ci.upper), (None, None));
        let overall = r.overall.srcc.expect("overall SRCC without resamples");
        assert_eq!(overall.estimate, ci.estimate);
        assert!(r.overall.plcc.is_some() && r.overall.pairwise_accuracy.is_some());
        let md = markdown(&r);
        assert!(
            md.contains(&format!(
                "| Overall | {:.3} (no interval) |",
                overall.estimate
            )),
            "{md}"
        );
        assert!(md.contains("no intervals (0 bootstrap resamples)"), "{md}");
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["overall"]["srcc"]["estimate"].is_number(), "{json}");
        assert!(json["overall"]["srcc"]["lower"].is_null(), "{json}");
    }

    #[test]
    fn one_prompt_group_gives_no_interval_and_says_why() {
        let ds = sample();
        let js = judgements(&ds, 1);
        assert!(js.len() >= 3, "{} clips", js.len());
        let r = build(&ds, Split::Test, &js, "m", None, vec![], 1000, 0);
        assert_eq!(r.prompt_groups, 1);
        let ci = r.overall.srcc.expect("the point estimate exists");
        assert_eq!((ci.lower, ci.upper), (None, None), "{ci:?}");
        assert!(
            r.interval_note().unwrap().contains("one prompt group"),
            "{:?}",
            r.interval_note()
        );
        assert!(markdown(&r).contains("one prompt group"));
    }
}
