#!/usr/bin/env python3
"""Generate parity fixtures for crates/evalverse-data/src/agreement.rs.

Reference outputs come from scipy.stats (pearsonr, spearmanr, kendalltau variant 'b')
and the PyPI `krippendorff` package (alpha at interval/ordinal/nominal level); the
leave-one-rater-out numbers are computed here from the definition with scipy's spearmanr.

Usage (from the repository root):
    python3 -m venv /work/venv-agree && /work/venv-agree/bin/pip install numpy scipy krippendorff
    /work/venv-agree/bin/python scripts/make_agreement_fixtures.py
"""

import importlib.metadata
import json
import math
import platform
from pathlib import Path

import krippendorff
import numpy as np
import scipy
from scipy import stats

SEED = 20240611
OUT = Path(__file__).resolve().parent.parent / "crates/evalverse-data/tests/fixtures/agreement.json"


def finite_or_none(v):
    """JSON has no NaN: undefined statistics are written as null (Rust's None)."""
    v = float(v)
    return v if math.isfinite(v) else None


def correlations(name, x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return {
        "name": name,
        "x": x.tolist(),
        "y": y.tolist(),
        "pearson": finite_or_none(stats.pearsonr(x, y).statistic),
        "spearman": finite_or_none(stats.spearmanr(x, y).statistic),
        "kendall_tau_b": finite_or_none(stats.kendalltau(x, y, variant="b").statistic),
    }


def rated_scores(rng, n_units, n_raters, noise, missing_rate, lo=1, hi=5):
    """Integer scores lo..hi: a per-unit latent quality plus per-rater noise, rounded and clipped."""
    latent = rng.uniform(lo, hi, size=(n_units, 1))
    bias = rng.normal(0.0, 0.3, size=(1, n_raters))
    scores = np.clip(np.rint(latent + bias + rng.normal(0.0, noise, size=(n_units, n_raters))), lo, hi)
    mask = rng.random((n_units, n_raters)) < missing_rate
    scores[mask] = np.nan
    return scores


def to_json_matrix(m):
    return [[None if math.isnan(v) else float(v) for v in row] for row in m]


def loro_reference(m):
    """Leave-one-rater-out Spearman, straight from the definition in agreement.rs."""
    n_units, n_raters = m.shape
    per_rater = []
    for r in range(n_raters):
        xs, ys = [], []
        for u in range(n_units):
            if math.isnan(m[u, r]):
                continue
            others = np.delete(m[u], r)
            others = others[~np.isnan(others)]
            if others.size == 0:
                continue
            xs.append(m[u, r])
            ys.append(others.mean())
        if len(xs) < 2:
            per_rater.append(None)
            continue
        per_rater.append(finite_or_none(stats.spearmanr(xs, ys).statistic))
    present = [v for v in per_rater if v is not None]
    return {"per_rater": per_rater, "mean": float(np.mean(present)) if present else None}


def alpha_case(name, m):
    """`m` is units x raters with NaN for missing; `krippendorff` wants raters x units."""
    reliability = m.T
    case = {"name": name, "data": to_json_matrix(m)}
    for level in ("interval", "ordinal", "nominal"):
        case[level] = finite_or_none(krippendorff.alpha(reliability_data=reliability, level_of_measurement=level))
    case["loro"] = loro_reference(m)
    return case


def main():
    rng = np.random.default_rng(SEED)

    corr = []
    # Continuous values rounded to one decimal so that ties occur in both vectors.
    x = np.round(rng.normal(0.0, 1.0, 30), 1)
    y = np.round(0.6 * x + rng.normal(0.0, 0.8, 30), 1)
    corr.append(correlations("continuous_rounded_n30", x, y))
    # Likert-like integers 1..5: heavy ties.
    x = rng.integers(1, 6, 40)
    y = np.clip(x + rng.integers(-1, 2, 40), 1, 5)
    corr.append(correlations("likert_1_5_n40", x, y))
    # Anti-correlated, with ties only in x.
    x = np.round(rng.uniform(0.0, 10.0, 25))
    y = -x + rng.normal(0.0, 2.0, 25)
    corr.append(correlations("anticorrelated_ties_in_x_n25", x, y))
    # Larger n to exercise the O(n log n) Kendall merge sort past small-input fast paths.
    x = np.round(rng.normal(0.0, 1.0, 500), 1)
    y = np.round(np.sin(x) + rng.normal(0.0, 0.5, 500), 1)
    corr.append(correlations("nonlinear_rounded_n500", x, y))
    # Weak association, no ties at all.
    x = rng.normal(0.0, 1.0, 35)
    y = 0.1 * x + rng.normal(0.0, 1.0, 35)
    corr.append(correlations("weak_no_ties_n35", x, y))

    alpha = []
    alpha.append(alpha_case("likert_4raters_25units_missing", rated_scores(rng, 25, 4, 0.6, 0.15)))
    alpha.append(alpha_case("likert_5raters_40units_missing", rated_scores(rng, 40, 5, 0.9, 0.25)))
    alpha.append(alpha_case("likert_4raters_30units_noisy", rated_scores(rng, 30, 4, 1.5, 0.1)))
    # Heavy missingness: some units end up with a single value (not pairable) or none.
    alpha.append(alpha_case("likert_5raters_20units_sparse", rated_scores(rng, 20, 5, 0.7, 0.6)))
    # Non-integer scores (half points), to check the value domain is not assumed to be 1..5.
    m = np.round(rated_scores(rng, 30, 4, 0.8, 0.2) * 2.0 + rng.integers(-1, 2, (30, 4))) / 2.0
    alpha.append(alpha_case("half_points_4raters_30units", m))

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "krippendorff": importlib.metadata.version("krippendorff"),
    }
    doc = {
        "generator": "scripts/make_agreement_fixtures.py",
        "seed": SEED,
        "versions": versions,
        "notes": "alpha data is units x raters, null = missing; null statistics are undefined (NaN in the reference)",
        "correlation_cases": corr,
        "alpha_cases": alpha,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT} ({len(corr)} correlation cases, {len(alpha)} alpha cases) with {versions}")


if __name__ == "__main__":
    main()
