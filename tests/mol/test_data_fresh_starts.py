"""Fresh start states: redrawn per draw, identical for 1 process and 2 ranks, exact on resume."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from kflow.training import StepDraws
from kflow_mol.data import load_embedded_dataset
from kflow_mol.data.fresh_starts import FreshStarts, redraw_start
from kflow_mol.data.start_states import start_scheme


@pytest.fixture(scope="module")
def clusters():
    return sorted(load_embedded_dataset("train"), key=lambda c: c.num_nodes)[:4]


def _by_id(batch):
    return {c.cluster_id: c for c in batch.to_data_list()}


def _pairwise(pos):
    return torch.cdist(pos.double(), pos.double())


def test_redrawn_start_keeps_the_crystal_and_moves_the_molecules(clusters):
    cluster = clusters[0]
    fresh = redraw_start(cluster, start_scheme("local"), np.random.default_rng(0))
    torch.testing.assert_close(_pairwise(fresh.pos_target), _pairwise(cluster.pos_target), atol=1e-4, rtol=0)
    assert (fresh.pos_start - cluster.pos_start).abs().max() > 0.5
    torch.testing.assert_close(fresh.pos_start.mean(0), torch.zeros(3), atol=1e-4, rtol=0)  # centred on the start
    # every start molecule is a rigid copy of its crystal molecule
    mols = cluster.mol_index
    for m in range(int(cluster.num_mols)):
        atoms = mols == m
        torch.testing.assert_close(
            _pairwise(fresh.pos_start[atoms]), _pairwise(cluster.pos_target[atoms]), atol=1e-4, rtol=0
        )
    assert fresh.cluster_id == cluster.cluster_id and fresh.start_scheme == cluster.start_scheme


def test_one_process_and_two_ranks_draw_the_same_starts(clusters):
    fresh = FreshStarts()
    single = _by_id(fresh(Batch.from_data_list(clusters), draws=StepDraws(seed=5, step=3)))
    for rank in range(2):
        shard = clusters[rank::2]  # DistributedSampler layout: global positions rank, rank + 2, ...
        ranked = _by_id(fresh(Batch.from_data_list(shard), draws=StepDraws(seed=5, step=3, rank=rank, world_size=2)))
        for cluster_id, cluster in ranked.items():
            assert torch.equal(cluster.pos_start, single[cluster_id].pos_start)
            assert torch.equal(cluster.pos_target, single[cluster_id].pos_target)
    assert fresh.redrawn == 8 and fresh.kept == 0


def test_draws_are_exact_on_resume_and_change_with_the_step(clusters):
    batch = Batch.from_data_list(clusters)
    first = FreshStarts()(batch, draws=StepDraws(seed=0, step=11))
    torch.manual_seed(123)  # a resumed process has another global RNG state
    np.random.seed(123)
    resumed = FreshStarts()(batch, draws=StepDraws(seed=0, step=11))
    assert torch.equal(first.pos_start, resumed.pos_start)
    later = FreshStarts()(batch, draws=StepDraws(seed=0, step=12))
    assert not torch.allclose(first.pos_start, later.pos_start)
    assert not torch.allclose(first.pos_start, batch.pos_start)


def test_published_starts_stay_fixed(clusters):
    published = clusters[0].clone()
    published.start_scheme = "published"
    fresh = FreshStarts()
    out = fresh([published, clusters[1]], generator=torch.Generator().manual_seed(0)).to_data_list()
    assert torch.equal(out[0].pos_start, published.pos_start)
    assert not torch.allclose(out[1].pos_start, clusters[1].pos_start)
    assert fresh.kept == 1 and fresh.redrawn == 1


def test_wrapped_loss_trains_on_fresh_starts(clusters):
    from kflow_mol.flow import AssemblyFlow
    from kflow_mol.models import build_model

    seen = []

    def loss_fn(model, batch, draws=None, generator=None):
        seen.append(batch.pos_start.clone())
        return AssemblyFlow(num_bands=2).loss(model, batch, draws=draws, generator=generator)

    loss = FreshStarts().wrap_loss(loss_fn)
    model = build_model("S")
    value, _ = loss(model, Batch.from_data_list(clusters[:2]), draws=StepDraws(seed=0, step=1))
    loss(model, Batch.from_data_list(clusters[:2]), draws=StepDraws(seed=0, step=2))
    assert torch.isfinite(value) and not torch.allclose(seen[0], seen[1])
