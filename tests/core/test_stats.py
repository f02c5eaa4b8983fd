"""Bootstrap confidence intervals on hand-made cases with known answers."""

import numpy as np
import pytest

from kflow.stats import (
    BootstrapCI,
    format_ci,
    mean_ci,
    paired_difference_ci,
    paired_ratio_ci,
)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_constant_difference_gives_a_point_interval(method):
    b = np.array([3.0, 5.0, 4.0, 7.5, 6.0])
    ci = paired_difference_ci(b - 0.25, b, method=method, num_resamples=2000)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((-0.25, -0.25, -0.25), abs=1e-12)
    assert ci.excludes(0.0) and not ci.excludes(-0.25)


def test_percentile_interval_of_a_discrete_case_is_exact():
    """Differences [0, 0, 0, 4]: the resampled mean is 4 X / 4 = X with X ~ Binomial(4, 1/4).

    P(X <= 0) = 0.316 > 0.025, so the 2.5% quantile is 0; P(X <= 2) = 0.949 < 0.975 <= P(X <= 3)
    = 0.996, so the 97.5% quantile is 3. The paired difference of means is 1.
    """
    a = np.array([1.0, 2.0, 3.0, 8.0])
    b = np.array([1.0, 2.0, 3.0, 4.0])
    ci = paired_difference_ci(a, b, num_resamples=20000, seed=1)
    assert (ci.estimate, ci.low, ci.high) == (1.0, 0.0, 3.0)
    assert not ci.excludes(0.0) and ci.n == 4


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_mean_interval_matches_the_normal_approximation(method):
    """0..99: mean 49.5, bootstrap standard error sqrt(833.25 / 100) = 2.8866 -> 49.5 -/+ 5.66."""
    ci = mean_ci(np.arange(100.0), num_resamples=20000, method=method)
    assert ci.estimate == 49.5
    assert ci.low == pytest.approx(49.5 - 1.96 * 2.8866, abs=0.2)
    assert ci.high == pytest.approx(49.5 + 1.96 * 2.8866, abs=0.2)


def test_ratio_of_proportional_scores_is_exact():
    b = np.array([4.0, 6.0, 5.5, 7.0, 3.5, 9.0])
    ci = paired_ratio_ci(0.8 * b, b, num_resamples=1000)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((0.8, 0.8, 0.8), rel=1e-12)
    assert format_ci(ci, 1.0) == "0.800 [0.800, 0.800]*"


def test_ratio_is_a_ratio_of_means():
    a, b = np.array([1.0, 3.0]), np.array([2.0, 2.0])
    ci = paired_ratio_ci(a, b, num_resamples=4000)
    # resamples: {1,1} -> 0.5, {1,3} -> 1.0 (twice), {3,3} -> 1.5; estimate (1 + 3) / (2 + 2) = 1
    assert ci.estimate == 1.0 and (ci.low, ci.high) == (0.5, 1.5)


def test_bca_corrects_a_skewed_statistic():
    """Exponential data: the BCa interval of the mean is shifted right of the percentile one."""
    data = np.random.default_rng(0).exponential(size=40)
    percentile = mean_ci(data, method="percentile", num_resamples=20000)
    bca = mean_ci(data, method="bca", num_resamples=20000)
    assert bca.low > percentile.low and bca.high > percentile.high


def test_reproducible_and_bad_input_rejected():
    a, b = [1.0, 2.0, 4.0], [1.5, 2.0, 3.0]
    assert paired_difference_ci(a, b, seed=3) == paired_difference_ci(a, b, seed=3)
    assert isinstance(paired_difference_ci(a, b), BootstrapCI)
    with pytest.raises(ValueError, match="same length"):
        paired_difference_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_difference_ci([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="method"):
        paired_difference_ci(a, b, method="basic")
    with pytest.raises(ValueError, match="positive baseline"):
        paired_ratio_ci(a, [1.0, 0.0, 1.0])
