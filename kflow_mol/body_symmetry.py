"""Point-group symmetries of rigid molecules, and the rotation targets they make ambiguous.

A molecule with a proper symmetry rotation ``S`` (``S b_i = b_{pi(i)}`` for its body-frame
atoms ``b`` and a graph automorphism ``pi``) looks the same at orientation ``R`` and ``R S``.
An equivariant network sees atoms as a set, so it cannot tell which of the ``|G|``
equivalent rotations start -> crystal the file's atom order picked: trained on that label,
it regresses onto their average and learns to turn molecules too little. The symmetric
target instead takes, per molecule, the equivalent rotation of smallest angle,

    R_rel' = argmin_{S in G} angle(R_rel R_s S^T R_s^T),

which moves every atom onto a crystal site of its own element (the packing is the same;
only the file's atom labels are permuted within the molecule).

Symmetries are the graph automorphisms of :mod:`kflow_mol.metrics.symmetry` (RDKit) that a
proper rotation realises, by the same test as the orientation metric
(:func:`kflow_mol.metrics.orientation.geometric_symmetries`), so the targets and the metric
agree on what a symmetry is.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from kflow_mol.metrics.orientation import SYMMETRY_TOL, geometric_symmetries
from kflow_mol.metrics.rmsd import kabsch
from kflow_mol.metrics.symmetry import SymmetryCache, perceive_bonds


def molecule_symmetries(body: Tensor, z: Tensor, cache: SymmetryCache, tolerance: float = SYMMETRY_TOL) -> Tensor:
    """Proper symmetry rotations of one rigid molecule, identity first.

    Args:
        body: body-frame coordinates, shape ``(n, 3)``.
        z: atomic numbers, shape ``(n,)``.
        cache: RDKit automorphism cache (shared across molecules).
        tolerance: Å, largest atom deviation of an accepted symmetry.

    Returns:
        Rotations ``S`` with ``S b ≈ b[pi]`` for some automorphism ``pi``, shape ``(G, 3, 3)``.
    """
    body = body.double()
    bonds = perceive_bonds(body, z, torch.zeros_like(z))
    graph = cache.canonical(tuple(z.tolist()), tuple(map(tuple, bonds.tolist())))
    automorphisms, _ = cache.automorphisms(graph.key)
    canonical = body[list(graph.order)] - body.mean(0)
    rows = geometric_symmetries(canonical, automorphisms, tolerance)
    rotations = kabsch(canonical[rows], canonical.expand(len(rows), -1, -1)).rotation
    return _unique_rotations(rotations)


def _unique_rotations(rotations: Tensor, atol: float = 1e-3) -> Tensor:
    """Drop near-duplicate rotations (e.g. methyl relabellings that all fit the identity)."""
    unique: list[Tensor] = []
    for rot in rotations:
        if not any(torch.allclose(rot, other, atol=atol) for other in unique):
            unique.append(rot)
    return torch.stack(unique)


def _cluster_key(body: Tensor, z: Tensor) -> str:
    digest = hashlib.sha1(body.detach().cpu().float().numpy().tobytes())
    digest.update(z.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class SymmetricTargets:
    """Minimal-angle rotation targets over each molecule's symmetries, cached per cluster.

    Args:
        tolerance: Å, largest atom deviation of an accepted symmetry.
    """

    def __init__(self, tolerance: float = SYMMETRY_TOL):
        self.tolerance = tolerance
        self._automorphisms = SymmetryCache()
        self._by_cluster: dict[str, Tensor] = {}

    def symmetries(self, body: Tensor, z: Tensor, mol_index: Tensor, num_mols: int) -> Tensor:
        """Body-frame symmetries of every molecule, padded with the identity.

        Args:
            body: body-frame coordinates of all atoms, shape ``(A, 3)``.
            z: atomic numbers, shape ``(A,)``.
            mol_index: molecule of every atom (``0 .. M-1``), shape ``(A,)``.
            num_mols: ``M``.

        Returns:
            Shape ``(M, G, 3, 3)``; ``G`` is the largest group of the molecules.
        """
        per_molecule = []
        for m in range(num_mols):
            atoms = mol_index == m
            key = _cluster_key(body[atoms], z[atoms])
            if key not in self._by_cluster:
                self._by_cluster[key] = molecule_symmetries(
                    body[atoms].cpu(), z[atoms].cpu(), self._automorphisms, self.tolerance
                )
            per_molecule.append(self._by_cluster[key])
        size = max(len(s) for s in per_molecule)
        eye = torch.eye(3, dtype=torch.float64)
        padded = [torch.cat([s, eye.expand(size - len(s), 3, 3)]) for s in per_molecule]
        return torch.stack(padded).to(body.device)

    def nearest(self, rot_start_to_target: Tensor, rot_start: Tensor, symmetries: Tensor) -> Tensor:
        """The symmetry-equivalent start -> crystal rotation of smallest angle, per molecule.

        Args:
            rot_start_to_target: ``R_t R_s^T`` from the file's atom order, shape ``(M, 3, 3)``.
            rot_start: start orientations ``R_s``, shape ``(M, 3, 3)``.
            symmetries: body-frame symmetries, shape ``(M, G, 3, 3)``.

        Returns:
            Rotations, shape ``(M, 3, 3)``, in the dtype of ``rot_start_to_target``.
        """
        rel, rs = rot_start_to_target.double(), rot_start.double()
        lab = rs[:, None] @ symmetries.double().transpose(-1, -2) @ rs[:, None].transpose(-1, -2)
        candidates = rel[:, None] @ lab  # (M, G, 3, 3)
        trace = candidates.diagonal(dim1=-2, dim2=-1).sum(-1)  # larger trace = smaller angle
        best = trace.argmax(dim=1)
        return candidates[torch.arange(len(best)), best].to(rot_start_to_target.dtype)

    def __call__(self, batch) -> Tensor:
        """Minimal-angle ``rot_start_to_target`` of every molecule of a batch, shape ``(M, 3, 3)``."""
        mol_index = batch.mol_index
        out = torch.empty_like(batch.rot_start_to_target, dtype=torch.float64)
        atom_batch = batch.batch if getattr(batch, "batch", None) is not None else torch.zeros_like(batch.z)
        for cluster in range(int(atom_batch.max()) + 1):
            atoms = atom_batch == cluster
            mols = torch.unique(mol_index[atoms])
            local = mol_index[atoms] - mols[0]
            sym = self.symmetries(batch.body[atoms], batch.z[atoms], local, len(mols))
            out[mols] = self.nearest(batch.rot_start_to_target[mols].double(), batch.rot_start[mols], sym)
        return out
