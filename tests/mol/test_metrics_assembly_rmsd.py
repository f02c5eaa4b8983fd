import math

import pytest
import torch
from _reference_rmsd import rmsd17_loop

from kflow.testing import random_rotation
from kflow_mol.metrics import aligned_rmsd, pm_atom, rmsd17, rmsd17_batch

NUM_MOLECULES = 17


def benzene():
    """C_k then H_k, H_k bonded to C_k, k = 0..5 around the ring."""
    angles = torch.arange(6, dtype=torch.float64) * math.pi / 3
    ring = torch.stack([angles.cos(), angles.sin(), torch.zeros(6, dtype=torch.float64)], -1)
    return torch.cat([1.39 * ring, 2.47 * ring]), torch.tensor([6] * 6 + [1] * 6)


def anthranilic_acid():
    """An asymmetric molecule (no graph automorphism moves a heavy atom), RDKit geometry."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccccc1N"))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float64)
    return pos - pos.mean(0), torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()])


def make_cluster(molecules, generator, spacing=7.0):
    """Place copies of the given (pos, z) molecules on a grid with random orientations."""
    grid = (
        torch.stack(torch.meshgrid(*[torch.arange(3.0, dtype=torch.float64)] * 3, indexing="ij"), -1).reshape(-1, 3)
        * spacing
    )
    grid = grid + 0.8 * torch.randn(grid.shape, generator=generator, dtype=torch.float64)
    pos, z, mol = [], [], []
    for m, (x, numbers) in enumerate(molecules):
        pos.append(x @ random_rotation(generator=generator).T + grid[m])
        z.append(numbers)
        mol.append(torch.full((x.shape[0],), m))
    return torch.cat(pos), torch.cat(z), torch.cat(mol)


def permute_molecules(pos, mol_index, order):
    """Predicted molecule m takes the coordinates of molecule order[m] (same compound)."""
    out = pos.clone()
    for m, source in enumerate(order.tolist()):
        out[mol_index == m] = pos[mol_index == source]
    return out


@pytest.fixture(scope="module")
def asym_cluster():
    g = torch.Generator().manual_seed(0)
    return make_cluster([anthranilic_acid()] * NUM_MOLECULES, g)


def test_identity_gives_zero(asym_cluster):
    pos, z, mol = asym_cluster
    result = rmsd17(pos, pos, z, mol)
    assert result.rmsd_17.item() < 1e-10
    assert result.n_matched.item() == NUM_MOLECULES
    assert torch.equal(result.assignment, torch.arange(NUM_MOLECULES))
    assert torch.equal(result.atom_permutation, torch.arange(pos.shape[0]))
    assert bool(result.valid) and not bool(result.reflection)


def test_permuting_molecules_leaves_rmsd17_unchanged_but_changes_pm(asym_cluster):
    pos, z, mol = asym_cluster
    g = torch.Generator().manual_seed(1)
    pred = pos + 0.2 * torch.randn(pos.shape, generator=g, dtype=torch.float64)
    order = torch.randperm(NUM_MOLECULES, generator=g)
    permuted = permute_molecules(pred, mol, order) @ random_rotation(generator=g).T + 4.0
    base, swapped = rmsd17(pos, pred, z, mol), rmsd17(pos, permuted, z, mol)
    assert swapped.rmsd_17.item() == pytest.approx(base.rmsd_17.item(), abs=1e-9)
    assert swapped.n_matched.item() == base.n_matched.item() == NUM_MOLECULES
    # true molecule j is matched to the predicted molecule that holds its coordinates
    assert torch.equal(order[swapped.assignment], torch.arange(NUM_MOLECULES))
    assert pm_atom(pos, permuted) > pm_atom(pos, pred) + 1.0


def test_swapped_equivalent_benzene_atoms_give_zero():
    g = torch.Generator().manual_seed(2)
    pos, z, mol = make_cluster([benzene()] * NUM_MOLECULES, g)
    pred = pos.clone()
    atoms = torch.nonzero(mol == 3).flatten()
    relabel = torch.tensor([1, 2, 3, 4, 5, 0, 7, 8, 9, 10, 11, 6])  # ring label shift
    pred[atoms] = pos[atoms[relabel]]
    mirror = torch.tensor([0, 5, 4, 3, 2, 1, 6, 11, 10, 9, 8, 7])  # label reflection
    atoms = torch.nonzero(mol == 9).flatten()
    pred[atoms] = pos[atoms[mirror]]
    assert aligned_rmsd(pos, pred).rmsd > 0.3
    result = rmsd17(pos, pred, z, mol)
    assert result.rmsd_17.item() < 1e-10
    assert result.n_matched.item() == NUM_MOLECULES
    assert torch.equal(pred[result.atom_permutation], pos)


def test_two_compounds_are_only_matched_to_their_own_kind():
    g = torch.Generator().manual_seed(3)
    molecules = [benzene() if m % 2 else anthranilic_acid() for m in range(NUM_MOLECULES)]
    pos, z, mol = make_cluster(molecules, g)
    odd, even = torch.arange(1, NUM_MOLECULES, 2), torch.arange(0, NUM_MOLECULES, 2)
    order = torch.arange(NUM_MOLECULES)
    order[odd] = odd[torch.randperm(odd.shape[0], generator=g)]
    order[even] = even[torch.randperm(even.shape[0], generator=g)]
    result = rmsd17(pos, permute_molecules(pos, mol, order), z, mol)
    assert result.rmsd_17.item() < 1e-9
    assert torch.equal(order[result.assignment], torch.arange(NUM_MOLECULES))


def test_displaced_molecule_is_not_matched(asym_cluster):
    pos, z, mol = asym_cluster
    pred = pos.clone()
    pred[mol == 5] += torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    result = rmsd17(pos, pred, z, mol)
    assert result.n_matched.item() == NUM_MOLECULES - 1
    assert not bool(result.matched[5])
    assert result.rmsd_matched.item() < 1e-9
    assert result.rmsd_17.item() > 0.3


def test_mirror_image_is_not_a_match(asym_cluster):
    pos, z, mol = asym_cluster
    mirrored = pos * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    result = rmsd17(pos, mirrored, z, mol)
    assert result.rmsd_17.item() > 0.5
    assert result.n_matched.item() < NUM_MOLECULES // 2


def test_nan_prediction_is_reported_not_matched(asym_cluster):
    pos, z, mol = asym_cluster
    pred = torch.stack([pos, pos.clone()])
    pred[1, 10, 2] = float("nan")
    result = rmsd17(torch.stack([pos, pos]), pred, z, mol)
    assert result.valid.tolist() == [True, False]
    assert torch.isnan(result.rmsd_17[1]) and result.n_matched[1].item() == 0
    assert result.rmsd_17[0].item() < 1e-10


def test_pyg_batch_and_automorphism_cap():
    g = torch.Generator().manual_seed(4)
    first = make_cluster([benzene()] * 5, g)
    second = make_cluster([anthranilic_acid()] * 4, g)
    pos = torch.cat([first[0], second[0]])
    pred = pos + 0.1 * torch.randn(pos.shape, generator=g, dtype=torch.float64)
    z = torch.cat([first[1], second[1]])
    mol = torch.cat([first[2], second[2]])
    batch = torch.cat([torch.zeros(len(first[0]), dtype=torch.long), torch.ones(len(second[0]), dtype=torch.long)])
    results = rmsd17_batch(pos, pred, z, mol, batch)
    single = rmsd17(pos[:60], pred[:60], z[:60], mol[:60])
    assert results[0].rmsd_17.item() == pytest.approx(single.rmsd_17.item(), rel=1e-12)
    assert results[1].n_matched.item() == 4
    assert not bool(single.automorphisms_truncated)  # benzene has 12 automorphisms
    capped = rmsd17(pos[:60], pred[:60], z[:60], mol[:60], max_automorphisms=4)
    assert bool(capped.automorphisms_truncated)


def test_float32_far_from_origin():
    g = torch.Generator().manual_seed(5)
    pos, z, mol = make_cluster([benzene()] * NUM_MOLECULES, g)
    pos = (pos + 100.0).float()
    order = torch.randperm(NUM_MOLECULES, generator=g)
    pred = permute_molecules(pos, mol, order)
    atoms = torch.nonzero(mol == 2).flatten()
    pred[atoms] = pred[atoms[torch.tensor([3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8])]]
    result = rmsd17(pos, pred, z, mol)
    assert result.rmsd_17.dtype == torch.float32
    assert result.rmsd_17.item() < 1e-3 and result.n_matched.item() == NUM_MOLECULES


def test_never_worse_than_data_order_alignment(asym_cluster):
    pos, z, mol = asym_cluster
    g = torch.Generator().manual_seed(6)
    centroids = torch.zeros(NUM_MOLECULES, 3, dtype=pos.dtype).index_add_(0, mol, pos)
    centroids = centroids / (mol == 0).sum()
    preds = []
    for _ in range(4):  # scrambled: every molecule turned at random and shifted by ~3 Å
        pred = pos.clone()
        for m in range(NUM_MOLECULES):
            atoms = mol == m
            pred[atoms] = (
                (pos[atoms] - centroids[m]) @ random_rotation(generator=g).T
                + centroids[m]
                + 3.0 * torch.randn(3, generator=g, dtype=pos.dtype)
            )
        preds.append(pred)
    preds = torch.stack(preds)
    result = rmsd17(pos.expand_as(preds), preds, z, mol)
    plain = aligned_rmsd(pos.expand_as(preds), preds).rmsd
    assert torch.all(result.rmsd_17 <= plain + 1e-9)
    assert torch.all(result.n_matched < NUM_MOLECULES)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vectorized_batch_equals_the_per_cluster_loop(dtype):
    """The clusters of a batch run together; the result is the original per-cluster loop's
    (``tests/mol/_reference_rmsd.py``), field by field."""
    g = torch.Generator().manual_seed(7)
    molecules = [benzene() if m % 3 else anthranilic_acid() for m in range(NUM_MOLECULES)]
    pos, z, mol = make_cluster(molecules, g)
    trues, preds = [], []
    for c in range(12):  # noise from small to scrambling, molecules relabelled, ring atoms relabelled
        true = pos @ random_rotation(generator=g).T
        pred = true + (0.05 + 0.15 * c) * torch.randn(true.shape, generator=g, dtype=true.dtype)
        order = torch.arange(NUM_MOLECULES)
        benzenes = torch.tensor([m for m in range(NUM_MOLECULES) if m % 3])
        order[benzenes] = benzenes[torch.randperm(len(benzenes), generator=g)]
        pred = permute_molecules(pred, mol, order) @ random_rotation(generator=g).T + 2.0 * c
        trues.append(true)
        preds.append(pred)
    trues, preds = torch.stack(trues).to(dtype), torch.stack(preds).to(dtype)
    preds[5, 3, 1] = float("nan")
    fast = rmsd17(trues, preds, z, mol)
    loop = rmsd17_loop(trues, preds, z, mol)
    for name in fast.__dataclass_fields__:
        a, b = getattr(fast, name), getattr(loop, name)
        if a.is_floating_point():  # batched and single small matrix products may differ in the last bit
            torch.testing.assert_close(
                a, b, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0, equal_nan=True, msg=name
            )
        else:  # the correspondence found is the same
            assert torch.equal(a, b), name
    assert fast.valid.tolist() == [c != 5 for c in range(12)]
    matched = fast.n_matched[fast.valid]
    assert matched.max() == NUM_MOLECULES and matched.min() < NUM_MOLECULES // 2  # easy and hard cases
