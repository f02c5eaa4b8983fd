"""Physical plausibility of a packed cluster: atom collisions and molecule separation.

Definitions (per cluster; N atoms, M molecules, r = Cordero covalent radii, d = distance):

Collision rate (default, ours): the fraction of ordered atom pairs (i, j) of *different*
molecules with ``d_ij < radius_scale * (r_i + r_j)``, over all such pairs (each unordered pair
is counted twice in both, so this is also the unordered fraction). Real crystals score 0 at
``radius_scale = 1`` (the shortest intermolecular contacts, hydrogen bonds, are ~1.6-2.0 Å
against a 0.97 Å H+O covalent sum).

Collision rate (``reference_compatible=True``, AssembleFlow): the fraction of *all* N^2 ordered
atom pairs, diagonal included, with ``d_ij < r_i + r_j``. Every diagonal entry and every covalent
bond counts, so even a perfect crystal scores above zero (N + 2 * bonds) / N^2; multiply by 100
for their percentage.

Separation: the fraction of unordered pairs of distinct molecules whose closest atoms are
further apart than ``threshold`` (default 0.5 Å, AssembleFlow's value), over M(M-1)/2 pairs.
A well-separated packing scores 1 (100 %); interpenetrating molecules lower it.

Non-finite coordinates give NaN for that cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kflow_mol.metrics.elements import covalent_radii
from kflow_mol.metrics.packing import distance_matrix


@dataclass
class ContactRate:
    """A per-cluster rate of contacts.

    Attributes:
        rate: () or (B,) fraction in [0, 1] (NaN for non-finite input).
        count: () or (B,) number of pairs meeting the condition (ordered pairs for collisions,
            unordered molecule pairs for separation).
        total: number of pairs the rate is taken over, counted the same way.
    """

    rate: Tensor
    count: Tensor
    total: int


def _prepare(pos: Tensor, mol_index: Tensor) -> tuple[Tensor, Tensor, bool]:
    if pos.dim() not in (2, 3) or pos.shape[-1] != 3:
        raise ValueError(f"pos must be (N, 3) or (B, N, 3), got {tuple(pos.shape)}")
    mol_index = torch.as_tensor(mol_index, device=pos.device).long()
    if mol_index.shape != (pos.shape[-2],):
        raise ValueError(f"mol_index must be (N,) with N={pos.shape[-2]}, got {tuple(mol_index.shape)}")
    if not pos.is_floating_point():
        pos = pos.to(torch.get_default_dtype())
    unbatched = pos.dim() == 2
    return (pos[None] if unbatched else pos), mol_index, unbatched


def _finish(count: Tensor, total: int, finite: Tensor, dtype: torch.dtype, unbatched: bool) -> ContactRate:
    rate = count.to(dtype) / total
    rate = torch.where(finite, rate, torch.full_like(rate, float("nan")))
    if unbatched:
        return ContactRate(rate[0], count[0], total)
    return ContactRate(rate, count, total)


@torch.no_grad()
def collision_rate(
    pos: Tensor,
    z: Tensor,
    mol_index: Tensor,
    *,
    radius_scale: float = 1.0,
    reference_compatible: bool = False,
) -> ContactRate:
    """Fraction of colliding atom pairs (see module docstring for both definitions).

    Args:
        pos: (N, 3) or (B, N, 3) positions.
        z: (N,) atomic numbers.
        mol_index: (N,) molecule of each atom.
        radius_scale: pairs closer than radius_scale * (r_i + r_j) collide (ours only).
        reference_compatible: AssembleFlow's definition (all N^2 pairs, diagonal included,
            radius_scale 1).

    Returns:
        ContactRate per cluster.
    """
    pos, mol_index, unbatched = _prepare(pos, mol_index)
    radii = covalent_radii(torch.as_tensor(z, device=pos.device), dtype=pos.dtype)
    limit = radii[:, None] + radii[None, :]
    n = pos.shape[-2]
    if reference_compatible:
        counted = torch.ones(n, n, dtype=torch.bool, device=pos.device)
    else:
        limit = radius_scale * limit
        counted = mol_index[:, None] != mol_index[None, :]
    total = int(counted.sum())
    if total == 0:
        raise ValueError("no atom pairs of different molecules: collision rate undefined")
    counts = []
    for cluster in pos:  # one N x N matrix at a time bounds memory
        counts.append(((distance_matrix(cluster) < limit) & counted).sum())
    finite = torch.isfinite(pos).all(-1).all(-1)
    return _finish(torch.stack(counts), total, finite, pos.dtype, unbatched)


def molecule_min_distances(pos: Tensor, mol_index: Tensor) -> Tensor:
    """Closest-atom distance between every pair of molecules.

    Args:
        pos: (B, N, 3) positions.
        mol_index: (N,) molecule index 0..M-1.

    Returns:
        (B, M, M) minimum distances (diagonal 0).
    """
    num_molecules = int(mol_index.max()) + 1
    out = []
    for cluster in pos:
        distance = distance_matrix(cluster)
        by_column = distance.new_full((distance.shape[0], num_molecules), float("inf"))
        by_column.scatter_reduce_(1, mol_index.expand_as(distance), distance, "amin")
        by_pair = by_column.new_full((num_molecules, num_molecules), float("inf"))
        index = mol_index[:, None].expand_as(by_column)
        out.append(by_pair.scatter_reduce_(0, index, by_column, "amin"))
    return torch.stack(out)


@torch.no_grad()
def separation_rate(pos: Tensor, mol_index: Tensor, *, threshold: float = 0.5) -> ContactRate:
    """Fraction of molecule pairs whose closest atoms are further than ``threshold`` Å.

    Args:
        pos: (N, 3) or (B, N, 3) positions.
        mol_index: (N,) molecule of each atom, 0..M-1 (M >= 2).
        threshold: separation distance in Å (AssembleFlow: 0.5).

    Returns:
        ContactRate per cluster over the M(M-1)/2 molecule pairs.
    """
    pos, mol_index, unbatched = _prepare(pos, mol_index)
    num_molecules = int(mol_index.max()) + 1
    if num_molecules < 2:
        raise ValueError("separation needs at least 2 molecules")
    closest = molecule_min_distances(pos, mol_index)
    upper = torch.triu(torch.ones(num_molecules, num_molecules, dtype=torch.bool, device=pos.device), diagonal=1)
    count = ((closest > threshold) & upper).sum((-1, -2))
    finite = torch.isfinite(pos).all(-1).all(-1)
    return _finish(count, num_molecules * (num_molecules - 1) // 2, finite, pos.dtype, unbatched)


def _per_cluster(batch: Tensor, num_atoms: int) -> list[slice]:
    from kflow_mol.metrics.packing import _cluster_slices

    offsets, sizes = _cluster_slices(batch, num_atoms)
    return [slice(o, o + s) for o, s in zip(offsets.tolist(), sizes.tolist())]


def collision_rate_batch(pos: Tensor, z: Tensor, mol_index: Tensor, batch: Tensor, **options) -> Tensor:
    """Collision rate of every cluster of a PyG batch.

    Args:
        pos: (A, 3) positions of all clusters.
        z: (A,) atomic numbers.
        mol_index: (A,) molecule index within each cluster.
        batch: (A,) sorted cluster index.
        **options: ``radius_scale`` / ``reference_compatible`` of ``collision_rate``.

    Returns:
        (C,) rates.
    """
    batch = torch.as_tensor(batch, device=pos.device)
    return torch.stack(
        [
            collision_rate(pos[part], z[part], mol_index[part], **options).rate
            for part in _per_cluster(batch, pos.shape[0])
        ]
    )


def separation_rate_batch(pos: Tensor, mol_index: Tensor, batch: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Separation rate of every cluster of a PyG batch.

    Args:
        pos: (A, 3) positions of all clusters.
        mol_index: (A,) molecule index within each cluster.
        batch: (A,) sorted cluster index.
        threshold: separation distance in Å.

    Returns:
        (C,) rates.
    """
    batch = torch.as_tensor(batch, device=pos.device)
    return torch.stack(
        [
            separation_rate(pos[part], mol_index[part], threshold=threshold).rate
            for part in _per_cluster(batch, pos.shape[0])
        ]
    )
