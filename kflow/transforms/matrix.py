"""Transforms given by an explicit orthonormal basis: identity (plain flow matching) and any matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from kflow.transforms.base import KTransform


class MatrixTransform(KTransform):
    """``coeffs = x_flat @ basis`` for an orthonormal ``basis`` with a band per column.

    Args:
        basis: orthonormal matrix, shape ``(D, D)``; column ``j`` is basis vector ``j``.
        band_index: band of every column, shape ``(D,)``, values ``0 .. K-1``.
        data_shape: shape of one sample without batch, ``prod(data_shape) == D``.
    """

    def __init__(self, basis: torch.Tensor, band_index: torch.Tensor, data_shape: Sequence[int]):
        dim = math.prod(data_shape)
        if basis.shape != (dim, dim):
            raise ValueError(
                f"basis must be ({dim}, {dim}) for data shape {tuple(data_shape)}, got {tuple(basis.shape)}"
            )
        if band_index.shape != (dim,):
            raise ValueError(f"band_index must have shape ({dim},), got {tuple(band_index.shape)}")
        self.basis = basis
        self._band_index = band_index.long()
        self.data_shape = tuple(data_shape)
        self.num_bands = int(self._band_index.max()) + 1

    @property
    def band_index(self) -> torch.LongTensor:
        return self._band_index

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """``(B, *data_shape) -> (B, D)``."""
        return x.reshape(x.shape[0], -1) @ self.basis.to(x)

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """``(B, D) -> (B, *data_shape)``."""
        return (coeffs @ self.basis.to(coeffs).T).reshape(coeffs.shape[0], *self.data_shape)


class IdentityTransform(KTransform):
    """The identity with a single band: K-Flow with it is ordinary flow matching.

    Args:
        data_shape: shape of one sample without batch (kept for symmetry with the others).
    """

    num_bands = 1

    def __init__(self, data_shape: Sequence[int] = ()):
        self.data_shape = tuple(data_shape)

    @property
    def band_index(self) -> torch.LongTensor:
        return torch.zeros((1,) * max(len(self.data_shape), 1), dtype=torch.long)

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return x

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        return coeffs
