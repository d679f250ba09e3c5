#!/usr/bin/env python3
"""Generate the scipy parity fixture for crates/evalverse-eval/src/stats.rs.

Reference statistics and two-sided p-values come from scipy.stats.pearsonr, spearmanr and
kendalltau (variant 'b', method 'auto'), on fixed random vectors: the required cases have ties
and sizes 5, 11, 30 and 200; extra cases cover Kendall's exact null distribution (no ties,
n <= 33, and the one-discordant-pair branch at n > 33), the asymptotic one without ties, and
p-values far in the tail.

Usage (from the repository root; the venv has numpy and scipy, see make_agreement_fixtures.py):
    /work/venv-agree/bin/python scripts/make_eval_fixtures.py
"""

import json
import math
import platform
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

SEED = 20250721
OUT = Path(__file__).resolve().parent.parent / "crates/evalverse-eval/tests/fixtures/scipy.json"


def finite_or_none(v):
    """JSON has no NaN: an undefined statistic is written as null (Rust's None)."""
    v = float(v)
    return v if math.isfinite(v) else None


def case(name, x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    out = {"name": name, "n": int(x.size), "x": x.tolist(), "y": y.tolist(),
           "ties_in_x": bool(np.unique(x).size < x.size), "ties_in_y": bool(np.unique(y).size < y.size)}
    for key, res in (
        ("pearsonr", stats.pearsonr(x, y)),
        ("spearmanr", stats.spearmanr(x, y)),
        ("kendalltau", stats.kendalltau(x, y, variant="b", method="auto")),
    ):
        out[key] = {"statistic": finite_or_none(res.statistic), "p_value": finite_or_none(res.pvalue)}
    return out


def main():
    rng = np.random.default_rng(SEED)
    cases = []

    # Required: ties, n = 5, 11, 30, 200. Two kinds each: Likert integers 1..5 (heavy ties)
    # and a continuous signal rounded to one decimal (light ties).
    for n in (5, 11, 30, 200):
        x = rng.integers(1, 6, n)
        y = np.clip(x + rng.integers(-2, 3, n), 1, 5)
        cases.append(case(f"likert_ties_n{n}", x, y))
        # Half points for the small sizes; redrawn (deterministically) until both vectors tie.
        step = 0.5 if n <= 11 else 0.1
        while True:
            x = np.round(rng.normal(0.0, 1.0, n) / step) * step
            y = np.round((0.5 * x + rng.normal(0.0, 0.6, n)) / step) * step
            if np.unique(x).size < n and np.unique(y).size < n:
                break
        cases.append(case(f"rounded_ties_n{n}", x, y))
    for c in cases:
        # The p-value of a near-perfect rank correlation hangs on the last bit of the statistic;
        # such a case would test rounding, not the distribution.
        assert c["ties_in_x"] and c["ties_in_y"], c["name"]
        assert abs(c["spearmanr"]["statistic"]) < 0.99, c["name"]

    # Judge-like: continuous predictions against half-point expert means (ties in y only).
    n = 30
    h = np.round(rng.uniform(1.0, 5.0, n) * 2.0) / 2.0
    p = h + rng.normal(0.0, 0.7, n)
    cases.append(case("judge_vs_half_point_means_n30", p, h))

    # Anti-correlated with ties, far tail: p-values around 1e-40 and below.
    n = 200
    x = np.round(rng.normal(0.0, 1.0, n), 1)
    y = np.round(-x + rng.normal(0.0, 0.4, n), 1)
    cases.append(case("strong_negative_ties_n200", x, y))

    # No ties: Kendall's exact distribution (n <= 33) ...
    for n in (5, 11, 30):
        x = rng.normal(0.0, 1.0, n)
        y = 0.4 * x + rng.normal(0.0, 1.0, n)
        cases.append(case(f"no_ties_exact_n{n}", x, y))
    # ... the normal approximation without ties (n > 33) ...
    x = rng.normal(0.0, 1.0, 40)
    y = 0.3 * x + rng.normal(0.0, 1.0, 40)
    cases.append(case("no_ties_asymptotic_n40", x, y))
    # ... and the exact one-discordant-pair branch at n > 33 (two neighbours swapped).
    x = np.sort(rng.normal(0.0, 1.0, 60))
    y = x + rng.uniform(0.0, 1e-3, 60)
    y[[10, 11]] = y[[11, 10]]
    cases.append(case("one_discordant_pair_n60", x, y))
    # Pearson's beta with a = b = 1/2 (n = 3).
    cases.append(case("pearson_n3", [0.3, 1.1, 2.0], [1.0, 0.2, 2.5]))

    versions = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}
    doc = {
        "generator": "scripts/make_eval_fixtures.py",
        "seed": SEED,
        "versions": versions,
        "notes": "two-sided p-values; kendalltau variant='b', method='auto'; null = NaN in scipy",
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases) with {versions}")


if __name__ == "__main__":
    main()
