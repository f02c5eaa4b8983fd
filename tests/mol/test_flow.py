"""The assembly flow: targets, exact conditional sampling, loss, and a short training run."""

import math

import pytest
import torch
from torch_geometric.data import Batch

from kflow_mol import testing
from kflow_mol.flow import AssemblyFlow, cluster_layout, translation_scale_of
from kflow_mol.metrics import pm_atom_batch
from kflow_mol.models import build_model


def synthetic_cluster(seed: int, **options):
    """A 17-molecule cluster of 5-atom molecules, float32 (:func:`kflow_mol.testing.synthetic_cluster`)."""
    defaults = dict(num_mols=17, atoms_per_mol=5, dtype=torch.float32, body_scale=(0.9, 0.9, 0.9), start_turn=0.8)
    return testing.synthetic_cluster(seed, **{**defaults, **options})


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


# ----- band awareness: projection and the start-aware network (issue 10) ----------------------


def _double(batch):
    """The batch in float64, with rotations re-orthonormalised (float32 ones are off by ~1e-7)."""
    for key in ("pos_start", "pos_target", "rot_start_to_target"):
        batch[key] = batch[key].double()
    u, _, vt = torch.linalg.svd(batch.rot_start_to_target)
    batch.rot_start_to_target = u @ vt
    return batch


@pytest.mark.parametrize("reverse", [False, True])
def test_projected_sampling_velocity_has_no_off_band_component(reverse):
    """Every velocity the sampler integrates lies on the moving band (off-band coefficients < 1e-6)."""
    torch.manual_seed(0)
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(2)])
    flow = AssemblyFlow(num_bands=3, translation_scale=2.0, reverse=reverse)
    assert flow.project  # default on for K > 1
    model = build_model("S", start_aware=True).eval()
    context = flow.context(batch)
    velocity_fn = flow.sampling_velocity(model, batch, context=context)
    seen = []

    def recording(x, s, cond):
        v = velocity_fn(x, s, cond)
        seen.append((s.clone(), v))
        return v

    x0 = torch.zeros_like(flow.target(batch))
    flow.sampler.sample(recording, x0, method="rk4", steps_per_band=2)
    assert len(seen) == 3 * 2 * 4
    position = flow.path.schedule_position(context).squeeze(-1)  # (B, M)
    for s, v in seen:
        coeffs = context.eigvecs.transpose(1, 2) @ v
        moving = torch.floor(s * 3 + 1e-6).long().clamp(max=2)
        off = position != moving[:, None]
        assert coeffs[off].abs().max() < 1e-6
        assert coeffs[~off].abs().max() > 1e-4  # the moving band itself is not zeroed
    blind = flow.sampling_velocity(build_model("S").eval(), batch, context=context)
    flow_off = AssemblyFlow(num_bands=3, translation_scale=2.0, project=False)
    raw = flow_off.sampling_velocity(build_model("S").eval(), batch)(x0, torch.full((2,), 0.1), None)
    assert (context.eigvecs.transpose(1, 2) @ raw)[position != 0].abs().max() > 1e-4  # unprojected leaks
    assert blind(x0, torch.full((2,), 0.1), None).shape == x0.shape


def test_projected_sampling_keeps_pending_bands_at_the_start():
    """After integrating band 0 only, the coefficients of bands 1 and 2 are still exactly 0."""
    torch.manual_seed(1)
    batch = Batch.from_data_list([synthetic_cluster(5)])
    flow = AssemblyFlow(num_bands=3, translation_scale=2.0)
    context = flow.context(batch)
    velocity_fn = flow.sampling_velocity(build_model("S").eval(), batch, context=context)
    x0 = torch.zeros_like(flow.target(batch))
    result = flow.sampler.sample(velocity_fn, x0, method="euler", steps_per_band=3, return_trajectory=True)
    after_band0 = result.trajectory[3]
    coeffs = context.eigvecs.transpose(1, 2) @ after_band0
    pending = context.band_index.squeeze(-1) > 0
    assert coeffs[pending].abs().max() < 1e-6 and coeffs[~pending].abs().max() > 1e-4


class _VelocityError(AssemblyFlow):
    """The flow with a fixed error added to every predicted velocity: off the moving band, or on it."""

    def __init__(self, on_band: bool, **options):
        super().__init__(**options)
        self.on_band = on_band

    def velocity(self, model, batch, x, s, layout=None, context=None, k=None, previous=None):
        v = super().velocity(model, batch, x, s, layout, context=context, k=k, previous=previous)
        error = 3.0 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1), dtype=v.dtype)
        on = self.path.project_to_band(error, k, context)
        return v + (on if self.on_band else error - on)


@pytest.mark.parametrize("loss_current_band", [True, False])
def test_current_band_loss_ignores_off_band_error(loss_current_band):
    """With ``loss_current_band`` an error off the moving band leaves the loss as it is, one on it
    raises it; without, both raise it."""
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(2)])
    options = dict(num_bands=3, translation_scale=2.0, loss_current_band=loss_current_band)
    torch.manual_seed(0)
    model = build_model("S", start_aware=True).eval()

    def loss_of(flow):
        return float(flow.loss(model, batch, generator=torch.Generator().manual_seed(0))[0].detach())

    exact = loss_of(AssemblyFlow(**options))
    off_band, on_band = loss_of(_VelocityError(False, **options)), loss_of(_VelocityError(True, **options))
    assert math.isfinite(exact) and exact > 0 and on_band > exact + 1.0
    if loss_current_band:
        assert off_band == pytest.approx(exact, rel=1e-5)
    else:
        assert off_band > exact + 1.0


@pytest.mark.parametrize("start_motion", ["settled", "full"])
def test_start_aware_velocity_is_equivariant(start_motion):
    """Rotate and translate every input (start and crystal), float64: the velocity rotates with them."""
    from kflow.testing import random_rotation

    torch.manual_seed(0)
    flow = AssemblyFlow(num_bands=3, translation_scale=2.0, start_motion=start_motion)
    model = build_model("S", start_aware=True, atom_layers=1).double().eval()
    q = random_rotation(generator=torch.Generator().manual_seed(7))
    shift = torch.tensor([4.0, -2.0, 9.0], dtype=torch.float64)

    def state_and_velocity(batch):
        context = flow.context(batch)
        x1 = flow.target(batch)
        k = torch.tensor([1.4, 2.6], dtype=torch.float64)
        x = flow.path.sample(torch.zeros_like(x1), x1, k, context).x_k
        features = flow.start_features(x, k, context)
        return x, features, flow.velocity(model, batch, x, k / 3, context=context, k=k)

    batch = _double(Batch.from_data_list([synthetic_cluster(i) for i in range(2)]))
    moved = batch.clone()
    moved.pos_start = batch.pos_start @ q.T + shift
    moved.pos_target = batch.pos_target @ q.T + shift
    moved.rot_start_to_target = q @ batch.rot_start_to_target @ q.T
    x, features, v = state_and_velocity(batch)
    x_moved, features_moved, v_moved = state_and_velocity(moved)

    def rotate(state):
        return torch.cat([state[..., :3] @ q.T, state[..., 3:] @ q.T], -1)

    torch.testing.assert_close(x_moved, rotate(x), atol=1e-9, rtol=0)
    torch.testing.assert_close(features_moved.scalars, features.scalars, atol=1e-9, rtol=0)
    torch.testing.assert_close(features_moved.vectors, rotate(features.vectors), atol=1e-9, rtol=0)
    assert features.vectors.abs().max() > 1e-3 and v.abs().max() > 1e-6
    torch.testing.assert_close(v_moved, rotate(v), atol=1e-8, rtol=0)
    # band weights of every molecule sum to 1 (rows of an orthogonal matrix)
    torch.testing.assert_close(features.scalars.sum(-1), torch.ones(34, dtype=torch.float64), atol=1e-12, rtol=0)


def test_settled_motion_hides_the_moving_band():
    """In band 0 nothing is settled: a start-aware network sees no motion (no shortcut to the target)."""
    batch = _double(Batch.from_data_list([synthetic_cluster(2)]))
    flow = AssemblyFlow(num_bands=2, translation_scale=2.0)
    context = flow.context(batch)
    x1 = flow.target(batch)
    x = flow.path.sample(torch.zeros_like(x1), x1, torch.tensor([0.7], dtype=torch.float64), context).x_k
    assert flow.start_features(x, torch.tensor([0.7]), context).vectors.abs().max() < 1e-12
    x = flow.path.sample(torch.zeros_like(x1), x1, torch.tensor([1.5], dtype=torch.float64), context).x_k
    settled = flow.start_features(x, torch.tensor([1.5]), context).vectors
    low = (context.band_index == 0).to(x1.dtype)
    expected = context.eigvecs @ (low * (context.eigvecs.transpose(1, 2) @ x1))  # band 0 of the target
    torch.testing.assert_close(settled, torch.cat([2.0 * expected[..., :3], expected[..., 3:]], -1).reshape(-1, 6))


class _TruePose(torch.nn.Module):
    """A pose-head stand-in that always predicts the crystal: the end-pose sampler must reach it."""

    head = "pose"

    def __init__(self, batch, flow):
        super().__init__()
        self.crystal = flow.positions(batch, flow.target(batch))
        self.scale = flow.translation_scale

    def forward(self, z, pos, mol_index, atom_batch, mol_batch, s, **_):
        from kflow_mol.models.assembly_gnn import AssemblyVelocity
        from kflow_mol.rigid import centroids

        now, crystal = centroids(pos, mol_index), centroids(self.crystal, mol_index)
        offset = self.crystal - crystal[mol_index]
        return AssemblyVelocity(translation=(crystal - now) / self.scale, rotation=None, atom=None, atom_offset=offset)


@pytest.mark.parametrize("num_bands", [1, 2, 3])
def test_endpose_sampler_reaches_a_perfectly_predicted_pose(num_bands):
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(2)])
    flow = AssemblyFlow(num_bands=num_bands, translation_scale=2.0, parametrization="endpose")
    assert flow.head == "pose"
    result = flow.sample(_TruePose(batch, flow), batch, steps_per_band=3)
    torch.testing.assert_close(result.pos, batch.pos_target, atol=1e-4, rtol=0)


def test_endpose_loss_is_zero_for_the_true_pose_and_trains_a_pose_network():
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(2)])
    flow = AssemblyFlow(num_bands=2, translation_scale=2.0, parametrization="endpose")
    loss, parts = flow.loss(_TruePose(batch, flow), batch, generator=torch.Generator().manual_seed(0))
    assert float(loss) < 1e-8 and set(parts) == {"loss_trans", "loss_rot"}
    model = build_model("S", head="pose")
    loss, _ = flow.loss(model, batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    with pytest.raises(ValueError, match="parametrization"):
        AssemblyFlow(parametrization="x0")


def test_pose_head_is_equivariant():
    from kflow.testing import random_rotation

    torch.manual_seed(0)
    batch = _double(Batch.from_data_list([synthetic_cluster(i) for i in range(2)]))
    model = build_model("S", head="pose", atom_layers=1).double().eval()
    layout = cluster_layout(batch)
    q = random_rotation(generator=torch.Generator().manual_seed(5))
    shift = torch.tensor([1.0, -3.0, 2.0], dtype=torch.float64)
    s = torch.tensor([0.2, 0.7], dtype=torch.float64)

    def pose(pos):
        out = model(batch.z, pos, batch.mol_index, layout.atom_batch, layout.mol_batch, s)
        return out.translation, out.atom_offset

    translation, offset = pose(batch.pos_start)
    moved_translation, moved_offset = pose(batch.pos_start @ q.T + shift)
    torch.testing.assert_close(moved_translation, translation @ q.T, atol=1e-8, rtol=0)
    torch.testing.assert_close(moved_offset, offset @ q.T, atol=1e-8, rtol=0)
    assert offset.abs().max() > 1e-4


@pytest.mark.parametrize("parametrization", ["velocity", "endpose"])
def test_translation_first_moves_every_translation_before_any_rotation(parametrization):
    batch = Batch.from_data_list([synthetic_cluster(i) for i in range(2)])
    flow = AssemblyFlow(num_bands=2, translation_scale=2.0, pose_order="translation_first")
    assert flow.num_bands == 4
    context = flow.context(batch)
    x1 = flow.target(batch)
    halfway = flow.path.sample(torch.zeros_like(x1), x1, torch.full((2,), 2.0), context).x_k
    torch.testing.assert_close(halfway[..., :3], x1[..., :3], atol=1e-5, rtol=0)
    assert halfway[..., 3:].abs().max() < 1e-6
    result = flow.sample_exact(batch, steps_per_band=3)
    torch.testing.assert_close(result.pos, batch.pos_target, atol=1e-4, rtol=0)
    if parametrization == "endpose":
        pose = AssemblyFlow(
            num_bands=2, translation_scale=2.0, pose_order="translation_first", parametrization="endpose"
        )
        result = pose.sample(_TruePose(batch, pose), batch, steps_per_band=3)
        torch.testing.assert_close(result.pos, batch.pos_target, atol=1e-4, rtol=0)
