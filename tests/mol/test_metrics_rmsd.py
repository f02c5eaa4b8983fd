import pytest
import torch

from kflow.testing import random_rotation
from kflow_mol.metrics import aligned_rmsd, aligned_rmsd_center, kabsch


def test_two_points_by_hand():
    true = torch.tensor([[-1.0, 0, 0], [1, 0, 0]])
    pred = torch.tensor([[0.0, -2, 5], [0, 2, 5]])  # rotated, shifted and stretched by 2
    result = aligned_rmsd(true, pred)
    assert result.rmsd.item() == pytest.approx(1.0, abs=1e-6)


def test_kabsch_recovers_a_known_motion():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(4, 20, 3, generator=g, dtype=torch.float64)
    rotations = torch.stack([random_rotation(generator=g) for _ in range(4)])
    shift = torch.randn(4, 3, generator=g, dtype=torch.float64)
    pred = (true - shift[:, None]) @ rotations  # true = pred @ R^T + shift
    alignment = kabsch(true, pred)
    torch.testing.assert_close(alignment.rotation, rotations)
    torch.testing.assert_close(alignment.translation, shift)
    assert not alignment.reflection.any()


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_aligned_rmsd_invariant_to_rigid_motion(dtype, atol):
    g = torch.Generator().manual_seed(1)
    true = torch.randn(30, 3, generator=g, dtype=dtype) * 3
    pred = true + 0.5 * torch.randn(30, 3, generator=g, dtype=dtype)
    base = aligned_rmsd(true, pred).rmsd
    assert base > 0.1
    moved = pred @ random_rotation(dtype, generator=g).T + torch.tensor([5.0, -7.0, 2.0], dtype=dtype)
    assert aligned_rmsd(true, moved).rmsd.item() == pytest.approx(base.item(), abs=atol)
    assert aligned_rmsd(true, true @ random_rotation(dtype, generator=g).T + 3.0).rmsd.item() < atol


def test_reflection_is_reported_and_rotation_stays_proper():
    g = torch.Generator().manual_seed(2)
    true = torch.randn(12, 3, generator=g, dtype=torch.float64)
    mirrored = true * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    result = aligned_rmsd(true, mirrored)
    assert bool(result.reflection)
    assert result.rmsd > 0.1  # a proper rotation cannot undo the mirror of a chiral cloud
    assert torch.linalg.det(result.alignment.rotation).item() == pytest.approx(1.0)
    assert not bool(aligned_rmsd(true, true).reflection)


def test_centroid_rmsd_and_nan():
    true = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 5, 0], [0, 7, 0]])
    pred = true.clone()
    pred[0, 0] = 1.0  # moves molecule 0's centroid by 0.5
    mol = torch.tensor([0, 0, 1, 1])
    centred = aligned_rmsd_center(true, pred, mol).rmsd.item()
    # centroids (1,0,0),(0,6,0) vs (1.5,0,0),(0,6,0): two points align up to their length
    # difference, split evenly between both ends
    assert centred == pytest.approx((38.25**0.5 - 37**0.5) / 2, abs=1e-6)
    pred[1, 1] = float("nan")
    result = aligned_rmsd(torch.stack([true, true]), torch.stack([true, pred]))
    assert result.rmsd[0] < 1e-5 and torch.isnan(result.rmsd[1])
