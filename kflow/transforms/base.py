"""The one interface every K-Flow transform implements.

A transform ``F`` is an invertible linear map from a data sample to coefficients, together
with an integer band index per coefficient (band 0 = coarsest scale). K-Flow moves the
coefficients of one band at a time, so the transform, its band layout and its orthonormality
are all the engine needs to know about the data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch


class KTransform(ABC):
    """Invertible linear transform with coefficients grouped into scale bands.

    Subclasses map ``x`` of shape ``(B, *data_shape)`` to coefficients of shape
    ``(B, *coeff_shape)`` and back. All shipped transforms are orthonormal, so the squared
    norm (and therefore the flow-matching MSE) is the same in data and coefficient space.

    Transforms whose basis depends on the sample (``GraphSpectralTransform``) take a
    per-batch ``context`` (for instance the eigenbasis); the others ignore it.
    """

    num_bands: int

    @abstractmethod
    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Map data to coefficients.

        Args:
            x: data, shape ``(B, *data_shape)``, float32 or float64, any device.
            context: per-batch basis information, or ``None`` for fixed bases.

        Returns:
            Coefficients, shape ``(B, *coeff_shape)``, same dtype and device as ``x``.
        """

    @abstractmethod
    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Map coefficients back to data; exact inverse of :meth:`forward`.

        Args:
            coeffs: coefficients, shape ``(B, *coeff_shape)``.
            context: the same context given to :meth:`forward`.

        Returns:
            Data, shape ``(B, *data_shape)``.
        """

    @property
    @abstractmethod
    def band_index(self) -> torch.LongTensor:
        """Band of every coefficient, shape ``coeff_shape`` (or broadcastable to it).

        Values are in ``0 .. num_bands - 1``, low scale first. Per-sample transforms may
        raise here and implement :meth:`band_index_for` instead.
        """

    def band_index_for(self, context: Any = None) -> torch.LongTensor:
        """Band index for a batch: broadcastable to ``(B, *coeff_shape)``.

        Fixed-basis transforms return :attr:`band_index`; per-sample transforms read the
        bands from ``context``.
        """
        return self.band_index

    def __call__(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.forward(x, context)

    def to(self, device: torch.device | str) -> KTransform:
        """Move any tensors the transform holds to ``device`` (in place); returns self."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self


def fix_signs(vectors: torch.Tensor, tie_tolerance: float = 1e-9) -> torch.Tensor:
    """Flip each column so its largest-magnitude entry is positive (a unique sign convention).

    Eigenvectors and principal components are defined up to sign; fixing it makes bases
    reproducible across solvers and devices. On near-ties (within ``tie_tolerance`` relative)
    the first such entry decides; an all-zero column is left unchanged.

    Args:
        vectors: columns to fix, shape ``(..., N, C)`` (entries along ``-2``).
        tie_tolerance: relative tolerance for equal magnitudes.

    Returns:
        The columns with fixed signs, same shape.
    """
    magnitude = vectors.abs()
    peak = magnitude.max(dim=-2, keepdim=True).values
    first_peak = (magnitude >= peak * (1 - tie_tolerance)).to(torch.uint8).argmax(dim=-2, keepdim=True)
    sign = torch.sign(torch.gather(vectors, -2, first_peak))
    return vectors * torch.where(sign == 0, torch.ones_like(sign), sign)
