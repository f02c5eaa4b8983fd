"""Bands of a base transform, split further by groups of feature channels, earlier groups first.

Per-node features often mix quantities of different scale or difficulty, e.g. a rigid body's
translation (channels 0-2) and rotation (channels 3-5). ``ChannelGroupTransform`` keeps the
base transform's coefficients (it maps the same way) but gives coefficient ``(band b,
channel group g)`` the band ``g * K_base + b``: every band of group 0 moves before any band of
group 1. With a graph-spectral base this moves all translations, coarse to fine, then all
rotations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kflow.transforms.base import KTransform


class ChannelGroupTransform(KTransform):
    """A base transform whose bands are repeated once per group of the last (channel) axis.

    Args:
        base: the transform; its band index must broadcast over the channel axis (size 1 there).
        group_sizes: channels per group, in order of travel; they sum to the channel count.
    """

    def __init__(self, base: KTransform, group_sizes: Sequence[int]):
        if not group_sizes or any(int(size) < 1 for size in group_sizes):
            raise ValueError(f"ChannelGroupTransform: group sizes must be >= 1, got {list(group_sizes)}")
        self.base = base
        self.group_sizes = tuple(int(size) for size in group_sizes)
        self.num_bands = base.num_bands * len(self.group_sizes)
        self._group_of_channel = torch.repeat_interleave(
            torch.arange(len(self.group_sizes)), torch.tensor(self.group_sizes)
        )

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """The base transform's coefficients, shape ``(B, *coeff_shape)`` (channels last)."""
        self._check_channels(x)
        return self.base.forward(x, context)

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """The base transform's inverse."""
        self._check_channels(coeffs)
        return self.base.inverse(coeffs, context)

    @property
    def band_index(self) -> torch.LongTensor:
        return self._split(self.base.band_index)

    def band_index_for(self, context: Any = None) -> torch.LongTensor:
        """The base bands offset by ``group * K_base``, with the channel axis spelled out."""
        return self._split(self.base.band_index_for(context))

    def _split(self, base_bands: torch.Tensor) -> torch.LongTensor:
        if base_bands.shape[-1] != 1:
            raise ValueError(
                f"ChannelGroupTransform: the base bands must have size 1 on the channel axis, "
                f"got shape {tuple(base_bands.shape)}"
            )
        offset = self._group_of_channel.to(base_bands.device) * self.base.num_bands
        return base_bands + offset

    def _check_channels(self, x: torch.Tensor) -> None:
        if x.shape[-1] != sum(self.group_sizes):
            raise ValueError(
                f"ChannelGroupTransform: expected {sum(self.group_sizes)} channels (groups "
                f"{list(self.group_sizes)}), got shape {tuple(x.shape)}"
            )

    def to(self, device: torch.device | str) -> ChannelGroupTransform:
        self.base.to(device)
        return self
