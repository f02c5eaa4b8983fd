"""Oracle reference rows: each gives the errors it is built to have, scored by the evaluation code."""

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from kflow_mol.data.dataset import rigid_cluster_data
from kflow_mol.evaluate import METRICS, evaluate_method, format_table, identity_method
from kflow_mol.metrics import molecule_errors
from kflow_mol.metrics.orientation import rotation_angle_deg
from kflow_mol.oracles import ORACLES, evaluate_oracles, oracle_method, random_axes
from kflow_mol.rigid import best_rotations


def random_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    q = rng.normal(size=(count, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    ).transpose(2, 0, 1)


def asymmetric_cluster(cluster_id: str, seed: int, num_mols: int = 4):
    """``num_mols`` CHFClBr molecules on a 6 Å line, random start and crystal orientations."""
    directions = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]) / np.sqrt(3)
    body = np.concatenate([np.zeros((1, 3)), np.array([[1.09], [1.35], [1.77], [1.94]]) * directions])
    body -= body.mean(0)
    rng = np.random.default_rng(seed)
    trans_target = np.stack([np.array([6.0 * m, 0.0, 0.0]) for m in range(num_mols)])
    meta = dict(cluster_id=cluster_id, crystal_id=cluster_id, formula="CHBrClF", source="test", synthetic=True)
    return rigid_cluster_data(
        np.tile([6, 1, 9, 17, 35], (num_mols, 1)),
        np.tile(body, (num_mols, 1, 1)),
        random_rotations(rng, num_mols),
        trans_target + rng.normal(scale=2.0, size=(num_mols, 3)),
        random_rotations(rng, num_mols),
        trans_target,
        {**meta, "start_scheme": "local"},
    )


@pytest.fixture(scope="module")
def clusters():
    return [asymmetric_cluster(f"c{i}_r0_c0", seed=i) for i in range(3)]


def errors_of(name: str, clusters):
    batch = Batch.from_data_list(clusters)
    pred = oracle_method(name)(batch).pos
    return batch, molecule_errors(pred, batch.pos_target, batch.z, batch.mol_index)


def test_true_centroids_keep_the_start_orientations(clusters):
    batch, errors = errors_of("oracle_centroids", clusters)
    assert errors.centroid.max().item() < 1e-5
    expected = rotation_angle_deg(batch.rot_start_to_target.double())
    assert errors.orientation_deg.tolist() == pytest.approx(expected.tolist(), abs=1e-3)


def test_true_orientations_keep_the_start_centroids(clusters):
    batch, errors = errors_of("oracle_orientations", clusters)
    assert errors.orientation_deg.max().item() < 1e-3
    expected = (batch.trans_target - batch.trans_start).norm(dim=-1)  # body centred: translation = centroid
    assert errors.centroid.tolist() == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.mark.parametrize("name, degrees", [("oracle_rot30", 30.0), ("oracle_rot15", 15.0), ("oracle_rot7.5", 7.5)])
def test_rotated_targets_are_off_by_exactly_the_angle(clusters, name, degrees):
    _, errors = errors_of(name, clusters)
    assert errors.orientation_deg.tolist() == pytest.approx([degrees] * errors.orientation_deg.numel(), abs=1e-3)
    assert errors.centroid.max().item() < 1e-5


def test_random_axes_do_not_depend_on_batching(clusters):
    together = random_axes(Batch.from_data_list(clusters))
    alone = torch.cat([random_axes(Batch.from_data_list([c])) for c in clusters])
    assert torch.equal(together, alone)
    assert torch.allclose(together.norm(dim=-1), torch.ones(len(together), dtype=together.dtype))


def test_oracle_rows_through_the_evaluation(clusters):
    scores = evaluate_oracles(clusters, batch_size=2, with_rmsd=False)
    assert list(scores) == list(ORACLES)
    summary = {"identity": evaluate_method("identity", identity_method, clusters, with_rmsd=False).summary()}
    summary |= {name: s.summary() for name, s in scores.items()}
    assert summary["oracle_rot30"]["orientation_deg"] == pytest.approx(30.0, abs=1e-3)
    assert summary["oracle_rot30"]["orientation_median_deg"] == pytest.approx(30.0, abs=1e-3)
    assert summary["oracle_centroids"]["centroid_error"] == pytest.approx(0.0, abs=1e-5)
    assert summary["oracle_centroids"]["pm_center"] == pytest.approx(0.0, abs=1e-4)
    assert summary["oracle_orientations"]["orientation_deg"] == pytest.approx(0.0, abs=1e-3)
    assert summary["oracle_orientations"]["centroid_error"] == pytest.approx(summary["identity"]["centroid_error"])
    assert summary["oracle_centroids"]["orientation_deg"] == pytest.approx(summary["identity"]["orientation_deg"])
    assert set(METRICS) <= set(scores["oracle_rot15"].per_cluster)
    table = format_table(summary)
    assert "orient°" in table and "spread×" in table and "oracle_*: reference rows" in table
    header, *rows = table.splitlines()[:-1]
    assert all(len(row.split()) == len(header.replace(" Å", "").split()) for row in rows)  # a value per column
    assert all(math.isfinite(summary[name]["pm_atom"]) for name in ORACLES)


def test_unknown_oracle_is_rejected():
    with pytest.raises(ValueError, match="unknown oracle"):
        oracle_method("oracle_magic")


def test_shared_turn_turns_every_molecule_of_a_cluster_alike(clusters):
    batch, errors = errors_of("oracle_shared_turn", clusters)
    assert errors.centroid.max().item() < 1e-5
    pred = oracle_method("oracle_shared_turn")(batch).pos
    num_mols = int(batch.mol_index.max()) + 1
    centre = scatter(pred, batch.mol_index, dim=0, dim_size=num_mols, reduce="mean")
    target_centre = scatter(batch.pos_target, batch.mol_index, dim=0, dim_size=num_mols, reduce="mean")
    turns = best_rotations(
        batch.pos_target - target_centre[batch.mol_index], pred - centre[batch.mol_index], batch.mol_index, num_mols
    ).double()
    for cluster in range(len(clusters)):  # one rotation per cluster, a different one per cluster
        mine = turns[cluster * 4 : cluster * 4 + 4]
        torch.testing.assert_close(mine, mine[:1].expand(4, 3, 3), atol=1e-5, rtol=0)
    assert not torch.allclose(turns[0], turns[4], atol=1e-3)
    angles = errors.orientation_deg.reshape(len(clusters), 4)
    assert torch.allclose(angles, angles[:, :1].expand(-1, 4), atol=1e-3)
