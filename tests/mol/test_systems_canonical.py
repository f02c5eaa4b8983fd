"""Canonical start orientations (kflow_mol.systems.canonical)."""

import torch

from kflow_mol.flow import AssemblyFlow
from kflow_mol.metrics import pm_atom_batch
from kflow_mol.rigid import centroids, so3_exp
from kflow_mol.systems.canonical import canonical_start
from kflow_mol.systems.quaternion import inertial_frames
from kflow_mol.testing import synthetic_batch


def test_every_start_molecule_gets_its_cluster_frame_and_keeps_its_centroid():
    batch = synthetic_batch(0, 1, start_turn=2.0)
    out = canonical_start(batch)
    num_mols = int(batch.mol_index.max()) + 1
    mol_batch = torch.arange(num_mols) // 6
    centre = centroids(batch.pos_start, batch.mol_index, num_mols)
    torch.testing.assert_close(centroids(out.pos_start, batch.mol_index, num_mols), centre)
    molecule = inertial_frames(out.pos_start, batch.mol_index, num_mols)
    cluster = inertial_frames(centre, mol_batch)
    torch.testing.assert_close(molecule, cluster[mol_batch], atol=1e-8, rtol=0)
    assert not torch.equal(batch.pos_start, out.pos_start)  # the input batch is not changed in place
    torch.testing.assert_close(batch.pos_start, synthetic_batch(0, 1, start_turn=2.0).pos_start)


def test_canonical_start_is_rotation_equivariant():
    batch = synthetic_batch(2, 3, start_turn=2.0)
    turn = so3_exp(torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64))
    rotated = batch.clone()
    rotated.pos_start = batch.pos_start @ turn.T
    torch.testing.assert_close(
        canonical_start(rotated).pos_start, canonical_start(batch).pos_start @ turn.T, atol=1e-8, rtol=0
    )


def test_the_flow_from_canonical_starts_reaches_the_crystal():
    batch = synthetic_batch(4, 5, start_turn=2.0)
    for bands in (1, 2):
        flow = AssemblyFlow(num_bands=bands, translation_scale=2.0, start_frame="canonical")
        out = flow.sample_exact(batch, steps_per_band=3)
        assert float(pm_atom_batch(batch.pos_target, out.pos, batch.batch).max()) < 1e-6
        assert float(pm_atom_batch(batch.pos_target, batch.pos_start, batch.batch).min()) > 0.5
