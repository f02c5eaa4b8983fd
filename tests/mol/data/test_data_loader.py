"""Training from the mapped container: DataLoader workers, DDP shards, exact resume."""

import dataclasses

import pytest

from kflow.training import read_csv_log
from kflow.training.trainer import EpochBatches
from kflow_mol.config import AssemblyConfig, ModelConfig
from kflow_mol.data import build_assembly_dataset, load_assembly_dataset
from kflow_mol.experiment import train

pytestmark = pytest.mark.usefixtures("one_thread")
IDS = ["ACSALA", "ZZZDKE01", "ACRDIN05"]
TINY = {"irreps_hidden": "8x0e+2x1o+2x1e", "mol_layers": 1}


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader_small")
    report = build_assembly_dataset("pyxtal", output=out, repeats=3, ids=IDS, progress=False)
    return load_assembly_dataset(report.output)


def _losses(tmp_path, clusters, name, steps=4, **train_changes):
    cfg = AssemblyConfig(K=2, output_dir=str(tmp_path / name), model=ModelConfig(**TINY))
    cfg.train = dataclasses.replace(
        cfg.train, steps=steps, batch_size=4, log_every=1, ckpt_every=2, progress=False, **train_changes
    )
    train(cfg, clusters)
    return [row["loss"] for row in read_csv_log(tmp_path / name / "train_log.csv")]


def test_two_workers_train_like_none_and_one(tmp_path, clusters):
    base = _losses(tmp_path, clusters, "w0", num_workers=0)
    assert len(base) == 4
    assert _losses(tmp_path, clusters, "w1", num_workers=1) == base
    assert _losses(tmp_path, clusters, "w2", num_workers=2) == base


def test_resume_with_workers_is_exact(tmp_path, clusters):
    whole = _losses(tmp_path, clusters, "whole", steps=6, num_workers=2)
    _losses(tmp_path, clusters, "split", steps=2, num_workers=2)
    resumed = _losses(tmp_path, clusters, "split", steps=6, num_workers=2, resume=True)
    assert resumed == whole


def test_ddp_shards_cover_each_cluster_once_per_epoch(clusters):
    """Two ranks' DistributedSampler shards of one epoch: disjoint, all clusters, the 1-process batches."""
    dataset = clusters[: len(clusters) - len(clusters) % 4]
    single = EpochBatches(len(dataset), 4, 1, 0, seed=3)
    ranks = [EpochBatches(len(dataset), 4, 2, rank, seed=3) for rank in range(2)]
    for epoch in range(2):
        shards = [r(epoch) for r in ranks]
        ids = [dataset[i].cluster_id for shard in shards for batch in shard for i in batch]
        assert sorted(ids) == sorted(c.cluster_id for c in dataset)  # each cluster exactly once
        for step, batch in enumerate(single(epoch)):
            assert sorted(shards[0][step] + shards[1][step]) == sorted(batch)
    assert single(0) != single(1)
