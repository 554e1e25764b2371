#!/usr/bin/env python3
"""Golden fixtures for the experiment report's statistics (`actyolo::experiment::stats`):
Welch's unequal-variance t-test as scipy computes it.

Each case holds two samples `a` and `b` (mAP-like values) and scipy's answer:
  - t, p      scipy.stats.ttest_ind(a, b, equal_var=False), two-sided
  - df        its Welch–Satterthwaite degrees of freedom (result.df)
  - diff      mean(a) - mean(b)
  - ci95      diff -/+ scipy.stats.t.ppf(0.975, df) * SE, SE = sqrt(var_a/n_a + var_b/n_b)
              with the sample variances (ddof=1)
  - mean_a, std_a, mean_b, std_b   numpy mean and std(ddof=1) of each sample

Writes tests/fixtures/welch.json.

Rerun (from the repository root), in the reference environment (scipy 1.17):
    /tmp/ref/bin/python tools/gen_welch_fixtures.py
"""

import json
import os

import numpy as np
from scipy import stats

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "welch.json")

CASES = {
    "equal_n": ([0.412, 0.418, 0.409], [0.401, 0.405, 0.398]),
    "unequal_n": ([0.452, 0.447, 0.455, 0.449, 0.451], [0.440, 0.446, 0.437]),
    "unequal_variances": ([0.30, 0.31, 0.29, 0.30], [0.22, 0.36, 0.41, 0.27]),
    "n_2": ([0.5, 0.52], [0.47, 0.48]),
    "negative_difference": ([0.381, 0.379, 0.384], [0.402, 0.397, 0.405, 0.399]),
    "not_significant": ([0.410, 0.425, 0.402], [0.415, 0.408, 0.420]),
    "large_df_many_seeds": (
        [0.40 + 0.003 * np.sin(i) for i in range(12)],
        [0.398 + 0.004 * np.cos(i) for i in range(10)],
    ),
}


def case(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    result = stats.ttest_ind(a, b, equal_var=False)
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    half = stats.t.ppf(0.975, result.df) * se
    return {
        "a": a.tolist(),
        "b": b.tolist(),
        "mean_a": a.mean(),
        "std_a": a.std(ddof=1),
        "mean_b": b.mean(),
        "std_b": b.std(ddof=1),
        "diff": diff,
        "t": float(result.statistic),
        "df": float(result.df),
        "p": float(result.pvalue),
        "ci95": [diff - half, diff + half],
    }


def main():
    cases = {name: case(a, b) for name, (a, b) in CASES.items()}
    with open(OUT, "w") as f:
        json.dump({"scipy": __import__("scipy").__version__, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
