"""Metrics on 17-molecule clusters cut from real COD crystals (shared data)."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from kflow_mol.metrics import (
    collision_rate,
    covalent_radii,
    pm_atom,
    rmsd17,
    separation_rate,
)
from kflow_mol.metrics.symmetry import SymmetryCache, cluster_topology, perceive_bonds

COD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cod_organic"
# (COD id, atoms per molecule): benzene; C13H18O2 (1728 graph automorphisms); C8H9NO2
CRYSTALS = [("2100348", 12), ("2300214", 33), ("7105573", 20)]


def real_cluster(cod_id, atoms_per_molecule, num_molecules=17):
    """The 17 whole molecules nearest the centre of a 3x3x3 supercell: (pos, z, mol_index)."""
    path = COD / f"{cod_id}.cif"
    if not path.exists():
        pytest.skip(f"shared COD data not found at {path}")
    import ase.io
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        supercell = ase.io.read(path).repeat(3)
    pos = torch.tensor(supercell.get_positions())
    z = torch.tensor(supercell.get_atomic_numbers())
    radii = covalent_radii(z, torch.float64)
    bonded = torch.cdist(pos, pos) < 1.3 * (radii[:, None] + radii[None, :])
    i, j = torch.nonzero(bonded).T.numpy()
    _, label = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(z),) * 2))
    label = torch.as_tensor(label)
    ids, counts = torch.unique(label, return_counts=True)
    whole = ids[counts == atoms_per_molecule]
    centroids = torch.stack([pos[label == m].mean(0) for m in whole.tolist()])
    nearest = whole[torch.argsort((centroids - pos.mean(0)).norm(dim=1))[:num_molecules]]
    atoms = torch.cat([torch.nonzero(label == m).flatten() for m in nearest.tolist()])
    return pos[atoms], z[atoms], torch.arange(num_molecules).repeat_interleave(atoms_per_molecule)


def molecule_graphs(pos, z, mol):
    return cluster_topology(z, mol, perceive_bonds(pos, z, mol), SymmetryCache())


@pytest.fixture(scope="module", params=CRYSTALS, ids=[c[0] for c in CRYSTALS])
def crystal_cluster(request):
    return real_cluster(*request.param)


def test_real_crystal_has_no_collisions_and_is_separated(crystal_cluster):
    pos, z, mol = crystal_cluster
    assert collision_rate(pos, z, mol).count.item() == 0
    assert separation_rate(pos, mol).rate.item() == 1.0
    # AssembleFlow's definition counts the diagonal and intramolecular close pairs
    radii = covalent_radii(z, torch.float64)
    close = torch.cdist(pos, pos) < radii[:, None] + radii[None, :]
    intra = close & (mol[:, None] == mol[None, :])
    reference = collision_rate(pos, z, mol, reference_compatible=True)
    assert reference.count.item() == int(intra.sum()) > pos.shape[0]
    assert reference.total == pos.shape[0] ** 2


def test_collapsed_cluster_collides(crystal_cluster):
    pos, z, mol = crystal_cluster
    centroids = torch.zeros(17, 3, dtype=pos.dtype).index_add_(0, mol, pos) / (mol == 0).sum()
    collapsed = pos - 0.6 * centroids[mol]  # pull every molecule 60% toward the origin
    assert collision_rate(collapsed, z, mol).rate.item() > 0
    assert separation_rate(collapsed, mol).rate.item() < 1.0


def test_rmsd17_sees_through_relabelling_of_a_real_cluster(crystal_cluster):
    pos, z, mol = crystal_cluster
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(17, generator=g)
    # predicted molecule m sits where true molecule order[m] is; copies in a crystal list their
    # atoms in different orders, so atoms are carried over through the graph isomorphism
    atoms = molecule_graphs(pos, z, mol).compounds[0].atoms  # (17, T) canonical order
    pred = pos.clone()
    pred[atoms] = pos[atoms[order]]
    angle = torch.tensor(0.7, dtype=pos.dtype)
    rotation = torch.tensor([[angle.cos(), -angle.sin(), 0], [angle.sin(), angle.cos(), 0], [0, 0, 1]], dtype=pos.dtype)
    pred = pred @ rotation.T + torch.tensor([2.0, -1.0, 0.5], dtype=pos.dtype)
    result = rmsd17(pos, pred, z, mol)
    assert result.rmsd_17.item() < 1e-8
    assert result.n_matched.item() == 17
    assert torch.equal(order[result.assignment], torch.arange(17))
    assert pm_atom(pos, pred) > 1.0
    noise = 0.15 * torch.randn(pos.shape, generator=g, dtype=pos.dtype)
    noisy, noisy_permuted = pos + noise, pos.clone()
    noisy_permuted[atoms] = noisy[atoms[order]]
    base = rmsd17(pos, noisy, z, mol)
    permuted = rmsd17(pos, noisy_permuted @ rotation.T, z, mol)
    assert permuted.rmsd_17.item() == pytest.approx(base.rmsd_17.item(), abs=1e-9)
    assert permuted.n_matched.item() == base.n_matched.item() == 17


def test_benzene_crystal_with_swapped_equivalent_atoms():
    pos, z, mol = real_cluster("2100348", 12)
    pred = pos.clone()
    copies = molecule_graphs(pos, z, mol).compounds[0]
    assert copies.automorphisms.shape == (12, 12)  # D6h graph symmetry of benzene
    for m in (0, 4, 11):  # relabel three molecules by non-trivial automorphisms
        atoms = copies.atoms[m]
        pred[atoms] = pos[atoms[copies.automorphisms[m % 11 + 1]]]
    assert pm_atom(pos, pred) > 0.1
    result = rmsd17(pos, pred, z, mol)
    assert result.rmsd_17.item() < 1e-8 and result.n_matched.item() == 17
