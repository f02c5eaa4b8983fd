"""Orthogonal multi-level 2-D discrete wavelet transform in torch; bands = decomposition levels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pywt
import torch

from kflow.transforms.bands import group_bands
from kflow.transforms.base import KTransform


class WaveletTransform(KTransform):
    """Multi-level 2-D DWT with periodic boundaries (PyWavelets ``mode="periodization"``).

    Filters come from PyWavelets; the transform runs in torch, batched over images and
    channels, on any device. One level along an axis of length ``n`` is an orthogonal
    ``(n, n)`` matrix ``A = [A_low; A_high]`` (periodized filtering + downsampling by 2), so a
    2-D level maps the current approximation block ``X`` to ``A_H X A_W^T``, whose quadrants are
    exactly pywt's packed layout, and the inverse is ``A_H^T C A_W``. Dense level matrices cost
    ``O(H + W)`` multiply-adds per coefficient instead of ``O(filter length)``, but run as
    large batched matmuls, which is much faster than strided convolutions on CPU and GPU for
    images up to a few hundred pixels a side (see ``scripts/bench_core.py``).

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
        device: where ``band_index`` and the level matrices live.
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
        self.block_sizes = [(height >> level, width >> level) for level in range(levels)]
        filters = _decomposition_filters(wavelet)
        sizes = {n for block in self.block_sizes for n in block}
        self._level_matrices = {n: level_matrix(filters, n).to(device) for n in sorted(sizes)}
        self._cast_cache: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
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
        coeffs = x.reshape(-1, *self.shape[-2:])
        for h, w in self.block_sizes:
            block = self._matrix(h, x) @ coeffs[:, :h, :w] @ self._matrix(w, x).T
            coeffs = _replace_top_left(coeffs, block)
        return coeffs.reshape(x.shape)

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Images from packed coefficients.

        Args:
            coeffs: coefficients, ``(B, *shape)``.
            context: ignored.

        Returns:
            Images, ``(B, *shape)``.
        """
        self._check_shape(coeffs, "inverse")
        images = coeffs.reshape(-1, *self.shape[-2:])
        for h, w in reversed(self.block_sizes):
            block = self._matrix(h, coeffs).T @ images[:, :h, :w] @ self._matrix(w, coeffs)
            images = _replace_top_left(images, block)
        return images.reshape(coeffs.shape)

    def to(self, device: torch.device | str) -> WaveletTransform:
        """Move the band index and level matrices to ``device``; returns self."""
        self._band_index = self._band_index.to(device)
        self._level_matrices = {n: m.to(device) for n, m in self._level_matrices.items()}
        self._cast_cache = {}
        return self

    def _matrix(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.dtype, like.device)
        if key not in self._cast_cache:
            self._cast_cache[key] = self._level_matrices[n].to(dtype=like.dtype, device=like.device)
        return self._cast_cache[key]

    def _check_shape(self, x: torch.Tensor, where: str) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"WaveletTransform.{where}: expected (B, *{self.shape}), got {tuple(x.shape)}")


def level_matrix(filters: torch.Tensor, n: int) -> torch.Tensor:
    """One periodized DWT level along an axis of length ``n`` as an orthogonal matrix.

    Rows ``0 .. n/2-1`` give the approximation, rows ``n/2 .. n-1`` the detail, following
    pywt's periodization convention ``out[i] = sum_j dec[j] x[(2i + L/2 - j) mod n]``. Filters
    longer than ``n`` wrap around several times (taps landing on the same entry add up).

    Args:
        filters: ``(2, L)`` float64 decomposition filters ``[dec_lo, dec_hi]``.
        n: even axis length.

    Returns:
        ``(n, n)`` float64 matrix.
    """
    filter_len = filters.shape[1]
    half = n // 2
    out_index = torch.arange(half).repeat_interleave(filter_len)
    tap = torch.arange(filter_len).repeat(half)
    in_index = (2 * out_index + filter_len // 2 - tap) % n
    matrix = torch.zeros(n, n, dtype=torch.float64)
    for band, band_filter in enumerate(filters):
        matrix.index_put_((out_index + band * half, in_index), band_filter[tap], accumulate=True)
    return matrix


def _replace_top_left(full: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``full`` with its top-left ``block``-sized corner replaced (out of place, autograd-safe)."""
    h, w = block.shape[-2:]
    if (h, w) == tuple(full.shape[-2:]):
        return block
    top = torch.cat([block, full[:, :h, w:]], dim=-1)
    return torch.cat([top, full[:, h:, :]], dim=-2)


def _decomposition_filters(name: str) -> torch.Tensor:
    """``(2, L)`` float64 ``[dec_lo, dec_hi]`` of an orthogonal PyWavelets wavelet."""
    try:
        wavelet = pywt.Wavelet(name)
    except ValueError as err:
        raise ValueError(f"WaveletTransform: unknown wavelet {name!r} ({err})") from err
    if not wavelet.orthogonal:
        raise ValueError(
            f"WaveletTransform: wavelet {name!r} is not orthogonal; K-Flow needs an orthonormal "
            "transform (use haar, dbN, symN or coifN)"
        )
    return torch.tensor([wavelet.dec_lo, wavelet.dec_hi], dtype=torch.float64)


def _level_map(height: int, width: int, levels: int) -> torch.Tensor:
    """``(H, W)`` level of each packed coefficient: 0 approx, ``l`` details coarse to fine."""
    level = torch.full((height, width), levels, dtype=torch.long)
    h, w = height, width
    for finest_first in range(levels, 0, -1):
        h, w = h // 2, w // 2
        level[: 2 * h, : 2 * w] = finest_first
    level[:h, :w] = 0
    return level
