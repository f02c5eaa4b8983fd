import math

import pytest
import torch

from kflow_mol.metrics import (
    distance_matrix,
    molecule_centroids,
    pm_atom,
    pm_atom_batch,
    pm_center,
    pm_center_batch,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_orthogonal(generator, dtype=torch.float64, proper=True):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if proper and torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def random_cluster(generator, num_mol=17, atoms=6, dtype=torch.float64):
    centres = torch.randn(num_mol, 1, 3, generator=generator, dtype=dtype) * 6
    pos = centres + torch.randn(num_mol, atoms, 3, generator=generator, dtype=dtype)
    return pos.reshape(-1, 3), torch.arange(num_mol).repeat_interleave(atoms)


def test_two_points_by_hand():
    p = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    q = torch.tensor([[0.0, 0, 0], [3, 0, 0]])
    # off-diagonal entries differ by 2 (twice), diagonal by 0: mean over 4 entries = 8 / 4
    assert pm_atom(p, q).item() == pytest.approx(math.sqrt(2.0))
    assert pm_atom(p, q, convention="pairs").item() == pytest.approx(2.0)


def test_three_points_by_hand():
    p = torch.tensor([[0.0, 0, 0], [3, 0, 0], [0, 4, 0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    squares = 2**2 + 3**2 + (5 - math.sqrt(2)) ** 2
    assert pm_atom(p, q).item() == pytest.approx(math.sqrt(2 * squares / 9), rel=1e-12)
    assert pm_atom(p, q, convention="pairs").item() == pytest.approx(math.sqrt(squares / 3), rel=1e-12)


def test_center_by_hand():
    # molecule 0 centroid (0,0,0), molecule 1 centroid (2,0,0) vs (5,0,0): |2-5| on 2 entries of 4
    p = torch.tensor([[-1.0, 0, 0], [1, 0, 0], [2, 1, 0], [2, -1, 0]])
    q = torch.tensor([[0.0, -1, 0], [0, 1, 0], [5, 0, 1], [5, 0, -1]])
    mol = torch.tensor([0, 0, 1, 1])
    assert pm_center(p, q, mol).item() == pytest.approx(math.sqrt(2 * 9 / 4))
    assert torch.equal(molecule_centroids(p, mol), torch.tensor([[0.0, 0, 0], [2, 0, 0]]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_inputs_give_exact_zero(device, dtype):
    g = torch.Generator().manual_seed(0)
    pos, mol = random_cluster(g, dtype=dtype)
    pos = pos.to(device) + 50.0
    batch = torch.stack([pos, pos * 1.1])
    assert torch.all(pm_atom(batch, batch) == 0)
    assert torch.all(pm_center(batch, batch, mol.to(device)) == 0)
    assert pm_atom(batch, batch).device.type == device
    assert pm_atom(batch, batch).dtype == dtype


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_invariant_to_rigid_motion_and_reflection_of_pred(dtype, atol):
    g = torch.Generator().manual_seed(1)
    true, mol = random_cluster(g, dtype=dtype)
    pred = true + 0.7 * torch.randn(true.shape, generator=g, dtype=dtype)
    base_atom, base_center = pm_atom(true, pred), pm_center(true, pred, mol)
    for proper in (True, False):
        rot = random_orthogonal(g, dtype, proper=proper)
        moved = pred @ rot.T + torch.tensor([10.0, -4.0, 25.0], dtype=dtype)
        assert pm_atom(true, moved).item() == pytest.approx(base_atom.item(), abs=atol)
        assert pm_center(true, moved, mol).item() == pytest.approx(base_center.item(), abs=atol)


def test_matches_explicit_definition_and_pair_relation():
    g = torch.Generator().manual_seed(2)
    true = torch.randn(3, 40, 3, generator=g, dtype=torch.float64) * 5
    pred = torch.randn(3, 40, 3, generator=g, dtype=torch.float64) * 5
    d_true = (true[:, :, None] - true[:, None]).norm(dim=-1)
    d_pred = (pred[:, :, None] - pred[:, None]).norm(dim=-1)
    expected = (d_true - d_pred).square().mean(dim=(-1, -2)).sqrt()
    torch.testing.assert_close(pm_atom(true, pred), expected, rtol=1e-10, atol=1e-10)
    upper = torch.stack([(torch.pdist(a) - torch.pdist(b)).square().mean().sqrt() for a, b in zip(true, pred)])
    torch.testing.assert_close(pm_atom(true, pred, convention="pairs"), upper)
    torch.testing.assert_close(upper, expected * math.sqrt(40 / 39))
    torch.testing.assert_close(distance_matrix(true), d_true)


def test_chunking_does_not_change_result():
    g = torch.Generator().manual_seed(3)
    true, pred = torch.randn(2, 7, 30, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pm_atom(true, pred, max_elements=1), pm_atom(true, pred))


def test_permuting_molecules_changes_pm():
    g = torch.Generator().manual_seed(4)
    true, mol = random_cluster(g)
    perm = torch.randperm(17, generator=g)
    swapped = true.reshape(17, 6, 3)[perm].reshape(-1, 3)
    assert pm_atom(true, swapped) > 0.5
    assert pm_center(true, swapped, mol) > 0.5


def test_nan_input_gives_nan_for_that_cluster_only():
    g = torch.Generator().manual_seed(5)
    true, mol = random_cluster(g)
    pred = torch.stack([true + 0.1, true.clone(), true.clone()])
    pred[1, 3, 0] = float("nan")
    pred[2, 5, 1] = float("inf")
    atom = pm_atom(true.expand(3, -1, -1), pred)
    centre = pm_center(true.expand(3, -1, -1), pred, mol)
    for values in (atom, centre):
        assert torch.isfinite(values[0]) and not torch.isfinite(values[1:]).any()


def test_pyg_batch_matches_dense_for_mixed_sizes():
    g = torch.Generator().manual_seed(6)
    clusters = [random_cluster(g, atoms=a) for a in (4, 6, 4, 9)]
    preds = [c[0] + 0.3 * torch.randn(c[0].shape, generator=g, dtype=torch.float64) for c in clusters]
    pos_true = torch.cat([c[0] for c in clusters])
    pos_pred = torch.cat(preds)
    mol = torch.cat([c[1] for c in clusters])
    batch = torch.cat([torch.full((c[0].shape[0],), i) for i, c in enumerate(clusters)])
    expected_atom = torch.stack([pm_atom(c[0], p) for c, p in zip(clusters, preds)])
    expected_centre = torch.stack([pm_center(c[0], p, c[1]) for c, p in zip(clusters, preds)])
    torch.testing.assert_close(pm_atom_batch(pos_true, pos_pred, batch), expected_atom)
    torch.testing.assert_close(pm_center_batch(pos_true, pos_pred, mol, batch), expected_centre)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same shape"):
        pm_atom(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="skips molecule"):
        pm_center(torch.zeros(4, 3), torch.zeros(4, 3), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="sorted"):
        pm_atom_batch(torch.zeros(4, 3), torch.zeros(4, 3), torch.tensor([1, 0, 0, 1]))
