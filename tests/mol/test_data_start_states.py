"""Start states: rigid, clash-free, reproducible, at the documented scales."""

import numpy as np
import pytest
import torch

from kflow_mol.config import START_PRESETS as config_presets
from kflow_mol.data import build_assembly_dataset, load_assembly_dataset
from kflow_mol.data.clusters import min_intermolecular_distance
from kflow_mol.data.start_states import (
    START_PRESETS,
    StartScheme,
    draw_start_state,
    random_rotation,
    start_rng,
    start_scheme,
)


def _pm(p, q):
    return ((torch.cdist(p, p) - torch.cdist(q, q)) ** 2).mean().sqrt().item()


def test_random_rotations_are_proper_and_uniform():
    rng = np.random.default_rng(0)
    rotations = np.stack([random_rotation(rng) for _ in range(4000)])
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    assert np.abs(rotations.mean(0)).max() < 0.05  # Haar measure: E[R] = 0
    angles = np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert abs(np.mean(angles) - (np.pi / 2 + 2 / np.pi)) < 0.05  # mean rotation angle of Haar rotations


def test_seeding_depends_only_on_the_cluster():
    a = start_rng(0, "ACSALA", 1, 0).normal(size=4)
    assert np.array_equal(a, start_rng(0, "ACSALA", 1, 0).normal(size=4))
    for other in (
        start_rng(1, "ACSALA", 1, 0),
        start_rng(0, "ACSALA", 2, 0),
        start_rng(0, "ACSALB", 1, 0),
        start_rng(0, "ACSALA", 1, 3),
    ):
        assert not np.array_equal(a, other.normal(size=4))


def test_presets_and_validation():
    assert set(START_PRESETS) >= {"local", "scrambled"}
    assert set(config_presets) == set(START_PRESETS)  # the config accepts exactly the presets that exist
    assert start_scheme("local").displacement == "gaussian" and start_scheme("local").scale == 3.0
    assert start_scheme("scrambled", scale=2.0).scale == 2.0
    with pytest.raises(ValueError, match="unknown start preset"):
        start_scheme("far")
    with pytest.raises(ValueError, match="displacement"):
        StartScheme("x", "uniform", 1.0)


def test_local_and_scrambled_scales(data_pyxtal_build, tmp_path):
    """The scrambled preset reaches the published identity-PM range (10-15 Å); local stays near."""
    scrambled = build_assembly_dataset("pyxtal", output=tmp_path, start="scrambled", progress=False)
    local = [c for c in load_assembly_dataset(data_pyxtal_build.output) if c.cluster_id.split("_r")[-1][0] == "0"]
    far = load_assembly_dataset(scrambled.output)
    assert [c.cluster_id for c in local] == [c.cluster_id for c in far]
    pm_local = np.mean([_pm(c.pos_start.double(), c.pos_target.double()) for c in local])
    pm_far = np.mean([_pm(c.pos_start.double(), c.pos_target.double()) for c in far])
    assert 4.0 < pm_local < 9.0 and 10.0 < pm_far < 15.0
    for c in local + far:
        start = c.pos_start.double().view(c.num_mols, -1, 3).numpy()
        assert min_intermolecular_distance(start) >= 1.5 - 1e-4  # clash rejection
        assert c.start_scheme in ("local", "scrambled")
    shifts = torch.cat([(c.trans_start - c.trans_target).norm(dim=1) for c in local])
    assert 3.0 < shifts.mean().item() < 6.0  # 3 Å Gaussian in 3D: mean norm 4.8 Å before clash growth


def test_sites_preset_keeps_centroids_near_their_sites(data_pyxtal_build):
    """The orientation-only diagnostic: uniform rotations, centroids within about 1 Å of the crystal."""
    scheme = start_scheme("sites")
    for cluster in load_assembly_dataset(data_pyxtal_build.output)[:3]:
        m = cluster.num_mols
        body = cluster.body.double().view(m, -1, 3).numpy()
        rot, trans = cluster.rot_target.double().numpy(), cluster.trans_target.double().numpy()
        rot_start, trans_start = draw_start_state(body, rot, trans, scheme, start_rng(0, "x", 0, 0))
        assert np.linalg.norm(trans_start - trans, axis=1).mean() < 1.5
        atoms = np.einsum("mij,mnj->mni", rot_start, body) + trans_start[:, None]
        assert min_intermolecular_distance(atoms) >= 1.0 - 1e-6
