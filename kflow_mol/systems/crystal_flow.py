"""CrystalFlow-VE / -VP / -LERP: flow matching on all-atom displacements.

Data: ``x1 = (pos_target - pos_start) / sigma`` per atom (``sigma`` = ``translation_scale``),
padded per cluster to ``(B, A_max, 3)``.

* VE / VP (:class:`CrystalFlow`): the Gaussian conditional paths of Lipman et al.
  (:class:`kflow.gaussian_paths.VEPath`, :class:`~kflow.gaussian_paths.VPPath`), ``t = 0``
  noise, ``t = 1`` data. The network sees the atoms at ``pos_start + sigma x_t`` and
  ``s = t``; its atom head regresses the conditional velocity ``u_t`` (plain MSE). Sampling
  draws ``x_0`` from the prior (``N(0, sigma_max^2)`` VE, ``N(0, 1)`` VP, around the start
  state) and integrates ``t`` from 0 to ``1 - t_eps`` with fixed steps (``euler``, ``heun``,
  ``rk4``) of the core :class:`~kflow.sampling.KFlowSampler` on one band, ``k = t / (1 - t_eps)``.
  Samples are random: evaluate with several per cluster.
* LERP (:class:`CrystalFlowLERP`): the existing all-atom linear flow matching from the start
  state, :class:`kflow_mol.flow.AssemblyFlow` with ``mode="cartesian"`` (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from kflow.gaussian_paths import VEPath, VPPath
from kflow.path import KAmplitudePath
from kflow.sampling import KFlowSampler
from kflow.training import StepDraws
from kflow.transforms.matrix import IdentityTransform
from kflow_mol.systems.base import AssemblySample, cluster_layout
from kflow_mol.systems.common import (
    GaussianAtomSystem,
    atom_positions,
    atom_state,
    masked_mse,
    normal_like,
    total_steps,
)
from kflow_mol.systems.rigid_kflow import AssemblyFlow

ODE_METHODS = ("euler", "heun", "rk4")
ONE_BAND_SAMPLER = KFlowSampler(KAmplitudePath(IdentityTransform()), edge_eps=0.0)
"""The core sampler on ``k`` in ``[0, 1]`` (one band, no edge to stop short of: evaluations reach ``k = 1``)."""


class CrystalFlow(GaussianAtomSystem):
    """All-atom flow matching with a VE or VP Gaussian path.

    Args:
        kind: ``"ve"`` or ``"vp"``.
        translation_scale: ``sigma`` (Å) dividing the displacements.
        sigma_min: VE noise left at ``t = 1`` (``sigma`` units).
        sigma_max: VE noise at ``t = 0`` (``sigma`` units).
        beta_min: VP ``beta`` at the data end.
        beta_max: VP ``beta`` at the noise end.
        t_eps: VP stops at ``t = 1 - t_eps`` (its velocity diverges at 1); ``None``: 1e-3.
    """

    default_steps = 50

    def _build_ve(self, sigma_min: float, sigma_max: float, t_eps: float | None) -> None:
        self.path = VEPath(sigma_min, sigma_max)

    def _build_vp(self, beta_min: float, beta_max: float, t_eps: float | None) -> None:
        self.path = VPPath(beta_min, beta_max, t_eps=1e-3 if t_eps is None else t_eps)

    @property
    def t_end(self) -> float:
        """Where training times and sampling stop: ``1 - t_eps``."""
        return 1.0 - self.path.t_eps

    velocity = GaussianAtomSystem.network_output
    """Network velocity ``(B, A_max, 3)`` at the padded state ``x``; ``t`` is ``(B,)``."""

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None, draws: StepDraws | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Conditional flow matching: MSE between the network and ``u_t`` over valid atoms, ``t ~ U[0, t_end)``."""
        layout, state, u, noise = self.training_draws(batch, draws, generator)
        t = self.t_end * u
        sample = self.path.sample(state.target, t, noise=noise)
        pred = self.velocity(model, batch, layout, sample.x_t, state.mask, t)
        return masked_mse(pred, sample.u_t, state.mask), {}

    def _sample(self, model, batch, method, steps_per_band, return_trajectory, generator) -> AssemblySample:
        """Integrate the learned velocity from a prior draw (``t = 0``) to ``t_end`` (``euler``, ``heun``, ``rk4``)."""
        layout = cluster_layout(batch)
        state = atom_state(batch, layout, self.translation_scale)

        def field(x: Tensor, t: float) -> Tensor:
            return self.velocity(
                model, batch, layout, x, state.mask, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
            )

        return self._integrate(
            field, batch, state, method, total_steps(steps_per_band, self.default_steps), return_trajectory, generator
        )

    @torch.no_grad()
    def sample_exact(
        self,
        batch: Any,
        *,
        method: str = "rk4",
        steps_per_band: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> AssemblySample:
        """Integrate the EXACT conditional velocity (uses the target: a correctness check)."""
        layout = cluster_layout(batch)
        state = atom_state(batch, layout, self.translation_scale)

        def field(x: Tensor, t: float) -> Tensor:
            return self.path.conditional_velocity(x, state.target, torch.tensor(t, dtype=x.dtype))

        steps = total_steps(steps_per_band, self.default_steps)
        return self._integrate(field, batch, state, method, steps, False, generator)

    def _integrate(
        self, field, batch, state, method: str, steps: int, return_trajectory: bool, generator: torch.Generator | None
    ) -> AssemblySample:
        """Integrate ``dx/dt = field(x, t)`` from a prior draw at ``t = 0`` to :attr:`t_end` in ``steps`` steps.

        The core sampler integrates ``k = t / t_end`` on ``[0, 1]`` with ``dx/dk = t_end * field``
        (zero on padding atoms); ``ks`` of the trajectory are the times ``t``.
        """
        if method not in ODE_METHODS:
            raise ValueError(f"unknown CrystalFlow sampling method {method!r}; use one of {ODE_METHODS}")
        weight = state.mask.unsqueeze(-1).to(state.target.dtype)
        t_end = self.t_end

        def velocity_fn(x: Tensor, s: Tensor, cond: Any) -> Tensor:
            return t_end * field(x, t_end * float(s[0])) * weight

        x0 = self.path.prior_std * normal_like(state.target, state.mask, generator=generator)
        result = ONE_BAND_SAMPLER.sample(
            velocity_fn, x0, method=method, steps_per_band=steps, return_trajectory=return_trajectory
        )
        scale = self.translation_scale
        trajectory = None
        if return_trajectory:
            trajectory = [atom_positions(batch, f, state.mask, scale) for f in result.trajectory]
        return AssemblySample(
            pos=atom_positions(batch, result.x, state.mask, scale),
            nfe=result.nfe,
            trajectory=trajectory,
            ks=[t_end * k for k in result.ks] if return_trajectory else None,
        )


class CrystalFlowLERP(AssemblyFlow):
    """All-atom linear flow matching from the start state: ``AssemblyFlow(mode="cartesian")``.

    Args:
        translation_scale: ``sigma`` (Å) dividing the displacements.
        **options: further :class:`~kflow_mol.flow.AssemblyFlow` arguments (e.g. ``bump``).
    """

    default_steps_per_band = 12

    def __init__(self, translation_scale: float = 1.0, **options):
        super().__init__(num_bands=1, mode="cartesian", translation_scale=translation_scale, **options)
