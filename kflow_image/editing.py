"""Band editing: move chosen bands of a sample (e.g. PCA bands of a latent), keep every other band.

With a PCA transform the bands are groups of principal directions, so editing band 0 changes
the dominant, global factors of an image while finer bands stay exactly as they were (and the
reverse). Works for any orthonormal :class:`~kflow.transforms.base.KTransform`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kflow.transforms.base import KTransform


def band_selector(transform: KTransform, bands: Sequence[int]) -> torch.Tensor:
    """Bool mask broadcastable to the coefficients: True on the coefficients of ``bands``."""
    bad = [b for b in bands if not 0 <= int(b) < transform.num_bands]
    if bad or not bands:
        raise ValueError(f"editing: bands {list(bands)} must be a non-empty subset of 0..{transform.num_bands - 1}")
    return torch.isin(
        transform.band_index, torch.as_tensor([int(b) for b in bands], device=transform.band_index.device)
    )


def edit_bands(
    x: torch.Tensor, transform: KTransform, bands: Sequence[int], amount: float, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Move the coefficients of ``bands``; the other coefficients are returned unchanged.

    Without ``target`` the chosen coefficients are scaled by ``1 + amount`` (``amount = -1``
    removes the bands, ``1`` doubles them). With ``target`` they move a fraction ``amount``
    of the way to the target's coefficients (``amount = 1`` swaps the bands in).

    Args:
        x: samples ``(B, *data_shape)`` (latents with a codec).
        transform: the transform defining the bands (e.g. the run's PCA basis).
        bands: band ids to move.
        amount: how far.
        target: ``(B, *data_shape)`` or ``(1, *data_shape)`` samples to move towards.

    Returns:
        Edited samples ``(B, *data_shape)``.
    """
    coeffs = transform.forward(x)
    mask = band_selector(transform, bands).to(coeffs.device)
    if target is None:
        moved = coeffs * (1.0 + amount)
    else:
        moved = coeffs + amount * (transform.forward(target.to(x.dtype)).expand_as(coeffs) - coeffs)
    return transform.inverse(torch.where(mask, moved, coeffs))


def edit_sweep(
    x: torch.Tensor,
    transform: KTransform,
    bands: Sequence[int],
    amounts: Sequence[float],
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every sample edited with every amount: ``(B, len(amounts), *data_shape)`` (rows = samples)."""
    return torch.stack([edit_bands(x, transform, bands, a, target) for a in amounts], dim=1)
