"""Pairwise noise splitting: band swapping is exact, and the pair distances follow the shared bands."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kflow.path import KAmplitudePath
from kflow.transforms import FourierTransform
from kflow_image.classifier import PixelFeatures
from kflow_image.steering import noise_split_distances, noise_split_summary, swap_bands

SHAPE = (1, 8, 8)


class StandStill(nn.Module):
    """Zero velocity: every sample is its (clamped) source noise, so distances are known in closed form."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward_with_cfg(self, x, s, y, cfg_scale):
        return torch.zeros_like(x)


@pytest.fixture
def path():
    return KAmplitudePath(FourierTransform(SHAPE, num_bands=2))


def test_swap_bands_takes_exactly_the_chosen_band(path):
    transform = path.transform
    a, b = torch.randn(2, 5, *SHAPE, generator=torch.Generator().manual_seed(0))
    mixed = transform.forward(swap_bands(a, b, transform, [0]))
    low = (transform.band_index_for(None) == 0).expand_as(mixed)
    torch.testing.assert_close(mixed[low], transform.forward(a)[low], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[~low], transform.forward(b)[~low], atol=1e-5, rtol=0)


def test_pairs_sharing_a_band_are_closer_by_the_unshared_fraction(path):
    """Without clamping, E|x - y|² over pairs sharing band 0 is 2·n_high; independent pairs 2·n."""
    distances = noise_split_distances(StandStill(), path, _Identity(), 400, SHAPE, num_classes=10, codec=_Shrink())
    n_low = int((path.transform.band_index_for(None) == 0).sum())
    n = math.prod(SHAPE)
    summary = noise_split_summary(distances)
    assert summary["share_low_ratio"] == pytest.approx(math.sqrt((n - n_low) / n), rel=0.08)
    assert summary["share_high_ratio"] == pytest.approx(math.sqrt(n_low / n), rel=0.15)
    ci = summary["share_low_ratio_ci"]
    assert ci["low"] <= summary["share_low_ratio"] <= ci["high"] < 1.0
    assert set(distances) == {"share_low", "share_high", "independent"}
    assert all(d.shape == (400,) for d in distances.values())


def test_summary_of_known_distances():
    independent = torch.linspace(1.0, 2.0, 50)
    summary = noise_split_summary({"share_low": independent / 2, "share_high": independent, "independent": independent})
    assert summary["share_low_ratio"] == pytest.approx(0.5)
    assert summary["share_low_ratio_ci"]["low"] == pytest.approx(0.5)
    assert summary["share_high_ratio"] == pytest.approx(1.0)
    assert summary["mean_independent"] == pytest.approx(1.5)


def test_lfm_has_no_band_to_share():
    one_band = KAmplitudePath(FourierTransform(SHAPE, num_bands=1))
    with pytest.raises(ValueError, match="split=1 must be in 1..0"):
        noise_split_distances(StandStill(), one_band, PixelFeatures(), 4, SHAPE)


class _Identity:
    def features(self, images):
        return images.flatten(1).double()


class _Shrink:
    """Decodes by scaling by 0.05, so the standing-still samples stay inside [-1, 1] (generate clamps)."""

    name = "shrink"

    def decode(self, x):
        return 0.05 * x
