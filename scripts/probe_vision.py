#!/usr/bin/env python3
"""Ridge probe of a judge's pooled video tokens (examples/probe_vision.rs output) against the
experts' mean score per dimension: fit on the train split, Spearman on the test split. Says
whether the information a dimension needs reaches the language model, before any judge training.

    python3 scripts/probe_vision.py FEATURES.jsonl data/sample [--lambda 1.0]
"""
import argparse
import json
import os

import numpy as np
from scipy.stats import spearmanr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("dataset")
    ap.add_argument("--lambda", dest="lam", type=float, default=1.0)
    a = ap.parse_args()
    feats = [json.loads(l) for l in open(a.features)]
    by_id = {f["clip_id"]: f for f in feats}
    means = {}
    for line in open(os.path.join(a.dataset, "manifest.jsonl")):
        r = json.loads(line)
        if r.get("record") != "clip":
            continue
        per = {}
        for ann in r["annotations"]:
            if isinstance(ann["score"], (int, float)):
                per.setdefault(ann["dimension"], []).append(ann["score"])
        means[r["id"]] = {d: float(np.mean(v)) for d, v in per.items()}
    dims = sorted({d for m in means.values() for d in m})
    rows = []
    for d in dims:
        tr = [(by_id[c]["features"], m[d]) for c, m in means.items() if d in m and c in by_id and by_id[c]["split"] == "train"]
        te = [(by_id[c]["features"], m[d]) for c, m in means.items() if d in m and c in by_id and by_id[c]["split"] == "test"]
        if len(tr) < 5 or len(te) < 5:
            continue
        X = np.array([f for f, _ in tr]); y = np.array([v for _, v in tr])
        mu, sd = X.mean(0), X.std(0) + 1e-8
        Xs = (X - mu) / sd
        w = np.linalg.solve(Xs.T @ Xs + a.lam * len(y) * np.eye(X.shape[1]), Xs.T @ (y - y.mean()))
        Xt = (np.array([f for f, _ in te]) - mu) / sd
        pred = Xt @ w + y.mean()
        rho = spearmanr(pred, [v for _, v in te]).statistic
        rows.append((d, len(tr), len(te), rho))
        print(f"{d:22s} train {len(tr):3d} test {len(te):3d} probe SRCC {rho:+.3f}")
    print(f"mean over {len(rows)} dimensions: {np.nanmean([r[3] for r in rows]):+.3f}")


if __name__ == "__main__":
    main()
