"""Kabsch superposition and aligned coordinate RMSD (atoms and molecule centroids).

Convention: ``pred`` is moved onto ``true``: ``aligned = pred @ rotation.T + translation``, with
``rotation`` a proper rotation (det +1) minimising the (weighted) squared deviation. When the
best orthogonal map would be a reflection (det(V U^T) < 0 in the SVD of the covariance), the
proper rotation is still used and ``reflection`` is set: a mirror image of ``pred`` would fit
better, which for a crystal packing means the wrong handedness. For coplanar points a mirror
image is also a rotated copy, so there the flag carries no information (it may be set at zero
RMSD).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kflow_mol.metrics.packing import _check_pair, molecule_centroids


@dataclass
class RigidAlignment:
    """Proper rigid motion taking ``pred`` onto ``true``.

    Attributes:
        rotation: (..., 3, 3) proper rotation.
        translation: (..., 3).
        reflection: (...,) bool, True where an improper transform would fit better.
    """

    rotation: Tensor
    translation: Tensor
    reflection: Tensor

    def apply(self, points: Tensor) -> Tensor:
        """Move points: (..., N, 3) -> (..., N, 3)."""
        return points @ self.rotation.transpose(-1, -2) + self.translation.unsqueeze(-2)


def _det3(matrix: Tensor) -> Tensor:
    """Determinant of (..., 3, 3) matrices (cheaper than linalg.det for tiny batches)."""
    return (torch.linalg.cross(matrix[..., 0, :], matrix[..., 1, :]) * matrix[..., 2, :]).sum(-1)


def kabsch(true: Tensor, pred: Tensor, weights: Tensor | None = None) -> RigidAlignment:
    """Optimal proper rigid motion of ``pred`` onto ``true`` (batched Kabsch).

    Args:
        true: (..., N, 3) reference points.
        pred: (..., N, 3) points to move, in corresponding order.
        weights: optional (..., N) or (N,) non-negative point weights.

    Returns:
        RigidAlignment with batch shape ``true.shape[:-2]``.
    """
    if weights is None:
        mean_true, mean_pred = true.mean(-2), pred.mean(-2)
        centred_pred = pred - mean_pred.unsqueeze(-2)
    else:
        weights = (weights / weights.sum(-1, keepdim=True)).unsqueeze(-1)
        mean_true, mean_pred = (weights * true).sum(-2), (weights * pred).sum(-2)
        centred_pred = (pred - mean_pred.unsqueeze(-2)) * weights
    covariance = centred_pred.transpose(-1, -2) @ (true - mean_true.unsqueeze(-2))
    u, _, vh = torch.linalg.svd(covariance)
    sign = torch.sign(_det3(u) * _det3(vh))  # det(V U^T)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    correction = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], -1)
    rotation = vh.transpose(-1, -2) @ (correction.unsqueeze(-1) * u.transpose(-1, -2))
    translation = mean_true - (rotation @ mean_pred.unsqueeze(-1)).squeeze(-1)
    return RigidAlignment(rotation, translation, sign < 0)


@dataclass
class AlignedRMSD:
    """Result of an aligned RMSD.

    Attributes:
        rmsd: () or (B,) root mean squared deviation after superposition (Å).
        reflection: () or (B,) bool, a mirror image of pred would fit better.
        alignment: the rigid motion applied to pred.
    """

    rmsd: Tensor
    reflection: Tensor
    alignment: RigidAlignment


@torch.no_grad()
def aligned_rmsd(pos_true: Tensor, pos_pred: Tensor) -> AlignedRMSD:
    """Coordinate RMSD after the optimal proper superposition of pred onto true.

    RMSD = sqrt(mean_i |R q_i + t - p_i|^2) with atom identity from the data order.

    Args:
        pos_true: (N, 3) or (B, N, 3).
        pos_pred: same shape.

    Returns:
        AlignedRMSD; NaN where an input is not finite.
    """
    pos_true, pos_pred = _check_pair(pos_true, pos_pred)
    finite = torch.isfinite(pos_true).all(-1).all(-1) & torch.isfinite(pos_pred).all(-1).all(-1)
    safe_true = torch.where(finite[..., None, None], pos_true, torch.zeros_like(pos_true))
    safe_pred = torch.where(finite[..., None, None], pos_pred, torch.zeros_like(pos_pred))
    alignment = kabsch(safe_true, safe_pred)
    rmsd = (alignment.apply(safe_pred) - safe_true).square().sum(-1).mean(-1).sqrt()
    rmsd = torch.where(finite, rmsd, torch.full_like(rmsd, float("nan")))
    return AlignedRMSD(rmsd, alignment.reflection & finite, alignment)


def aligned_rmsd_center(pos_true: Tensor, pos_pred: Tensor, mol_index: Tensor) -> AlignedRMSD:
    """Aligned RMSD of the unweighted molecule centroids.

    Args:
        pos_true: (N, 3) or (B, N, 3).
        pos_pred: same shape.
        mol_index: (N,) molecule of each atom, 0..M-1.

    Returns:
        AlignedRMSD over the M centroids.
    """
    pos_true, pos_pred = _check_pair(pos_true, pos_pred)
    return aligned_rmsd(molecule_centroids(pos_true, mol_index), molecule_centroids(pos_pred, mol_index))
