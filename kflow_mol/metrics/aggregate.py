"""Aggregating PM over repeated samples and a test set, as in AssembleFlow's evaluation.

Per cluster the best (minimum) of the repeated samples is kept; over the test set the mean is
reported twice: raw, and after dropping non-finite values and values above ``max_value``
(100 Å). How many clusters were dropped, and why, is part of the result, so a failed
prediction is never silently averaged away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

OUTLIER_THRESHOLD = 100.0


@dataclass
class PMAggregate:
    """Test-set summary of a per-cluster metric.

    Attributes:
        per_cluster: (C,) the minimum over samples of each cluster.
        mean_raw: mean of ``per_cluster`` as is (NaN/inf if any cluster is).
        mean_filtered: mean over finite values <= ``max_value`` (NaN if none is kept).
        n: number of clusters C.
        n_kept: clusters in ``mean_filtered``.
        n_dropped: C - n_kept.
        n_nonfinite: clusters whose value is NaN or inf.
        n_above_threshold: finite clusters above ``max_value``.
        n_nonfinite_samples: non-finite entries among all C x S samples.
        max_value: the outlier threshold used (Å).
    """

    per_cluster: Tensor
    mean_raw: float
    mean_filtered: float
    n: int
    n_kept: int
    n_dropped: int
    n_nonfinite: int
    n_above_threshold: int
    n_nonfinite_samples: int
    max_value: float

    def summary(self) -> dict[str, float | int]:
        """All scalar fields, e.g. for metrics.json."""
        return {k: v for k, v in asdict(self).items() if k != "per_cluster"}


def aggregate_pm(
    values: Tensor, *, max_value: float = OUTLIER_THRESHOLD, skip_nonfinite_samples: bool = False
) -> PMAggregate:
    """Minimum over samples per cluster, then raw and filtered means over clusters.

    Args:
        values: (C, S) metric of C clusters x S repeated samples, or (C,) for one sample.
        max_value: clusters above this (Å) are dropped from the filtered mean.
        skip_nonfinite_samples: if False (default, like a plain minimum), a NaN sample makes
            its cluster NaN; if True the minimum is over the finite samples only (a cluster
            with none stays NaN). Either way ``n_nonfinite_samples`` counts them.

    Returns:
        PMAggregate.
    """
    values = torch.as_tensor(values).detach()
    if values.dim() == 1:
        values = values[:, None]
    if values.dim() != 2 or values.numel() == 0:
        raise ValueError(f"values must be a non-empty (clusters, samples) tensor, got {tuple(values.shape)}")
    values = values.double()
    nonfinite_samples = ~torch.isfinite(values)
    if skip_nonfinite_samples:
        masked = torch.where(nonfinite_samples, torch.full_like(values, float("inf")), values)
        per_cluster = masked.min(dim=1).values
        per_cluster[nonfinite_samples.all(1)] = float("nan")
    else:
        nan_cluster = values.isnan().any(1)
        per_cluster = values.min(dim=1).values
        per_cluster[nan_cluster] = float("nan")
    finite = torch.isfinite(per_cluster)
    above = finite & (per_cluster > max_value)
    kept = finite & ~above
    return PMAggregate(
        per_cluster=per_cluster,
        mean_raw=per_cluster.mean().item(),
        mean_filtered=per_cluster[kept].mean().item() if bool(kept.any()) else float("nan"),
        n=per_cluster.shape[0],
        n_kept=int(kept.sum()),
        n_dropped=int((~kept).sum()),
        n_nonfinite=int((~finite).sum()),
        n_above_threshold=int(above.sum()),
        n_nonfinite_samples=int(nonfinite_samples.sum()),
        max_value=max_value,
    )
