"""Paired significance of one experiment against the baseline on the same questions.

Every test looks only at the question ids the two experiments share (``per_item`` in metrics.json). The headline is
the quantity the plots show: the difference in Overall accuracy, the UNWEIGHTED mean over sources, with a seeded paired
bootstrap that resamples questions within each source (``paired_overall``); it is significant when its 95% interval
excludes 0. Per source, McNemar's test on the discordant pairs, its p-values Holm-adjusted for the number of sources.
McNemar over all pooled questions is kept as a labelled secondary number: it weighs sources by their size, so it tests
another quantity than the plotted Overall (MedMCQA is ~half the pooled items of the HuatuoGPT set, a fifth of Overall).
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


def paired_overall(strata: list[np.ndarray], resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """The difference of unweighted-mean-over-sources accuracies from per-source arrays of per-item differences
    (experiment - baseline), with a seeded percentile bootstrap that resamples questions within each source.

    A source of one question has no spread to resample: it enters as a constant. Returns ``(diff, lo, hi)``."""
    strata = [np.asarray(s, dtype=float) for s in strata if len(s)]
    if not strata:
        return float("nan"), float("nan"), float("nan")
    diff = float(np.mean([s.mean() for s in strata]))
    varying = [s for s in strata if len(s) > 1]
    fixed = sum(float(s.mean()) for s in strata if len(s) == 1)
    if not varying or all(np.all(s == s[0]) for s in varying):
        return diff, diff, diff

    def mean_of_means(*samples, axis=-1):
        return (sum(x.mean(axis=axis) for x in samples) + fixed) / len(strata)

    result = stats.bootstrap(tuple(varying), mean_of_means, n_resamples=int(resamples), method="percentile",
                             confidence_level=level, paired=False, vectorized=True, rng=np.random.default_rng(seed))
    return diff, float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[key]))
        adjusted[key] = running
    return {key: adjusted[key] for key in pvalues}


def discordant(exp: np.ndarray, base: np.ndarray) -> tuple[int, int]:
    """(questions only the baseline got right, questions only the experiment got right)."""
    return int(((base == 1) & (exp == 0)).sum()), int(((base == 0) & (exp == 1)).sum())


def paired_comparison(experiment: Mapping[str, int], baseline: Mapping[str, int], *,
                      sources: Mapping[str, str] | None = None, resamples: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> dict:
    """Compare two ``per_item`` maps ({question id: 0|1}) on their shared ids; differences are in accuracy (0-1).

    ``sources`` ({question id: source}, metrics.json ``item_sources``) makes the headline difference the Overall one
    (unweighted mean over sources) and adds per-source McNemar tests; without it every id is one source."""
    shared = sorted(set(experiment) & set(baseline))
    source_of = {i: (sources or {}).get(i, "all") for i in shared}
    exp = {i: int(bool(experiment[i])) for i in shared}
    base = {i: int(bool(baseline[i])) for i in shared}
    by_source: dict[str, list[str]] = {}
    for i in shared:
        by_source.setdefault(source_of[i], []).append(i)
    strata = [np.array([exp[i] - base[i] for i in ids], dtype=float) for ids in by_source.values()]
    diff, lo, hi = paired_overall(strata, resamples=resamples, seed=seed, level=1 - alpha)
    per_source = {}
    for src, ids in by_source.items():
        b, c = discordant(np.array([exp[i] for i in ids]), np.array([base[i] for i in ids]))
        per_source[src] = {"n": len(ids), "base_only_correct": b, "exp_only_correct": c, "p_value": mcnemar(b, c)[1]}
    for src, p in holm({s: v["p_value"] for s, v in per_source.items()}).items():
        per_source[src]["p_holm"] = p
    b, c = discordant(np.array(list(exp.values())), np.array(list(base.values())))
    statistic, pvalue, method = mcnemar(b, c)
    return {"n_paired": len(shared), "paired_diff": diff, "paired_lo": lo, "paired_hi": hi,
            "significant": bool(len(shared) > 0 and (lo > 0 or hi < 0)), "per_source": per_source,
            "base_only_correct": b, "exp_only_correct": c,
            "pooled_test": method, "pooled_statistic": statistic, "pooled_p_value": pvalue}
