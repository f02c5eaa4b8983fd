"""ChannelGroupTransform: the base transform's coefficients, bands repeated per channel group."""

import pytest
import torch

from kflow.path import KAmplitudePath
from kflow.testing import assert_round_trip
from kflow.transforms import GraphSpectralTransform
from kflow.transforms.channel_groups import ChannelGroupTransform


def test_bands_of_later_groups_come_after_every_band_of_earlier_ones():
    base = GraphSpectralTransform(3)
    points = torch.randn(2, 9, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    context = base.basis(points)
    grouped = ChannelGroupTransform(base, (3, 3))
    assert grouped.num_bands == 6
    bands = grouped.band_index_for(context)
    assert bands.shape == (2, 9, 6)
    torch.testing.assert_close(bands[..., :3], context.band_index.expand(2, 9, 3))
    torch.testing.assert_close(bands[..., 3:], context.band_index.expand(2, 9, 3) + 3)
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    assert_round_trip(grouped, x, context)


def test_path_moves_group_zero_then_group_one():
    base = GraphSpectralTransform(2)
    points = torch.randn(1, 7, 3, generator=torch.Generator().manual_seed(1))
    context = base.basis(points)
    path = KAmplitudePath(ChannelGroupTransform(base, (2, 1)))
    x1 = torch.randn(1, 7, 3)
    early = path.sample(torch.zeros_like(x1), x1, torch.tensor([1.5]), context)
    assert early.dx_k[..., 2:].abs().max() == 0
    late = path.sample(torch.zeros_like(x1), x1, torch.tensor([2.5]), context)
    torch.testing.assert_close(late.x_k[..., :2], x1[..., :2], atol=1e-5, rtol=0)
    assert late.dx_k[..., :2].abs().max() < 1e-6


def test_rejects_bad_groups_and_channel_counts():
    with pytest.raises(ValueError, match="group sizes"):
        ChannelGroupTransform(GraphSpectralTransform(2), (3, 0))
    grouped = ChannelGroupTransform(GraphSpectralTransform(2), (3, 3))
    with pytest.raises(ValueError, match="expected 6 channels"):
        grouped.forward(torch.zeros(1, 4, 5))
