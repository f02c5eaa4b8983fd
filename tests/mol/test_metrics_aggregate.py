import math

import pytest
import torch

from kflow_mol.metrics import aggregate_pm

NAN, INF = float("nan"), float("inf")
VALUES = torch.tensor([[1.0, 2.0, 3.0], [5.0, NAN, 4.0], [200.0, 150.0, 300.0], [INF, 2.0, INF]])


def test_min_over_samples_then_raw_and_filtered_means():
    result = aggregate_pm(VALUES)
    assert result.per_cluster[[0, 2, 3]].tolist() == [1.0, 150.0, 2.0]
    assert math.isnan(result.per_cluster[1].item())  # a NaN sample is not silently skipped
    assert math.isnan(result.mean_raw)
    assert result.mean_filtered == pytest.approx(1.5)
    assert (result.n, result.n_kept, result.n_dropped) == (4, 2, 2)
    assert (result.n_nonfinite, result.n_above_threshold, result.n_nonfinite_samples) == (1, 1, 3)
    assert result.summary()["n_dropped"] == 2


def test_skipping_nonfinite_samples_is_explicit():
    result = aggregate_pm(VALUES, skip_nonfinite_samples=True)
    assert result.per_cluster.tolist() == [1.0, 4.0, 150.0, 2.0]
    assert result.mean_raw == pytest.approx((1 + 4 + 150 + 2) / 4)
    assert result.mean_filtered == pytest.approx(7 / 3)
    assert result.n_nonfinite_samples == 3 and result.n_dropped == 1


def test_single_sample_and_bad_shape():
    assert aggregate_pm(torch.tensor([1.0, 3.0])).mean_raw == pytest.approx(2.0)
    with pytest.raises(ValueError, match="clusters, samples"):
        aggregate_pm(torch.zeros(2, 2, 2))
