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

    def to(self, device: torch.device | str) -> "KTransform":
        """Move any tensors the transform holds to ``device`` (in place); returns self."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self
