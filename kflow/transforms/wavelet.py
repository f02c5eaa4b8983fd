"""Orthogonal multi-level 2-D discrete wavelet transform in torch; bands = decomposition levels."""
from __future__ import annotations

from typing import Any, Sequence

import pywt
import torch
import torch.nn.functional as F

from kflow.transforms.bands import group_bands
from kflow.transforms.base import KTransform


class WaveletTransform(KTransform):
    """Multi-level 2-D DWT with periodic boundaries (PyWavelets ``mode="periodization"``).

    Filters come from PyWavelets; the transform itself runs in torch (periodic gather + strided
    ``conv1d`` along each axis, ``conv_transpose1d`` + fold for the inverse), batched over
    images and channels, on any device. With an orthogonal wavelet and periodization the map
    is orthonormal, so the inverse is the adjoint.

    Coefficients have the data shape, packed like ``pywt.coeffs_to_array(pywt.wavedec2(...))``:
    the coarsest approximation in the top-left ``(H / 2^L, W / 2^L)`` block, and for each level
    (coarse to fine, block size ``(h, w)``) the detail along axis 1 (pywt's ``cV``) at
    ``[:h, w:2w]``, the detail along axis 0 (``cH``) at ``[h:2h, :w]`` and the diagonal
    detail (``cD``) at ``[h:2h, w:2w]``. Band 0 is the approximation, band ``l`` the details
    of level ``l`` counted from the coarsest, so ``num_bands = levels + 1`` by default; pass
    ``num_bands`` to merge levels (ties kept, see :func:`kflow.transforms.bands.group_bands`).

    Args:
        shape: ``(H, W)`` or ``(C, H, W)``; ``H`` and ``W`` divisible by ``2**levels``.
        wavelet: name of an orthogonal PyWavelets wavelet (``"haar"``, ``"db6"``, ``"sym4"``...).
        levels: number of decomposition levels ``L >= 1``.
        num_bands: bands after merging levels, or ``None`` for ``levels + 1``.
        grouping: how levels are merged when ``num_bands`` is given.
        energy: per-coefficient energy for ``grouping="equal_energy"``, shape ``shape``.
        device: where ``band_index`` lives.
    """

    def __init__(
        self,
        shape: Sequence[int],
        wavelet: str = "db6",
        levels: int = 3,
        num_bands: int | None = None,
        grouping: str = "equal_count",
        energy: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) not in (2, 3):
            raise ValueError(f"WaveletTransform: shape must be (H, W) or (C, H, W), got {self.shape}")
        if levels < 1:
            raise ValueError(f"WaveletTransform: levels must be >= 1, got {levels}")
        height, width = self.shape[-2:]
        if height % 2**levels or width % 2**levels:
            raise ValueError(
                f"WaveletTransform: H={height}, W={width} must be divisible by 2**levels = {2**levels} "
                f"for {levels} levels"
            )
        self.wavelet = wavelet
        self.levels = levels
        self.filters = _analysis_filters(wavelet)
        level_map = _level_map(height, width, levels)
        if len(self.shape) == 3:
            level_map = level_map.expand(self.shape).contiguous()
        if num_bands is None:
            bands = level_map
        else:
            bands = group_bands(level_map.double(), num_bands, grouping, energy=energy)
        self.num_bands = int(bands.max()) + 1
        self._band_index = bands.to(device)

    @property
    def band_index(self) -> torch.LongTensor:
        """Band of every coefficient, shape ``shape``."""
        return self._band_index

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Packed wavelet coefficients.

        Args:
            x: images, ``(B, *shape)``, float32 or float64.
            context: ignored.

        Returns:
            Coefficients, ``(B, *shape)``.
        """
        self._check_shape(x, "forward")
        filters = self.filters.to(dtype=x.dtype, device=x.device)
        approx = x.reshape(-1, *self.shape[-2:])
        details = []
        for _ in range(self.levels):
            approx, level_details = _analysis_2d(approx, filters)
            details.append(level_details)
        packed = approx
        for detail_axis1, detail_axis0, diagonal in reversed(details):
            packed = torch.cat(
                [torch.cat([packed, detail_axis1], -1), torch.cat([detail_axis0, diagonal], -1)], -2
            )
        return packed.reshape(x.shape)

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Images from packed coefficients.

        Args:
            coeffs: coefficients, ``(B, *shape)``.
            context: ignored.

        Returns:
            Images, ``(B, *shape)``.
        """
        self._check_shape(coeffs, "inverse")
        filters = self.filters.to(dtype=coeffs.dtype, device=coeffs.device)
        packed = coeffs.reshape(-1, *self.shape[-2:])
        height, width = self.shape[-2:]
        h, w = height >> self.levels, width >> self.levels
        approx = packed[:, :h, :w]
        for _ in range(self.levels):
            detail_axis1 = packed[:, :h, w : 2 * w]
            detail_axis0 = packed[:, h : 2 * h, :w]
            diagonal = packed[:, h : 2 * h, w : 2 * w]
            approx = _synthesis_2d(approx, (detail_axis1, detail_axis0, diagonal), filters)
            h, w = 2 * h, 2 * w
        return approx.reshape(coeffs.shape)

    def _check_shape(self, x: torch.Tensor, where: str) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"WaveletTransform.{where}: expected (B, *{self.shape}), got {tuple(x.shape)}"
            )


def _analysis_filters(name: str) -> torch.Tensor:
    """``(2, 1, L)`` float64 [low, high] decomposition filters, reversed for ``conv1d``."""
    try:
        wavelet = pywt.Wavelet(name)
    except ValueError as err:
        raise ValueError(f"WaveletTransform: unknown wavelet {name!r} ({err})") from err
    if not wavelet.orthogonal:
        raise ValueError(
            f"WaveletTransform: wavelet {name!r} is not orthogonal; K-Flow needs an orthonormal "
            "transform (use haar, dbN, symN or coifN)"
        )
    low = torch.tensor(wavelet.dec_lo, dtype=torch.float64).flip(0)
    high = torch.tensor(wavelet.dec_hi, dtype=torch.float64).flip(0)
    return torch.stack([low, high]).unsqueeze(1)


def _periodic_index(n: int, filter_len: int, device: torch.device) -> torch.Tensor:
    """Indices of the periodic extension matching pywt periodization.

    pywt computes ``out[i] = sum_j dec[j] x[(2i + L/2 - j) mod n]``; as a correlation with the
    reversed filter that reads ``x[(2i + m + L/2 - L + 1) mod n]`` for ``m = 0 .. L-1``.
    """
    offset = filter_len // 2 - filter_len + 1
    return (torch.arange(n + filter_len - 2, device=device) + offset) % n


def _analysis_1d(x: torch.Tensor, filters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One DWT step along the last axis: ``(..., n)`` -> low, high ``(..., n/2)``."""
    n, filter_len = x.shape[-1], filters.shape[-1]
    extended = x[..., _periodic_index(n, filter_len, x.device)]
    out = F.conv1d(extended.reshape(-1, 1, extended.shape[-1]), filters, stride=2)
    out = out.reshape(*x.shape[:-1], 2, n // 2)
    return out[..., 0, :], out[..., 1, :]


def _synthesis_1d(low: torch.Tensor, high: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Adjoint (= inverse) of :func:`_analysis_1d`: low, high ``(..., n/2)`` -> ``(..., n)``."""
    half, filter_len = low.shape[-1], filters.shape[-1]
    n = 2 * half
    stacked = torch.stack([low, high], -2).reshape(-1, 2, half)
    extended = F.conv_transpose1d(stacked, filters, stride=2).squeeze(1)
    folded = torch.zeros(extended.shape[0], n, dtype=low.dtype, device=low.device)
    folded.index_add_(1, _periodic_index(n, filter_len, low.device), extended)
    return folded.reshape(*low.shape[:-1], n)


def _analysis_2d(
    image: torch.Tensor, filters: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One 2-D level: ``(M, h, w)`` -> approx and (detail axis 1, detail axis 0, diagonal)."""
    low_w, high_w = _analysis_1d(image, filters)
    approx, detail_axis0 = (t.transpose(-1, -2) for t in _analysis_1d(low_w.transpose(-1, -2), filters))
    detail_axis1, diagonal = (t.transpose(-1, -2) for t in _analysis_1d(high_w.transpose(-1, -2), filters))
    return approx, (detail_axis1, detail_axis0, diagonal)


def _synthesis_2d(
    approx: torch.Tensor,
    details: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    filters: torch.Tensor,
) -> torch.Tensor:
    """Inverse of :func:`_analysis_2d`."""
    detail_axis1, detail_axis0, diagonal = details
    low_w = _synthesis_1d(approx.transpose(-1, -2), detail_axis0.transpose(-1, -2), filters)
    high_w = _synthesis_1d(detail_axis1.transpose(-1, -2), diagonal.transpose(-1, -2), filters)
    return _synthesis_1d(low_w.transpose(-1, -2), high_w.transpose(-1, -2), filters)


def _level_map(height: int, width: int, levels: int) -> torch.Tensor:
    """``(H, W)`` level of each packed coefficient: 0 approx, ``l`` details coarse to fine."""
    level = torch.full((height, width), levels, dtype=torch.long)
    h, w = height, width
    for finest_first in range(levels, 0, -1):
        h, w = h // 2, w // 2
        level[: 2 * h, : 2 * w] = finest_first
    level[:h, :w] = 0
    return level
