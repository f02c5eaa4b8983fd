"""The Table-5 systems (kflow_mol.systems): exact transport, equivariance, draws, registry, overfitting."""

import copy
import dataclasses
import math

import pytest
import torch
from torch_geometric.data import Batch

from kflow.testing import assert_equivariant, random_rotation
from kflow.training import StepDraws
from kflow_mol.flow import AssemblyFlow, cluster_layout
from kflow_mol.metrics import pm_atom_batch
from kflow_mol.models import AssemblyVelocity, build_model
from kflow_mol.rigid import centroids, so3_exp, so3_log
from kflow_mol.systems import SYSTEMS, AssembleFlowSystem, build_system, system_names, takes_bands
from kflow_mol.systems.common import normal_like
from kflow_mol.systems.quaternion import (
    inertial_frames,
    matrix_from_quat,
    quat_from_matrix,
    quat_from_rotvec,
    quat_mul,
    quat_sq_distance,
    rotvec_from_quat,
    slerp,
)
from kflow_mol.testing import synthetic_cluster as cluster

DTYPE = torch.float64
ALL_SYSTEMS = [(name, 1) for name in SYSTEMS] + [("kflow_assembleflow", 2), ("kflow", 2)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small e3nn steps run fastest on one thread (and do not oversubscribe a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    """One float32 and one float64 network per head (building e3nn modules is the slow part)."""
    torch.manual_seed(0)
    built = {head: build_model("S", head=head) for head in ("rigid", "atom")}
    return {**built, **{(head, DTYPE): copy.deepcopy(m).double().eval() for head, m in built.items()}}


def batch_of(*seeds, **kwargs) -> Batch:
    return Batch.from_data_list([cluster(seed, **kwargs) for seed in seeds])


def pm(batch, pos) -> torch.Tensor:
    return pm_atom_batch(batch.pos_target, pos, batch.batch)


# --------------------------------------------------------------------------- oracle networks
class RigidOracle(torch.nn.Module):
    """Rigid head that returns the EXACT end pose relative to the current one (Kabsch per molecule)."""

    def __init__(self, batch, translation_scale):
        super().__init__()
        self.target, self.sigma = batch.pos_target, translation_scale

    def forward(self, z, pos, mol_index, atom_batch, mol_batch, s):
        num_mols = mol_batch.shape[0]
        c_now, c_end = centroids(pos, mol_index, num_mols), centroids(self.target, mol_index, num_mols)
        p, q = pos - c_now[mol_index], self.target - c_end[mol_index]
        h = torch.zeros(num_mols, 3, 3, dtype=pos.dtype).index_add_(0, mol_index, p.unsqueeze(-1) * q.unsqueeze(-2))
        u, _, vt = torch.linalg.svd(h)
        d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
        fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        rot = vt.transpose(-1, -2) @ fix @ u.transpose(-1, -2)
        return AssemblyVelocity(translation=(c_end - c_now) / self.sigma, rotation=so3_log(rot), atom=None)


class AtomOracle(torch.nn.Module):
    """Atom head returning ``fn(x, s)`` of the displacement state ``x = (pos - pos_start) / sigma``."""

    def __init__(self, batch, translation_scale, fn):
        super().__init__()
        self.start, self.sigma, self.fn = batch.pos_start, translation_scale, fn

    def forward(self, z, pos, mol_index, atom_batch, mol_batch, s):
        x = (pos - self.start) / self.sigma
        return AssemblyVelocity(translation=None, rotation=None, atom=self.fn(x, s[atom_batch]))


# --------------------------------------------------------------------------- quaternions and frames
def test_quaternion_helpers_agree_with_rotation_matrices():
    g = torch.Generator().manual_seed(0)
    omega = torch.randn(64, 3, generator=g, dtype=DTYPE)
    omega[:8] *= 1e-8  # near identity
    omega[8:16] = omega[8:16] / omega[8:16].norm(dim=-1, keepdim=True) * (math.pi - 1e-9)  # near pi
    q = quat_from_rotvec(omega)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(64, dtype=DTYPE))
    torch.testing.assert_close(matrix_from_quat(q), so3_exp(omega), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        quat_sq_distance(quat_from_matrix(so3_exp(omega)), q), torch.zeros(64, dtype=DTYPE), atol=1e-12, rtol=0
    )
    back = so3_exp(rotvec_from_quat(q))
    torch.testing.assert_close(back, so3_exp(omega), atol=1e-10, rtol=0)
    p = quat_from_rotvec(torch.randn(64, 3, generator=g, dtype=DTYPE))
    torch.testing.assert_close(
        matrix_from_quat(quat_mul(p, q)), matrix_from_quat(p) @ matrix_from_quat(q), atol=1e-12, rtol=0
    )


def test_slerp_is_the_shorter_geodesic_whatever_the_signs():
    g = torch.Generator().manual_seed(1)
    q0 = quat_from_rotvec(torch.randn(32, 3, generator=g, dtype=DTYPE))
    q1 = quat_from_rotvec(torch.randn(32, 3, generator=g, dtype=DTYPE))
    flipped = torch.where(torch.arange(32)[:, None] % 2 == 0, -q1, q1)
    for t in (0.0, 0.3, 1.0):
        a, b = slerp(q0, q1, torch.tensor(t, dtype=DTYPE)), slerp(q0, flipped, torch.tensor(t, dtype=DTYPE))
        torch.testing.assert_close(matrix_from_quat(a), matrix_from_quat(b), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        quat_sq_distance(slerp(q0, q1, torch.tensor(0.0, dtype=DTYPE)), q0),
        torch.zeros(32, dtype=DTYPE),
        atol=1e-20,
        rtol=0,
    )
    torch.testing.assert_close(
        quat_sq_distance(slerp(q0, q1, torch.tensor(1.0, dtype=DTYPE)), q1),
        torch.zeros(32, dtype=DTYPE),
        atol=1e-20,
        rtol=0,
    )
    angle = lambda a, b: rotvec_from_quat(quat_mul(b, a * torch.tensor([1, -1, -1, -1], dtype=DTYPE))).norm(dim=-1)  # noqa: E731
    mid = slerp(q0, q1, torch.tensor(0.25, dtype=DTYPE))
    torch.testing.assert_close(angle(q0, mid), 0.25 * angle(q0, q1), atol=1e-10, rtol=0)
    assert float(angle(q0, q1).max()) <= math.pi + 1e-9


def test_inertial_frames_are_right_handed_principal_axes_and_rotate_with_the_molecule():
    batch = batch_of(0, num_mols=5, atoms_per_mol=6)
    frames = inertial_frames(batch.pos_start, batch.mol_index)
    torch.testing.assert_close(frames.transpose(-1, -2) @ frames, torch.eye(3, dtype=DTYPE).expand(5, 3, 3))
    torch.testing.assert_close(torch.linalg.det(frames), torch.ones(5, dtype=DTYPE))
    rel = batch.pos_start - centroids(batch.pos_start, batch.mol_index)[batch.mol_index]
    body = (frames[batch.mol_index].transpose(-1, -2) @ rel.unsqueeze(-1)).squeeze(-1)
    inertia = torch.zeros(5, 3, 3, dtype=DTYPE).index_add_(
        0,
        batch.mol_index,
        (body * body).sum(-1)[:, None, None] * torch.eye(3, dtype=DTYPE) - body.unsqueeze(-1) * body.unsqueeze(-2),
    )
    off_diagonal = inertia - torch.diag_embed(inertia.diagonal(dim1=-2, dim2=-1))
    assert float(off_diagonal.abs().max()) < 1e-10
    rot = random_rotation(generator=torch.Generator().manual_seed(3))
    moved = inertial_frames(batch.pos_start @ rot.T + 1.5, batch.mol_index)
    torch.testing.assert_close(moved, rot @ frames, atol=1e-10, rtol=0)


# --------------------------------------------------------------------------- AssembleFlow arm
def test_assembleflow_path_is_slerp_of_inertial_frames_and_lerp_of_centroids():
    batch = batch_of(2, 3)
    system = AssembleFlowSystem(translation_scale=2.0)
    layout = cluster_layout(batch)
    x1 = system.target(batch, layout)
    q0 = system.start_quaternions(batch, layout)
    q1 = quat_from_matrix(batch.rot_start_to_target @ matrix_from_quat(q0))
    c0, c1 = layout.centroid_start, centroids(batch.pos_target, batch.mol_index)
    for t in (0.0, 0.4, 1.0):
        x_t = system.path.sample(torch.zeros_like(x1), x1, torch.full((2,), t, dtype=DTYPE)).x_k
        pos = system.positions(batch, x_t, layout)
        torch.testing.assert_close(centroids(pos, batch.mol_index), (1 - t) * c0 + t * c1)
        frames_t = so3_exp(x_t.reshape(-1, 6)[:, 3:]) @ matrix_from_quat(q0)
        torch.testing.assert_close(
            frames_t, matrix_from_quat(slerp(q0, q1, torch.tensor(t, dtype=DTYPE))), atol=1e-10, rtol=0
        )
    torch.testing.assert_close(system.positions(batch, x1, layout), batch.pos_target, atol=1e-10, rtol=0)


@pytest.mark.parametrize("num_bands,bump", [(1, "linear"), (3, "linear"), (2, "smoothstep")])
def test_assembleflow_with_the_exact_end_pose_reaches_the_crystal(num_bands, bump):
    batch = batch_of(0, 1, 2)
    system = AssembleFlowSystem(translation_scale=2.0, num_bands=num_bands, bump=bump)
    oracle = RigidOracle(batch, 2.0)
    loss, logs = system.loss(oracle, batch, generator=torch.Generator().manual_seed(0))
    assert float(loss) < 1e-16 and set(logs) == {"loss_trans", "loss_quat"}
    out = system.sample(oracle, batch, steps_per_band=4, return_trajectory=True)
    assert float(pm(batch, out.pos).max()) < 1e-6
    assert out.nfe == 4 * num_bands and len(out.trajectory) == out.nfe + 1 and out.ks[-1] == num_bands
    assert float(pm(batch, batch.pos_start).min()) > 1.0
    if num_bands > 1:  # bands move one at a time: half-way through band 0 the local band is untouched
        layout = cluster_layout(batch)
        middle = system.path.sample(
            torch.zeros(3, 6, 6, dtype=DTYPE),
            system.target(batch, layout),
            torch.full((3,), 0.5, dtype=DTYPE),
            system.context(batch, layout),
        ).x_k
        torch.testing.assert_close(out.trajectory[2], system.positions(batch, middle, layout), atol=1e-8, rtol=0)


def test_assembleflow_default_is_fifty_euler_steps_and_only_euler():
    batch = batch_of(0)
    system = build_system("assembleflow", translation_scale=2.0)
    assert system.sample(RigidOracle(batch, 2.0), batch).nfe == 50
    assert build_system("kflow_assembleflow", translation_scale=2.0, K=3).steps_for(None) == [17, 17, 16]
    with pytest.raises(ValueError, match="'euler' only"):
        system.sample(RigidOracle(batch, 2.0), batch, method="rk4")


def rotate_batch(batch, rot, shift):
    moved = batch.clone()
    moved.pos_start = batch.pos_start @ rot.T + shift
    moved.pos_target = batch.pos_target @ rot.T + shift
    moved.rot_start_to_target = rot @ batch.rot_start_to_target @ rot.T
    return moved


@pytest.mark.parametrize("name,bands", [("assembleflow", 1), ("kflow_assembleflow", 2), ("gnn_md", 1)])
def test_rigid_arms_are_equivariant(name, bands, models):
    """Rotate and translate every input: the sampled cluster rotates and translates with it, the loss is invariant."""
    batch = batch_of(4, 5)
    system = build_system(name, translation_scale=2.0, K=bands)
    model = models[system.head, DTYPE]
    rot = random_rotation(generator=torch.Generator().manual_seed(7))
    shift = torch.tensor([3.0, -1.5, 7.0], dtype=DTYPE)
    assert_equivariant(
        lambda b: system.sample(model, b, steps_per_band=2).pos,
        batch,
        rotate_in=lambda b: rotate_batch(b, rot, shift),
        rotate_out=lambda pos: pos @ rot.T + shift,
        atol=1e-8,
        rtol=1e-8,
    )
    losses = [
        float(system.loss(model, b, generator=torch.Generator().manual_seed(1))[0].detach())
        for b in (batch, rotate_batch(batch, rot, shift))
    ]
    assert losses[0] > 0 and math.isclose(losses[0], losses[1], rel_tol=1e-9)


# --------------------------------------------------------------------------- all-atom arms
@pytest.mark.parametrize("name", ["crystalflow_ve", "crystalflow_vp"])
def test_crystalflow_exact_conditional_velocity_reaches_the_crystal(name):
    batch = batch_of(0, 1, num_mols=3, atoms_per_mol=3)
    system = build_system(name, translation_scale=2.0)  # VE leaves sigma_min noise, VP stops at 1 - t_eps
    out = system.sample_exact(batch, steps_per_band=200, generator=torch.Generator().manual_seed(0))
    assert float(pm(batch, out.pos).max()) < 0.05
    start_noise = system.sample_exact(
        batch, steps_per_band=1, method="euler", generator=torch.Generator().manual_seed(0)
    )
    assert start_noise.nfe == 1


@pytest.mark.parametrize("name", ["crystalflow_ve", "crystalflow_vp"])
def test_crystalflow_learned_sampler_with_the_conditional_velocity_as_network(name):
    """A network that returns the conditional velocity of the right noise draw reproduces sample_exact."""
    batch = batch_of(0, num_mols=3, atoms_per_mol=3)
    system = build_system(name, translation_scale=2.0)
    layout = cluster_layout(batch)
    from kflow_mol.systems.common import atom_state

    state = atom_state(batch, layout, 2.0)
    oracle = AtomOracle(
        batch, 2.0, lambda x, s: system.path.conditional_velocity(x.unsqueeze(0), state.target, s[:1]).squeeze(0)
    )
    learned = system.sample(oracle, batch, method="rk4", steps_per_band=20, generator=torch.Generator().manual_seed(2))
    exact = system.sample_exact(batch, method="rk4", steps_per_band=20, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(learned.pos, exact.pos, atol=1e-10, rtol=0)
    assert learned.nfe == 80


@pytest.mark.parametrize("method", ["euler", "pc"])
@pytest.mark.parametrize("name", ["crystalsde_ve", "crystalsde_vp"])
def test_crystalsde_with_the_exact_score_reaches_the_crystal_over_many_samples(name, method):
    """3-molecule toy, 64 copies: the reverse SDE driven by the exact score ends at the crystal."""
    copies = 64
    batch = Batch.from_data_list([cluster(0, num_mols=3, atoms_per_mol=3)] * copies)
    system = build_system(name, translation_scale=2.0)
    layout = cluster_layout(batch)
    from kflow_mol.systems.common import atom_state

    target = atom_state(batch, layout, 2.0).target.reshape(-1, 3)

    def exact_noise(x, t):  # eps_hat = (x - mean) / std, the network output that makes the score exact
        mean, std = system.sde.marginal(target, t)
        return (x - mean) / std.unsqueeze(-1)

    out = system.sample(
        AtomOracle(batch, 2.0, exact_noise),
        batch,
        method=method,
        steps_per_band=200,
        generator=torch.Generator().manual_seed(0),
    )
    values = pm(batch, out.pos)  # what is left: sigma_min (VE) or std(t_eps) (VP) noise and EM error
    assert float(values.max()) < 0.1, f"worst PM {float(values.max()):.3g} Å"
    assert float(values.mean()) < 0.05
    assert float(pm(batch, batch.pos_start).min()) > 1.0
    assert out.nfe == (400 if method == "pc" else 200)


@pytest.mark.parametrize("name", ["crystalsde_vp", "crystalflow_ve"])
def test_stochastic_samplers_are_reproducible_with_a_generator(name, models):
    batch = batch_of(0, num_mols=3, atoms_per_mol=3)
    system = build_system(name, translation_scale=2.0)
    model = models["atom", DTYPE]
    runs = [
        system.sample(model, batch, steps_per_band=3, generator=torch.Generator().manual_seed(seed)).pos
        for seed in (5, 5, 6)
    ]
    assert system.stochastic
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


# --------------------------------------------------------------------------- every system
@pytest.mark.parametrize("name,bands", ALL_SYSTEMS)
def test_every_system_trains_and_samples_with_its_head(name, bands, models):
    batch = batch_of(0, 1, dtype=torch.float32)
    system = build_system(name, translation_scale=2.0, K=bands)
    assert system.head in ("rigid", "atom") and isinstance(system.stochastic, bool)
    assert system.num_bands == bands and system.default_steps >= 1
    model = models[system.head]
    model.zero_grad()
    loss, logs = system.loss(model, batch, draws=StepDraws(seed=0, step=1))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and all(isinstance(v, float) for v in logs.values())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    again, _ = system.loss(model, batch, draws=StepDraws(seed=0, step=1))
    assert float(again.detach()) == float(loss.detach())
    out = system.sample(
        model,
        batch,
        steps_per_band=[2] * system.num_bands,  # as allocate_steps gives
        generator=torch.Generator().manual_seed(0),
    )
    assert out.pos.shape == batch.pos_start.shape and torch.isfinite(out.pos).all()


def test_per_atom_noise_from_draws_does_not_depend_on_the_rank_split():
    """A cluster gets the same noise in a 1-process batch and as a row of a 2-rank shard."""
    clusters = [cluster(seed, atoms_per_mol=3 + seed % 2) for seed in range(4)]
    full = Batch.from_data_list(clusters)
    shard = Batch.from_data_list(clusters[1::2])  # rank 1 of 2 holds global positions 1, 3
    from kflow_mol.systems.common import atom_state

    def noise(batch, rank, world):
        state = atom_state(batch, cluster_layout(batch), 1.0)
        return normal_like(state.target, state.mask, draws=StepDraws(seed=3, step=9, rank=rank, world_size=world))

    whole, part = noise(full, 0, 1), noise(shard, 1, 2)
    width = part.shape[1]
    torch.testing.assert_close(part, whole[1::2, :width], atol=0, rtol=0)


def test_stochastic_systems_are_scored_as_min_and_mean_over_draws():
    from kflow_mol.evaluate import evaluate_samples
    from kflow_mol.experiment import flow_predictor
    from kflow_mol.systems.common import atom_state

    clusters = [cluster(seed, num_mols=3, atoms_per_mol=3) for seed in range(3)]
    for index, item in enumerate(clusters):
        item.cluster_id = f"toy{index}"
    batch = Batch.from_data_list(clusters)
    noisy = build_system("crystalflow_ve", translation_scale=2.0)
    target = atom_state(batch, cluster_layout(batch), 2.0).target
    oracle = AtomOracle(
        batch,
        2.0,
        lambda x, s: noisy.path.conditional_velocity(x, target[batch.batch, torch.cat([torch.arange(9)] * 3)], s),
    )  # per-atom closed form, at the atom's time

    def predictor_for(index):
        return flow_predictor(noisy, oracle, "euler", 4, generator=torch.Generator().manual_seed(index))

    single = evaluate_samples("ve", predictor_for, clusters, 1, batch_size=3, with_rmsd=False)
    draws = [
        evaluate_samples("ve", lambda _, i=i: predictor_for(i), clusters, 1, batch_size=3, with_rmsd=False)
        for i in range(3)
    ]
    per_draw = torch.tensor([draw.per_cluster["pm_atom"] for draw in draws])
    gyration = torch.tensor([draw.per_cluster["gyration_ratio"] for draw in draws])
    scores = evaluate_samples("ve", predictor_for, clusters, 3, batch_size=3, with_rmsd=False)
    assert scores.cluster_ids == ["toy0", "toy1", "toy2"] and single.per_cluster_mean is None
    torch.testing.assert_close(
        torch.tensor(scores.per_cluster["pm_atom"], dtype=per_draw.dtype), per_draw.min(0).values
    )
    torch.testing.assert_close(torch.tensor(scores.per_cluster_mean["pm_atom"], dtype=per_draw.dtype), per_draw.mean(0))
    closest = gyration.gather(0, (gyration - 1).abs().argmin(0, keepdim=True))[0]  # the draw nearest the crystal's size
    torch.testing.assert_close(torch.tensor(scores.per_cluster["gyration_ratio"], dtype=gyration.dtype), closest)
    assert not torch.allclose(gyration, torch.ones_like(gyration))  # all-atom draws change molecule sizes
    summary = scores.summary()
    assert summary["pm_atom"] <= summary["pm_atom_sample_mean"] and not torch.equal(per_draw[0], per_draw[1])


def test_registry_names_options_and_errors():
    assert set(SYSTEMS) == {
        "kflow",
        "gnn_md",
        "crystalsde_ve",
        "crystalsde_vp",
        "crystalflow_ve",
        "crystalflow_vp",
        "crystalflow_lerp",
        "assembleflow",
        "kflow_assembleflow",
    }
    assert system_names() == list(SYSTEMS)
    assert [name for name in SYSTEMS if takes_bands(name)] == ["kflow", "kflow_assembleflow"]
    lerp = build_system("crystalflow_lerp", translation_scale=3.0)
    assert isinstance(lerp, AssemblyFlow) and lerp.mode == "cartesian" and not lerp.stochastic
    assert (lerp.head, lerp.default_steps) == ("atom", 12)
    assert build_system("crystalsde_ve", translation_scale=1.0, sigma_max=20.0).sde.prior_std == 20.0
    assert build_system("kflow_assembleflow", translation_scale=1.0, K=3).num_bands == 3
    kflow = build_system("kflow", translation_scale=1.0, K=3, parametrization="endpose")
    assert isinstance(kflow, AssemblyFlow) and (kflow.num_bands, kflow.head, kflow.default_steps) == (3, "pose", 30)
    with pytest.raises(ValueError, match="unknown system"):
        build_system("crystalsde", translation_scale=1.0)
    with pytest.raises(ValueError, match="one band"):
        build_system("gnn_md", translation_scale=1.0, K=2)
    with pytest.raises(ValueError, match="num_bands \\(K\\) must be >= 1"):
        build_system("kflow_assembleflow", translation_scale=1.0, K=0)
    with pytest.raises(ValueError, match="bad option"):
        build_system("gnn_md", translation_scale=1.0, sigma_max=3.0)


def test_a_system_missing_part_of_the_contract_is_refused_when_built():
    from kflow_mol.systems.base import AssemblySystem

    class NoSampler(AssemblySystem):
        head, stochastic, default_steps = "rigid", False, 1

        def loss(self, model, batch, generator=None, draws=None):
            return torch.zeros(()), {}

    class NoSteps(NoSampler):
        default_steps = None

        def _sample(self, model, batch, method, steps_per_band, return_trajectory, generator):
            raise AssertionError("never sampled")

    class BadHead(NoSteps):
        head, default_steps = "torso", 1

    class Complete(BadHead):
        head = "atom"

    with pytest.raises(TypeError, match="system NoSampler must implement _sample"):
        NoSampler()
    with pytest.raises(TypeError, match="system NoSteps must set default_steps to an int >= 1"):
        NoSteps()
    with pytest.raises(TypeError, match="system BadHead must set head to one of"):
        BadHead()
    assert Complete().head == "atom"


@pytest.mark.slow
def test_gnn_md_overfits_one_cluster():
    torch.manual_seed(0)
    batch = Batch.from_data_list([cluster(0, num_mols=8, atoms_per_mol=4, dtype=torch.float32)])
    system = build_system("gnn_md", translation_scale=2.0)
    model = build_model("S", head="rigid")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    best = math.inf
    for step in range(1, 401):
        loss, _ = system.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            best = min(best, float(pm(batch, system.sample(model, batch).pos)))
            if best < 0.1:
                break
    assert best < 0.1, f"GNN-MD reached PM-atom {best:.3f} Å on its one training cluster"
    assert float(pm(batch, batch.pos_start)) > 1.0


def test_assembleflow_symmetric_targets_are_the_rigid_kflow_ones(data_pyxtal_build):
    """``+sym`` reaches the AssembleFlow family through the config, and turns no molecule more."""
    from kflow_mol.config import AssemblyConfig, with_method
    from kflow_mol.experiment import build_flow, load_split

    data = dataclasses.replace(
        AssemblyConfig().data, source="prepared", folder=str(data_pyxtal_build.output), start=None
    )
    batch = Batch.from_data_list(list(load_split(data, "train", limit=12)))
    layout = cluster_layout(batch)
    cfg = dataclasses.replace(AssemblyConfig(), data=data)
    plain, sym = (build_flow(with_method(cfg, f"kflow_assembleflow_K2{v}"), 2.0) for v in ("", "+sym"))
    assert plain.symmetric_targets is None and sym.symmetric_targets is not None
    reference = AssemblyFlow(num_bands=2, translation_scale=2.0, symmetric_targets=True)
    x_sym, x_plain = sym.target(batch, layout), plain.target(batch, layout)
    torch.testing.assert_close(x_sym, reference.target(batch, layout).to(x_sym.dtype), atol=1e-6, rtol=0)
    angle_sym, angle_plain = x_sym[..., 3:].norm(dim=-1), x_plain[..., 3:].norm(dim=-1)
    assert bool((angle_sym <= angle_plain + 1e-4).all()) and float(angle_sym.sum()) < float(angle_plain.sum()) - 1.0
    torch.testing.assert_close(x_sym[..., :3], x_plain[..., :3])  # the centroids are not touched


def test_kflow_assembleflow_band_loss_sees_only_the_moving_band():
    """``loss_current_band``: zero for the exact end pose and for errors off the moving band."""
    from kflow_mol.config import AssemblyConfig, with_method
    from kflow_mol.experiment import build_flow

    assert build_flow(with_method(AssemblyConfig(), "kflow_assembleflow_K2+cb"), 2.0).loss_current_band
    batch = batch_of(0, 1)
    system = AssembleFlowSystem(translation_scale=2.0, num_bands=2, loss_current_band=True)
    loss, logs = system.loss(RigidOracle(batch, 2.0), batch, generator=torch.Generator().manual_seed(0))
    assert float(loss) < 1e-12 and set(logs) == {"loss_trans", "loss_rot"}
    layout = cluster_layout(batch)
    context = system.context(batch, layout)
    k = torch.tensor([0.3, 1.6], dtype=DTYPE)
    error = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    moving = system.path.project_to_band(error, k, context)
    off_band, _ = system.band_loss(error - moving, k, context)
    on_band, _ = system.band_loss(moving, k, context)
    whole, _ = system.band_loss(error, k, context)
    assert float(off_band) < 1e-20 and float(on_band) > 0.1
    torch.testing.assert_close(whole, on_band)
