"""The assembly flow: targets, exact conditional sampling, loss, and a short training run."""
import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from kflow_mol.flow import AssemblyFlow, cluster_layout, translation_scale_of
from kflow_mol.metrics import pm_atom_batch
from kflow_mol.models import build_model
from kflow_mol.rigid import so3_exp


class _Cluster(Data):
    """Minimal stand-in for kflow_mol.data.AssemblyData (same fields, same batching rule)."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "mol_index":
            return self.num_mols
        return super().__inc__(key, value, *args, **kwargs)


def synthetic_cluster(seed: int, num_mols: int = 17, atoms_per_mol: int = 5, shift: float = 2.0) -> _Cluster:
    """Rigid random molecules on a grid (crystal) and randomly moved copies (start): shapes only."""
    g = torch.Generator().manual_seed(seed)
    body = torch.randn(atoms_per_mol, 3, generator=g) * 0.9
    body -= body.mean(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3)[:num_mols]
    trans_target = grid * 5.0
    rand_rot = lambda: so3_exp(torch.randn(num_mols, 3, generator=g) * 0.8)  # noqa: E731
    rot_target = rand_rot()
    rot_start = rand_rot()
    trans_start = trans_target + shift * torch.randn(num_mols, 3, generator=g)
    mol_index = torch.arange(num_mols).repeat_interleave(atoms_per_mol)
    b = body.repeat(num_mols, 1)
    pos_target = (rot_target[mol_index] @ b.unsqueeze(-1)).squeeze(-1) + trans_target[mol_index]
    pos_start = (rot_start[mol_index] @ b.unsqueeze(-1)).squeeze(-1) + trans_start[mol_index]
    center = pos_start.mean(0)
    z = torch.tensor([6, 6, 8, 7, 1] * atoms_per_mol)[:atoms_per_mol].repeat(num_mols)
    return _Cluster(z=z, mol_index=mol_index, num_mols=num_mols, pos_start=pos_start - center,
                    pos_target=pos_target - center, rot_start_to_target=rot_target @ rot_start.transpose(-1, -2),
                    num_nodes=len(z))


@pytest.mark.parametrize("num_bands", [1, 2, 3])
def test_target_is_reached_by_exact_conditional_velocity(num_bands):
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(3)])
    flow = AssemblyFlow(num_bands=num_bands, translation_scale=2.0)
    zero = flow.positions(batch, torch.zeros_like(flow.target(batch)))
    torch.testing.assert_close(zero, batch.pos_start)
    torch.testing.assert_close(flow.positions(batch, flow.target(batch)), batch.pos_target, atol=1e-4, rtol=0)
    result = flow.sample_exact(batch, steps_per_band=4, return_trajectory=True)
    pm = pm_atom_batch(batch.pos_target, result.pos, batch.batch)
    assert pm.max() < 1e-4
    assert result.nfe == 4 * num_bands and len(result.trajectory) == result.nfe + 1
    assert pm_atom_batch(batch.pos_target, batch.pos_start, batch.batch).min() > 1.0


def test_cartesian_baseline_reaches_target_and_requires_one_band():
    batch = Batch.from_data_list([synthetic_cluster(i, atoms_per_mol=3 + i) for i in range(3)])
    flow = AssemblyFlow(num_bands=1, mode="cartesian", translation_scale=3.0)
    result = flow.sample_exact(batch, steps_per_band=3)
    torch.testing.assert_close(result.pos, batch.pos_target, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="num_bands must be 1"):
        AssemblyFlow(num_bands=2, mode="cartesian")


def test_rigid_target_values_and_layout():
    cluster = synthetic_cluster(0)
    batch = Batch.from_data_list([cluster, synthetic_cluster(1)])
    layout = cluster_layout(batch)
    assert layout.num_clusters == 2 and layout.mols_per_cluster == 17
    x1 = AssemblyFlow(num_bands=2, translation_scale=2.0).target(batch)
    assert x1.shape == (2, 17, 6)
    assert float(x1[..., 3:].norm(dim=-1).max()) <= math.pi + 1e-6
    shift = translation_scale_of([cluster])
    assert shift > 0.5


def test_band_one_moves_smooth_modes_first():
    """At k = 1 of K = 2 the state equals the projection of the target on the low band."""
    batch = Batch.from_data_list([synthetic_cluster(3)])
    flow = AssemblyFlow(num_bands=2)
    context = flow.context(batch)
    x1 = flow.target(batch)
    mid = flow.path.sample(torch.zeros_like(x1), x1, torch.tensor([1.0]), context).x_k
    low = (context.band_index == 0).to(x1.dtype)
    expected = context.eigvecs @ (low * (context.eigvecs.transpose(1, 2) @ x1))
    torch.testing.assert_close(mid, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["rigid", "cartesian"])
def test_loss_is_finite_and_differentiable(mode):
    torch.manual_seed(0)
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(2)])
    flow = AssemblyFlow(num_bands=2 if mode == "rigid" else 1, mode=mode, translation_scale=2.0)
    model = build_model("S", head="rigid" if mode == "rigid" else "atom")
    loss, logs = flow.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.slow
def test_short_training_lowers_loss_and_beats_identity_on_its_training_clusters():
    """A few real pyxtal clusters: 150 Adam steps must lower the loss and the PM-atom."""
    from kflow_mol.data import load_embedded_dataset

    train = sorted(load_embedded_dataset("train"), key=lambda c: c.num_nodes)[:4]
    batch = Batch.from_data_list(train)
    flow = AssemblyFlow(num_bands=2, translation_scale=translation_scale_of(train))
    torch.manual_seed(0)
    model = build_model("S")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss, _ = flow.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert sum(losses[-25:]) < 0.85 * sum(losses[:25])
    predicted = flow.sample(model.eval(), batch, steps_per_band=5).pos
    pm_model = pm_atom_batch(batch.pos_target, predicted, batch.batch).mean()
    pm_identity = pm_atom_batch(batch.pos_target, batch.pos_start, batch.batch).mean()
    assert pm_model < 0.8 * pm_identity
