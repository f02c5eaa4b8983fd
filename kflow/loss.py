"""Conditional flow matching along k: the k draw and the regression loss.

The model is trained to regress the path velocity ``dx_k`` from ``(x_k, k / K, cond)``.
Because every shipped transform is orthonormal, the MSE in data space equals the MSE over
all coefficients; ``current_band_only`` restricts it to the coefficients of the moving band
(the others have zero target velocity, which the model must still learn to output unless
the sampler masks them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kflow.path import KAmplitudePath, PathSample


def sample_k(
    batch_size: int,
    num_bands: int,
    band_probs: torch.Tensor | Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw training amplitudes ``k`` in ``[0, K)``.

    Args:
        batch_size: number of draws B.
        num_bands: K.
        band_probs: optional weights over bands, shape ``(K,)`` (e.g. band energies from
            :func:`kflow.transforms.bands.band_energy`); a band is drawn with these odds and
            ``k`` is uniform inside it. ``None`` means uniform on ``[0, K)``.
        generator: torch RNG for reproducible draws.
        device: where to put the result.
        dtype: float dtype of the result.

    Returns:
        ``k``, shape ``(B,)``.
    """
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1, got {num_bands}")
    u = torch.rand(batch_size, generator=generator, dtype=dtype, device=device)
    if band_probs is None:
        return u * num_bands
    probs = torch.as_tensor(band_probs, dtype=torch.float64).flatten()
    if probs.numel() != num_bands or not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError(f"band_probs must be {num_bands} finite non-negative weights, got {probs}")
    if probs.sum() <= 0:
        raise ValueError("band_probs must not all be zero")
    band = torch.multinomial(probs.to(u.device), batch_size, replacement=True, generator=generator)
    return band.to(dtype) + u


def flow_matching_loss(
    pred: torch.Tensor,
    sample: PathSample,
    path: KAmplitudePath | None = None,
    context: Any = None,
    current_band_only: bool = False,
) -> torch.Tensor:
    """Mean squared error between the predicted and the path velocity.

    Args:
        pred: model output, shape ``(B, *data_shape)``.
        sample: the :class:`PathSample` the model was evaluated on.
        path: required when ``current_band_only`` (to know the band layout).
        context: transform context, for per-sample bases.
        current_band_only: average only over coefficients of the band moving at ``k``.

    Returns:
        Scalar loss.
    """
    if pred.shape != sample.dx_k.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target {tuple(sample.dx_k.shape)}")
    error = pred - sample.dx_k
    if not current_band_only:
        return error.pow(2).mean()
    if path is None:
        raise ValueError("current_band_only needs the path (for its band layout)")
    coeff_error = path.transform.forward(error, context)
    mask = path.band_mask(sample.k, context, like=coeff_error)
    return (coeff_error.pow(2) * mask).sum() / mask.sum().clamp_min(1.0)
