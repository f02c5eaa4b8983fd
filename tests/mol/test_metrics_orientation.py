"""Per-molecule orientation and centroid errors: exact answers on molecules of known symmetry."""

import math

import pytest
import torch

from kflow_mol.metrics import (
    centroid_errors,
    centroid_spread_ratios,
    cluster_pose_errors,
    molecule_errors,
    orientation_errors,
)
from kflow_mol.metrics.orientation import rotation_angle_deg
from kflow_mol.rigid import so3_exp

TOL_DEG = 1e-6


def benzene() -> tuple[torch.Tensor, torch.Tensor]:
    """Ideal benzene in the xy plane (C-C 1.39 Å, C-H 1.09 Å): positions (12, 3), z (12,)."""
    angles = torch.arange(6, dtype=torch.float64) * math.pi / 3
    ring = torch.stack([angles.cos(), angles.sin(), torch.zeros(6, dtype=torch.float64)], -1)
    pos = torch.cat([1.39 * ring, 2.48 * ring])
    return pos, torch.tensor([6] * 6 + [1] * 6)


def asymmetric() -> tuple[torch.Tensor, torch.Tensor]:
    """Bromochlorofluoromethane (no proper symmetry but the identity): positions (5, 3), z (5,)."""
    directions = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    directions = directions.double() / math.sqrt(3)
    lengths = torch.tensor([1.09, 1.35, 1.77, 1.94], dtype=torch.float64)  # H, F, Cl, Br
    return torch.cat([torch.zeros(1, 3, dtype=torch.float64), lengths[:, None] * directions]), torch.tensor(
        [6, 1, 9, 17, 35]
    )


def axis_angle(axis, degrees: float) -> torch.Tensor:
    axis = torch.as_tensor(axis, dtype=torch.float64)
    return so3_exp(math.radians(degrees) * axis / axis.norm())


def turned(pos: torch.Tensor, rotation: torch.Tensor, shift=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """``pos`` rotated about its centroid and shifted."""
    centre = pos.mean(0)
    return (pos - centre) @ rotation.T + centre + torch.tensor(shift, dtype=pos.dtype)


def benzene_rotations() -> list[torch.Tensor]:
    """The 12 proper rotations of D6h: 6 about the ring normal, 6 two-fold axes in the plane."""
    about_normal = [axis_angle([0, 0, 1], 60 * k) for k in range(6)]
    in_plane = [axis_angle([math.cos(math.radians(30 * k)), math.sin(math.radians(30 * k)), 0], 180) for k in range(6)]
    return about_normal + in_plane


@pytest.mark.parametrize("index", range(12))
def test_benzene_point_group_rotations_cost_nothing(index):
    pos, z = benzene()
    pos = turned(pos, axis_angle([0.3, -0.2, 0.9], 40), (1.0, 2.0, 3.0))  # any frame
    rotation = benzene_rotations()[index]
    pred = turned(pos, axis_angle([0.3, -0.2, 0.9], 40) @ rotation @ axis_angle([0.3, -0.2, 0.9], -40))
    errors = molecule_errors(pred, pos, z, torch.zeros(12, dtype=torch.long))
    assert errors.orientation_deg.item() == pytest.approx(0.0, abs=TOL_DEG)
    assert errors.symmetry_order.item() == 12
    assert errors.shape_rmsd.item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "axis, degrees, expected",
    [
        ([0.2, 0.5, 0.8], 20.0, 20.0),  # smaller than any symmetry: the plain angle
        ([0, 0, 1], 40.0, 20.0),  # 60 - 40 about the six-fold axis
        ([0, 0, 1], 30.0, 30.0),  # half-way between two symmetry rotations
        ([math.cos(math.radians(15)), math.sin(math.radians(15)), 0], 180.0, 30.0),  # C2(15°) C2(0°)^-1 = Rz(30°)
    ],
)
def test_benzene_rotation_error_is_minimised_over_its_symmetry(axis, degrees, expected):
    pos, z = benzene()
    pred = turned(pos, axis_angle(axis, degrees))
    assert orientation_errors(pred, pos, z, torch.zeros(12, dtype=torch.long)).item() == pytest.approx(
        expected, abs=TOL_DEG
    )


@pytest.mark.parametrize("degrees", [0.001, 10.0, 90.0, 170.0, 179.9])
def test_asymmetric_molecule_error_is_the_rotation_angle(degrees):
    pos, z = asymmetric()
    pred = turned(pos, axis_angle([1.0, -2.0, 0.5], degrees), (0.4, 0.0, -0.3))
    errors = molecule_errors(pred, pos, z, torch.zeros(5, dtype=torch.long))
    assert errors.orientation_deg.item() == pytest.approx(degrees, abs=TOL_DEG)
    assert errors.symmetry_order.item() == 1
    assert errors.centroid.item() == pytest.approx(0.5, abs=1e-12)


def test_several_molecules_and_clusters_at_once():
    """A batch (global molecule index) of two clusters: benzene + two CHFClBr, then CHFClBr + benzene."""
    benz, z_benz = benzene()
    asym, z_asym = asymmetric()
    parts = [(benz, z_benz, 10.0, (0, 0, 2.0)), (asym, z_asym, 50.0, (0, 0, 0)), (asym + 5, z_asym, 170.0, (1, 2, 2))]
    parts += [(asym - 5, z_asym, 25.0, (3, 0, 0)), (benz + 9, z_benz, 25.0, (0, 0, 0))]
    target = torch.cat([p for p, *_ in parts])
    pred = torch.cat([turned(p, axis_angle([0.1, 0.7, -0.3], a), s) for p, _, a, s in parts])
    z = torch.cat([zz for _, zz, *_ in parts])
    mol_index = torch.cat([torch.full((len(p),), m) for m, (p, *_) in enumerate(parts)])
    errors = molecule_errors(pred, target, z, mol_index)
    # benzene: below 30°, half the smallest symmetry rotation, the plain angle is the minimum
    assert errors.orientation_deg.tolist() == pytest.approx([10.0, 50.0, 170.0, 25.0, 25.0], abs=TOL_DEG)
    assert errors.centroid.tolist() == pytest.approx([2.0, 0.0, 3.0, 3.0, 0.0], abs=1e-12)
    assert errors.symmetry_order.tolist() == [12, 1, 1, 1, 12]
    per_cluster = cluster_pose_errors(errors, torch.tensor([0, 0, 0, 1, 1]))
    assert per_cluster.orientation_deg.tolist() == pytest.approx([230 / 3, 25.0])
    assert per_cluster.orientation_median_deg.tolist() == pytest.approx([50.0, 25.0])  # lower median of two
    assert per_cluster.centroid.tolist() == pytest.approx([5 / 3, 1.5])


def test_centroid_error_is_exact_on_a_known_shift():
    pos, _ = benzene()
    shift = torch.tensor([3.0, -4.0, 12.0], dtype=torch.float64)
    pred = torch.cat([pos + shift, pos + 10])
    target = torch.cat([pos, turned(pos + 10, axis_angle([1, 1, 0], 77))])
    mol_index = torch.tensor([0] * 12 + [1] * 12)
    assert centroid_errors(pred, target, mol_index).tolist() == pytest.approx([13.0, 0.0], abs=1e-12)


def test_shape_errors_of_a_rigid_and_a_shrunk_molecule():
    """A turned copy keeps its shape (residual 0, gyration ratio 1); a copy shrunk by 0.8 about its
    centroid has gyration ratio 0.8 and the exact Kabsch residual of a scaled copy."""
    pos, z = benzene()
    target = torch.cat([pos, pos + 10])
    shrunk = 0.8 * pos + 10 + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    pred = torch.cat([turned(pos, axis_angle([0, 1, 1], 40)), shrunk])
    errors = molecule_errors(pred, target, torch.cat([z, z]), torch.tensor([0] * 12 + [1] * 12))
    rg = pos.square().sum(-1).mean().sqrt()  # centroid at the origin
    assert errors.gyration_ratio.tolist() == pytest.approx([1.0, 0.8], abs=1e-12)
    assert errors.shape_rmsd.tolist() == pytest.approx([0.0, 0.2 * float(rg)], abs=1e-9)
    per_cluster = cluster_pose_errors(errors, torch.tensor([0, 0]))
    assert per_cluster.gyration_ratio.tolist() == pytest.approx([0.9])
    assert per_cluster.shape_rmsd.tolist() == pytest.approx([0.1 * float(rg)], abs=1e-9)


def test_shape_residual_of_a_rigid_copy_is_zero_when_the_angle_uses_an_approximate_symmetry():
    """Water with O-H 0.96 / 1.02 Å: swapping the hydrogens is a symmetry within the 0.6 Å
    tolerance, not an exact one. Turned 170° about its bisector, the smallest angle is through
    the swap (10°), whose residual is not 0; the rigid copy's shape residual must still be 0."""
    half = math.radians(52.25)
    pos = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [0.96 * math.sin(half), 0.96 * math.cos(half), 0.0],
            [-1.02 * math.sin(half), 1.02 * math.cos(half), 0.0],
        ],
        dtype=torch.float64,
    )
    pred = turned(pos, axis_angle([0, 1, 0], 170))
    errors = molecule_errors(pred, pos, torch.tensor([8, 1, 1]), torch.zeros(3, dtype=torch.long))
    assert errors.symmetry_order.tolist() == [2]
    assert float(errors.orientation_deg[0]) < 20.0  # through the approximate swap, not 170°
    assert errors.shape_rmsd.tolist() == pytest.approx([0.0], abs=1e-9)


def test_centroid_spread_of_a_compressed_and_a_turned_cluster():
    """Cluster 0: its three molecules drawn to half their distance from the cluster centre (0.5);
    cluster 1: turned and shifted as a whole (1)."""
    pos, _ = benzene()
    offsets = torch.tensor([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 9.0, 3.0]], dtype=torch.float64)
    cluster = torch.cat([pos + o for o in offsets])
    centre = offsets.mean(0)
    compressed = torch.cat([pos + centre + 0.5 * (o - centre) for o in offsets])
    whole_turn = axis_angle([1, 2, 3], 70)
    turned_cluster = cluster @ whole_turn.T + torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64)
    mol_index = torch.arange(6).repeat_interleave(12)
    ratios = centroid_spread_ratios(
        torch.cat([compressed, turned_cluster]),
        torch.cat([cluster, cluster]),
        mol_index,
        torch.tensor([0, 0, 0, 1, 1, 1]),
    )
    assert ratios.tolist() == pytest.approx([0.5, 1.0], abs=1e-12)


def test_non_geometric_automorphisms_are_not_symmetries():
    """A bent, lopsided H-O-H: swapping the hydrogens is a graph automorphism but no rotation."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [-0.5, 1.1, 0.0]], dtype=torch.float64)
    z = torch.tensor([8, 1, 1])
    bisector = pos[1] / pos[1].norm() + pos[2] / pos[2].norm()
    pred = turned(pos, axis_angle(bisector, 180.0))
    strict = molecule_errors(pred, pos, z, torch.zeros(3, dtype=torch.long), symmetry_tol=0.05)
    assert strict.symmetry_order.item() == 1 and strict.orientation_deg.item() == pytest.approx(180.0, abs=TOL_DEG)


def test_float32_and_non_finite_predictions():
    pos, z = asymmetric()
    pred = torch.cat([turned(pos, axis_angle([0, 1, 0], 33.0)), torch.full((5, 3), math.nan)]).float()
    target = torch.cat([pos, pos + 4]).float()
    errors = molecule_errors(pred, target, torch.cat([z, z]), torch.tensor([0] * 5 + [1] * 5))
    assert errors.orientation_deg[0].item() == pytest.approx(33.0, abs=1e-3)
    assert math.isnan(errors.orientation_deg[1].item()) and math.isnan(errors.centroid[1].item())


def test_rotation_angle_is_accurate_at_both_ends():
    for degrees in (1e-5, 90.0, 179.99999):
        assert rotation_angle_deg(axis_angle([1, 2, 3], degrees)).item() == pytest.approx(degrees, rel=1e-8)
