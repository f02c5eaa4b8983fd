"""k sampling and the flow-matching loss."""

import pytest
import torch

from kflow.loss import flow_matching_loss, sample_k
from kflow.path import KAmplitudePath
from kflow.transforms.matrix import MatrixTransform


def test_uniform_k_covers_the_interval():
    k = sample_k(20000, 3, generator=torch.Generator().manual_seed(0))
    assert k.min() >= 0 and k.max() < 3
    counts = torch.bincount(k.floor().long(), minlength=3).float() / k.numel()
    torch.testing.assert_close(counts, torch.full((3,), 1 / 3), atol=0.02, rtol=0)


def test_weighted_k_follows_band_probs():
    k = sample_k(20000, 3, band_probs=[0.0, 1.0, 3.0], generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(k.floor().long(), minlength=3).float() / k.numel()
    torch.testing.assert_close(counts, torch.tensor([0.0, 0.25, 0.75]), atol=0.02, rtol=0)


@pytest.mark.parametrize("probs", [[1.0, 2.0], [-1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
def test_bad_band_probs_are_rejected(probs):
    with pytest.raises(ValueError):
        sample_k(4, 3, band_probs=probs)


def _setup():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    transform = MatrixTransform(q, torch.tensor([0, 0, 1, 1, 2, 2]), (6,))
    path = KAmplitudePath(transform)
    x0, x1 = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    return transform, path, path.sample(x0, x1, torch.tensor([0.5, 1.5, 2.5, 0.1], dtype=torch.float64))


def test_loss_is_mse_and_zero_at_the_target():
    _, path, sample = _setup()
    assert flow_matching_loss(sample.dx_k, sample) == 0
    pred = sample.dx_k + 1.0
    assert flow_matching_loss(pred, sample).item() == pytest.approx(1.0)


def test_current_band_loss_ignores_other_bands():
    transform, path, sample = _setup()
    off_band = torch.zeros(4, 6, dtype=torch.float64)
    for i, b in enumerate(sample.band.tolist()):
        off_band[i, transform.band_index != b] = 1.0
    pred = sample.dx_k + transform.inverse(off_band)
    assert flow_matching_loss(pred, sample, path, current_band_only=True).item() == pytest.approx(0.0, abs=1e-24)
    assert flow_matching_loss(pred, sample).item() == pytest.approx(4 / 6)
    on_band = torch.zeros(4, 6, dtype=torch.float64)
    for i, b in enumerate(sample.band.tolist()):
        on_band[i, transform.band_index == b] = 2.0
    pred = sample.dx_k + transform.inverse(on_band)
    assert flow_matching_loss(pred, sample, path, current_band_only=True).item() == pytest.approx(4.0)
