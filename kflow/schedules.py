"""Noise schedules of score-based diffusion: the VE geometric sigma and the VP linear beta.

Both are functions of a noise time ``s`` in ``[0, 1]`` (``s = 0``: data, ``s = 1``: noise), the
convention of Song et al. (2021). The Gaussian probability paths of
:mod:`kflow.gaussian_paths` (Lipman et al., 2023) run the other way and use ``s = 1 - t``.

* :class:`VESchedule`: ``sigma(s) = sigma_min (sigma_max / sigma_min)^s``.
* :class:`VPSchedule`: ``beta(s) = beta_min + s (beta_max - beta_min)``, its integral
  ``T(s) = beta_min s + (beta_max - beta_min) s^2 / 2``, the signal scale
  ``alpha(s) = exp(-T(s) / 2)`` and the noise scale ``sqrt(1 - alpha(s)^2)``.

Every method takes a tensor ``s`` of any shape and returns the same shape and dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class VESchedule:
    """Geometric noise scale of the variance-exploding process.

    Attributes:
        sigma_min: noise scale at ``s = 0`` (> 0).
        sigma_max: noise scale at ``s = 1`` (> sigma_min).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"VE schedule needs 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    @property
    def log_ratio(self) -> float:
        """``log(sigma_max / sigma_min)``."""
        return math.log(self.sigma_max / self.sigma_min)

    def sigma(self, s: Tensor) -> Tensor:
        """``sigma(s)``, same shape as ``s``."""
        return self.sigma_min * torch.exp(s * self.log_ratio)

    def dsigma(self, s: Tensor) -> Tensor:
        """``d sigma / ds = log(sigma_max / sigma_min) sigma(s)``."""
        return self.log_ratio * self.sigma(s)


@dataclass(frozen=True)
class VPSchedule:
    """Linear ``beta`` of the variance-preserving process.

    Attributes:
        beta_min: ``beta(0)`` (>= 0).
        beta_max: ``beta(1)`` (> beta_min).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        if not 0 <= self.beta_min < self.beta_max:
            raise ValueError(f"VP schedule needs 0 <= beta_min < beta_max, got {self.beta_min}, {self.beta_max}")

    def beta(self, s: Tensor) -> Tensor:
        """``beta(s)``."""
        return self.beta_min + s * (self.beta_max - self.beta_min)

    def integral(self, s: Tensor) -> Tensor:
        """``T(s) = int_0^s beta``."""
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s * s

    def alpha(self, s: Tensor) -> Tensor:
        """Signal scale ``exp(-T(s) / 2)``."""
        return torch.exp(-0.5 * self.integral(s))

    def dalpha(self, s: Tensor) -> Tensor:
        """``d alpha / ds = -beta(s) alpha(s) / 2``."""
        return -0.5 * self.beta(s) * self.alpha(s)

    def std(self, s: Tensor) -> Tensor:
        """Noise scale ``sqrt(1 - alpha(s)^2)`` (computed with ``expm1`` for small ``s``)."""
        return torch.sqrt(-torch.expm1(-self.integral(s)))
