"""Integrating dx/dk from k = 0 to K, one band at a time, and the steering options.

The velocity along the K-amplitude path jumps at band edges (it moves a different set of
coefficients on each side), so the sampler integrates every band on its own interval
``[b, b + 1]`` and a step never straddles an edge. A velocity evaluation inside an interval
``[a, b)`` is taken at ``min(k, b - edge_eps)``: the network is asked about the band being
integrated, never about the next one.

Steering (from the paper):
  * noise splitting: :func:`share_bands` copies chosen bands of the source from one sample
    to the whole batch, so samples share those scales and differ in the rest;
  * condition dropping: ``drop_cond_after=f`` passes ``cond=None`` once ``k >= f K``;
  * reversed order: build the path with ``KAmplitudePath(..., reverse=True)``;
  * training-free restoration: start at ``k_start`` with the observed bands already in
    place and clamp them after every step with ``fixed_coeffs`` / ``fixed_mask``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kflow.path import KAmplitudePath

VelocityFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``velocity_fn(x (B, *data_shape), s (B,) = k / K, cond) -> dx/dk (B, *data_shape)``."""

FIXED_STEP_METHODS = {"euler": 1, "heun": 2, "rk4": 4}
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun")


@dataclass
class SampleResult:
    """Output of :meth:`KFlowSampler.sample`.

    Attributes:
        x: final state, shape ``(B, *data_shape)``.
        nfe: number of velocity evaluations (each on the whole batch).
        trajectory: states after every step (first entry: the start), or ``None``.
        ks: the k value of every trajectory entry, or ``None``.
    """

    x: torch.Tensor
    nfe: int
    trajectory: list[torch.Tensor] | None = None
    ks: list[float] | None = None


def allocate_steps(total_steps: int, band_weights: Sequence[float] | torch.Tensor) -> list[int]:
    """Split ``total_steps`` over bands in proportion to ``band_weights`` (at least 1 each).

    Uses largest remainders, so the result sums to ``max(total_steps, K)`` exactly.

    Args:
        total_steps: steps for the whole k interval.
        band_weights: non-negative weights, shape ``(K,)`` (e.g. band energies).

    Returns:
        Steps per band, a list of K ints.
    """
    weights = torch.as_tensor(band_weights, dtype=torch.float64).flatten()
    num_bands = weights.numel()
    if num_bands == 0 or (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError(f"band_weights must be finite and non-negative, got {weights.tolist()}")
    spare = max(total_steps, num_bands) - num_bands
    share = weights / weights.sum() if weights.sum() > 0 else torch.full_like(weights, 1 / num_bands)
    exact = share * spare
    steps = torch.floor(exact).long()
    leftover = spare - int(steps.sum())
    order = torch.argsort(exact - steps, descending=True, stable=True)
    steps[order[:leftover]] += 1
    return (steps + 1).tolist()


def share_bands(
    x0: torch.Tensor,
    transform,
    bands: Sequence[int],
    context: Any = None,
    reference: int = 0,
) -> torch.Tensor:
    """Noise splitting: give every sample the chosen bands of sample ``reference``.

    Args:
        x0: source batch, shape ``(B, *data_shape)``.
        transform: a :class:`~kflow.transforms.base.KTransform` with a fixed basis.
        bands: band ids to share across the batch.
        context: transform context, if any.
        reference: index of the sample whose bands are copied.

    Returns:
        New source batch, shape ``(B, *data_shape)``, whose coefficients in ``bands`` are
        identical across the batch and whose other coefficients are those of ``x0``.
    """
    coeffs = transform.forward(x0, context)
    band_index = transform.band_index_for(context).to(coeffs.device)
    shared = torch.isin(band_index, torch.as_tensor(list(bands), device=coeffs.device))
    shared = shared.expand_as(coeffs)
    mixed = torch.where(shared, coeffs[reference : reference + 1].expand_as(coeffs), coeffs)
    return transform.inverse(mixed, context)


class _Trajectory:
    """States after every step and their k values, or nothing when not asked for."""

    def __init__(self, x: torch.Tensor, k_start: float, keep: bool):
        self.states = [x] if keep else None
        self.ks = [float(k_start)] if keep else None

    def add(self, x: torch.Tensor, k: float) -> None:
        if self.states is not None:
            self.states.append(x)
            self.ks.append(k)


class KFlowSampler:
    """ODE sampler along the K-amplitude path.

    Args:
        path: the :class:`~kflow.path.KAmplitudePath` the model was trained on.
        edge_eps: how far before an interval's right end the last evaluation is taken.
    """

    def __init__(self, path: KAmplitudePath, edge_eps: float = 1e-5):
        self.path = path
        self.edge_eps = edge_eps

    def breakpoints(self, k_start: float, drop_cond_after: float | None) -> list[float]:
        """Interval edges in ``[k_start, K]``: band edges and the condition-drop point."""
        num_bands = self.path.num_bands
        if not 0 <= k_start <= num_bands:
            raise ValueError(f"k_start must be in [0, {num_bands}], got {k_start}")
        edges = {float(b) for b in range(math.ceil(k_start), num_bands + 1)} | {float(k_start)}
        if drop_cond_after is not None:
            if not 0 <= drop_cond_after <= 1:
                raise ValueError(f"drop_cond_after is a fraction of K in [0, 1], got {drop_cond_after}")
            k_drop = drop_cond_after * num_bands
            if k_start < k_drop < num_bands:
                edges.add(k_drop)
        return sorted(edges)

    def _steps_for(self, a: float, b: float, steps_per_band: int | Sequence[int]) -> int:
        position = min(int(math.floor(a)), self.path.num_bands - 1)
        if isinstance(steps_per_band, int):
            per_band = steps_per_band
        else:
            if len(steps_per_band) != self.path.num_bands:
                raise ValueError(f"steps_per_band needs {self.path.num_bands} entries, got {len(steps_per_band)}")
            band = self.path.num_bands - 1 - position if self.path.reverse else position
            per_band = int(steps_per_band[band])
        if per_band < 1:
            raise ValueError(f"steps per band must be >= 1, got {per_band}")
        return max(1, round(per_band * (b - a)))

    @torch.no_grad()
    def sample(
        self,
        velocity_fn: VelocityFn,
        x0: torch.Tensor,
        *,
        cond: Any = None,
        context: Any = None,
        method: str = "euler",
        steps_per_band: int | Sequence[int] = 10,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        drop_cond_after: float | None = None,
        k_start: float = 0.0,
        fixed_coeffs: torch.Tensor | None = None,
        fixed_mask: torch.Tensor | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SampleResult:
        """Integrate from ``k_start`` to ``K``.

        Args:
            velocity_fn: ``(x, s, cond) -> dx/dk`` with ``s = k / K`` of shape ``(B,)``.
            x0: start state, shape ``(B, *data_shape)``.
            cond: condition passed to ``velocity_fn`` (e.g. class labels ``(B,)``).
            context: transform context (only used for ``fixed_coeffs``).
            method: ``euler``, ``heun``, ``rk4`` (fixed steps) or ``dopri5`` (adaptive,
                torchdiffeq); other torchdiffeq adaptive names also work.
            steps_per_band: fixed-step count per band, one int or one per band id
                (see :func:`allocate_steps` for energy-weighted counts).
            atol: absolute tolerance of adaptive methods.
            rtol: relative tolerance of adaptive methods.
            drop_cond_after: fraction of K after which ``cond=None`` is passed.
            k_start: where to start (a band edge for restoration).
            fixed_coeffs: coefficients ``(B, *coeff_shape)`` to hold where ``fixed_mask``.
            fixed_mask: bool, broadcastable to ``(B, *coeff_shape)``; those coefficients are
                reset to ``fixed_coeffs`` at the start and after every step (adaptive
                methods: after every interval), and so are exact in the result.
            return_trajectory: keep the state after every step.
            progress: show a tqdm bar over intervals.

        Returns:
            :class:`SampleResult`.
        """
        self._check_options(method, fixed_coeffs, fixed_mask)
        edges = self.breakpoints(k_start, drop_cond_after)
        k_drop = None if drop_cond_after is None else drop_cond_after * self.path.num_bands
        x = self._clamp(x0, fixed_coeffs, fixed_mask, context)
        trajectory = _Trajectory(x, k_start, keep=return_trajectory)
        settle = self._settler(fixed_coeffs, fixed_mask, context, trajectory)
        nfe = 0
        for a, b in self._intervals(edges, progress):
            interval_cond = None if (k_drop is not None and a >= k_drop) else cond
            field = self._field(velocity_fn, interval_cond, x, b)
            x, used = self._integrate_interval(field, x, (a, b), method, steps_per_band, (atol, rtol), settle)
            nfe += used
        return SampleResult(x=x, nfe=nfe, trajectory=trajectory.states, ks=trajectory.ks)

    @staticmethod
    def _check_options(method: str, fixed_coeffs, fixed_mask) -> None:
        """Refuse an unknown method or a lone ``fixed_coeffs`` / ``fixed_mask``."""
        if (fixed_coeffs is None) != (fixed_mask is None):
            raise ValueError("fixed_coeffs and fixed_mask go together")
        if method not in ADAPTIVE_METHODS and method not in FIXED_STEP_METHODS:
            raise ValueError(f"unknown method {method!r}; use {sorted(FIXED_STEP_METHODS)} or {ADAPTIVE_METHODS}")

    @staticmethod
    def _intervals(edges: list[float], progress: bool):
        """Consecutive ``(a, b)`` pairs of ``edges``, wrapped in a tqdm bar if ``progress``."""
        intervals = list(zip(edges[:-1], edges[1:]))
        if progress:
            from tqdm.auto import tqdm

            intervals = tqdm(intervals, desc="sampling k", leave=False)
        return intervals

    def _settler(self, fixed_coeffs, fixed_mask, context, trajectory: _Trajectory):
        """``settle(x, k)``: clamp the fixed coefficients of a new state and record it."""

        def settle(x: torch.Tensor, k: float) -> torch.Tensor:
            x = self._clamp(x, fixed_coeffs, fixed_mask, context)
            trajectory.add(x, k)
            return x

        return settle

    def _integrate_interval(self, field, x, interval, method, steps_per_band, tolerances, settle):
        """Integrate one interval ``(a, b)`` inside a band; returns the new state and its NFE.

        Fixed-step methods settle (clamp and record) after every step; adaptive methods once,
        at ``b``.
        """
        a, b = interval
        if method in ADAPTIVE_METHODS:
            x, used = self._integrate_adaptive(field, x, a, b, method, *tolerances)
            return settle(x, b), used
        n_steps = self._steps_for(a, b, steps_per_band)
        h = (b - a) / n_steps
        for i in range(n_steps):
            k = a + i * h
            x = settle(self._step(field, x, k, h, method), k + h)
        return x, n_steps * FIXED_STEP_METHODS[method]

    def _field(self, velocity_fn: VelocityFn, cond: Any, like: torch.Tensor, right_end: float):
        """Velocity as a function of ``(k, x)``, never evaluated at or past ``right_end``."""
        num_bands = self.path.num_bands
        last = right_end - self.edge_eps

        def field(k: float, x: torch.Tensor) -> torch.Tensor:
            s = torch.full((x.shape[0],), min(k, last) / num_bands, dtype=x.dtype, device=x.device)
            return velocity_fn(x, s, cond)

        return field

    @staticmethod
    def _step(field, x: torch.Tensor, k: float, h: float, method: str) -> torch.Tensor:
        if method == "euler":
            return x + h * field(k, x)
        if method == "heun":
            v0 = field(k, x)
            v1 = field(k + h, x + h * v0)
            return x + 0.5 * h * (v0 + v1)
        v1 = field(k, x)
        v2 = field(k + h / 2, x + h / 2 * v1)
        v3 = field(k + h / 2, x + h / 2 * v2)
        v4 = field(k + h, x + h * v3)
        return x + h / 6 * (v1 + 2 * v2 + 2 * v3 + v4)

    @staticmethod
    def _integrate_adaptive(field, x, a: float, b: float, method: str, atol: float, rtol: float):
        from torchdiffeq import odeint

        calls = 0

        def rhs(k: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            return field(float(k), state)

        times = torch.tensor([a, b], dtype=x.dtype, device=x.device)
        # step_t makes the solver land on b instead of stepping past it and interpolating
        # back, which would integrate the next band's velocity.
        out = odeint(rhs, x, times, method=method, atol=atol, rtol=rtol, options={"step_t": times[1:]})
        return out[-1], calls

    def _clamp(self, x, fixed_coeffs, fixed_mask, context):
        if fixed_coeffs is None:
            return x
        transform = self.path.transform
        coeffs = transform.forward(x, context)
        coeffs = torch.where(fixed_mask.to(coeffs.device), fixed_coeffs.to(coeffs), coeffs)
        return transform.inverse(coeffs, context)
