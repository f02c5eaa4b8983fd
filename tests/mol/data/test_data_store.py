"""The memory-mapped cluster container: lazy == eager, list-like views, migration, bad files."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from kflow_mol.data import build_assembly_dataset, load_assembly_dataset
from kflow_mol.data.dataset import (
    AssemblyDataset,
    load_clusters_legacy,
    open_clusters,
    save_clusters,
    save_clusters_legacy,
)
from kflow_mol.data.store import META_FIELDS, STORE_NAME, ClusterStore, StoreFormatError

IDS = ["ACSALA", "ZZZDKE01", "ACRDIN05"]


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("store_small")
    return build_assembly_dataset("pyxtal", output=out, repeats=2, ids=IDS, progress=False)


def assert_same_cluster(a, b):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        x, y = a[key], b[key]
        if torch.is_tensor(x):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), key
        else:
            assert type(x) is type(y) and x == y, key


def test_lazy_equals_eager_after_migration(small_build, tmp_path):
    lazy = load_assembly_dataset(small_build.output)
    assert isinstance(lazy, AssemblyDataset) and len(lazy) >= 6
    eager = list(lazy)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("manifest.json", "splits.json"):
        shutil.copy(small_build.output / name, legacy / name)
    save_clusters_legacy(legacy / "clusters.pt", eager)
    old = load_clusters_legacy(legacy / "clusters.pt")
    migrated = load_assembly_dataset(legacy)  # migrates clusters.pt once
    assert (legacy / STORE_NAME).exists() and not (legacy / "clusters.pt").exists()
    assert len(old) == len(migrated) == len(eager)
    for a, b, c in zip(old, migrated, eager):
        assert_same_cluster(a, b)
        assert_same_cluster(a, c)
        assert torch.equal(b.pos, b.pos_start)
    batch_old = torch.cat([c.pos_target for c in old])
    batch_new = torch.cat([c.pos_target for c in migrated])
    assert torch.equal(batch_old, batch_new)


def test_container_is_safetensors(small_build):
    safetensors = pytest.importorskip("safetensors")
    store = ClusterStore(small_build.output / STORE_NAME)
    with safetensors.safe_open(str(store.path), framework="np") as handle:
        for name, array in store.arrays.items():
            assert np.array_equal(handle.get_tensor(name), array), name


def test_views_behave_like_lists(small_build):
    clusters = load_assembly_dataset(small_build.output)
    ids = [c.cluster_id for c in clusters]
    assert [c.cluster_id for c in clusters[:3]] == ids[:3] and len(clusters[:100]) == len(ids)
    assert clusters[-1].cluster_id == ids[-1] and clusters[1:4][1].cluster_id == ids[2]
    assert [clusters[[4, 0]][k].cluster_id for k in range(2)] == [ids[4], ids[0]]
    assert clusters[torch.tensor(2)].cluster_id == ids[2]
    assert len(clusters[:0]) == 0 and clusters[:0] == [] and clusters != []
    assert clusters[:3] == list(clusters[:3]) and clusters[:3] != list(clusters[1:4])
    assert len(clusters[:2] + clusters[2:]) == len(ids)
    assert clusters.meta(0) == {key: clusters[0][key] for key in META_FIELDS}
    with pytest.raises(IndexError):
        clusters[len(ids)]
    train = load_assembly_dataset(small_build.output, "train")
    splits = json.loads((small_build.output / "splits.json").read_text())
    assert {c.crystal_id for c in train} <= set(splits["train"])
    again = pickle.loads(pickle.dumps(clusters))  # a spawned DataLoader worker re-maps the file
    assert_same_cluster(again[3], clusters[3])


def test_empty_and_bad_containers(tmp_path):
    save_clusters(tmp_path / STORE_NAME, [])
    assert len(open_clusters(tmp_path)) == 0
    (tmp_path / STORE_NAME).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(StoreFormatError, match=STORE_NAME):
        open_clusters(tmp_path)


def test_released_pages_read_back_the_same(small_build, monkeypatch):
    from kflow_mol.data import store as store_module

    monkeypatch.setattr(store_module, "RELEASE_EVERY", 2)
    store = ClusterStore(small_build.output / STORE_NAME)
    first = [store.cluster(k) for k in range(len(store))]  # pages dropped every second read
    store.release()
    for k, cluster in enumerate(first):
        assert_same_cluster(cluster, store.cluster(k))
