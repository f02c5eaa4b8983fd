"""Graph Fourier transform: per-sample Laplacian eigenbasis of a point cloud, smoothest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kflow.transforms.bands import GROUPING_MODES, group_bands
from kflow.transforms.base import KTransform, fix_signs


@dataclass
class GraphBasis:
    """Per-sample eigenbasis of the graph Laplacian (the ``context`` of the transform).

    Attributes:
        eigvecs: orthonormal eigenvectors as columns, ``(B, N, N)``; column ``j`` belongs to
            ``eigvals[:, j]``.
        eigvals: Laplacian eigenvalues in ascending order, ``(B, N)``.
        band_index: band of every eigenvector, ``(B, N, 1)`` (broadcasts over features).
    """

    eigvecs: torch.Tensor
    eigvals: torch.Tensor
    band_index: torch.Tensor

    def to(self, device: torch.device | str) -> GraphBasis:
        """Copy to ``device``."""
        return GraphBasis(self.eigvecs.to(device), self.eigvals.to(device), self.band_index.to(device))


class GraphSpectralTransform(KTransform):
    """Graph Fourier transform on N points with d features each; bands = eigenvalue groups.

    For each sample, the weighted graph ``W_ij = exp(-d_ij^2 / (2 sigma^2))`` (``i != j``) on the
    points gives the combinatorial Laplacian ``L = D - W``. Its orthonormal eigenvectors
    ``U`` (ascending eigenvalues, the constant vector first with eigenvalue 0) are the basis:
    ``forward(x) = U^T x``, ``inverse(c) = U c`` for per-node features ``x (B, N, d)``. The
    basis depends on pairwise distances only, so it is invariant to rotating, reflecting and
    translating the points, and permuting the points permutes the rows of ``U``.

    ``sigma``: ``kernel_width`` if a number (same units as the points), or ``"median"`` for
    the median pairwise distance of each sample (scale-free: also invariant to rescaling).

    Degenerate eigenvalues (symmetric point sets) have no unique eigenvectors. The band cuts
    are therefore placed only between distinct eigenvalues (relative gap > ``degeneracy_tol``),
    so a degenerate eigenspace lies inside one band. K-Flow only uses each band's projection
    ``U_b U_b^T`` (every coefficient of a band moves with the same weight), and that projection
    is the same for any orthonormal basis of the band, so the flow is deterministic even
    though the individual eigenvectors are not. Signs are still fixed (largest-magnitude
    component positive, first such index on ties) so that non-degenerate coefficients are
    reproducible.

    Args:
        num_bands: number of bands ``K``.
        kernel_width: Gaussian width ``sigma`` (> 0) or ``"median"``.
        grouping: ``"equal_count"`` (about ``N / K`` eigenvectors per band) or
            ``"equal_radius"`` (equal-width eigenvalue intervals).
        degeneracy_tol: relative eigenvalue gap below which eigenvalues count as degenerate.
        allow_empty_bands: if a sample has fewer distinct eigenvalues than ``K`` bands, let some
            of its bands be empty instead of raising.
    """

    def __init__(
        self,
        num_bands: int,
        kernel_width: float | str = "median",
        grouping: str = "equal_count",
        degeneracy_tol: float = 1e-6,
        allow_empty_bands: bool = True,
    ) -> None:
        if num_bands < 1:
            raise ValueError(f"GraphSpectralTransform: num_bands must be >= 1, got {num_bands}")
        if grouping not in GROUPING_MODES or grouping == "equal_energy":
            raise ValueError(
                f"GraphSpectralTransform: grouping must be 'equal_count' or 'equal_radius', got {grouping!r}"
            )
        if isinstance(kernel_width, str):
            if kernel_width != "median":
                raise ValueError(f"GraphSpectralTransform: kernel_width must be > 0 or 'median', got {kernel_width!r}")
        elif not kernel_width > 0:
            raise ValueError(f"GraphSpectralTransform: kernel_width must be > 0, got {kernel_width}")
        self.num_bands = num_bands
        self.kernel_width = kernel_width
        self.grouping = grouping
        self.degeneracy_tol = degeneracy_tol
        self.allow_empty_bands = allow_empty_bands

    @property
    def band_index(self) -> torch.LongTensor:
        raise AttributeError(
            "GraphSpectralTransform: bands depend on the sample; use band_index_for(context) "
            "with context = transform.basis(points)"
        )

    def band_index_for(self, context: GraphBasis | None = None) -> torch.LongTensor:
        """Bands of a batch, ``(B, N, 1)``, read from the ``GraphBasis`` context."""
        return _require_basis(context, "band_index_for").band_index

    def basis(self, points: torch.Tensor) -> GraphBasis:
        """Eigenbasis of each sample's graph Laplacian (computed in float64, no gradient).

        Args:
            points: positions, ``(B, N, 3)`` (any number of coordinates works).

        Returns:
            ``GraphBasis`` with tensors in the dtype and on the device of ``points``.
        """
        if points.dim() != 3 or points.shape[1] < 1:
            raise ValueError(f"GraphSpectralTransform.basis: points must be (B, N, dim), got {tuple(points.shape)}")
        with torch.no_grad():
            laplacian = self.laplacian(points.detach().to(torch.float64))
            eigvals, eigvecs = torch.linalg.eigh(laplacian)
            eigvals = eigvals.clamp_min(0.0)
            eigvecs = fix_signs(eigvecs)
            bands = self._bands(eigvals)
        return GraphBasis(
            eigvecs=eigvecs.to(points.dtype),
            eigvals=eigvals.to(points.dtype),
            band_index=bands.unsqueeze(-1),
        )

    def laplacian(self, points: torch.Tensor) -> torch.Tensor:
        """Combinatorial Laplacian ``D - W`` of the Gaussian-kernel graph.

        Args:
            points: positions, ``(B, N, dim)``.

        Returns:
            ``(B, N, N)`` symmetric positive semi-definite matrices.
        """
        sq_dist = torch.cdist(points, points).pow(2)
        sigma = self._width(sq_dist)
        weights = torch.exp(-sq_dist / (2.0 * sigma.pow(2)))
        weights = weights * (1.0 - torch.eye(points.shape[1], dtype=points.dtype, device=points.device))
        return torch.diag_embed(weights.sum(-1)) - weights

    def forward(self, x: torch.Tensor, context: GraphBasis | None = None) -> torch.Tensor:
        """Spectral coefficients ``U^T x``.

        Args:
            x: per-node features, ``(B, N, d)``.
            context: ``GraphBasis`` of the same batch (from :meth:`basis`).

        Returns:
            Coefficients, ``(B, N, d)``; row ``j`` belongs to eigenvector ``j``.
        """
        eigvecs = self._eigvecs_for(x, context, "forward")
        return eigvecs.transpose(1, 2) @ x

    def inverse(self, coeffs: torch.Tensor, context: GraphBasis | None = None) -> torch.Tensor:
        """Node features ``U c``.

        Args:
            coeffs: coefficients, ``(B, N, d)``.
            context: ``GraphBasis`` of the same batch.

        Returns:
            Features, ``(B, N, d)``.
        """
        return self._eigvecs_for(coeffs, context, "inverse") @ coeffs

    def _width(self, sq_dist: torch.Tensor) -> torch.Tensor:
        if self.kernel_width != "median":
            return torch.tensor(float(self.kernel_width), dtype=sq_dist.dtype, device=sq_dist.device)
        num_points = sq_dist.shape[-1]
        if num_points < 2:
            return torch.ones((), dtype=sq_dist.dtype, device=sq_dist.device)
        upper = torch.triu_indices(num_points, num_points, offset=1, device=sq_dist.device)
        median = sq_dist[:, upper[0], upper[1]].sqrt().median(dim=1).values
        # Coincident points give a zero median; fall back to a unit width rather than divide by 0.
        median = torch.where(median > 0, median, torch.ones_like(median))
        return median.view(-1, 1, 1)

    def _bands(self, eigvals: torch.Tensor) -> torch.Tensor:
        """Bands ``(B, N)``; cuts never split a (near-)degenerate eigenvalue cluster."""
        num_points = eigvals.shape[1]
        if num_points < self.num_bands and not self.allow_empty_bands:
            raise ValueError(
                f"GraphSpectralTransform: {num_points} points cannot fill {self.num_bands} bands; "
                "use fewer bands or allow_empty_bands=True"
            )
        scale = eigvals[:, -1:].clamp_min(1e-12)
        # Snap every eigenvalue to the start of its degeneracy cluster.
        gaps = (eigvals[:, 1:] - eigvals[:, :-1]) > self.degeneracy_tol * scale
        cluster_start = torch.cat([torch.ones_like(gaps[:, :1]), gaps], dim=1)
        if self.grouping == "equal_count":
            default = _equal_count_bands(num_points, self.num_bands, eigvals.device)
            cut_positions = default[1:] != default[:-1]  # a cut lies before index j+1
            splits = (cut_positions.unsqueeze(0) & ~gaps).any(dim=1)
            if not splits.any():
                return default.unsqueeze(0).expand_as(eigvals).clone()
        bands = torch.empty(eigvals.shape, dtype=torch.long, device=eigvals.device)
        cluster_id = torch.cumsum(cluster_start.long(), dim=1)
        for sample in range(eigvals.shape[0]):
            snapped = self._snap(eigvals[sample], cluster_id[sample])
            bands[sample] = group_bands(
                snapped, self.num_bands, self.grouping, allow_empty=self.allow_empty_bands, tie_tol=0.0
            )
        return bands

    def _snap(self, eigvals: torch.Tensor, cluster_id: torch.Tensor) -> torch.Tensor:
        firsts = torch.zeros(int(cluster_id.max()) + 1, dtype=eigvals.dtype, device=eigvals.device)
        firsts.scatter_reduce_(0, cluster_id, eigvals, reduce="amin", include_self=False)
        return firsts[cluster_id]

    def _eigvecs_for(self, x: torch.Tensor, context: GraphBasis | None, where: str) -> torch.Tensor:
        basis = _require_basis(context, where)
        if x.dim() != 3 or x.shape[:2] != basis.eigvecs.shape[:2]:
            raise ValueError(
                f"GraphSpectralTransform.{where}: expected (B, N, d) with (B, N) = "
                f"{tuple(basis.eigvecs.shape[:2])}, got {tuple(x.shape)}"
            )
        return basis.eigvecs.to(dtype=x.dtype, device=x.device)


def _equal_count_bands(num_points: int, num_bands: int, device: torch.device) -> torch.Tensor:
    """Bands ``(N,)`` of N distinct eigenvalues, the same cuts ``group_bands`` would choose."""
    values = torch.arange(num_points, dtype=torch.float64)
    return group_bands(values, num_bands, "equal_count", allow_empty=True).to(device)


def _require_basis(context: Any, where: str) -> GraphBasis:
    if not isinstance(context, GraphBasis):
        raise ValueError(
            f"GraphSpectralTransform.{where}: context must be the GraphBasis from "
            f"transform.basis(points), got {type(context).__name__}"
        )
    return context
