//! Train / val / test splits by prompt group: every clip of a prompt group lands in the same
//! split, so no prompt leaks from training into evaluation. Deterministic from a seed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            _ => Err(format!("unknown split '{s}' (allowed: train, val, test)")),
        }
    }
}

/// Split fractions and seed, from the dataset's `dataset.toml` `[splits]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// Seed of the group shuffle.
    pub seed: u64,
    /// Fraction of prompt groups in train (the rest after val and test).
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            seed: 0,
            train: 0.6,
            val: 0.1,
            test: 0.3,
        }
    }
}

impl SplitSpec {
    pub fn check(&self) -> Result<(), String> {
        let parts = [self.train, self.val, self.test];
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err("split fractions must be non-negative".into());
        }
        if ((parts.iter().sum::<f64>()) - 1.0).abs() > 1e-6 {
            return Err(format!(
                "split fractions train {} + val {} + test {} must sum to 1",
                self.train, self.val, self.test
            ));
        }
        Ok(())
    }

    /// Assign each prompt group to a split: sort the groups, shuffle with the seed, then cut
    /// `round(n * test)` groups for test, `round(n * val)` for val, the rest for train. A nonzero
    /// fraction gets at least one group when there are enough groups to go round.
    pub fn assign<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Split> {
        let mut gs: Vec<&str> = groups.into_iter().collect();
        gs.sort_unstable();
        gs.dedup();
        let mut rng = Rng::new(self.seed);
        rng.shuffle(&mut gs);
        let n = gs.len();
        let at_least_one = |frac: f64| {
            let k = (n as f64 * frac).round() as usize;
            if frac > 0.0 && k == 0 && n >= 3 {
                1
            } else {
                k
            }
        };
        let n_test = at_least_one(self.test).min(n);
        let n_val = at_least_one(self.val).min(n - n_test);
        gs.iter()
            .enumerate()
            .map(|(i, g)| {
                let s = if i < n_test {
                    Split::Test
                } else if i < n_test + n_val {
                    Split::Val
                } else {
                    Split::Train
                };
                (g.to_string(), s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("g{i:03}")).collect()
    }

    #[test]
    fn splits_are_deterministic_from_seed() {
        let gs = groups(40);
        let spec = SplitSpec {
            seed: 11,
            ..SplitSpec::default()
        };
        let a = spec.assign(gs.iter().map(String::as_str));
        // Input order does not matter either.
        let b = spec.assign(gs.iter().rev().map(String::as_str));
        assert_eq!(a, b);
        let other = SplitSpec {
            seed: 12,
            ..SplitSpec::default()
        }
        .assign(gs.iter().map(String::as_str));
        assert_ne!(a, other, "a different seed should move some groups");
    }

    #[test]
    fn split_sizes_follow_fractions() {
        let gs = groups(40);
        let a = SplitSpec {
            seed: 3,
            train: 0.6,
            val: 0.1,
            test: 0.3,
        }
        .assign(gs.iter().map(String::as_str));
        let count = |s| a.values().filter(|&&v| v == s).count();
        assert_eq!(
            (count(Split::Train), count(Split::Val), count(Split::Test)),
            (24, 4, 12)
        );
    }

    #[test]
    fn small_dataset_still_gets_a_test_group() {
        let gs = groups(3);
        let a = SplitSpec {
            seed: 0,
            train: 0.8,
            val: 0.1,
            test: 0.1,
        }
        .assign(gs.iter().map(String::as_str));
        assert_eq!(a.values().filter(|&&v| v == Split::Test).count(), 1);
        assert_eq!(a.values().filter(|&&v| v == Split::Val).count(), 1);
    }

    #[test]
    fn fractions_must_sum_to_one() {
        assert!(SplitSpec {
            seed: 0,
            train: 0.5,
            val: 0.1,
            test: 0.1
        }
        .check()
        .is_err());
        assert!(SplitSpec::default().check().is_ok());
    }
}
