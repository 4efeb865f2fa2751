"""McNemar and the paired bootstrap against statsmodels / scipy on known tables."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from meds1.plots.stats import (CHI2_CORRECTED, EXACT_BINOMIAL, holm, mcnemar, paired_bootstrap, paired_comparison,
                               paired_overall)


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (1, 6), (3, 3), (0, 10), (7, 17), (12, 12)])
def test_exact_mcnemar_matches_statsmodels(b, c):
    expected = sm_mcnemar([[10, b], [c, 10]], exact=True)
    statistic, pvalue, method = mcnemar(b, c, exact=True)
    assert method == EXACT_BINOMIAL
    assert (statistic, pvalue) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)


@pytest.mark.parametrize("b, c", [(121, 59), (5, 25), (30, 31), (2, 40), (100, 60)])
def test_chi_square_mcnemar_matches_statsmodels(b, c):
    expected = sm_mcnemar([[10, b], [c, 10]], exact=False, correction=True)
    statistic, pvalue, method = mcnemar(b, c, exact=False)
    assert method == CHI2_CORRECTED
    assert (statistic, pvalue) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)


def test_known_values():
    assert mcnemar(1, 6)[1] == pytest.approx(16 / 128)  # 2 * P(X <= 1), X ~ Bin(7, 1/2)
    assert mcnemar(121, 59)[0] == pytest.approx(61 ** 2 / 180)  # Wikipedia's worked example, with correction
    assert mcnemar(0, 0) == (0.0, 1.0, EXACT_BINOMIAL)


def test_automatic_choice_uses_exact_below_25_discordant_pairs():
    assert mcnemar(12, 12)[2] == EXACT_BINOMIAL and mcnemar(13, 12)[2] == CHI2_CORRECTED


def test_equal_discordant_counts_give_no_evidence_with_chi_square():
    # statsmodels reports (0 - 1)^2 / n here; the continuity correction never pushes past zero.
    assert mcnemar(40, 40, exact=False) == (0.0, 1.0, CHI2_CORRECTED)


def test_negative_counts_are_rejected():
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


@pytest.fixture(scope="module")
def paired_arrays():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, 400)
    better = np.where(rng.random(400) < 0.15, 1, base)  # the experiment fixes ~15% of items
    return better, base


def test_paired_bootstrap_matches_scipy_paired_resampling(paired_arrays):
    a, b = paired_arrays
    diff, lo, hi = paired_bootstrap(a, b, resamples=2000, seed=11)
    expected = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True,
                               vectorized=True, n_resamples=2000, method="percentile",
                               rng=np.random.default_rng(11)).confidence_interval
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (lo, hi) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_paired_bootstrap_is_seeded_and_close_to_the_normal_interval(paired_arrays):
    a, b = paired_arrays
    first, again, other = (paired_bootstrap(a, b, 2000, seed) for seed in (5, 5, 6))
    assert first == again and first != other
    diff, lo, hi = first
    half_width = 1.96 * (a - b).std(ddof=1) / np.sqrt(len(a))
    assert lo < diff < hi
    assert (hi - lo) / 2 == pytest.approx(half_width, rel=0.15)


def test_paired_bootstrap_edge_cases():
    assert all(np.isnan(paired_bootstrap([], [])))
    assert paired_bootstrap([1], [0]) == (1.0, 1.0, 1.0)
    assert paired_bootstrap([1, 1, 1], [1, 1, 1]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])


def test_paired_comparison_uses_only_shared_ids():
    experiment = {"q1": 1, "q2": 1, "q3": 0, "q4": 1, "extra": 1}
    baseline = {"q1": 1, "q2": 0, "q3": 1, "q4": 0, "other": 0}
    result = paired_comparison(experiment, baseline, resamples=200, seed=0)
    assert result["n_paired"] == 4
    assert (result["base_only_correct"], result["exp_only_correct"]) == (1, 2)
    assert result["paired_diff"] == pytest.approx(0.25)
    assert result["pooled_p_value"] == pytest.approx(1.0) and result["significant"] is False
    assert result["per_source"] == {"all": {"n": 4, "base_only_correct": 1, "exp_only_correct": 2, "p_value": 1.0,
                                            "p_holm": 1.0}}


def test_paired_overall_is_the_difference_of_unweighted_means_resampled_within_sources():
    rng = np.random.default_rng(0)
    big, small = rng.integers(-1, 2, 300), rng.integers(-1, 2, 30)
    diff, lo, hi = paired_overall([big, small], resamples=2000, seed=4)
    assert diff == pytest.approx((big.mean() + small.mean()) / 2)       # not the pooled mean
    expected = stats.bootstrap((big, small), lambda a, b, axis=-1: (a.mean(axis) + b.mean(axis)) / 2,
                               paired=False, vectorized=True, n_resamples=2000, method="percentile",
                               rng=np.random.default_rng(4)).confidence_interval
    assert (lo, hi) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert paired_overall([np.array([1.0]), np.array([0.0, 0.0])]) == (0.5, 0.5, 0.5)  # no spread: a point


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    pvalues = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.2}
    expected = multipletests(list(pvalues.values()), method="holm")[1]
    assert list(holm(pvalues).values()) == pytest.approx(list(expected))


def test_per_source_tests_with_sources():
    experiment = {f"s{i}": 1 for i in range(10)} | {f"t{i}": 0 for i in range(5)}
    baseline = {f"s{i}": 0 for i in range(10)} | {f"t{i}": 0 for i in range(5)}
    sources = {i: i[0] for i in experiment}
    result = paired_comparison(experiment, baseline, sources=sources, resamples=200, seed=0)
    assert result["paired_diff"] == pytest.approx((1.0 + 0.0) / 2)
    assert result["per_source"]["s"]["p_value"] == pytest.approx(2 / 1024)
    assert result["per_source"]["s"]["p_holm"] == pytest.approx(4 / 1024)  # two sources
    assert result["per_source"]["t"]["p_holm"] == 1.0
