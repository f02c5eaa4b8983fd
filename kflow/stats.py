"""Bootstrap confidence intervals for paired comparisons of two methods on the same items.

Typical use: per-cluster scores of a method ``a`` and a baseline ``b`` on the same test
clusters (each already averaged over seeds and start states). The items are resampled with
replacement, the pairs stay together, and the interval of the statistic over resamples is
reported:

* :func:`paired_difference_ci`: ``mean(a) - mean(b)`` (significant when the CI excludes 0);
* :func:`paired_ratio_ci`: ``mean(a) / mean(b)`` (significant when the CI excludes 1).

Two interval kinds: ``"percentile"`` (quantiles of the resampled statistic) and ``"bca"``
(bias-corrected and accelerated, Efron 1987: corrects the percentile interval for the
median bias of the resamples and, through a jackknife, for a skewed statistic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

METHODS = ("percentile", "bca")


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its bootstrap confidence interval.

    Attributes:
        estimate: the statistic on the original items.
        low: lower end of the interval.
        high: upper end of the interval.
        level: coverage, e.g. 0.95.
        n: number of items.
        method: ``"percentile"`` or ``"bca"``.
        num_resamples: bootstrap resamples drawn.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str
    num_resamples: int

    def excludes(self, value: float) -> bool:
        """True when ``value`` lies outside ``[low, high]`` (the difference is significant)."""
        return value < self.low or value > self.high

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_pairs(a: Sequence[float], b: Sequence[float] | None) -> np.ndarray:
    first = np.asarray(a, dtype=np.float64).reshape(-1)
    if b is None:
        columns = [first]
    else:
        second = np.asarray(b, dtype=np.float64).reshape(-1)
        if second.shape != first.shape:
            raise ValueError(f"paired samples need the same length, got {first.size} and {second.size}")
        columns = [first, second]
    data = np.stack(columns, axis=1)
    if data.shape[0] < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {data.shape[0]}")
    if not np.isfinite(data).all():
        raise ValueError("bootstrap samples must be finite (drop or filter NaN/inf items first)")
    return data


def bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    data: np.ndarray,
    level: float = 0.95,
    num_resamples: int = 10000,
    method: str = "percentile",
    seed: int = 0,
) -> BootstrapCI:
    """Bootstrap interval of ``statistic`` over the rows (items) of ``data``.

    Args:
        statistic: maps a stack of resampled datasets ``(R, n, d)`` to ``(R,)`` values.
        data: items, shape ``(n, d)`` (one row per item, e.g. ``[a_i, b_i]``).
        level: coverage in (0, 1).
        num_resamples: resamples R.
        method: ``"percentile"`` or ``"bca"``.
        seed: seed of the resampling (the interval is reproducible).

    Returns:
        :class:`BootstrapCI`.
    """
    if method not in METHODS:
        raise ValueError(f"bootstrap method must be one of {METHODS}, got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_resamples < 100:
        raise ValueError(f"num_resamples must be >= 100, got {num_resamples}")
    n = data.shape[0]
    estimate = float(statistic(data[None])[0])
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(num_resamples, n))
    resampled = np.sort(statistic(data[index]))
    alpha = (1 - level) / 2
    if method == "percentile":
        low_q, high_q = alpha, 1 - alpha
    else:
        low_q, high_q = _bca_quantiles(statistic, data, resampled, estimate, alpha)
    low, high = np.quantile(resampled, [low_q, high_q])
    return BootstrapCI(estimate, float(low), float(high), level, n, method, num_resamples)


def _bca_quantiles(
    statistic, data: np.ndarray, resampled: np.ndarray, estimate: float, alpha: float
) -> tuple[float, float]:
    """Adjusted quantile levels of the BCa interval."""
    normal = NormalDist()
    below = (np.sum(resampled < estimate) + 0.5 * np.sum(resampled == estimate)) / resampled.size
    if below <= 0 or below >= 1:  # every resample on one side: no correction is possible
        return alpha, 1 - alpha
    z0 = normal.inv_cdf(float(below))
    n = data.shape[0]
    leave_one_out = np.stack([np.delete(data, i, axis=0) for i in range(n)])
    jackknife = statistic(leave_one_out)
    spread = jackknife.mean() - jackknife
    denominator = 6.0 * float(np.sum(spread**2)) ** 1.5
    acceleration = float(np.sum(spread**3)) / denominator if denominator > 0 else 0.0

    def adjusted(q: float) -> float:
        z = normal.inv_cdf(q)
        shifted = z0 + (z0 + z) / (1 - acceleration * (z0 + z))
        return min(max(normal.cdf(shifted), 0.0), 1.0)

    return adjusted(alpha), adjusted(1 - alpha)


def mean_ci(values: Sequence[float], **options: Any) -> BootstrapCI:
    """Bootstrap interval of the mean of ``values`` (shape ``(n,)``).

    ``options`` are :func:`bootstrap_ci`'s (``level``, ``num_resamples``, ``method``, ``seed``),
    whose defaults hold here too (as in :func:`paired_difference_ci` and :func:`paired_ratio_ci`).
    """
    return bootstrap_ci(lambda d: d[..., 0].mean(-1), _as_pairs(values, None), **options)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], **options: Any) -> BootstrapCI:
    """Interval of ``mean(a) - mean(b)`` over paired items (``a[i]`` and ``b[i]`` share item i).

    Args:
        a: scores of the method, shape ``(n,)``.
        b: scores of the baseline on the same items, shape ``(n,)``.
        **options: :func:`bootstrap_ci`'s ``level``, ``num_resamples``, ``method``, ``seed``.
    """
    return bootstrap_ci(lambda d: (d[..., 0] - d[..., 1]).mean(-1), _as_pairs(a, b), **options)


def paired_ratio_ci(a: Sequence[float], b: Sequence[float], **options: Any) -> BootstrapCI:
    """Interval of the ratio of means ``mean(a) / mean(b)`` over paired items.

    The ratio of means (not the mean of per-item ratios) is the ratio of the two reported
    averages, and is not dominated by items where ``b`` is small. ``options`` as in
    :func:`paired_difference_ci`.
    """
    data = _as_pairs(a, b)
    if not (data[:, 1] > 0).all():
        raise ValueError("paired_ratio_ci needs a positive baseline b on every item")

    def ratio(d: np.ndarray) -> np.ndarray:
        return d[..., 0].mean(-1) / d[..., 1].mean(-1)

    return bootstrap_ci(ratio, data, **options)


def format_ci(ci: BootstrapCI, reference: float, digits: int = 3) -> str:
    """``"est [low, high]"`` with a ``*`` when the interval excludes ``reference``."""
    mark = "*" if ci.excludes(reference) else ""
    return f"{ci.estimate:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]{mark}"
