"""Molecular point-group symmetries and the minimal-angle rotation targets they allow."""

import math

import torch

from kflow_mol.body_symmetry import SymmetricTargets, molecule_symmetries
from kflow_mol.metrics.symmetry import SymmetryCache
from kflow_mol.rigid import so3_exp, so3_log


def benzene() -> tuple[torch.Tensor, torch.Tensor]:
    """Planar C6H6 in the xy plane (C-C 1.39 Å, C-H 1.09 Å), centred; ``(body (12, 3), z (12,))``."""
    angles = torch.arange(6, dtype=torch.float64) * math.pi / 3
    ring = torch.stack([angles.cos(), angles.sin(), torch.zeros(6, dtype=torch.float64)], -1)
    body = torch.cat([1.39 * ring, 2.48 * ring])
    return body, torch.tensor([6] * 6 + [1] * 6)


def test_benzene_has_the_twelve_proper_rotations_of_d6h():
    body, z = benzene()
    symmetries = molecule_symmetries(body, z, SymmetryCache())
    assert symmetries.shape == (12, 3, 3)
    torch.testing.assert_close(symmetries[0], torch.eye(3, dtype=torch.float64))
    for rot in symmetries:  # every one maps the atom set onto itself
        moved = body @ rot.T
        assert torch.cdist(moved, body).min(dim=1).values.max() < 1e-6
        torch.testing.assert_close(torch.linalg.det(rot), torch.tensor(1.0, dtype=torch.float64))


def test_an_asymmetric_molecule_has_only_the_identity():
    body = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [2.1, 1.3, 0.0], [-0.6, 0.9, 0.7]], dtype=torch.float64)
    z = torch.tensor([6, 6, 8, 7])
    symmetries = molecule_symmetries(body - body.mean(0), z, SymmetryCache())
    assert symmetries.shape == (1, 3, 3)


def test_nearest_target_undoes_a_symmetry_turn_exactly():
    """A start that is the crystal turned by 60° about benzene's axis needs no rotation at all."""
    body, z = benzene()
    targets = SymmetricTargets()
    symmetries = targets.symmetries(body.float(), z, torch.zeros(12, dtype=torch.long), 1).double()
    rot_target = so3_exp(torch.tensor([[0.4, 0.2, -0.9]], dtype=torch.float64))
    sixty = so3_exp(torch.tensor([[0.0, 0.0, math.pi / 3]], dtype=torch.float64))
    rot_start = rot_target @ sixty  # same atom set as the crystal, labels shifted by one
    file_order = rot_target @ rot_start.transpose(-1, -2)
    assert float(so3_log(file_order).norm()) > 1.0
    nearest = targets.nearest(file_order, rot_start, symmetries)
    torch.testing.assert_close(nearest, torch.eye(3, dtype=torch.float64)[None], atol=1e-6, rtol=0)


def test_nearest_target_never_turns_more_and_lands_on_crystal_sites():
    body, z = benzene()
    targets = SymmetricTargets()
    symmetries = targets.symmetries(body.float(), z, torch.zeros(12, dtype=torch.long), 1).double()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        rot_start = so3_exp(torch.randn(1, 3, generator=g, dtype=torch.float64) * 2)
        rot_target = so3_exp(torch.randn(1, 3, generator=g, dtype=torch.float64) * 2)
        file_order = rot_target @ rot_start.transpose(-1, -2)
        nearest = targets.nearest(file_order, rot_start, symmetries)
        assert float(so3_log(nearest).norm()) <= float(so3_log(file_order).norm()) + 1e-9
        start = body @ rot_start[0].T
        moved, crystal = start @ nearest[0].T, body @ rot_target[0].T
        distance = torch.cdist(moved, crystal)
        same_element = z[:, None] == z[None, :]
        assert distance.masked_fill(~same_element, float("inf")).min(dim=1).values.max() < 1e-6
