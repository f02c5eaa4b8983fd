"""Molecular graphs and their symmetry-equivalent atoms, for permutation-invariant RMSD.

Bonds are perceived from coordinates as in RDKit's ``DetermineConnectivity``: atoms i, j of
the same molecule are bonded when ``|p_i - p_j| < bond_factor * (r_i + r_j)`` with Cordero
covalent radii (``bond_factor`` 1.3, RDKit's default ``covFactor``). Bond orders are not
needed: symmetry only depends on the element-labelled connectivity graph.

Every distinct graph is brought to a canonical atom order with RDKit's canonical ranking
(``CanonicalRankAtoms(breakTies=True)``); two molecules whose canonical forms agree are
copies of one compound, and the canonical order maps atoms of one onto the other. The graph
automorphisms of a canonical form (``GetSubstructMatches(mol, mol, uniquify=False,
useChirality=False, maxMatches=max_automorphisms)``) are the atom relabellings that leave
the molecule unchanged (ring flips, methyl rotations, ...). At most ``max_automorphisms`` are
enumerated (default 4096; t-butylbenzene has 2592); when the cap is hit the result says so.
RDKit work is cached per distinct graph, so a data set of one compound costs one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kflow_mol.metrics.elements import covalent_radii

RDKIT_BOND_FACTOR = 1.3


def intra_molecular_pairs(mol_index: Tensor) -> Tensor:
    """All atom pairs i < j of the same molecule.

    Args:
        mol_index: (N,) molecule of each atom.

    Returns:
        (P, 2) long atom index pairs.
    """
    same = mol_index[:, None] == mol_index[None, :]
    return torch.nonzero(torch.triu(same, diagonal=1))


def bonded_pairs(pos: Tensor, z: Tensor, pairs: Tensor, bond_factor: float = RDKIT_BOND_FACTOR) -> Tensor:
    """Which candidate pairs are covalently bonded, for a batch of structures.

    Args:
        pos: (..., N, 3) positions (use the true structures).
        z: (N,) atomic numbers.
        pairs: (P, 2) candidate atom pairs, e.g. ``intra_molecular_pairs``.
        bond_factor: bond when distance < bond_factor * (r_i + r_j).

    Returns:
        (..., P) bool.
    """
    radii = covalent_radii(z.to(pos.device), dtype=pos.dtype)
    limit = bond_factor * (radii[pairs[:, 0]] + radii[pairs[:, 1]])
    distance = (pos[..., pairs[:, 0], :] - pos[..., pairs[:, 1], :]).norm(dim=-1)
    return distance < limit


def perceive_bonds(pos: Tensor, z: Tensor, mol_index: Tensor, bond_factor: float = RDKIT_BOND_FACTOR) -> Tensor:
    """Covalent bonds within molecules, from coordinates.

    Args:
        pos: (N, 3) positions (use the true structure).
        z: (N,) atomic numbers.
        mol_index: (N,) molecule of each atom.
        bond_factor: bond when distance < bond_factor * (r_i + r_j).

    Returns:
        (E, 2) long atom index pairs with i < j.
    """
    pairs = intra_molecular_pairs(mol_index.to(pos.device))
    return pairs[bonded_pairs(pos, z, pairs, bond_factor)]


@dataclass(frozen=True)
class CanonicalGraph:
    """A molecule graph in canonical atom order.

    Attributes:
        key: hashable canonical form (atomic numbers, sorted bonds) shared by all copies.
        order: local atom index of each canonical atom (T,).
    """

    key: tuple
    order: tuple[int, ...]


class SymmetryCache:
    """Canonical forms and automorphisms of molecule graphs, cached per distinct graph.

    Args:
        max_automorphisms: cap on the number of automorphisms enumerated per graph.
    """

    def __init__(self, max_automorphisms: int = 4096):
        if max_automorphisms < 1:
            raise ValueError(f"max_automorphisms must be >= 1, got {max_automorphisms}")
        self.max_automorphisms = max_automorphisms
        self._canonical: dict[tuple, CanonicalGraph] = {}
        self._automorphisms: dict[tuple, tuple[Tensor, bool]] = {}

    @staticmethod
    def _rdkit_mol(atomic_numbers: tuple[int, ...], bonds: tuple[tuple[int, int], ...]):
        from rdkit import Chem

        editable = Chem.RWMol()
        for number in atomic_numbers:
            editable.AddAtom(Chem.Atom(int(number)))
        for i, j in bonds:
            editable.AddBond(int(i), int(j), Chem.BondType.SINGLE)
        mol = editable.GetMol()
        mol.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(mol)
        return mol

    def canonical(self, atomic_numbers: tuple[int, ...], bonds: tuple[tuple[int, int], ...]) -> CanonicalGraph:
        """Canonical form of a graph given by local atomic numbers and local bonds."""
        cache_key = (atomic_numbers, bonds)
        if cache_key not in self._canonical:
            from rdkit import Chem

            ranks = list(Chem.CanonicalRankAtoms(self._rdkit_mol(atomic_numbers, bonds), breakTies=True))
            order = tuple(sorted(range(len(ranks)), key=ranks.__getitem__))
            canonical_numbers = tuple(atomic_numbers[i] for i in order)
            canonical_bonds = tuple(sorted(tuple(sorted((ranks[i], ranks[j]))) for i, j in bonds))
            self._canonical[cache_key] = CanonicalGraph((canonical_numbers, canonical_bonds), order)
        return self._canonical[cache_key]

    def automorphisms(self, key: tuple) -> tuple[Tensor, bool]:
        """Automorphisms of a canonical graph.

        Args:
            key: ``CanonicalGraph.key``.

        Returns:
            (S, T) long tensor, row s maps canonical atom t to atom ``aut[s, t]`` (identity
            first), and whether the enumeration was truncated at ``max_automorphisms``.
        """
        if key not in self._automorphisms:
            numbers, bonds = key
            mol = self._rdkit_mol(numbers, bonds)
            matches = mol.GetSubstructMatches(
                mol, uniquify=False, useChirality=False, maxMatches=self.max_automorphisms
            )
            identity = tuple(range(len(numbers)))
            rows = [identity] + [m for m in matches if tuple(m) != identity]
            truncated = len(matches) >= self.max_automorphisms
            self._automorphisms[key] = (torch.tensor(rows, dtype=torch.long), truncated)
        return self._automorphisms[key]


@dataclass
class CompoundCopies:
    """All copies of one compound in a cluster.

    Attributes:
        members: (M_g,) long, molecule indices of the copies.
        atoms: (M_g, T) long, global atom index of each canonical atom of each copy.
        automorphisms: (S, T) long, shared graph automorphisms (identity first).
    """

    members: Tensor
    atoms: Tensor
    automorphisms: Tensor


@dataclass
class ClusterTopology:
    """Symmetry data of one cluster's molecules.

    Attributes:
        group: (M,) long, molecules with equal group are copies of one compound.
        slot: (M,) long, position of each molecule in its compound's ``members``.
        compounds: one CompoundCopies per group.
        truncated: whether any automorphism enumeration hit the cap.
    """

    group: Tensor
    slot: Tensor
    compounds: list[CompoundCopies]
    truncated: bool


def cluster_topology(
    z: Tensor, mol_index: Tensor, bonds: Tensor, cache: SymmetryCache, device: torch.device | str = "cpu"
) -> ClusterTopology:
    """Canonical orders and automorphisms of every molecule of one cluster.

    Args:
        z: (N,) atomic numbers.
        mol_index: (N,) molecule index 0..M-1.
        bonds: (E, 2) intra-molecular bonds, e.g. from ``perceive_bonds`` on the true cluster.
        cache: shared SymmetryCache.
        device: where the index tensors of the result live.

    Returns:
        ClusterTopology.
    """
    z_cpu, mol_cpu, bonds = z.long().cpu(), mol_index.long().cpu(), bonds.long().cpu()
    num_molecules = int(mol_cpu.max()) + 1
    bond_mol = mol_cpu[bonds[:, 0]]
    local = torch.empty_like(mol_cpu)
    keys: dict[tuple, int] = {}
    group, canonical_atoms, truncated = [], [], False
    automorphisms: dict[int, Tensor] = {}
    for m in range(num_molecules):
        atoms = torch.nonzero(mol_cpu == m).flatten()
        local[atoms] = torch.arange(atoms.shape[0])
        mol_bonds = local[bonds[bond_mol == m]]
        graph = cache.canonical(tuple(z_cpu[atoms].tolist()), tuple(map(tuple, mol_bonds.tolist())))
        group.append(keys.setdefault(graph.key, len(keys)))
        canonical_atoms.append(atoms[list(graph.order)])
        if group[-1] not in automorphisms:
            automorphisms[group[-1]], cut = cache.automorphisms(graph.key)
            truncated |= cut
    group_tensor = torch.tensor(group)
    slot = torch.empty(num_molecules, dtype=torch.long)
    compounds = []
    for g in range(len(keys)):
        members = torch.nonzero(group_tensor == g).flatten()
        slot[members] = torch.arange(members.shape[0])
        compounds.append(
            CompoundCopies(
                members.to(device),
                torch.stack([canonical_atoms[m] for m in members.tolist()]).to(device),
                automorphisms[g].to(device),
            )
        )
    return ClusterTopology(group_tensor.to(device), slot.to(device), compounds, truncated)
