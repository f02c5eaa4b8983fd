"""CrystalSDE-VE / CrystalSDE-VP: score-based diffusion on all-atom displacements.

Data: the displacement ``x0 = (pos_target - pos_start) / sigma`` of every atom (``sigma`` =
``translation_scale``), padded per cluster to ``(B, A_max, 3)``. The forward SDE
(:class:`kflow.sde.VESDE` or :class:`kflow.sde.VPSDE`, Song's time: ``t = 0`` data, ``t = 1``
noise) noises it; the network sees the atoms at ``pos_start + sigma x_t`` and ``s = t`` (the
noise level) and its atom head predicts the noise ``eps``; the score is ``-eps_hat / std(t)``.
The loss is denoising score matching with ``lambda = std^2``, i.e. ``MSE(eps_hat, eps)``.

Sampling starts from the prior (``N(0, sigma_max^2)`` VE, ``N(0, 1)`` VP, around the start
state) and runs the reverse SDE to ``t_eps`` with Euler--Maruyama (``method="euler"``), the
predictor--corrector scheme (``"pc"``: one Langevin corrector step per time, ``snr``) or the
probability-flow ODE (``"ode"``). Samples are random: evaluate with several per cluster.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kflow.sde import VESDE, VPSDE, ReverseSDESampler, dsm_loss
from kflow.training import StepDraws
from kflow_mol.systems.base import AssemblySample, cluster_layout
from kflow_mol.systems.common import (
    METHOD_ALIASES,
    GaussianAtomSystem,
    atom_positions,
    atom_state,
    normal_like,
    total_steps,
)


class CrystalSDE(GaussianAtomSystem):
    """All-atom score-based diffusion relative to the start state.

    Args:
        kind: ``"ve"`` or ``"vp"``.
        translation_scale: ``sigma`` (Å) dividing the displacements.
        sigma_min: VE noise at ``t = 0`` (in ``sigma`` units).
        sigma_max: VE noise at ``t = 1`` (in ``sigma`` units).
        beta_min: VP ``beta(0)``.
        beta_max: VP ``beta(1)``.
        t_eps: smallest time (default 1e-5 VE, 1e-3 VP, Song's values).
        snr: Langevin corrector signal-to-noise ratio (``method="pc"``).
        corrector_steps: Langevin steps per time (``method="pc"``).
    """

    default_steps = 100

    def __init__(
        self, kind: str = "ve", translation_scale: float = 1.0, *, snr: float = 0.16, corrector_steps: int = 1, **noise
    ):
        super().__init__(kind, translation_scale, **noise)
        self.sampler = ReverseSDESampler(self.sde)
        self.snr, self.corrector_steps = snr, corrector_steps

    def _build_ve(self, sigma_min: float, sigma_max: float, t_eps: float | None) -> None:
        self.sde = VESDE(sigma_min, sigma_max, t_eps=1e-5 if t_eps is None else t_eps)

    def _build_vp(self, beta_min: float, beta_max: float, t_eps: float | None) -> None:
        self.sde = VPSDE(beta_min, beta_max, t_eps=1e-3 if t_eps is None else t_eps)

    def score(self, model: nn.Module, batch: Any, layout, x: Tensor, mask: Tensor, t: Tensor) -> Tensor:
        """Score estimate ``-eps_hat / std(t)`` at the padded state ``x`` ``(B, A_max, 3)``; ``t`` is ``(B,)``."""
        eps_hat = self.predict_noise(model, batch, layout, x, mask, t)
        _, std = self.sde.marginal(x, t)
        return -eps_hat / std.reshape(-1, 1, 1)

    predict_noise = GaussianAtomSystem.network_output
    """The network's noise prediction ``(B, A_max, 3)`` (zero on padding)."""

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None, draws: StepDraws | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Denoising score matching (noise-prediction MSE over valid atoms) at random ``t``."""
        layout, state, u, noise = self.training_draws(batch, draws, generator)
        t = self.sde.sample_time(layout.num_clusters, u=u)
        perturbation = self.sde.perturb(state.target, t, noise=noise)
        eps_hat = self.predict_noise(model, batch, layout, perturbation.x_t, state.mask, t)
        score = -eps_hat / perturbation.std.reshape(-1, 1, 1)
        return dsm_loss(score, perturbation, mask=state.mask.unsqueeze(-1)), {}

    def _sample(self, model, batch, method, steps_per_band, return_trajectory, generator) -> AssemblySample:
        """Reverse-SDE sample from the prior around the start state.

        ``method``: ``"euler"`` (Euler--Maruyama), ``"pc"`` (predictor--corrector) or ``"ode"``;
        ``steps_per_band``: predictor steps, an int or a one-entry list (default :attr:`default_steps`);
        ``generator``: RNG of the prior draw and the noise. The trajectory holds the atom positions
        after every predictor step, and ``ks`` holds ``1 - t``, 0 at the prior.
        """
        if method not in METHOD_ALIASES:
            raise ValueError(f"unknown CrystalSDE sampling method {method!r}; use euler, pc or ode")
        layout = cluster_layout(batch)
        state = atom_state(batch, layout, self.translation_scale)
        x_init = self.sde.prior_std * normal_like(state.target, state.mask, generator=generator)

        def score_fn(x: Tensor, t: Tensor) -> Tensor:
            return self.score(model, batch, layout, x, state.mask, t)

        result = self.sampler.sample(
            score_fn,
            x_init,
            steps=total_steps(steps_per_band, self.default_steps),
            method=METHOD_ALIASES[method],
            snr=self.snr,
            corrector_steps=self.corrector_steps,
            mask=state.mask.unsqueeze(-1),
            generator=generator,
            return_trajectory=return_trajectory,
        )
        trajectory = None
        if return_trajectory:
            trajectory = [atom_positions(batch, x, state.mask, self.translation_scale) for x in result.trajectory]
        return AssemblySample(
            pos=atom_positions(batch, result.x, state.mask, self.translation_scale),
            nfe=result.nfe,
            trajectory=trajectory,
            ks=None if result.ts is None else [1 - t for t in result.ts],
        )
