"""SO(3) exp/log and rigid-motion helpers."""

import math

import torch

from kflow_mol.rigid import apply_rigid_motion, centroids, hat, rigid_motion, so3_exp, so3_log


def _rotation_vectors(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return axis * torch.rand(n, 1, generator=g, dtype=dtype) * math.pi


def test_hat_is_cross_product():
    a, b = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close((hat(a) @ b.unsqueeze(-1)).squeeze(-1), torch.linalg.cross(a, b))


def test_exp_gives_rotations_and_known_values():
    rot = so3_exp(_rotation_vectors(500))
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye.expand_as(rot), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(500, dtype=torch.float64))
    quarter = so3_exp(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(quarter, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64))
    torch.testing.assert_close(so3_exp(torch.zeros(3)), torch.eye(3))


def test_log_inverts_exp_including_small_and_near_pi_angles():
    omega = _rotation_vectors(500)
    omega[:5] *= 1e-8
    omega[5:10] *= (math.pi - 1e-6) / omega[5:10].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(so3_log(so3_exp(omega)), omega, atol=1e-7, rtol=0)


def test_log_at_exactly_pi_gives_a_valid_rotation_vector():
    rot = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # pi about x
    omega = so3_log(rot)
    torch.testing.assert_close(omega.abs(), torch.tensor([math.pi, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(so3_exp(omega), rot)


def test_log_equivariance():
    omega = _rotation_vectors(50, seed=1)
    q = so3_exp(_rotation_vectors(1, seed=2))[0]
    conj = q @ so3_exp(omega) @ q.T
    torch.testing.assert_close(so3_log(conj), omega @ q.T, atol=1e-10, rtol=0)


def test_rigid_motion_round_trip_to_target_atoms():
    g = torch.Generator().manual_seed(0)
    mol_index = torch.arange(4).repeat_interleave(5)
    body = torch.randn(20, 3, generator=g, dtype=torch.float64)
    rot_start = so3_exp(_rotation_vectors(4, seed=3))
    rot_target = so3_exp(_rotation_vectors(4, seed=4))
    t_start, t_target = torch.randn(2, 4, 3, generator=g, dtype=torch.float64) * 5
    pos_start = (rot_start[mol_index] @ body.unsqueeze(-1)).squeeze(-1) + t_start[mol_index]
    pos_target = (rot_target[mol_index] @ body.unsqueeze(-1)).squeeze(-1) + t_target[mol_index]
    motion = rigid_motion(pos_start, rot_target @ rot_start.transpose(-1, -2), pos_target, mol_index)
    moved = apply_rigid_motion(pos_start, mol_index, motion.delta_c, motion.omega)
    torch.testing.assert_close(moved, pos_target, atol=1e-10, rtol=0)
    zero = apply_rigid_motion(
        pos_start, mol_index, torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
    )
    torch.testing.assert_close(zero, pos_start)
    torch.testing.assert_close(centroids(moved, mol_index), centroids(pos_start, mol_index) + motion.delta_c)


def test_exp_and_log_agree_with_e3nn_away_from_pi():
    """Our SO(3) maps are kept for their float64 accuracy near pi; e3nn's are the reference elsewhere."""
    from e3nn import o3

    omega = _rotation_vectors(200, seed=5) * 0.95  # angles up to 0.95 pi: e3nn's atan2-based log is exact there
    angle = omega.norm(dim=-1)
    axis = omega / angle.unsqueeze(-1)
    torch.testing.assert_close(so3_exp(omega), o3.axis_angle_to_matrix(axis, angle), atol=1e-12, rtol=0)
    e3nn_axis, e3nn_angle = o3.matrix_to_axis_angle(so3_exp(omega))
    torch.testing.assert_close(so3_log(so3_exp(omega)), e3nn_axis * e3nn_angle.unsqueeze(-1), atol=1e-9, rtol=0)


def test_left_jacobian_inverse_turns_an_angular_velocity_into_a_log_rate():
    """exp(w + h J^-1(w) Omega) == exp(h Omega) exp(w) to second order, and J^-1(w) w == w."""
    from kflow_mol.rigid import so3_left_jacobian_inverse

    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64) * 1.2
    w[0] = torch.tensor([1e-5, 0.0, 0.0], dtype=torch.float64)  # the small-angle series
    omega = torch.randn(6, 3, generator=g, dtype=torch.float64)
    h = 1e-6
    rate = (so3_left_jacobian_inverse(w) @ omega.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(so3_exp(w + h * rate), so3_exp(h * omega) @ so3_exp(w), atol=1e-11, rtol=0)
    along = (so3_left_jacobian_inverse(w) @ w.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(along, w, atol=1e-12, rtol=0)
