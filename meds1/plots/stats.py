"""Paired significance of one experiment against the baseline on the same questions.

Both tests look only at the question ids the two experiments share (``per_item`` in metrics.json): McNemar's test on the
discordant pairs, and a seeded paired bootstrap of the accuracy difference.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import stats

# Below this many discordant pairs the chi-square approximation is poor; the exact binomial test is used instead
# (the usual rule of thumb, e.g. in statsmodels' and R's documentation).
EXACT_BELOW_DISCORDANT = 25
EXACT_BINOMIAL = "exact-binomial"
CHI2_CORRECTED = "chi2-continuity-corrected"


def mcnemar(b: int, c: int, exact: bool | None = None) -> tuple[float, float, str]:
    """McNemar's test on the discordant counts ``b`` (only the first is right) and ``c`` (only the second is right).

    ``exact=None`` picks the exact binomial test when ``b + c < 25`` and the chi-square test with continuity correction
    otherwise. Returns ``(statistic, pvalue, method)``; the exact statistic is ``min(b, c)`` as in statsmodels.
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if exact is None:
        exact = n < EXACT_BELOW_DISCORDANT
    if exact:
        if n == 0:  # no discordant pair: no evidence of any difference
            return 0.0, 1.0, EXACT_BINOMIAL
        return float(min(b, c)), float(stats.binomtest(min(b, c), n, 0.5).pvalue), EXACT_BINOMIAL
    if n == 0:
        return 0.0, 1.0, CHI2_CORRECTED
    # Edwards' correction; the max() keeps b == c at statistic 0 (p = 1) instead of a spurious 1 / n.
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    return float(statistic), float(stats.chi2.sf(statistic, df=1)), CHI2_CORRECTED


def paired_bootstrap(a, b, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Accuracy difference ``mean(a) - mean(b)`` over paired items, with a seeded percentile bootstrap CI.

    Resampling the per-item differences is the paired bootstrap: each resample draws whole questions, keeping the two
    answers to a question together. Returns ``(diff, lo, hi)``; NaNs when there is no item.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arrays must be 1-D and of equal length, got {a.shape} and {b.shape}")
    differences = a - b
    if differences.size == 0:
        return float("nan"), float("nan"), float("nan")
    diff = float(differences.mean())
    if differences.size == 1:  # scipy needs two observations; one item has no sampling spread to show
        return diff, diff, diff
    result = stats.bootstrap((differences,), np.mean, n_resamples=int(resamples), confidence_level=level,
                             method="percentile", rng=np.random.default_rng(seed))
    return diff, float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_comparison(experiment: Mapping[str, int], baseline: Mapping[str, int], *,
                      resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Compare two ``per_item`` maps ({question id: 0|1}) on their shared ids; differences are in accuracy (0-1)."""
    shared = sorted(set(experiment) & set(baseline))
    exp = np.array([int(bool(experiment[i])) for i in shared], dtype=int)
    base = np.array([int(bool(baseline[i])) for i in shared], dtype=int)
    base_only = int(((base == 1) & (exp == 0)).sum())
    exp_only = int(((base == 0) & (exp == 1)).sum())
    statistic, pvalue, method = mcnemar(base_only, exp_only)
    diff, lo, hi = paired_bootstrap(exp, base, resamples=resamples, seed=seed)
    return {"n_paired": len(shared), "base_only_correct": base_only, "exp_only_correct": exp_only,
            "test": method, "statistic": statistic, "p_value": pvalue,
            "paired_diff": diff, "paired_lo": lo, "paired_hi": hi,
            "significant": bool(len(shared) > 0 and pvalue < alpha)}
