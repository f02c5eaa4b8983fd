"""PCA basis fitted on data; bands are groups of components, highest variance first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kflow.transforms.bands import group_bands
from kflow.transforms.base import KTransform, fix_signs

_FORMAT = "kflow.PCATransform"
_KEYS = (
    "format",
    "version",
    "shape",
    "components",
    "explained_variance",
    "mean",
    "band_index",
    "grouping",
    "centered",
)


class PCATransform(KTransform):
    """Orthonormal PCA basis of flattened samples: ``forward(x) = flatten(x) @ V``.

    ``V`` is a full ``(D, D)`` orthogonal matrix whose columns are principal directions ordered
    by decreasing variance. The map is LINEAR: the data mean is not subtracted (K-Flow
    interpolates coefficients linearly, so an affine shift would only move the origin; the
    mean is stored in :attr:`mean` for reference). With ``centered=True`` (default) the
    directions are those of the centred covariance, i.e. classic PCA; with ``centered=False``
    they diagonalise the raw second moment, so the mean direction comes first.

    If there are fewer samples than dimensions, the data span at most ``N`` directions; the
    basis is completed deterministically (Householder QR) with zero-variance directions that
    go to the last band. Build with :meth:`fit`, or :meth:`load` a saved fit.

    Args:
        components: ``(D, D)`` orthogonal matrix, columns = components.
        shape: sample shape, ``prod(shape) == D``.
        explained_variance: ``(D,)`` variance (or second moment) along each component.
        mean: ``(D,)`` data mean.
        band_index: ``(D,)`` band of each component.
        grouping: how the bands were cut (recorded for :meth:`save`).
        centered: whether the basis came from the centred covariance.
    """

    def __init__(
        self,
        components: torch.Tensor,
        shape: Sequence[int],
        explained_variance: torch.Tensor,
        mean: torch.Tensor,
        band_index: torch.Tensor,
        grouping: str = "equal_count",
        centered: bool = True,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        dim = math.prod(self.shape)
        if components.shape != (dim, dim):
            raise ValueError(
                f"PCATransform: components must be ({dim}, {dim}) for shape {self.shape}, got {tuple(components.shape)}"
            )
        vectors = {"explained_variance": explained_variance, "mean": mean, "band_index": band_index}
        for name, tensor in vectors.items():
            if tensor.shape != (dim,):
                raise ValueError(f"PCATransform: {name} must have shape ({dim},), got {tuple(tensor.shape)}")
        self.components = components
        self.explained_variance = explained_variance
        self.mean = mean
        self._band_index = band_index.long()
        self.num_bands = int(self._band_index.max()) + 1
        self.grouping = grouping
        self.centered = centered

    @classmethod
    def fit(
        cls,
        data: torch.Tensor,
        num_bands: int | None,
        grouping: str = "equal_count",
        centered: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> PCATransform:
        """Fit the basis to samples (SVD in float64).

        Args:
            data: samples, ``(N, *shape)``.
            num_bands: number of bands (``None``: one per component).
            grouping: ``"equal_count"`` (same number of components per band) or
                ``"equal_energy"`` (same explained variance per band).
            centered: fit the centred covariance (PCA) or the raw second moment.
            dtype: dtype of the stored basis (default: dtype of ``data``).
            device: device of the stored basis (default: device of ``data``).

        Returns:
            The fitted transform; ``band 0`` holds the highest-variance components.
        """
        if data.dim() < 2 or data.shape[0] < 2:
            raise ValueError(f"PCATransform.fit: data must be (N >= 2, *shape), got {tuple(data.shape)}")
        if not torch.isfinite(data).all():
            raise ValueError("PCATransform.fit: data contains NaN or Inf")
        if grouping not in ("equal_count", "equal_energy"):
            raise ValueError(f"PCATransform.fit: grouping must be 'equal_count' or 'equal_energy', got {grouping!r}")
        shape = tuple(data.shape[1:])
        flat = data.detach().reshape(data.shape[0], -1).to(torch.float64)
        num_samples, dim = flat.shape
        mean = flat.mean(0)
        centred = flat - mean if centered else flat
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        variance = singular.pow(2) / (num_samples - 1 if centered else num_samples)
        components = _complete_basis(vh.T)
        variance = torch.cat([variance, variance.new_zeros(dim - variance.numel())])
        device = device if device is not None else data.device
        return cls._from_spectrum(
            components, variance, mean, shape, num_bands, grouping, centered, dtype or data.dtype, device
        )

    @classmethod
    def from_moments(
        cls,
        count: int,
        total: torch.Tensor,
        outer: torch.Tensor,
        shape: Sequence[int],
        num_bands: int | None,
        grouping: str = "equal_count",
        centered: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> PCATransform:
        """The basis :meth:`fit` would give, from streamed moments (no stacked data set).

        Args:
            count: number of samples N (>= 2).
            total: ``sum_n x_n``, shape ``(D,)``.
            outer: ``sum_n x_n x_n^T``, shape ``(D, D)``.
            shape: sample shape, ``prod(shape) == D``.
            num_bands, grouping, centered, dtype, device: as in :meth:`fit`.

        Returns:
            The fitted transform. Equal to :meth:`fit` on the same samples up to round-off,
            except inside zero-variance subspaces (whose completion is arbitrary).
        """
        if count < 2:
            raise ValueError(f"PCATransform.from_moments: need count >= 2, got {count}")
        if grouping not in ("equal_count", "equal_energy"):
            raise ValueError(
                f"PCATransform.from_moments: grouping must be 'equal_count' or 'equal_energy', got {grouping!r}"
            )
        total, outer = total.to(torch.float64), outer.to(torch.float64)
        mean = total / count
        if centered:
            matrix = (outer - count * torch.outer(mean, mean)) / (count - 1)
        else:
            matrix = outer / count
        variance, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
        variance, vectors = variance.flip(0).clamp_min(0.0), vectors.flip(1)
        device = device if device is not None else total.device
        return cls._from_spectrum(vectors, variance, mean, shape, num_bands, grouping, centered, dtype, device)

    @classmethod
    def _from_spectrum(
        cls,
        vectors: torch.Tensor,
        variance: torch.Tensor,
        mean: torch.Tensor,
        shape: Sequence[int],
        num_bands: int | None,
        grouping: str,
        centered: bool,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> PCATransform:
        """The transform of a float64 orthonormal basis, shared by :meth:`fit` and :meth:`from_moments`.

        Args:
            vectors: components as columns, ``(D, D)``, by decreasing variance (signs not yet fixed).
            variance: variance along each component, ``(D,)``.
            mean: sample mean, ``(D,)``.
            shape, num_bands, grouping, centered: as in :meth:`fit`.
            dtype: dtype of the stored basis.
            device: device of the stored basis.
        """
        components = fix_signs(vectors)
        rank = torch.arange(variance.numel(), dtype=torch.float64)
        bands = group_bands(rank, num_bands, grouping, energy=variance if grouping == "equal_energy" else None)
        return cls(
            components.to(dtype=dtype, device=device),
            shape,
            variance.to(dtype=dtype, device=device),
            mean.to(dtype=dtype, device=device),
            bands.to(device),
            grouping=grouping,
            centered=centered,
        )

    @property
    def band_index(self) -> torch.LongTensor:
        """Band of every component, ``(D,)``; band 0 = highest variance."""
        return self._band_index

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Coefficients along the components.

        Args:
            x: samples, ``(B, *shape)``.
            context: ignored.

        Returns:
            Coefficients, ``(B, D)``.
        """
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"PCATransform.forward: expected (B, *{self.shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1) @ self.components.to(dtype=x.dtype, device=x.device)

    def inverse(self, coeffs: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Samples from coefficients.

        Args:
            coeffs: coefficients, ``(B, D)``.
            context: ignored.

        Returns:
            Samples, ``(B, *shape)``.
        """
        dim = self.components.shape[0]
        if coeffs.dim() != 2 or coeffs.shape[1] != dim:
            raise ValueError(f"PCATransform.inverse: expected (B, {dim}), got {tuple(coeffs.shape)}")
        flat = coeffs @ self.components.to(dtype=coeffs.dtype, device=coeffs.device).T
        return flat.reshape(coeffs.shape[0], *self.shape)

    def save(self, path: str | Path) -> None:
        """Write the basis, variances, mean and bands with ``torch.save``."""
        torch.save(
            {
                "format": _FORMAT,
                "version": 1,
                "shape": list(self.shape),
                "components": self.components.cpu(),
                "explained_variance": self.explained_variance.cpu(),
                "mean": self.mean.cpu(),
                "band_index": self._band_index.cpu(),
                "grouping": self.grouping,
                "centered": self.centered,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, map_location: torch.device | str | None = "cpu") -> PCATransform:
        """Read a transform written by :meth:`save` (``torch.load(weights_only=True)``).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a saved ``PCATransform``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"PCATransform.load: no file at {path}")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises several types for corrupt / foreign pickles
            raise ValueError(f"PCATransform.load: cannot read {path}: {err}") from err
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"PCATransform.load: {path} is not a saved PCATransform")
        missing = [key for key in _KEYS if key not in state]
        if missing:
            raise ValueError(f"PCATransform.load: {path} lacks {missing}")
        return cls(
            state["components"],
            state["shape"],
            state["explained_variance"],
            state["mean"],
            state["band_index"],
            grouping=state["grouping"],
            centered=state["centered"],
        )


def _complete_basis(columns: torch.Tensor) -> torch.Tensor:
    """Extend ``(D, r)`` orthonormal columns to a ``(D, D)`` orthogonal matrix (same first r)."""
    dim, rank = columns.shape
    if rank == dim:
        return columns
    q, _ = torch.linalg.qr(columns, mode="complete")
    return torch.cat([columns, q[:, rank:]], dim=1)
