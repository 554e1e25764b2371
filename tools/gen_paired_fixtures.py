#!/usr/bin/env python3
"""Golden fixtures for the paired statistics of `actyolo::experiment::stats`:

  - paired   scipy.stats.ttest_rel(a, b): t, p (two-sided), df; diff = mean(a - b) and
             ci95 = diff -/+ scipy.stats.t.ppf(0.975, n - 1) * std(a - b, ddof=1) / sqrt(n)
  - wilcoxon scipy.stats.wilcoxon(a, b, method='exact').pvalue (two-sided), for cases
             without zero or tied differences
  - holm     statsmodels.stats.multitest.multipletests(p, method='holm')[1]

Writes tests/fixtures/paired.json.

Rerun (from the repository root), in the reference environment (scipy 1.17,
statsmodels 0.15):
    /tmp/ref/bin/python tools/gen_paired_fixtures.py
"""

import json
import os

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "paired.json")

# Per-seed mAP50-95 in points of an activation (a) and the baseline (b), seed by seed.
PAIRED = {
    "n2": ([41.2, 44.8], [40.1, 43.0]),
    "n3_consistent": ([41.2, 38.9, 44.1], [40.1, 37.5, 43.2]),
    "n3_mixed": ([41.2, 38.9, 44.1], [40.1, 39.5, 43.2]),
    "n5_negative": ([30.1, 28.7, 33.0, 31.2, 29.9], [34.2, 33.1, 35.9, 34.0, 33.6]),
    "n8": ([47.1, 29.3, 45.2, 38.8, 41.0, 36.6, 44.4, 40.2], [16.2, 17.4, 20.1, 15.5, 18.9, 14.8, 19.3, 17.7]),
    "n12_small_effect": (
        [40 + 2 * np.sin(i) + 0.3 for i in range(12)],
        [40 + 2 * np.sin(i) + 0.25 * np.cos(3 * i) for i in range(12)],
    ),
}

HOLM = {
    "three": [0.01, 0.04, 0.03],
    "with_large": [0.2, 0.001, 0.6, 0.04],
    "one": [0.03],
    "cap": [0.5, 0.6, 0.4],
}


def paired_case(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    r = stats.ttest_rel(a, b)
    d = a - b
    n = len(d)
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
    return {
        "a": a.tolist(),
        "b": b.tolist(),
        "diff": d.mean(),
        "ci95": [d.mean() - half, d.mean() + half],
        "t": float(r.statistic),
        "df": float(r.df),
        "p": float(r.pvalue),
        "wilcoxon_p": float(stats.wilcoxon(a, b, method="exact").pvalue),
    }


def main():
    fixture = {
        "provenance": "tools/gen_paired_fixtures.py, scipy "
        + __import__("scipy").__version__
        + ", statsmodels "
        + __import__("statsmodels").__version__,
        "paired": {name: paired_case(a, b) for name, (a, b) in PAIRED.items()},
        "holm": {
            name: {"p": p, "adjusted": multipletests(p, method="holm")[1].tolist()}
            for name, p in HOLM.items()
        },
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
