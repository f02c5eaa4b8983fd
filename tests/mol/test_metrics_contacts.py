import pytest
import torch

from kflow_mol.metrics import (
    collision_rate,
    collision_rate_batch,
    covalent_radii,
    molecule_min_distances,
    separation_rate,
    separation_rate_batch,
)


def two_hydrogen_molecules(gap):
    """H2 (0.74 Å bond) at x = 0, 0.74 and a second H2 starting ``gap`` Å further."""
    x = torch.tensor([0.0, 0.74, 0.74 + gap, 1.48 + gap], dtype=torch.float64)
    pos = torch.zeros(4, 3, dtype=torch.float64)
    pos[:, 0] = x
    return pos, torch.ones(4, dtype=torch.long), torch.tensor([0, 0, 1, 1])


def test_covalent_radii_table():
    assert covalent_radii(torch.tensor([1, 6, 7, 8])).tolist() == pytest.approx([0.31, 0.76, 0.71, 0.66])
    with pytest.raises(ValueError, match="atomic number"):
        covalent_radii(torch.tensor([0, 6]))


def test_collision_by_hand():
    pos, z, mol = two_hydrogen_molecules(gap=0.45)  # H...H 0.45 Å < 0.62 Å covalent sum
    ours = collision_rate(pos, z, mol)
    # intermolecular ordered pairs: (1,2) and (2,1) collide out of 2 * 2 * 2 = 8
    assert ours.count.item() == 2 and ours.total == 8
    assert ours.rate.item() == pytest.approx(0.25)
    assert collision_rate(pos, z, mol, radius_scale=0.5).rate.item() == 0.0
    reference = collision_rate(pos, z, mol, reference_compatible=True)
    # all 16 ordered pairs: 4 diagonal + (1,2),(2,1); the 0.74 Å bonds exceed 0.62 Å
    assert reference.count.item() == 6 and reference.total == 16
    assert reference.rate.item() == pytest.approx(6 / 16)


def test_separation_by_hand():
    pos, _, mol = two_hydrogen_molecules(gap=0.45)
    far = torch.tensor([[0.0, 10.0, 0.0], [0.0, 10.74, 0.0]], dtype=torch.float64)
    pos = torch.cat([pos, far])
    mol = torch.cat([mol, torch.tensor([2, 2])])
    closest = molecule_min_distances(pos[None], mol)[0]
    assert closest[0, 1].item() == pytest.approx(0.45)
    result = separation_rate(pos, mol)  # pairs (0,1) 0.45 Å: not separated; (0,2), (1,2): yes
    assert result.count.item() == 2 and result.total == 3
    assert result.rate.item() == pytest.approx(2 / 3)
    assert separation_rate(pos, mol, threshold=0.4).rate.item() == pytest.approx(1.0)


def test_batched_and_nan():
    pos, z, mol = two_hydrogen_molecules(gap=0.45)
    far, _, _ = two_hydrogen_molecules(gap=3.0)
    bad = pos.clone()
    bad[0, 0] = float("nan")
    batch = torch.stack([pos, far, bad])
    rates = collision_rate(batch, z, mol).rate
    assert rates[:2].tolist() == pytest.approx([0.25, 0.0]) and torch.isnan(rates[2])
    separated = separation_rate(batch, mol).rate
    assert separated[:2].tolist() == pytest.approx([0.0, 1.0]) and torch.isnan(separated[2])


def test_pyg_batch_of_different_sizes():
    close, z, mol = two_hydrogen_molecules(gap=0.45)
    far = torch.cat(
        [two_hydrogen_molecules(gap=3.0)[0], torch.tensor([[0.0, 9.0, 0.0], [0.0, 9.74, 0.0]], dtype=torch.float64)]
    )
    pos = torch.cat([close, far])
    z = torch.ones(10, dtype=torch.long)
    mol = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 2, 2])
    batch = torch.tensor([0] * 4 + [1] * 6)
    assert collision_rate_batch(pos, z, mol, batch).tolist() == pytest.approx([0.25, 0.0])
    assert collision_rate_batch(pos, z, mol, batch, reference_compatible=True).tolist() == pytest.approx(
        [6 / 16, 6 / 36]
    )
    assert separation_rate_batch(pos, mol, batch).tolist() == pytest.approx([0.0, 1.0])
