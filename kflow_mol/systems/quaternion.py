"""Unit quaternions, SLERP and inertial (principal-axes) frames for the AssembleFlow arm.

Quaternions are ``(..., 4)`` tensors ``(w, x, y, z)``; ``q`` and ``-q`` are the same rotation.
The rotation of a vector ``v`` is ``q v q*`` (active), matching :func:`matrix_from_quat`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter

_SMALL = 1e-6


def quat_mul(p: Tensor, q: Tensor) -> Tensor:
    """Hamilton product ``p q`` (rotate by ``q`` first, then ``p``), shapes ``(..., 4)``."""
    w1, x1, y1, z1 = p.unbind(-1)
    w2, x2, y2, z2 = q.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def quat_conj(q: Tensor) -> Tensor:
    """Conjugate (the inverse rotation of a unit quaternion), ``(..., 4)``."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def canonical(q: Tensor) -> Tensor:
    """The representative with ``w >= 0`` (the rotation angle in ``[0, pi]``), ``(..., 4)``."""
    return torch.where(q[..., :1] < 0, -q, q)


def quat_from_rotvec(omega: Tensor) -> Tensor:
    """``exp``: rotation vector ``(..., 3)`` (axis times angle) to a unit quaternion ``(..., 4)``."""
    theta2 = (omega * omega).sum(-1, keepdim=True)
    theta = theta2.sqrt()
    small = theta < _SMALL
    safe = torch.where(small, torch.ones_like(theta), theta)
    half_sinc = torch.where(small, 0.5 - theta2 / 48, torch.sin(0.5 * safe) / safe)
    return torch.cat([torch.cos(0.5 * theta), half_sinc * omega], dim=-1)


def rotvec_from_quat(q: Tensor) -> Tensor:
    """``log``: unit quaternion ``(..., 4)`` to its rotation vector with angle in ``[0, pi]``, ``(..., 3)``."""
    q = canonical(q)
    w, v = q[..., :1], q[..., 1:]
    n = v.norm(dim=-1, keepdim=True)
    small = n < _SMALL
    safe_n = torch.where(small, torch.ones_like(n), n)
    factor = torch.where(small, 2 / w.clamp_min(_SMALL), 2 * torch.atan2(n, w) / safe_n)
    return factor * v


def matrix_from_quat(q: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of unit quaternions ``(..., 4)``."""
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - z * w),
        2 * (x * z + y * w),
        2 * (x * y + z * w),
        1 - 2 * (x * x + z * z),
        2 * (y * z - x * w),
        2 * (x * z - y * w),
        2 * (y * z + x * w),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def quat_from_matrix(rot: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)`` (``w >= 0``) of rotation matrices ``(..., 3, 3)``.

    Uses the eigenvector of Bar-Itzhack's symmetric 4x4 matrix (robust at every angle, and the
    nearest rotation when ``rot`` is slightly non-orthogonal).
    """
    r = rot
    k = (
        torch.stack(
            [
                torch.stack(
                    [
                        r[..., 0, 0] - r[..., 1, 1] - r[..., 2, 2],
                        r[..., 1, 0] + r[..., 0, 1],
                        r[..., 2, 0] + r[..., 0, 2],
                        r[..., 2, 1] - r[..., 1, 2],
                    ],
                    -1,
                ),
                torch.stack(
                    [
                        r[..., 1, 0] + r[..., 0, 1],
                        r[..., 1, 1] - r[..., 0, 0] - r[..., 2, 2],
                        r[..., 2, 1] + r[..., 1, 2],
                        r[..., 0, 2] - r[..., 2, 0],
                    ],
                    -1,
                ),
                torch.stack(
                    [
                        r[..., 2, 0] + r[..., 0, 2],
                        r[..., 2, 1] + r[..., 1, 2],
                        r[..., 2, 2] - r[..., 0, 0] - r[..., 1, 1],
                        r[..., 1, 0] - r[..., 0, 1],
                    ],
                    -1,
                ),
                torch.stack(
                    [
                        r[..., 2, 1] - r[..., 1, 2],
                        r[..., 0, 2] - r[..., 2, 0],
                        r[..., 1, 0] - r[..., 0, 1],
                        r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2],
                    ],
                    -1,
                ),
            ],
            -2,
        )
        / 3.0
    )
    _, vectors = torch.linalg.eigh(k.double())
    xyzw = vectors[..., -1].to(rot.dtype)
    return canonical(torch.cat([xyzw[..., 3:], xyzw[..., :3]], dim=-1))


def slerp(q0: Tensor, q1: Tensor, t: Tensor) -> Tensor:
    """Spherical linear interpolation along the SHORTER arc (``q1`` sign-flipped if needed).

    Args:
        q0: start quaternions, ``(..., 4)``.
        q1: end quaternions, ``(..., 4)``.
        t: fractions broadcastable to ``(..., 1)``.

    Returns:
        ``q0 (q0* q1)^t``, ``(..., 4)``: the SO(3) geodesic, whatever the signs of the inputs.
    """
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    relative = quat_mul(quat_conj(q0), q1)
    return quat_mul(q0, quat_from_rotvec(t * rotvec_from_quat(relative)))


def quat_sq_distance(p: Tensor, q: Tensor) -> Tensor:
    """Sign-invariant squared distance ``min(|p - q|^2, |p + q|^2)``, shape ``(...)``."""
    return torch.minimum((p - q).pow(2).sum(-1), (p + q).pow(2).sum(-1))


def inertial_frames(pos: Tensor, mol_index: Tensor, num_mols: int | None = None) -> Tensor:
    """Principal-axes frames of every molecule with unit masses (AssembleFlow's body frames).

    Columns are the eigenvectors of the inertia tensor ``sum_a (|r_a|^2 I - r_a r_a^T)`` in
    ascending moment order; the first two are signed so that the third moment
    ``sum_a (r_a . e)^3`` is non-negative (a deterministic, rotation-equivariant choice for
    molecules without that symmetry), the third is ``e1 x e2`` (right-handed).

    Args:
        pos: atom positions, ``(A, 3)``.
        mol_index: molecule of every atom, ``(A,)``.
        num_mols: ``M``.

    Returns:
        Rotation matrices ``(M, 3, 3)`` (body -> space), in the dtype of ``pos``.
    """
    num_mols = int(mol_index.max()) + 1 if num_mols is None else num_mols
    rel = (pos - scatter(pos, mol_index, dim=0, dim_size=num_mols, reduce="mean")[mol_index]).double()
    outer = rel.unsqueeze(-1) * rel.unsqueeze(-2)
    eye = torch.eye(3, dtype=rel.dtype, device=rel.device)
    inertia = scatter(
        (rel * rel).sum(-1)[:, None, None] * eye - outer, mol_index, dim=0, dim_size=num_mols, reduce="sum"
    )
    _, axes = torch.linalg.eigh(inertia)
    third = scatter(
        (rel.unsqueeze(-1) * axes[mol_index]).sum(-2) ** 3, mol_index, dim=0, dim_size=num_mols, reduce="sum"
    )  # (M, 3)
    sign = torch.where(third < 0, -1.0, 1.0).to(axes.dtype)
    e1, e2 = axes[..., 0] * sign[:, :1], axes[..., 1] * sign[:, 1:2]
    frames = torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)
    return frames.to(pos.dtype)
