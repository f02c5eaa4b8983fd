"""Pieces the Table-5 systems share: random draws, the all-atom displacement state, the network call.

Random numbers: a system's ``loss`` takes either ``draws`` (a :class:`kflow.training.StepDraws`,
given by the Trainer) or a ``generator``. With ``draws`` every cluster gets values that do not
depend on how the batch is split over DDP ranks: per-cluster uniforms come from
``draws.rand(B)``, and per-atom Gaussian noise from a per-cluster generator seeded by one
more ``draws.rand(B)`` value (clusters differ in atom count, so their noise cannot be rows of
one fixed-shape draw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from kflow.training import StepDraws
from kflow_mol.systems.base import AssemblySystem, ClusterLayout, cluster_layout, positive_scale


def uniform_per_cluster(
    num_clusters: int, *, draws: StepDraws | None, generator: torch.Generator | None, like: Tensor
) -> Tensor:
    """Uniform ``[0, 1)`` draws, one per cluster, shape ``(B,)``, dtype/device of ``like``."""
    if draws is not None:
        return draws.rand(num_clusters, device=like.device, dtype=like.dtype)
    device = generator.device if generator is not None else like.device
    return torch.rand(num_clusters, generator=generator, device=device, dtype=like.dtype).to(like.device)


def normal_like(
    dense: Tensor, mask: Tensor, *, draws: StepDraws | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Standard normal noise shaped like a padded atom state, zero on padding.

    Args:
        dense: padded state, ``(B, A_max, 3)`` (gives shape, dtype, device).
        mask: valid atoms, ``(B, A_max)`` bool.
        draws: per-step draws (per-cluster seeds, DDP-exact); takes precedence.
        generator: RNG when ``draws`` is ``None``.

    Returns:
        Noise ``(B, A_max, 3)``.
    """
    if draws is None:
        device = generator.device if generator is not None else dense.device
        noise = torch.randn(dense.shape, generator=generator, device=device, dtype=dense.dtype).to(dense.device)
        return noise * mask.unsqueeze(-1).to(dense.dtype)
    seeds = draws.rand(dense.shape[0], dtype=torch.float64)
    noise = torch.zeros_like(dense)
    counts = mask.sum(1).tolist()
    for cluster, (seed, count) in enumerate(zip(seeds.tolist(), counts)):
        g = torch.Generator().manual_seed(int(seed * 2**53))
        noise[cluster, :count] = torch.randn(count, 3, generator=g, dtype=torch.float64).to(noise)
    return noise


@dataclass
class AtomState:
    """The all-atom displacement data of a batch, padded per cluster.

    Attributes:
        target: ``(pos_target - pos_start) / sigma``, ``(B, A_max, 3)`` (zero on padding).
        mask: valid atoms, ``(B, A_max)`` bool.
    """

    target: Tensor
    mask: Tensor


def atom_state(batch: Any, layout: ClusterLayout, translation_scale: float) -> AtomState:
    """Padded displacement targets of a batch (atoms of each cluster are contiguous)."""
    target, mask = to_dense_batch(batch.pos_target - batch.pos_start, layout.atom_batch)
    return AtomState(target=target / translation_scale, mask=mask)


def atom_positions(batch: Any, x: Tensor, mask: Tensor, translation_scale: float) -> Tensor:
    """Atom positions ``(A, 3)`` of a padded displacement state ``x`` ``(B, A_max, 3)``."""
    return batch.pos_start + translation_scale * x[mask]


def call_network(model: nn.Module, batch: Any, layout: ClusterLayout, pos: Tensor, s: Tensor):
    """The network call every system makes (as :meth:`AssemblyFlow.velocity` does); ``s`` is ``(B,)``."""
    return model(
        z=batch.z, pos=pos, mol_index=batch.mol_index, atom_batch=layout.atom_batch, mol_batch=layout.mol_batch, s=s
    )


def dense_atom_output(out, layout: ClusterLayout, max_atoms: int) -> Tensor:
    """The atom head's ``(A, 3)`` output padded to ``(B, A_max, 3)`` (zeros on padding)."""
    if out.atom is None:
        raise ValueError("this system needs the atom head: build_model(head='atom')")
    return to_dense_batch(out.atom, layout.atom_batch, max_num_nodes=max_atoms)[0]


def atom_network_output(
    model: nn.Module, batch: Any, layout: ClusterLayout, x: Tensor, mask: Tensor, t: Tensor, translation_scale: float
) -> Tensor:
    """The atom head's output ``(B, A_max, 3)`` at the padded displacement state ``x``; ``t`` is ``(B,)``."""
    pos = atom_positions(batch, x, mask, translation_scale)
    return dense_atom_output(call_network(model, batch, layout, pos, t), layout, x.shape[1])


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over valid atoms: ``pred``/``target`` ``(B, A_max, 3)``, ``mask`` ``(B, A_max)``."""
    weight = mask.unsqueeze(-1).to(pred.dtype)
    return ((pred - target).pow(2) * weight).sum() / (3 * weight.sum()).clamp_min(1.0)


def total_steps(steps_per_band: int | Sequence[int] | None, default: int) -> int:
    """Step count of a single-band system: ``None`` -> ``default``, an int, or a one-entry list."""
    if steps_per_band is None:
        return default
    if not isinstance(steps_per_band, int):
        values = [int(n) for n in steps_per_band]
        if len(values) != 1:
            raise ValueError(f"a single-band system takes one step count, got {values}")
        steps_per_band = values[0]
    if steps_per_band < 1:
        raise ValueError(f"steps must be >= 1, got {steps_per_band}")
    return int(steps_per_band)


METHOD_ALIASES = {
    "euler": "euler_maruyama",
    "em": "euler_maruyama",
    "euler_maruyama": "euler_maruyama",
    "pc": "pc",
    "ode": "ode",
}


class GaussianAtomSystem(AssemblySystem):
    """Base of the all-atom VE / VP systems (:class:`CrystalFlow`, :class:`CrystalSDE`): their shared settings.

    Args:
        kind: ``"ve"`` or ``"vp"``.
        translation_scale: ``sigma`` (Å) dividing the displacements.
        sigma_min: smallest VE noise (``sigma`` units).
        sigma_max: largest VE noise (``sigma`` units).
        beta_min: VP ``beta`` at the data end.
        beta_max: VP ``beta`` at the noise end.
        t_eps: where time stops short of the data / noise end; ``None``: the subclass's default.
    """

    head = "atom"
    stochastic = True

    def __init__(
        self,
        kind: str = "ve",
        translation_scale: float = 1.0,
        *,
        sigma_min: float = 0.01,
        sigma_max: float = 10.0,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        t_eps: float | None = None,
    ):
        if kind not in ("ve", "vp"):
            raise ValueError(f"{type(self).__name__} kind must be 've' or 'vp', got {kind!r}")
        self.kind, self.translation_scale = kind, positive_scale(translation_scale)
        if kind == "ve":
            self._build_ve(sigma_min, sigma_max, t_eps)
        else:
            self._build_vp(beta_min, beta_max, t_eps)

    def network_output(self, model: nn.Module, batch: Any, layout, x: Tensor, mask: Tensor, t: Tensor) -> Tensor:
        """The atom head's output ``(B, A_max, 3)`` at the padded state ``x`` (zero on padding); ``t`` is ``(B,)``.

        :class:`CrystalFlow` reads it as the velocity, :class:`CrystalSDE` as the predicted noise.
        """
        return atom_network_output(model, batch, layout, x, mask, t, self.translation_scale)

    def training_draws(
        self, batch: Any, draws: StepDraws | None, generator: torch.Generator | None
    ) -> tuple[ClusterLayout, AtomState, Tensor, Tensor]:
        """What a training step draws, in this order: a uniform per cluster, then per-atom noise.

        Returns:
            The batch's layout, its :class:`AtomState`, the uniforms ``(B,)`` and the standard
            normal noise ``(B, A_max, 3)`` (zero on padding).
        """
        layout = cluster_layout(batch)
        state = atom_state(batch, layout, self.translation_scale)
        u = uniform_per_cluster(layout.num_clusters, draws=draws, generator=generator, like=state.target)
        noise = normal_like(state.target, state.mask, draws=draws, generator=generator)
        return layout, state, u, noise

    def _build_ve(self, sigma_min: float, sigma_max: float, t_eps: float | None) -> None:
        raise NotImplementedError

    def _build_vp(self, beta_min: float, beta_max: float, t_eps: float | None) -> None:
        raise NotImplementedError
