"""Canonical start orientations: every start molecule turned to its cluster's frame.

The start states of the benchmark give every molecule a uniform random orientation ``R0``.
A network that must output the turn ``log(R1 R0^T)`` then has to compose the crystal
orientation it infers with a random rotation it reads off the atoms, a different answer for
every draw of ``R0``. Turning every start molecule, before the flow, so that its principal
axes (:func:`~kflow_mol.systems.quaternion.inertial_frames`) are those of its cluster's start
centroids makes the start orientation a function of the molecule and the cluster only:

    C_m = F_c I_m^T,    pos_a <- C_m (pos_a - c_m) + c_m,

with ``I_m`` the inertial frame of molecule ``m`` and ``F_c`` that of the start centroids of its
cluster. It uses only the start (known at inference) and is rotation-equivariant: rotating the
input by ``Q`` maps ``F_c -> Q F_c`` and ``I_m -> Q I_m``, hence the canonical start to its
rotation by ``Q`` (up to the sign conventions of near-symmetric frames). The centroids are
untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kflow_mol.rigid import centroids
from kflow_mol.systems.quaternion import inertial_frames


def canonical_turns(batch: Any) -> Tensor:
    """``C_m = F_c I_m^T`` of every molecule, shape ``(M, 3, 3)``, float64.

    Args:
        batch: a batch of clusters with ``pos_start``, ``mol_index`` (global) and ``batch``.
    """
    num_mols = int(batch.mol_index.max()) + 1
    atom_batch = batch.batch if getattr(batch, "batch", None) is not None else torch.zeros_like(batch.z)
    mol_batch = torch.zeros(num_mols, dtype=torch.long, device=atom_batch.device).scatter_(
        0, batch.mol_index, atom_batch
    )
    centre = centroids(batch.pos_start.double(), batch.mol_index, num_mols)
    molecule = inertial_frames(batch.pos_start.double(), batch.mol_index, num_mols)
    cluster = inertial_frames(centre, mol_batch)
    return cluster[mol_batch] @ molecule.transpose(-1, -2)


def canonical_start(batch: Any) -> Any:
    """A copy of ``batch`` whose start molecules are turned by :func:`canonical_turns`.

    ``pos_start``, and when present ``rot_start`` (``C R0``) and ``rot_start_to_target``
    (``R_rel C^T``), are replaced; the crystal (``pos_target``) and the centroids are not.
    """
    turn = canonical_turns(batch)
    out = batch.clone()
    num_mols = turn.shape[0]
    pos = batch.pos_start.double()
    centre = centroids(pos, batch.mol_index, num_mols)[batch.mol_index]
    turned = (turn[batch.mol_index] @ (pos - centre).unsqueeze(-1)).squeeze(-1) + centre
    out.pos_start = turned.to(batch.pos_start.dtype)
    if getattr(batch, "rot_start", None) is not None:
        out.rot_start = (turn @ batch.rot_start.double()).to(batch.rot_start.dtype)
    out.rot_start_to_target = (batch.rot_start_to_target.double() @ turn.transpose(-1, -2)).to(
        batch.rot_start_to_target.dtype
    )
    return out
