"""Processed clusters: rigid record, batching, cache, splits, CSV layout, determinism."""

import json

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from kflow_mol.data import build_assembly_dataset, collate_clusters, load_assembly_dataset
from kflow_mol.data.build import COMMITTED_SPLITS
from kflow_mol.data.clusters import min_intermolecular_distance
from kflow_mol.data.crystals import BOND_TOLERANCE, COVALENT_RADII
from kflow_mol.data.dataset import load_clusters


def _rigid_errors(cluster):
    """Max deviation (Å) of both stored poses and of the start→target transform."""
    m = cluster.mol_index
    body = cluster.body.double()
    start = torch.einsum("aij,aj->ai", cluster.rot_start[m].double(), body) + cluster.trans_start[m].double()
    target = torch.einsum("aij,aj->ai", cluster.rot_target[m].double(), body) + cluster.trans_target[m].double()
    moved = (
        torch.einsum("aij,aj->ai", cluster.rot_start_to_target[m].double(), cluster.pos_start.double())
        + cluster.trans_start_to_target[m].double()
    )
    return [
        (a - cluster[b].double()).norm(dim=1).max().item()
        for a, b in ((start, "pos_start"), (target, "pos_target"), (moved, "pos_target"))
    ]


def _is_whole(numbers, positions):
    """One covalently bonded group (covalent radii + 0.4 Å), no periodic images involved."""
    radii = COVALENT_RADII[numbers]
    bonded = cdist(positions, positions) < radii[:, None] + radii[None] + BOND_TOLERANCE
    return connected_components(bonded, directed=False)[0] == 1


def _check_clusters(clusters):
    for c in clusters:
        assert c.num_mols == 17
        for m in range(17):
            atoms = c.mol_index == m
            assert _is_whole(c.z[atoms].numpy(), c.pos_target[atoms].double().numpy()), (c.cluster_id, m)
        counts = torch.bincount(c.mol_index, minlength=17)
        assert (counts == counts[0]).all()
        per_mol = c.z.view(17, -1).sort(dim=1).values
        assert (per_mol == per_mol[0]).all(), c.cluster_id
        assert max(_rigid_errors(c)) < 1e-4, c.cluster_id
        rots = torch.cat([c.rot_start, c.rot_target]).double()
        assert torch.allclose(rots @ rots.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(rots), atol=1e-5)
        assert torch.allclose(torch.linalg.det(rots), torch.ones(len(rots), dtype=torch.float64), atol=1e-5)
        assert torch.allclose(c.pos_start.double().mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-4)
        assert min_intermolecular_distance(c.pos_target.double().view(17, -1, 3).numpy()) > 1.0
        assert torch.equal(c.pos, c.pos_start)


def test_pyxtal_clusters_are_rigid_and_whole(data_pyxtal_build):
    report = data_pyxtal_build
    assert report.kept_crystals >= 85 and report.kept_clusters == 2 * 98
    assert sum(report.reason_counts.values()) + report.kept_crystals == 100
    clusters = load_assembly_dataset(report.output)
    assert {c.source for c in clusters} == {"pyxtal_testdb"} and not any(c.synthetic for c in clusters)
    _check_clusters(clusters)


def test_cod_clusters_are_rigid_and_whole(data_cod_build):
    report = data_cod_build
    assert report.kept_crystals + len(report.rejected) == 40
    assert report.reason_counts == {"too_many_atoms": 1}  # 7052819: 110 atoms per molecule
    clusters = load_assembly_dataset(report.output)
    assert all(c.start_scheme == "scrambled" and c.source == "cod_cif" for c in clusters)
    _check_clusters(clusters)


def test_batching_makes_mol_index_global(data_pyxtal_build):
    clusters = load_assembly_dataset(data_pyxtal_build.output)[:3]
    batch = collate_clusters(clusters)
    assert batch.mol_index.max().item() == 3 * 17 - 1
    assert torch.equal(batch.mol_batch, torch.arange(3).repeat_interleave(17))
    assert torch.equal(batch.mol_batch[batch.mol_index], batch.batch)
    assert batch.rot_start.shape == (51, 3, 3)
    rotated = torch.einsum("aij,aj->ai", batch.rot_target[batch.mol_index], batch.body)
    moved = rotated + batch.trans_target[batch.mol_index]
    assert torch.allclose(moved, batch.pos_target, atol=1e-4)


def test_build_is_cached_and_deterministic(data_pyxtal_build, tmp_path):
    again = build_assembly_dataset("pyxtal", output=data_pyxtal_build.output, start="local", repeats=2, progress=False)
    assert again.cached and again.settings_hash == data_pyxtal_build.settings_hash
    ids = ["ACSALA", "ZZZDKE01", "ACRDIN05"]
    first = build_assembly_dataset("pyxtal", output=tmp_path / "a", repeats=2, ids=ids, progress=False)
    second = build_assembly_dataset("pyxtal", output=tmp_path / "b", repeats=2, ids=ids, progress=False)
    assert first.settings_hash == second.settings_hash and not second.cached
    a, b = load_clusters(first.output / "clusters.pt"), load_clusters(second.output / "clusters.pt")
    full = {c.cluster_id: c for c in load_assembly_dataset(data_pyxtal_build.output)}
    assert [c.cluster_id for c in a] == [c.cluster_id for c in b] and len(a) >= 6
    for x, y in zip(a, b):
        for key in ("z", "pos_start", "pos_target", "body", "rot_start", "trans_target"):
            assert torch.equal(x[key], y[key])
            assert torch.equal(x[key], full[x.cluster_id][key])  # a subset build draws the same states
    other = build_assembly_dataset("pyxtal", output=tmp_path / "a", repeats=2, ids=ids, seed=1, progress=False)
    assert other.settings_hash != first.settings_hash and not other.cached
    c = load_clusters(other.output / "clusters.pt")[0]
    assert not torch.equal(c.pos_start, a[0].pos_start)


def test_embedded_splits_are_the_committed_lists(data_pyxtal_build):
    committed = json.loads(COMMITTED_SPLITS["pyxtal"].read_text())
    written = json.loads((data_pyxtal_build.output / "splits.json").read_text())
    assert {k: written[k] for k in ("train", "val", "test")} == {k: committed[k] for k in ("train", "val", "test")}
    parts = [set(committed[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    manifest = json.loads((data_pyxtal_build.output / "manifest.json").read_text())
    formulas = manifest["crystals"]
    assert set().union(*parts) == set(formulas)
    by_part = [{formulas[i] for i in p} for p in parts]
    assert not (by_part[0] & by_part[1] or by_part[0] & by_part[2] or by_part[1] & by_part[2])
    test = load_assembly_dataset(data_pyxtal_build.output, split="test")
    assert {c.crystal_id for c in test} == parts[2]


def test_mech_db_is_evaluation_only(tmp_path):
    report = build_assembly_dataset("pyxtal_mech", output=tmp_path, progress=False)
    assert report.kept_crystals + len(report.rejected) == 50 and report.kept_crystals >= 35
    assert {r.reason for r in report.rejected if r.entry_id == "TEPHTH16"} == {"disorder"}  # alternative H sites
    with pytest.raises(ValueError, match="evaluation-only"):
        load_assembly_dataset(tmp_path, split="train")
    with pytest.raises(ValueError, match="evaluation-only"):
        load_assembly_dataset(tmp_path)
    test = load_assembly_dataset(tmp_path, split="test")
    assert {c.source for c in test} == {"pyxtal_mech"} and len(test) == report.kept_clusters
    _check_clusters(test)


def test_csv_layout_round_trips(data_cod_build, tmp_path):
    clusters = load_assembly_dataset(data_cod_build.output)
    final = sorted((data_cod_build.output / "raw" / "FinalPositions").glob("*_cluster16.csv"))
    assert len(final) == len(clusters)
    header, first = final[0].read_text().splitlines()[:2]
    assert header == "mol_idx,atom_symbol,x,y,z" and first.startswith("0,")
    report = build_assembly_dataset("cod_cluster17", input=data_cod_build.output, output=tmp_path, progress=False)
    assert report.kept_clusters == len(clusters) and not report.rejected
    read = {c.cluster_id: c for c in load_assembly_dataset(tmp_path)}
    for c in clusters:
        r = read[c.cluster_id]
        assert r.crystal_id == c.crystal_id and r.source == "cod_cluster17"
        assert torch.equal(r.z, c.z) and torch.equal(r.mol_index, c.mol_index)
        assert torch.allclose(r.pos_start, c.pos_start, atol=2e-5)
        assert torch.allclose(r.pos_target, c.pos_target, atol=2e-5)
        assert max(_rigid_errors(r)) < 1e-4


def test_csv_reader_rejects_a_broken_file(tmp_path):
    from kflow_mol.data.cod_cluster17 import final_path, initial_path, write_cluster_pair

    numbers = np.array([6, 1] * 17)
    mol_index = np.repeat(np.arange(17), 2)
    target = np.random.default_rng(0).normal(size=(34, 3)) * 10
    write_cluster_pair(tmp_path, "good", numbers, mol_index, target, target)
    write_cluster_pair(tmp_path, "bad", numbers, mol_index, target, target)
    lines = final_path(tmp_path, "bad").read_text().splitlines()
    final_path(tmp_path, "bad").write_text("\n".join(lines[:-1]) + "\n")  # last molecule loses an atom
    write_cluster_pair(tmp_path, "warped", numbers, mol_index, target, target + np.eye(3)[np.arange(34) % 3])
    report = build_assembly_dataset("cod_cluster17", input=tmp_path, output=tmp_path / "out", progress=False)
    assert report.kept_clusters == 1
    reasons = {r.entry_id: r.reason for r in report.rejected}
    assert reasons == {"bad": "bad_cluster_file", "warped": "not_rigid"}
    assert "unequal atom counts" in next(r.detail for r in report.rejected if r.entry_id == "bad")
    assert initial_path(tmp_path, "good").exists()


def test_changed_input_file_triggers_a_rebuild(data_cod_folder, tmp_path):
    import shutil

    folder = tmp_path / "cifs"
    folder.mkdir()
    for name in ("7105573.cif", "2100348.cif"):
        shutil.copy(data_cod_folder / name, folder / name)
    first = build_assembly_dataset("cif", input=folder, progress=False, output=tmp_path / "out")
    assert first.kept_crystals == 2 and not first.cached
    assert build_assembly_dataset("cif", input=folder, progress=False, output=tmp_path / "out").cached
    with open(folder / "2100348.cif", "a") as handle:
        handle.write("\n# edited\n")
    again = build_assembly_dataset("cif", input=folder, progress=False, output=tmp_path / "out")
    assert not again.cached and again.settings_hash != first.settings_hash
    splits = json.loads((tmp_path / "out" / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == ["2100348", "7105573"]
