"""The ``kflow`` system: rigid-body K-Flow (and the all-atom baseline) on cluster batches (:class:`AssemblyFlow`).

State (rigid mode): per molecule ``x = [dc / sigma, omega]``, shape ``(B, M, 6)``, accumulated
from the start state (``x0 = 0``) to the crystal (``x1 = [(c1 - c0) / sigma, log(R1 R0^T)]``);
``sigma`` (``translation_scale``, Å) makes both halves O(1). The bands come from a
:class:`~kflow.transforms.GraphSpectralTransform` built from the START centroids, which are
known at inference: smooth collective modes of the cluster first, local moves last. With
``num_bands = 1`` this is plain rigid flow matching. Atoms at any state are
``exp(omega) (pos_start - c0) + c0 + sigma * x[:3]`` (see :mod:`kflow_mol.rigid`).

State (cartesian mode, the CrystalFlow-LERP-style baseline): free atom displacements
``x = (pos - pos_start) / sigma``, padded to ``(B, A_max, 3)``; one band (linear flow matching).

Band awareness (issue 10). ``project`` (default on for K > 1) projects every predicted
velocity onto the band moving at k before the sampler integrates it: the basis is that of the
START centroids, known at k = 0, so the projection is exact and bands not yet reached stay at
the start while finished bands stay where they ended. ``loss_current_band`` trains on the
moving band's coefficients only (for use with ``project``). A start-aware network
(``AssemblyGNN(start_aware=True)``) gets :class:`~kflow_mol.models.StartFeatures`: per molecule
its weight in the moving / settled / pending bands (invariant projector diagonals) and its
displacement and rotation from the start (equivariant). ``start_motion="settled"`` (default)
gives only the settled bands' part of that motion: the moving band's own part equals
``mu(t)`` times its target, so showing it would let the network read the answer off its input
at k > 0 (the shortcut the blind network avoids) and leave k = 0 untrained; ``"full"`` gives
the whole motion.

Batches are torch-geometric batches of ``kflow_mol.data.AssemblyData``: ``z``, ``mol_index``
(global), ``pos_start``, ``pos_target``, ``rot_start_to_target`` (M, 3, 3), ``batch``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from kflow.loss import flow_matching_loss, sample_k
from kflow.path import KAmplitudePath
from kflow.sampling import KFlowSampler, allocate_steps
from kflow.training import StepDraws, unwrap_model
from kflow.transforms import GraphSpectralTransform
from kflow.transforms.channel_groups import ChannelGroupTransform
from kflow.transforms.matrix import IdentityTransform
from kflow_mol.body_symmetry import SymmetricTargets
from kflow_mol.models.assembly_gnn import StartFeatures
from kflow_mol.rigid import (
    apply_rigid_motion,
    best_rotations,
    centroids,
    rigid_motion,
    so3_exp,
    so3_left_jacobian_inverse,
    so3_log,
)
from kflow_mol.systems.base import (
    BAND_EDGE_TOLERANCE,
    AssemblySample,
    AssemblySystem,
    ClusterLayout,
    cluster_layout,
    positive_scale,
)
from kflow_mol.systems.canonical import canonical_start

MODES = ("rigid", "cartesian")
ROTATION_FRAMES = ("log", "lab")
PARAMETRIZATIONS = ("velocity", "endpose")
POSE_ORDERS = ("joint", "translation_first")
REMAINING_FLOOR = 1e-3
"""Smallest ``1 - mu`` an end-pose velocity divides by (the sampler never evaluates at a band's end)."""
START_MOTIONS = ("settled", "full")
START_FRAMES = ("given", "canonical")


class AssemblyFlow(AssemblySystem):
    """Rigid-body K-Flow (or all-atom linear flow matching) for 17-molecule clusters.

    Args:
        num_bands: K, number of graph-spectral bands (must be 1 in cartesian mode).
        mode: ``"rigid"`` or ``"cartesian"``.
        bump: bump name for :class:`~kflow.path.KAmplitudePath`.
        translation_scale: ``sigma`` in Å dividing translations/displacements.
        kernel_width: graph kernel width (Å) or ``"median"``.
        grouping: ``"equal_count"`` or ``"equal_radius"`` eigenvalue grouping.
        reverse: move local (high) bands first.
        project: project the predicted velocity onto the moving band at sampling; ``None``
            means on for ``num_bands > 1`` (with one band it is the identity).
        loss_current_band: regress only the moving band's coefficients of the velocity.
        start_motion: what a start-aware network is told of each molecule's motion from its
            start: ``"settled"`` (finished bands only) or ``"full"``.
        symmetric_targets: train on each molecule's symmetry-equivalent start -> crystal
            rotation of smallest angle (:mod:`kflow_mol.body_symmetry`) instead of the one the
            file's atom order picks, which a network that sees atoms as a set cannot infer.
        rotation_frame: what the network's rotation output means. ``"log"``: the rate of the
            state's rotation vector (accumulated from the start, which the network never sees);
            ``"lab"``: the lab-frame angular velocity of the molecule now, turned into that
            rate by the inverse left Jacobian (:func:`kflow_mol.rigid.so3_left_jacobian_inverse`),
            so that the sampler turns each molecule about the axis the network sees. The two
            agree along one geodesic (K = 1 on the training path) and differ off it.
        parametrization: ``"velocity"`` (the network predicts the velocity) or ``"endpose"``
            (a ``pose``-head network predicts the crystal pose: each centroid's displacement
            and each atom's crystal offset from its centroid; the rotation is their Kabsch fit,
            and the velocity moves the current band the rest of the way,
            ``v = F^-1(mu' / (1 - mu) * mask * F(x1_hat - x))``). End-pose targets are bounded
            (atom offsets, not rotation vectors with a jump at pi).
        pose_order: ``"joint"`` (each band moves translation and rotation together) or
            ``"translation_first"``: the ``K`` graph bands of the translations move first,
            then those of the rotations (``2K`` bands in all, a
            :class:`~kflow.transforms.channel_groups.ChannelGroupTransform`), so molecules turn
            once their neighbours are in place.
        start_frame: ``"given"`` or ``"canonical"``: every start molecule is first turned about
            its centroid to its cluster's principal axes (:func:`kflow_mol.systems.canonical.canonical_start`,
            known at inference), so the turn to learn no longer depends on a random start
            orientation; rigid mode only.
        default_steps: total steps of :meth:`sample` when ``steps_per_band`` is ``None``, split
            evenly over the bands (:func:`~kflow.sampling.allocate_steps`); ``None``:
            :attr:`default_steps_per_band` per band. :func:`kflow_mol.experiment.build_flow`
            passes the config's ``sample.steps``.

    Attributes:
        head: ``"rigid"``, ``"atom"`` in cartesian mode, ``"pose"`` with ``parametrization="endpose"``.
    """

    stochastic = False
    default_steps_per_band = 10
    """Steps per band of :meth:`sample` when neither ``steps_per_band`` nor ``default_steps`` is given."""

    def __init__(
        self,
        num_bands: int = 3,
        mode: str = "rigid",
        bump: str = "linear",
        translation_scale: float = 1.0,
        kernel_width: float | str = "median",
        grouping: str = "equal_count",
        reverse: bool = False,
        project: bool | None = None,
        loss_current_band: bool = False,
        start_motion: str = "settled",
        symmetric_targets: bool = False,
        rotation_frame: str = "log",
        parametrization: str = "velocity",
        pose_order: str = "joint",
        start_frame: str = "given",
        default_steps: int | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"flow mode must be one of {MODES}, got {mode!r}")
        if num_bands < 1:
            raise ValueError(f"num_bands (K) must be >= 1, got {num_bands}")
        if mode == "cartesian" and num_bands != 1:
            raise ValueError("the cartesian (all-atom) baseline is plain flow matching: num_bands must be 1")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
        if parametrization == "endpose" and mode != "rigid":
            raise ValueError("parametrization=endpose needs flow.mode=rigid")
        if pose_order not in POSE_ORDERS:
            raise ValueError(f"pose_order must be one of {POSE_ORDERS}, got {pose_order!r}")
        if pose_order != "joint" and mode != "rigid":
            raise ValueError("pose_order=translation_first needs flow.mode=rigid")
        if rotation_frame not in ROTATION_FRAMES:
            raise ValueError(f"rotation_frame must be one of {ROTATION_FRAMES}, got {rotation_frame!r}")
        if start_frame not in START_FRAMES:
            raise ValueError(f"start_frame must be one of {START_FRAMES}, got {start_frame!r}")
        if start_frame == "canonical" and mode != "rigid":
            raise ValueError("start_frame=canonical needs flow.mode=rigid")
        self.start_frame = start_frame
        if start_motion not in START_MOTIONS:
            raise ValueError(f"start_motion must be one of {START_MOTIONS}, got {start_motion!r}")
        self.mode, self.translation_scale = mode, positive_scale(translation_scale)
        self.graph = GraphSpectralTransform(num_bands, kernel_width=kernel_width, grouping=grouping)
        transform = self.graph if mode == "rigid" else IdentityTransform()
        if pose_order == "translation_first":
            transform = ChannelGroupTransform(self.graph, (3, 3))
        self.pose_order = pose_order
        self.path = KAmplitudePath(transform, bump=bump, reverse=reverse)
        self.num_bands = self.path.num_bands
        self.sampler = KFlowSampler(self.path)
        self.project = (self.num_bands > 1) if project is None else bool(project)
        self.loss_current_band = bool(loss_current_band)
        self.start_motion = start_motion
        self.symmetric_targets = SymmetricTargets() if symmetric_targets and mode == "rigid" else None
        self.rotation_frame = rotation_frame
        self.parametrization = parametrization
        self.head = "pose" if parametrization == "endpose" else ("atom" if mode == "cartesian" else "rigid")
        self.default_steps = self.default_steps_per_band * self.num_bands if default_steps is None else default_steps

    # ----- states --------------------------------------------------------------------------
    def start_batch(self, batch: Any) -> Any:
        """The batch the flow starts from: as given, or with canonical start orientations."""
        return canonical_start(batch) if self.start_frame == "canonical" else batch

    def context(self, batch: Any, layout: ClusterLayout | None = None):
        """Graph eigenbasis of the START centroids (``GraphBasis``), or ``None`` in cartesian mode."""
        if self.mode == "cartesian":
            return None
        layout = layout or cluster_layout(batch)
        points = layout.centroid_start.reshape(layout.num_clusters, layout.mols_per_cluster, 3)
        return self.graph.basis(points)

    def target(self, batch: Any, layout: ClusterLayout | None = None) -> Tensor:
        """The crystal as a flow state ``x1``: ``(B, M, 6)`` rigid or ``(B, A_max, 3)`` cartesian."""
        layout = layout or cluster_layout(batch)
        if self.mode == "cartesian":
            disp, _ = to_dense_batch(batch.pos_target - batch.pos_start, layout.atom_batch)
            return disp / self.translation_scale
        # float64 rotations: the log stays exact near pi
        rotation = batch.rot_start_to_target.double()
        if self.symmetric_targets is not None:
            rotation = self.symmetric_targets(batch)
        motion = rigid_motion(
            batch.pos_start,
            rotation,
            batch.pos_target,
            batch.mol_index,
            layout.mol_batch.shape[0],
        )
        delta_c = motion.delta_c / self.translation_scale
        return torch.cat([delta_c, motion.omega.to(delta_c.dtype)], -1).reshape(
            layout.num_clusters, layout.mols_per_cluster, 6
        )

    def positions(self, batch: Any, x: Tensor, layout: ClusterLayout | None = None) -> Tensor:
        """Atom positions ``(A, 3)`` of the flow state ``x``."""
        layout = layout or cluster_layout(batch)
        if self.mode == "cartesian":
            _, valid = to_dense_batch(batch.pos_start, layout.atom_batch)
            return batch.pos_start + self.translation_scale * x[valid]
        state = x.reshape(-1, 6)
        return apply_rigid_motion(
            batch.pos_start, batch.mol_index, self.translation_scale * state[:, :3], state[:, 3:], layout.centroid_start
        )

    # ----- network ---------------------------------------------------------------------------
    def start_features(self, x: Tensor, k: Tensor, context) -> StartFeatures:
        """What a start-aware network is told about every molecule (rigid mode).

        Args:
            x: flow state, shape ``(B, M, 6)``.
            k: amplitude index per cluster, shape ``(B,)``.
            context: the ``GraphBasis`` of the start centroids.

        Returns:
            :class:`StartFeatures` with ``scalars (B*M, 3)`` = projector diagonals of the moving,
            settled and pending bands and ``vectors (B*M, 6)`` = displacement (Å) and rotation
            vector from the start (settled bands only unless ``start_motion="full"``).
        """
        if self.mode != "rigid":
            raise ValueError("start-aware networks need flow.mode=rigid (the bands are per molecule)")
        if self.pose_order != "joint":
            raise ValueError("start-aware networks need flow.pose_order=joint (one band per molecule at a time)")
        eigvecs = context.eigvecs.to(x)  # (B, M, M), column j = eigenvector j
        position = self.path.schedule_position(context).to(x.device).squeeze(-1)  # (B, M) per column
        moving = self.path.moving_position(k.to(x.device)).unsqueeze(-1)  # (B, 1)
        groups = torch.stack([position == moving, position < moving, position > moving], dim=-1).to(x)
        scalars = eigvecs.pow(2) @ groups  # (B, M, 3): sum over the group's columns of U_ij^2
        motion = x
        if self.start_motion == "settled":
            settled = groups[..., 1:2]  # (B, M, 1) over columns
            motion = eigvecs @ (settled * (eigvecs.transpose(1, 2) @ x))
        vectors = torch.cat([self.translation_scale * motion[..., :3], motion[..., 3:]], dim=-1)
        return StartFeatures(scalars=scalars.reshape(-1, 3), vectors=vectors.reshape(-1, 6))

    def velocity(
        self,
        model: nn.Module,
        batch: Any,
        x: Tensor,
        s: Tensor,
        layout: ClusterLayout | None = None,
        context=None,
        k: Tensor | None = None,
        previous: Tensor | None = None,
    ) -> Tensor:
        """Network velocity ``dx/dk`` at state ``x``, same shape as ``x``; ``s`` is ``(B,)``.

        ``context`` (the start basis) and ``k`` (default ``s K``) are needed only by a
        start-aware network; the context is built when missing. ``previous`` (shape of ``x``,
        rigid mode) is the network's own previous velocity, for a self-conditioned network
        (``None``: zeros).
        """
        layout = layout or cluster_layout(batch)
        if k is None:
            k = s.double() * self.num_bands + BAND_EDGE_TOLERANCE
        out = self.network_output(model, batch, x, s, layout, context, k, previous)
        if self.mode == "cartesian":
            return to_dense_batch(out.atom, layout.atom_batch, max_num_nodes=x.shape[1])[0]
        if self.parametrization == "endpose":
            context = context if context is not None else self.context(batch, layout)
            return self.endpose_velocity(batch, x, k, out, layout, context)
        rotation = out.rotation
        if self.rotation_frame == "lab":
            log_state = x.reshape(-1, 6)[:, 3:]
            rotation = (so3_left_jacobian_inverse(log_state.double()) @ rotation.double().unsqueeze(-1)).squeeze(-1)
        return torch.cat([out.translation, rotation.to(out.translation.dtype)], -1).reshape(x.shape)

    def network_output(self, model, batch, x, s, layout, context=None, k=None, previous=None):
        """The network's raw :class:`~kflow_mol.models.AssemblyVelocity` at state ``x`` (``s`` is ``(B,)``)."""
        pos = self.positions(batch, x, layout)
        extra = {}
        if getattr(unwrap_model(model), "start_aware", False):
            context = context if context is not None else self.context(batch, layout)
            k = k if k is not None else s.double() * self.num_bands + BAND_EDGE_TOLERANCE
            extra["start"] = self.start_features(x, k, context)
        if getattr(unwrap_model(model), "self_condition", False):
            extra["self_condition"] = None if previous is None else previous.reshape(-1, 6)
        return model(
            z=batch.z,
            pos=pos,
            mol_index=batch.mol_index,
            atom_batch=layout.atom_batch,
            mol_batch=layout.mol_batch,
            s=s,
            **extra,
        )

    def remaining_motion(self, batch, x: Tensor, out, layout: ClusterLayout) -> Tensor:
        """``x1_hat - x`` in state coordinates from a pose-head output, shape of ``x``.

        Translation: the predicted centroid displacement. Rotation: the Kabsch rotation
        ``R_hat`` from each molecule's current atom offsets to the predicted crystal offsets
        gives the predicted end state ``log(R_hat exp(x_rot))``, of which the remainder is taken
        in the state's own (log) coordinates, where the path is linear.
        """
        pos = self.positions(batch, x, layout)
        num_mols = layout.mol_batch.shape[0]
        rel = pos - centroids(pos, batch.mol_index, num_mols)[batch.mol_index]
        turn = best_rotations(rel, out.atom_offset, batch.mol_index, num_mols).double()
        state = x.reshape(-1, 6).double()
        remaining = so3_log(turn @ so3_exp(state[:, 3:])) - state[:, 3:]
        return torch.cat([out.translation.double(), remaining], -1).to(x.dtype).reshape(x.shape)

    def endpose_velocity(self, batch, x: Tensor, k: Tensor, out, layout: ClusterLayout, context) -> Tensor:
        """The velocity that moves the band of ``k`` the rest of the way to the predicted pose."""
        coeffs = self.path.transform.forward(self.remaining_motion(batch, x, out, layout), context)
        w, dw = self.path.band_weights(torch.as_tensor(k, device=x.device).to(x.dtype), context, like=coeffs)
        factor = dw / (1 - w).clamp_min(REMAINING_FLOOR)
        return self.path.transform.inverse(factor * coeffs, context)

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None, draws: StepDraws | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Conditional flow-matching loss at random ``k`` (the ``loss_fn`` of the Trainer).

        ``k`` is uniform on ``[0, K)``. Under the Trainer it comes from ``draws`` (one value per
        cluster, identical however the batch is split over DDP ranks); otherwise from
        ``generator`` or the global torch RNG.

        Returns:
            The scalar loss and a dict of logged values (translation / rotation parts).
        """
        batch = self.start_batch(batch)
        layout = cluster_layout(batch)
        context = self.context(batch, layout)
        x1 = self.target(batch, layout)
        if draws is not None:
            k = draws.rand(layout.num_clusters, device=x1.device, dtype=x1.dtype) * self.num_bands
        else:
            k = sample_k(layout.num_clusters, self.num_bands, generator=generator, device=x1.device, dtype=x1.dtype)
        sample = self.path.sample(torch.zeros_like(x1), x1, k, context)
        if self.parametrization == "endpose":
            return self._endpose_loss(model, batch, sample, layout, context)
        previous = self._self_condition_draw(model, batch, sample.x_k, k, layout, context, draws, generator)
        pred = self.velocity(
            model, batch, sample.x_k, k / self.num_bands, layout, context=context, k=k, previous=previous
        )
        if self.loss_current_band and self.mode == "rigid":
            loss = flow_matching_loss(pred, sample, self.path, context, current_band_only=True)
        else:
            loss = flow_matching_loss(pred, sample)
        if self.mode == "cartesian":
            return loss, {}
        error = (pred - sample.dx_k).detach().pow(2)
        return loss, {"loss_trans": float(error[..., :3].mean()), "loss_rot": float(error[..., 3:].mean())}

    def _endpose_loss(self, model, batch, sample, layout: ClusterLayout, context) -> tuple[Tensor, dict[str, float]]:
        """Mean squared error of the predicted crystal pose: centroid displacements (state
        units) plus atom offsets (divided by their mean square, so both terms are O(1))."""
        x1, x_k = sample.x1, sample.x_k
        out = self.network_output(model, batch, x_k, sample.k / self.num_bands, layout, context, sample.k)
        trans_error = (out.translation.reshape(x1.shape[0], -1, 3) - (x1[..., :3] - x_k[..., :3])).pow(2).mean()
        state = x1.reshape(-1, 6)
        offsets = (
            apply_rigid_motion(
                batch.pos_start, batch.mol_index, torch.zeros_like(state[:, :3]), state[:, 3:], layout.centroid_start
            )
            - layout.centroid_start[batch.mol_index]
        )
        scale = offsets.detach().pow(2).mean().clamp_min(1e-6)
        rot_error = (out.atom_offset - offsets).pow(2).mean() / scale
        loss = trans_error + rot_error
        return loss, {"loss_trans": float(trans_error.detach()), "loss_rot": float(rot_error.detach())}

    def _self_condition_draw(self, model, batch, x, k, layout, context, draws, generator) -> Tensor | None:
        """Self-conditioning input of a training step: for half of the clusters (drawn) the
        network's own velocity at ``x`` (no gradient), zeros for the others; ``None`` when the
        network is not self-conditioned."""
        if not getattr(unwrap_model(model), "self_condition", False):
            return None
        if draws is not None:
            keep = draws.rand(layout.num_clusters, device=x.device, dtype=x.dtype) < 0.5
        else:
            keep = torch.rand(layout.num_clusters, generator=generator, dtype=x.dtype).to(x.device) < 0.5
        with torch.no_grad():
            first = self.velocity(model, batch, x, k / self.num_bands, layout, context=context, k=k)
        return first * keep.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))

    # ----- sampling --------------------------------------------------------------------------
    def _sample(self, model, batch, method, steps_per_band, return_trajectory, generator) -> AssemblySample:
        """Integrate the learned velocity from the start state (``k = 0``) to ``k = K``.

        With ``project`` every velocity is first projected onto the band moving at ``k``.
        ``steps_per_band=None`` spreads :attr:`default_steps` evenly over the bands; ``generator``
        is ignored.
        """
        if steps_per_band is None:
            steps_per_band = allocate_steps(self.default_steps, [1.0] * self.num_bands)
        batch = self.start_batch(batch)
        layout = cluster_layout(batch)
        context = self.context(batch, layout)
        x0 = torch.zeros_like(self.target(batch, layout))
        velocity_fn = self.sampling_velocity(model, batch, layout, context)
        return self._integrate(velocity_fn, batch, x0, layout, method, steps_per_band, return_trajectory)

    def sampling_velocity(self, model: nn.Module, batch: Any, layout: ClusterLayout | None = None, context=None):
        """The sampler's ``velocity_fn(x, s, cond)`` of a network (projected when ``project``)."""
        layout = layout or cluster_layout(batch)
        context = context if context is not None else self.context(batch, layout)

        previous: list[Tensor | None] = [None]  # a self-conditioned network sees its last velocity

        def velocity_fn(x: Tensor, s: Tensor, cond: Any) -> Tensor:
            k = s.double() * self.num_bands + BAND_EDGE_TOLERANCE
            v = self.velocity(model, batch, x, s, layout, context=context, k=k, previous=previous[0])
            previous[0] = v
            if self.project and self.mode == "rigid":
                v = self.path.project_to_band(v, k, context)
            return v

        return velocity_fn

    @torch.no_grad()
    def sample_exact(
        self, batch: Any, *, method: str = "euler", steps_per_band: int = 10, return_trajectory: bool = False
    ) -> AssemblySample:
        """Integrate the exact conditional velocity (uses the target: a correctness check)."""
        batch = self.start_batch(batch)
        layout = cluster_layout(batch)
        context = self.context(batch, layout)
        x1 = self.target(batch, layout)
        x0 = torch.zeros_like(x1)

        def velocity_fn(x: Tensor, s: Tensor, cond: Any) -> Tensor:
            return self.path.sample(x0, x1, s * self.num_bands, context).dx_k

        return self._integrate(velocity_fn, batch, x0, layout, method, steps_per_band, return_trajectory)

    def _integrate(self, velocity_fn, batch, x0, layout, method, steps_per_band, return_trajectory):
        result = self.sampler.sample(
            velocity_fn, x0, method=method, steps_per_band=steps_per_band, return_trajectory=return_trajectory
        )
        trajectory = None
        if return_trajectory:
            trajectory = [self.positions(batch, x, layout) for x in result.trajectory]
        return AssemblySample(
            pos=self.positions(batch, result.x, layout), nfe=result.nfe, trajectory=trajectory, ks=result.ks
        )


def translation_scale_of(dataset, max_items: int = 512) -> float:
    """RMS per-component centroid shift start -> crystal over (up to ``max_items``) clusters, Å."""
    squares, count = 0.0, 0
    for index in range(min(len(dataset), max_items)):
        item = dataset[index]
        num_mols = int(item.mol_index.max()) + 1
        shift = centroids(item.pos_target, item.mol_index, num_mols) - centroids(
            item.pos_start, item.mol_index, num_mols
        )
        squares += float(shift.double().pow(2).sum())
        count += shift.numel()
    if count == 0:
        raise ValueError("translation_scale_of: empty dataset")
    return max((squares / count) ** 0.5, 1e-3)
