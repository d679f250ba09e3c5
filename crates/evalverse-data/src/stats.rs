//! Dataset statistics: counts per split, dimension, generator and task, and inter-rater
//! agreement per dimension (Krippendorff's alpha, interval and ordinal; leave-one-rater-out SRCC,
//! the human ceiling the judge is compared against).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::agreement::{krippendorff_alpha, leave_one_rater_out_srcc, AlphaMetric};
use crate::dataset::Dataset;
use crate::manifest::Score;
use crate::split::Split;

#[derive(Debug, Clone, Serialize)]
pub struct DimensionStats {
    pub dimension: String,
    pub annotations: usize,
    pub not_applicable: usize,
    pub mean_score: Option<f64>,
    pub raters: usize,
    pub alpha_interval: Option<f64>,
    pub alpha_ordinal: Option<f64>,
    /// Mean over raters of SRCC(rater, mean of the other raters).
    pub loro_srcc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetStats {
    pub name: String,
    pub clips: usize,
    pub prompt_groups: usize,
    pub rankings: usize,
    pub pairs: usize,
    pub per_split: BTreeMap<String, SplitCount>,
    pub per_generator: BTreeMap<String, usize>,
    pub per_task: BTreeMap<String, usize>,
    pub per_dimension: Vec<DimensionStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitCount {
    pub clips: usize,
    pub prompt_groups: usize,
}

/// Scores per dimension as a units x raters matrix (None: missing or N/A), over `clips`.
pub fn score_matrix<'a>(
    clips: impl IntoIterator<Item = &'a crate::manifest::ClipRecord>,
    dimension: &str,
) -> (Vec<String>, Vec<Vec<Option<f64>>>) {
    let clips: Vec<_> = clips.into_iter().collect();
    let raters: BTreeSet<&str> = clips
        .iter()
        .flat_map(|c| c.annotations.iter())
        .filter(|a| a.dimension == dimension)
        .map(|a| a.rater.as_str())
        .collect();
    let raters: Vec<&str> = raters.into_iter().collect();
    let matrix = clips
        .iter()
        .map(|c| {
            raters
                .iter()
                .map(|r| {
                    c.annotations
                        .iter()
                        .find(|a| a.dimension == dimension && a.rater == *r)
                        .and_then(|a| a.score.value())
                })
                .collect()
        })
        .collect();
    (raters.into_iter().map(str::to_owned).collect(), matrix)
}

pub fn compute(ds: &Dataset) -> DatasetStats {
    let clips: Vec<_> = ds.clips.iter().map(|c| &c.record).collect();
    let mut per_split: BTreeMap<String, SplitCount> = Split::ALL
        .iter()
        .map(|s| (s.to_string(), SplitCount::default()))
        .collect();
    for (group, split) in &ds.splits {
        let entry = per_split.entry(split.to_string()).or_default();
        entry.prompt_groups += 1;
        entry.clips += clips.iter().filter(|c| &c.prompt_group == group).count();
    }
    let mut per_generator = BTreeMap::new();
    let mut per_task = BTreeMap::new();
    for c in &clips {
        *per_generator.entry(c.generator.clone()).or_insert(0) += 1;
        *per_task.entry(c.task.to_string()).or_insert(0) += 1;
    }
    let per_dimension = ds
        .taxonomy
        .dimensions
        .iter()
        .map(|d| {
            let anns: Vec<_> = clips
                .iter()
                .flat_map(|c| c.annotations.iter())
                .filter(|a| a.dimension == d.id)
                .collect();
            let values: Vec<f64> = anns.iter().filter_map(|a| a.score.value()).collect();
            let (raters, matrix) = score_matrix(clips.iter().copied(), &d.id);
            DimensionStats {
                dimension: d.id.clone(),
                annotations: anns.len(),
                not_applicable: anns
                    .iter()
                    .filter(|a| a.score == Score::NotApplicable)
                    .count(),
                mean_score: (!values.is_empty())
                    .then(|| values.iter().sum::<f64>() / values.len() as f64),
                raters: raters.len(),
                alpha_interval: krippendorff_alpha(&matrix, AlphaMetric::Interval),
                alpha_ordinal: krippendorff_alpha(&matrix, AlphaMetric::Ordinal),
                loro_srcc: leave_one_rater_out_srcc(&matrix).mean,
            }
        })
        .collect();
    DatasetStats {
        name: ds.config.name.clone(),
        clips: clips.len(),
        prompt_groups: ds.splits.len(),
        rankings: ds.rankings.len(),
        pairs: ds.pairs.len(),
        per_split,
        per_generator,
        per_task,
        per_dimension,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into())
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dataset {}: {} clips in {} prompt groups, {} rankings, {} pairs",
            self.name, self.clips, self.prompt_groups, self.rankings, self.pairs
        )?;
        writeln!(f, "\nsplit   clips  groups")?;
        for (s, c) in &self.per_split {
            writeln!(f, "{s:<7} {:>5}  {:>6}", c.clips, c.prompt_groups)?;
        }
        writeln!(f, "\ngenerator              clips")?;
        for (g, n) in &self.per_generator {
            writeln!(f, "{g:<22} {n:>5}")?;
        }
        writeln!(f, "\ntask        clips")?;
        for (t, n) in &self.per_task {
            writeln!(f, "{t:<11} {n:>5}")?;
        }
        writeln!(f, "\ndimension                annotations   N/A   mean  raters  alpha(int)  alpha(ord)  LORO-SRCC")?;
        for d in &self.per_dimension {
            writeln!(
                f,
                "{:<24} {:>11} {:>5} {:>6} {:>7} {:>11} {:>11} {:>10}",
                d.dimension,
                d.annotations,
                d.not_applicable,
                opt(d.mean_score),
                d.raters,
                opt(d.alpha_interval),
                opt(d.alpha_ordinal),
                opt(d.loro_srcc)
            )?;
        }
        Ok(())
    }
}
