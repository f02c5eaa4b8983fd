"""Rigid-body geometry for molecular assembly: SO(3) exp/log and rigid states to atoms.

Every molecule ``m`` is rigid: its atoms are ``R_m @ body_a + t_m``. The assembly flow state
accumulates, per molecule, a centroid shift ``dc_m`` and a rotation vector ``omega_m`` from
the start state, so the atoms at any point of the flow are

    pos_a(k) = exp(omega_m(k)) @ (pos_start_a - c_start_m) + c_start_m + dc_m(k),

which is ``R_m(k) body_a + t_m(k)`` with ``R_m(k) = exp(omega_m(k)) R_m^0``. Rotations are
therefore integrated exactly: the ODE moves the log-coordinates ``omega``, and ``exp`` maps
them back onto SO(3) without drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.utils import scatter

_SMALL_ANGLE = 1e-4


def hat(omega: Tensor) -> Tensor:
    """Skew-symmetric matrix of a 3-vector (``hat(w) @ v == cross(w, v)``).

    Args:
        omega: vectors, shape ``(..., 3)``.

    Returns:
        Matrices, shape ``(..., 3, 3)``.
    """
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*omega.shape[:-1], 3, 3)


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrix of a rotation vector (Rodrigues' formula, Taylor series near 0).

    Args:
        omega: rotation vectors (axis times angle in radians), shape ``(..., 3)``.

    Returns:
        Rotation matrices, shape ``(..., 3, 3)``.
    """
    theta2 = (omega * omega).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    theta = theta2.clamp_min(0).sqrt()
    small = theta < _SMALL_ANGLE
    safe_theta = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe_theta) / safe_theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe_theta)) / safe_theta**2)
    K = hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def so3_log(rot: Tensor) -> Tensor:
    """Rotation vector of a rotation matrix, angle in ``[0, pi]``; inverse of :func:`so3_exp`.

    Stable at small angles (first-order series) and near ``pi`` (axis from the symmetric
    part ``(R + I) / 2 = a a^T``, sign chosen from the skew part).

    Args:
        rot: rotation matrices, shape ``(..., 3, 3)``.

    Returns:
        Rotation vectors, shape ``(..., 3)``.
    """
    skew = torch.stack(
        [rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]],
        dim=-1,
    )  # 2 sin(theta) * axis
    trace = rot.diagonal(dim1=-2, dim2=-1).sum(-1)
    cos = ((trace - 1) / 2).clamp(-1.0, 1.0)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    small = theta < _SMALL_ANGLE
    near_pi = theta > 3.0  # sin(theta)/theta loses precision here; use the symmetric part
    factor = torch.where(small, 0.5 + theta**2 / 12, theta / (2 * torch.where(small, torch.ones_like(sin), sin)))
    omega = factor.unsqueeze(-1) * skew
    if near_pi.any():
        sym = (rot[near_pi] + rot[near_pi].transpose(-1, -2)) / 2
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        c = cos[near_pi][:, None, None]
        aat = (sym - c * eye) / (1 - c)  # sym = cos I + (1 - cos) a a^T
        column = aat.diagonal(dim1=-2, dim2=-1).argmax(-1)
        axis = aat[torch.arange(len(column), device=rot.device), :, column]
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sign = torch.sign((axis * skew[near_pi]).sum(-1, keepdim=True))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        omega = omega.clone()
        omega[near_pi] = sign * axis * theta[near_pi].unsqueeze(-1)
    return omega


def so3_left_jacobian_inverse(omega: Tensor) -> Tensor:
    """Inverse left Jacobian of SO(3): maps a lab-frame angular velocity to a log-coordinate rate.

    With ``R(k) = exp(omega(k)) R_0`` the lab-frame (spatial) angular velocity is
    ``Omega = J_l(omega) d omega/dk``, so ``d omega/dk = J_l(omega)^{-1} Omega``, where
    ``J_l^{-1}(w) = I - hat(w)/2 + (1/theta^2 - (1 + cos theta) / (2 theta sin theta)) hat(w)^2``.
    Along one geodesic (``Omega`` parallel to ``omega``) it is the identity.

    Args:
        omega: rotation vectors with angle below ``2 pi``, shape ``(..., 3)``.

    Returns:
        Matrices, shape ``(..., 3, 3)``.
    """
    theta2 = (omega * omega).sum(-1, keepdim=True).unsqueeze(-1)
    theta = theta2.clamp_min(0).sqrt()
    small = theta < 1e-2
    safe = torch.where(small, torch.ones_like(theta), theta)
    exact = 1 / safe**2 - (1 + torch.cos(safe)) / (2 * safe * torch.sin(safe))
    c2 = torch.where(small, 1 / 12 + theta2 / 720, exact)
    K = hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(K)
    return eye - K / 2 + c2 * (K @ K)


def best_rotations(source: Tensor, target: Tensor, mol_index: Tensor, num_mols: int) -> Tensor:
    """Per molecule, the proper rotation ``R`` minimising ``sum |R source_a - target_a|^2`` (Kabsch).

    Args:
        source: centred atom offsets, shape ``(A, 3)``.
        target: centred atom offsets, shape ``(A, 3)``.
        mol_index: molecule of every atom, shape ``(A,)``, values ``0 .. M-1``.
        num_mols: ``M``.

    Returns:
        Rotations, shape ``(M, 3, 3)``, in ``source``'s dtype (computed in float64).
    """
    outer = source.double().unsqueeze(-1) * target.double().unsqueeze(-2)  # (A, 3, 3)
    cov = scatter(outer.reshape(-1, 9), mol_index, dim=0, dim_size=num_mols, reduce="sum").reshape(-1, 3, 3)
    u, _, vt = torch.linalg.svd(cov)
    det = torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2))
    diag = torch.ones(num_mols, 3, dtype=cov.dtype, device=cov.device)
    diag[:, 2] = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    return (vt.transpose(-1, -2) @ torch.diag_embed(diag) @ u.transpose(-1, -2)).to(source.dtype)


def centroids(pos: Tensor, mol_index: Tensor, num_mols: int | None = None) -> Tensor:
    """Unweighted centroid of every molecule.

    Args:
        pos: atom positions, shape ``(A, 3)``.
        mol_index: molecule of every atom, shape ``(A,)``, values ``0 .. M-1``.
        num_mols: ``M``; inferred from ``mol_index`` when ``None``.

    Returns:
        Centroids, shape ``(M, 3)``.
    """
    return scatter(pos, mol_index, dim=0, dim_size=num_mols, reduce="mean")


@dataclass
class RigidMotion:
    """Per-molecule rigid motion from a start state to a target state.

    Attributes:
        delta_c: centroid shifts ``c_target - c_start``, shape ``(M, 3)``.
        omega: rotation vectors ``log(R_target R_start^T)``, shape ``(M, 3)``.
    """

    delta_c: Tensor
    omega: Tensor


def rigid_motion(
    pos_start: Tensor, rot_start_to_target: Tensor, pos_target: Tensor, mol_index: Tensor, num_mols: int | None = None
) -> RigidMotion:
    """Rigid motion (centroid shift, rotation vector) taking each start molecule to its target.

    Args:
        pos_start: start atom positions, shape ``(A, 3)``.
        rot_start_to_target: ``R_target R_start^T`` per molecule, shape ``(M, 3, 3)``.
        pos_target: target atom positions, shape ``(A, 3)``.
        mol_index: molecule of every atom, shape ``(A,)``.
        num_mols: ``M``.

    Returns:
        The :class:`RigidMotion` with ``(M, 3)`` fields.
    """
    num_mols = num_mols if num_mols is not None else rot_start_to_target.shape[0]
    delta_c = centroids(pos_target, mol_index, num_mols) - centroids(pos_start, mol_index, num_mols)
    return RigidMotion(delta_c=delta_c, omega=so3_log(rot_start_to_target))


def apply_rigid_motion(
    pos_start: Tensor, mol_index: Tensor, delta_c: Tensor, omega: Tensor, centroid_start: Tensor | None = None
) -> Tensor:
    """Atom positions after rotating each start molecule about its centroid and shifting it.

    ``pos_a = exp(omega_m) (pos_start_a - c_m) + c_m + delta_c_m``, with ``m = mol_index[a]``.

    Args:
        pos_start: start atom positions, shape ``(A, 3)``.
        mol_index: molecule of every atom, shape ``(A,)``, values ``0 .. M-1``.
        delta_c: centroid shifts, shape ``(M, 3)``.
        omega: rotation vectors, shape ``(M, 3)``.
        centroid_start: start centroids, shape ``(M, 3)``; computed when ``None``.

    Returns:
        Atom positions, shape ``(A, 3)``.
    """
    if centroid_start is None:
        centroid_start = centroids(pos_start, mol_index, delta_c.shape[0])
    rot = so3_exp(omega)[mol_index]  # (A, 3, 3)
    rel = pos_start - centroid_start[mol_index]
    return (rot @ rel.unsqueeze(-1)).squeeze(-1) + centroid_start[mol_index] + delta_c[mol_index]
