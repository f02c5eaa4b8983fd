"""Synthetic clusters for the molecular branch's tests (shapes and motions only, no chemistry).

:func:`synthetic_cluster` builds one cluster of identical rigid random molecules: the crystal
puts them on a 5 Å grid with random orientations, the start moves and turns every molecule
away from its site. It has the fields of :class:`kflow_mol.data.AssemblyData` that the flows
and systems read (``z``, ``mol_index``, ``pos_start``, ``pos_target``, ``rot_start_to_target``)
and batches like it (``mol_index`` is offset by the molecule count).

Example:
    >>> from torch_geometric.data import Batch
    >>> batch = Batch.from_data_list([synthetic_cluster(seed) for seed in range(2)])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data

from kflow_mol.rigid import so3_exp

ATOM_TYPES = (6, 8, 7, 1, 6, 6, 9)
"""Atomic numbers of a synthetic molecule's atoms, in order (cycled for longer molecules)."""


class SyntheticCluster(Data):
    """A stand-in for ``AssemblyData``: same fields, same batching rule for ``mol_index``."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "mol_index":
            return self.num_mols
        return super().__inc__(key, value, *args, **kwargs)


def synthetic_cluster(
    seed: int,
    num_mols: int = 6,
    atoms_per_mol: int = 4,
    shift: float = 2.0,
    dtype: torch.dtype = torch.float64,
    body_scale: Sequence[float] = (1.4, 0.9, 0.5),
    start_turn: float = 1.2,
) -> SyntheticCluster:
    """One cluster of rigid random molecules (computed in float64, returned in ``dtype``).

    Args:
        seed: seed of every random draw.
        num_mols: molecules (at most 27, the 3x3x3 crystal grid).
        atoms_per_mol: atoms per molecule.
        shift: standard deviation (Å) of every start centroid's offset from its crystal site.
        dtype: dtype of the positions and rotations.
        body_scale: per-axis scale of the random molecule body (Å); unequal axes make
            well-defined inertial frames.
        start_turn: standard deviation of the start rotation vectors (rad); the crystal's is 0.8.

    Returns:
        A :class:`SyntheticCluster` centred on its start centroid, ``num_mols * atoms_per_mol`` atoms.
    """
    f64 = torch.float64
    g = torch.Generator().manual_seed(seed)
    body = torch.randn(atoms_per_mol, 3, generator=g, dtype=f64) * torch.tensor(body_scale, dtype=f64)
    body -= body.mean(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(3.0, dtype=f64)] * 3, indexing="ij"), -1).reshape(-1, 3)
    trans_target = grid[:num_mols] * 5.0
    rot_target = so3_exp(torch.randn(num_mols, 3, generator=g, dtype=f64) * 0.8)
    rot_start = so3_exp(torch.randn(num_mols, 3, generator=g, dtype=f64) * start_turn)
    trans_start = trans_target + shift * torch.randn(num_mols, 3, generator=g, dtype=f64)
    mol_index = torch.arange(num_mols).repeat_interleave(atoms_per_mol)
    b = body.repeat(num_mols, 1)
    pos_target = (rot_target[mol_index] @ b.unsqueeze(-1)).squeeze(-1) + trans_target[mol_index]
    pos_start = (rot_start[mol_index] @ b.unsqueeze(-1)).squeeze(-1) + trans_start[mol_index]
    center = pos_start.mean(0)
    z = torch.tensor([ATOM_TYPES[i % len(ATOM_TYPES)] for i in range(atoms_per_mol)]).repeat(num_mols)
    return SyntheticCluster(
        z=z,
        mol_index=mol_index,
        num_mols=num_mols,
        pos_start=(pos_start - center).to(dtype),
        pos_target=(pos_target - center).to(dtype),
        rot_start_to_target=(rot_target @ rot_start.transpose(-1, -2)).to(dtype),
        num_nodes=len(z),
    )


def synthetic_batch(*seeds: int, **options) -> Batch:
    """A batch of :func:`synthetic_cluster` clusters, one per seed (``options`` go to each)."""
    return Batch.from_data_list([synthetic_cluster(seed, **options) for seed in seeds])
