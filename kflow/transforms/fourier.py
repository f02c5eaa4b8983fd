"""Real orthonormal Fourier (discrete Hartley) transform with radial-frequency bands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kflow.transforms.bands import group_bands
from kflow.transforms.base import KTransform


class FourierTransform(KTransform):
    """Discrete Hartley transform of 1-D, 2-D or 3-D signals; bands are radial frequency shells.

    The Hartley transform ``H = Re(F) - Im(F)`` of the orthonormal DFT ``F`` is real,
    orthonormal and its own inverse, so coefficients have exactly the data shape and the
    K-Flow MSE is the same in both spaces. Coefficient ``k`` mixes frequencies ``k`` and
    ``-k``, which share the radius ``|f| = sqrt(sum_i fftfreq_i^2)`` (cycles per sample), so
    each coefficient has a well-defined radial frequency; band 0 always holds the DC term.

    Which axes are spatial: ``shape`` is the sample shape without the batch dimension.
    ``spatial_dims`` says how many axes are transformed; at most one extra axis is a channel
    axis, leading (``channels_first=True``, e.g. ``(C, H, W)``) or trailing (``(H, W, C)``).
    Channels are transformed independently and share the band of their frequency. When
    ``spatial_dims`` is omitted it is inferred: ``(L,)`` -> 1-D, ``(H, W)`` -> 2-D,
    ``(C, H, W)`` -> 2-D images with channels. Pass ``spatial_dims=3`` for volumes
    ``(D, H, W)`` or ``(C, D, H, W)``.

    Args:
        shape: sample shape without batch.
        num_bands: number of bands, or ``None`` / ``"per_coefficient"`` for one band per
            distinct radius.
        spatial_dims: number of transformed axes (1, 2 or 3), inferred if ``None``.
        channels_first: whether the channel axis (if any) leads or trails.
        grouping: ``"equal_radius"``, ``"equal_count"`` or ``"equal_energy"`` (see
            :func:`kflow.transforms.bands.group_bands`).
        energy: per-coefficient energy for ``"equal_energy"``, shape ``shape`` or the spatial
            shape (e.g. from :func:`kflow.transforms.bands.coefficient_energy`).
        device: where ``band_index`` lives.
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_bands: int | str | None = 3,
        spatial_dims: int | None = None,
        channels_first: bool = True,
        grouping: str = "equal_radius",
        energy: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.spatial_dims = _infer_spatial_dims(self.shape, spatial_dims)
        self.channels_first = channels_first
        has_channels = len(self.shape) == self.spatial_dims + 1
        if has_channels and channels_first:
            self.spatial_shape = self.shape[1:]
        else:
            self.spatial_shape = self.shape[: self.spatial_dims]
        self.radius = radial_frequency(self.spatial_shape)
        if num_bands == "per_coefficient":
            num_bands = None
        if isinstance(num_bands, str):
            raise ValueError(
                f"FourierTransform: num_bands must be an int, None or 'per_coefficient', got {num_bands!r}"
            )
        spatial_energy = None
        if energy is not None:
            spatial_energy = self._energy_per_frequency(energy)
        spatial_band = group_bands(self.radius, num_bands, grouping, energy=spatial_energy)
        self.num_bands = int(spatial_band.max()) + 1
        self._band_index = self._broadcast_to_channels(spatial_band).to(device)

    @property
    def band_index(self) -> torch.LongTensor:
        """Band of every coefficient, shape ``shape`` (channels share their frequency's band)."""
        return self._band_index

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Hartley coefficients.

        Args:
            x: signals, shape ``(B, *shape)``, float32 or float64.
            context: ignored.

        Returns:
            Coefficients, shape ``(B, *shape)``.
        """
        self._check_shape(x, "forward")
        spectrum = torch.fft.fftn(x, dim=self._spatial_axes(), norm="ortho")
        return spectrum.real - spectrum.imag

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Signals from Hartley coefficients (the transform is its own inverse).

        Args:
            coeffs: coefficients, shape ``(B, *shape)``.
            context: ignored.

        Returns:
            Signals, shape ``(B, *shape)``.
        """
        return self.forward(coeffs)

    def _spatial_axes(self) -> tuple[int, ...]:
        has_channels = len(self.shape) == self.spatial_dims + 1
        first = 2 if has_channels and self.channels_first else 1
        return tuple(range(first, first + self.spatial_dims))

    def _broadcast_to_channels(self, spatial: torch.Tensor) -> torch.Tensor:
        if len(self.shape) == self.spatial_dims:
            return spatial
        axis = 0 if self.channels_first else -1
        return spatial.unsqueeze(axis).expand(self.shape).contiguous()

    def _energy_per_frequency(self, energy: torch.Tensor) -> torch.Tensor:
        if tuple(energy.shape) == self.spatial_shape:
            return energy
        if tuple(energy.shape) != self.shape:
            raise ValueError(
                f"FourierTransform: energy shape {tuple(energy.shape)} matches neither the data "
                f"shape {self.shape} nor the spatial shape {self.spatial_shape}"
            )
        channel_axis = 0 if self.channels_first else -1
        return energy.sum(channel_axis)

    def _check_shape(self, x: torch.Tensor, where: str) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"FourierTransform.{where}: expected (B, *{self.shape}), got {tuple(x.shape)}")


def radial_frequency(spatial_shape: Sequence[int]) -> torch.Tensor:
    """Radius ``sqrt(sum_i f_i^2)`` of every DFT frequency, in cycles per sample.

    Args:
        spatial_shape: sizes of the transformed axes.

    Returns:
        float64 tensor of shape ``spatial_shape``.
    """
    grids = torch.meshgrid(*[torch.fft.fftfreq(n, dtype=torch.float64) for n in spatial_shape], indexing="ij")
    return torch.sqrt(sum(g.pow(2) for g in grids))


def _infer_spatial_dims(shape: tuple[int, ...], spatial_dims: int | None) -> int:
    if spatial_dims is None:
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"FourierTransform: cannot infer spatial_dims for shape {shape}; pass spatial_dims")
        return 2 if len(shape) == 3 else len(shape)
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"FourierTransform: spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    if len(shape) not in (spatial_dims, spatial_dims + 1):
        raise ValueError(
            f"FourierTransform: shape {shape} must have spatial_dims={spatial_dims} axes plus at most one channel axis"
        )
    return spatial_dims
