"""Score-based diffusion (Song et al., 2021): VE and VP SDEs, denoising score matching, samplers.

Time ``t`` runs from data (``t = 0``) to noise (``t = 1``), Song's convention (the reverse of
:mod:`kflow.gaussian_paths`). Forward SDE ``dx = f(x, t) dt + g(t) dw``:

* :class:`VESDE`: ``f = 0``, ``g = sigma(t) sqrt(2 log(sigma_max / sigma_min))``; the marginal
  is ``N(x0, sigma(t)^2 I)`` (data taken as already smoothed by ``sigma_min``, as in Song's code)
  and the prior ``N(0, sigma_max^2 I)``.
* :class:`VPSDE`: ``f = -beta(t) x / 2``, ``g = sqrt(beta(t))``; the marginal is
  ``N(alpha(t) x0, (1 - alpha(t)^2) I)`` and the prior ``N(0, I)``.

Training: :func:`dsm_loss` (denoising score matching with the ``sigma^2`` weighting, i.e. the
noise-prediction MSE). Sampling: :class:`ReverseSDESampler` integrates the reverse SDE
``dx = [f - g^2 score] dt + g dw_bar`` from ``t = 1`` to ``t_eps`` with Euler--Maruyama
(``"euler_maruyama"``), a predictor--corrector scheme with Langevin corrector steps (``"pc"``)
or the probability-flow ODE ``dx/dt = f - g^2 score / 2`` (``"ode"``, Euler, deterministic).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from kflow.schedules import VESchedule, VPSchedule

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(x (B, *data_shape), t (B,)) -> score (B, *data_shape)``."""

SDE_METHODS = ("euler_maruyama", "pc", "ode")


def randn(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws made on the generator's device, then moved to ``device``."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


class GaussianPrior:
    """Draws from a source ``N(0, prior_std^2 I)``; subclasses define ``prior_std``."""

    prior_std: float

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draws from ``N(0, prior_std^2 I)``, shape ``shape``."""
        return self.prior_std * randn(shape, generator=generator, device=device, dtype=dtype)


def _expand(value: Tensor, like: Tensor) -> Tensor:
    return value.reshape((-1,) + (1,) * (like.dim() - 1))


@dataclass
class SDEPerturbation:
    """A data batch noised to time ``t`` by the forward SDE's marginal.

    Attributes:
        x0: data, shape ``(B, *data_shape)``.
        t: times, shape ``(B,)``.
        noise: ``eps``, shape ``(B, *data_shape)``.
        mean: marginal mean, shape ``(B, *data_shape)``.
        std: marginal std, shape ``(B,)``.
        x_t: ``mean + std eps``, shape ``(B, *data_shape)``.
        score: the conditional score ``-eps / std`` (DSM target), shape ``(B, *data_shape)``.
    """

    x0: Tensor
    t: Tensor
    noise: Tensor
    mean: Tensor
    std: Tensor
    x_t: Tensor
    score: Tensor


class SDE(GaussianPrior):
    """Base class of the forward SDEs (see the module docstring).

    Args:
        schedule: the noise schedule (:class:`~kflow.schedules.VESchedule` or ``VPSchedule``).
        t_eps: smallest time used in training and sampling.
        prior_std: standard deviation of the prior ``N(0, prior_std^2 I)`` at ``t = 1``.
    """

    t_eps: float = 1e-5

    def __init__(self, schedule: VESchedule | VPSchedule, t_eps: float, prior_std: float):
        self.schedule, self.t_eps, self.prior_std = schedule, t_eps, float(prior_std)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t)``, shape of ``x``; ``t`` has shape ``(B,)``."""
        raise NotImplementedError

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t)``, shape of ``t``."""
        raise NotImplementedError

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``(B, *data_shape)`` and std ``(B,)`` of ``p_t(x | x0)``."""
        raise NotImplementedError

    def langevin_scale(self, t: Tensor, h: float) -> Tensor:
        """Song's ``alpha_i`` of the Langevin corrector step at ``t`` (1 for VE), shape of ``t``."""
        return torch.ones_like(t)

    def perturb(
        self, x0: Tensor, t: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> SDEPerturbation:
        """Draw ``x_t ~ p_t(x | x0)``.

        Args:
            x0: data, shape ``(B, *data_shape)``.
            t: times, shape ``(B,)``.
            noise: ``eps``; drawn from ``generator`` when ``None``.
            generator: RNG.

        Returns:
            :class:`SDEPerturbation`.
        """
        if noise is None:
            noise = randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        mean, std = self.marginal(x0, t)
        sigma = _expand(std, x0)
        return SDEPerturbation(
            x0=x0, t=t, noise=noise, mean=mean, std=std, x_t=mean + sigma * noise, score=-noise / sigma
        )

    def sample_time(
        self,
        batch_size: int,
        *,
        u: Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Training times uniform on ``[t_eps, 1]``, shape ``(B,)`` (from uniforms ``u`` when given)."""
        if u is None:
            where = generator.device if generator is not None else device
            u = torch.rand(batch_size, generator=generator, device=where, dtype=dtype).to(device)
        return self.t_eps + (1 - self.t_eps) * u


class VESDE(SDE):
    """Variance-exploding SDE.

    Args:
        sigma_min: noise scale at ``t = 0``.
        sigma_max: noise scale at ``t = 1``.
        t_eps: smallest time (Song: 1e-5).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_eps: float = 1e-5):
        schedule = VESchedule(sigma_min, sigma_max)
        super().__init__(schedule, t_eps, prior_std=schedule.sigma_max)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.schedule.sigma(t) * math.sqrt(2 * self.schedule.log_ratio)

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return x0, self.schedule.sigma(t.to(x0.dtype))


class VPSDE(SDE):
    """Variance-preserving SDE with a linear ``beta``.

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        t_eps: smallest time (Song: 1e-3).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_eps: float = 1e-3):
        super().__init__(VPSchedule(beta_min, beta_max), t_eps, prior_std=1.0)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * _expand(self.schedule.beta(t.to(x.dtype)), x) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.schedule.beta(t))

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        t = t.to(x0.dtype)
        return _expand(self.schedule.alpha(t), x0) * x0, self.schedule.std(t)

    def langevin_scale(self, t: Tensor, h: float) -> Tensor:
        return (1 - self.schedule.beta(t) * h).clamp_min(1e-3)


def dsm_loss(score: Tensor, perturbation: SDEPerturbation, mask: Tensor | None = None) -> Tensor:
    """Denoising score matching with ``lambda(t) = std(t)^2``: mean of ``|std * score + eps|^2``.

    Args:
        score: predicted score at ``perturbation.x_t``, shape ``(B, *data_shape)``.
        perturbation: the :class:`SDEPerturbation` the prediction was made on.
        mask: optional bool/0-1 tensor broadcastable to ``score``; the mean runs over it only
            (for padded batches).

    Returns:
        Scalar loss.
    """
    if score.shape != perturbation.noise.shape:
        raise ValueError(f"score shape {tuple(score.shape)} != data shape {tuple(perturbation.noise.shape)}")
    error = (_expand(perturbation.std, score) * score + perturbation.noise).pow(2)
    if mask is None:
        return error.mean()
    weight = mask.to(error.dtype).expand_as(error)
    return (error * weight).sum() / weight.sum().clamp_min(1.0)


def _noise_source(like: Tensor, mask: Tensor | None, generator: torch.Generator | None):
    """``() -> z``: standard normal noise shaped like ``like``, zero where ``mask`` is 0."""
    weight = None if mask is None else mask.to(like.dtype).expand_as(like)

    def noise() -> Tensor:
        z = randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return z if weight is None else z * weight

    return noise


@dataclass
class SDESampleResult:
    """Output of :meth:`ReverseSDESampler.sample`.

    Attributes:
        x: final state at ``t_eps``, shape ``(B, *data_shape)``.
        nfe: score evaluations (each on the whole batch).
        trajectory: states after every predictor step (first entry: the start), or ``None``.
        ts: the time of every trajectory entry, or ``None``.
    """

    x: Tensor
    nfe: int
    trajectory: list[Tensor] | None = None
    ts: list[float] | None = None


class ReverseSDESampler:
    """Reverse-time sampler of an :class:`SDE` from ``t = 1`` down to ``t_eps``.

    Args:
        sde: the forward SDE the score model was trained on.
    """

    def __init__(self, sde: SDE):
        self.sde = sde

    def time_grid(self, steps: int) -> list[float]:
        """``steps + 1`` equally spaced times from 1 to ``t_eps``."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return torch.linspace(1.0, self.sde.t_eps, steps + 1, dtype=torch.float64).tolist()

    @torch.no_grad()
    def sample(
        self,
        score_fn: ScoreFn,
        x_init: Tensor,
        *,
        steps: int = 100,
        method: str = "euler_maruyama",
        snr: float = 0.16,
        corrector_steps: int = 1,
        denoise: bool = True,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> SDESampleResult:
        """Integrate the reverse SDE (or the probability-flow ODE) from ``x_init`` at ``t = 1``.

        Args:
            score_fn: ``(x, t) -> score`` with ``t`` of shape ``(B,)``.
            x_init: start state, usually :meth:`SDE.prior_sample`, shape ``(B, *data_shape)``.
            steps: predictor steps.
            method: ``"euler_maruyama"``, ``"pc"`` (EM predictor + Langevin corrector) or ``"ode"``.
            snr: signal-to-noise ratio of the Langevin corrector step size.
            corrector_steps: Langevin steps per time in ``"pc"``.
            denoise: the last predictor step adds no noise (Song's noise removal).
            mask: optional 0/1 tensor broadcastable to ``x_init``: noise is drawn only where it is 1
                and Langevin norms are taken over those entries (padded batches).
            generator: RNG of the noise.
            return_trajectory: keep the state after every predictor step.

        Returns:
            :class:`SDESampleResult`.
        """
        if method not in SDE_METHODS:
            raise ValueError(f"unknown SDE sampling method {method!r}; use one of {SDE_METHODS}")
        if corrector_steps < 0:
            raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
        noise = _noise_source(x_init, mask, generator)
        grid = self.time_grid(steps)
        x, nfe = x_init, 0
        trajectory = [x] if return_trajectory else None
        ts = [grid[0]] if return_trajectory else None
        for i, (t_now, t_next) in enumerate(itertools.pairwise(grid)):
            h = t_now - t_next
            t = torch.full((x.shape[0],), t_now, dtype=x.dtype, device=x.device)
            if method == "pc":
                for _ in range(corrector_steps):
                    x = self._langevin(x, t, score_fn(x, t), noise(), snr, h)
                nfe += corrector_steps
            last_quiet = denoise and i == steps - 1
            x = self._predict(x, t, h, score_fn(x, t), method, None if last_quiet else noise)
            nfe += 1
            if return_trajectory:
                trajectory.append(x)
                ts.append(t_next)
        return SDESampleResult(x=x, nfe=nfe, trajectory=trajectory, ts=ts)

    def _predict(self, x: Tensor, t: Tensor, h: float, score: Tensor, method: str, noise) -> Tensor:
        """One predictor step from ``t`` to ``t - h``: probability-flow ODE or Euler-Maruyama.

        Args:
            x: state, shape ``(B, *data_shape)``.
            t: current time, shape ``(B,)``.
            h: step size (> 0, time decreases).
            score: ``score_fn(x, t)``, shape ``(B, *data_shape)``.
            method: ``"ode"`` (deterministic) or an SDE method.
            noise: ``() -> z`` giving the step's noise, or ``None`` for no noise (SDE methods).

        Returns:
            The state at ``t - h``, shape ``(B, *data_shape)``.
        """
        g = _expand(self.sde.diffusion(t), x)
        if method == "ode":
            return x - h * (self.sde.drift(x, t) - 0.5 * g * g * score)
        x = x - h * (self.sde.drift(x, t) - g * g * score)
        if noise is not None:
            x = x + g * math.sqrt(h) * noise()
        return x

    def _langevin(self, x: Tensor, t: Tensor, score: Tensor, z: Tensor, snr: float, h: float) -> Tensor:
        """One Langevin step ``x + e score + sqrt(2 e) z`` with Song's snr-based step ``e`` per sample."""
        score_norm = score.flatten(1).norm(dim=1).clamp_min(1e-12)
        noise_norm = z.flatten(1).norm(dim=1)
        step = 2 * self.sde.langevin_scale(t, h) * (snr * noise_norm / score_norm) ** 2
        step = _expand(step, x)
        return x + step * score + torch.sqrt(2 * step) * z
