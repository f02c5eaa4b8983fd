"""Synthetic PyXtal crystals: labelled, train-only, same record as real clusters."""

import json

import numpy as np

from kflow_mol.data import build_assembly_dataset, load_assembly_dataset
from kflow_mol.data.synthetic import SPACE_GROUP_WEIGHTS, draw_space_group


def test_space_groups_follow_the_weights():
    rng = np.random.default_rng(0)
    drawn = [draw_space_group(rng) for _ in range(3000)]
    assert set(drawn) <= set(SPACE_GROUP_WEIGHTS)
    share = drawn.count(14) / len(drawn)
    assert abs(share - SPACE_GROUP_WEIGHTS[14] / sum(SPACE_GROUP_WEIGHTS.values())) < 0.03


def test_synthetic_build_is_labelled_and_train_only(data_pyxtal_build, tmp_path):
    train = json.loads((data_pyxtal_build.output / "splits.json").read_text())["train"]
    ids = [f"syn_{train[0]}_0", f"syn_{train[1]}_0", f"syn_{train[1]}_1"]
    report = build_assembly_dataset(
        "pyxtal_random", input=data_pyxtal_build.output, output=tmp_path, ids=ids, progress=False
    )
    assert report.kept_crystals + len(report.rejected) == 3 and report.kept_crystals >= 2
    clusters = load_assembly_dataset(tmp_path)
    assert all(c.synthetic and c.source == "pyxtal_random" for c in clusters)
    assert {c.crystal_id for c in clusters} <= set(ids)
    assert load_assembly_dataset(tmp_path, split="val") == [] and load_assembly_dataset(tmp_path, split="test") == []
    assert len(load_assembly_dataset(tmp_path, split="train")) == len(clusters)
    real = {c.crystal_id: c for c in load_assembly_dataset(data_pyxtal_build.output)}
    for c in clusters:
        parent = real[c.crystal_id.split("_")[1]]
        assert c.formula == parent.formula and c.num_mols == 17
        rotated = np.einsum("aij,aj->ai", c.rot_target[c.mol_index].numpy(), c.body.numpy())
        moved = rotated + c.trans_target[c.mol_index].numpy()
        assert np.abs(moved - c.pos_target.numpy()).max() < 1e-4
