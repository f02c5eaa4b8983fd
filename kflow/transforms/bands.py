"""Grouping coefficients into scale bands, and measuring the energy each band holds.

Every transform orders its coefficients by a scalar "scale value" (Fourier radius, wavelet
level, PCA rank, Laplacian eigenvalue). :func:`group_bands` turns those values into integer
bands, low values first. Coefficients with equal values (a Fourier shell, a degenerate
eigenspace) always share a band: the cuts are placed only between distinct values, which keeps
the bands radially symmetric and makes them independent of how ties are ordered.
"""

from __future__ import annotations

from typing import Any

import torch

GROUPING_MODES = ("equal_count", "equal_radius", "equal_energy")


def group_bands(
    values: torch.Tensor,
    num_bands: int | None,
    mode: str = "equal_count",
    energy: torch.Tensor | None = None,
    allow_empty: bool = False,
    tie_tol: float = 1e-9,
) -> torch.LongTensor:
    """Assign a band to every coefficient from its scale value, low values first.

    Modes:
        ``equal_count``: each band holds about the same number of coefficients.
        ``equal_radius``: bands have about equal width in value (cuts near
        ``min + b (max - min) / num_bands``).
        ``equal_energy``: each band holds about the same total ``energy`` (per-coefficient
        energies, e.g. mean squared coefficients measured on data).

    Cuts only fall between distinct values; each cut is the admissible one nearest its target
    (ties go to the lower cut). ``num_bands=None`` gives one band per distinct value.

    Args:
        values: scale value per coefficient, any shape ``S``.
        num_bands: number of bands ``K``, or ``None`` for one band per distinct value.
        mode: one of ``GROUPING_MODES``.
        energy: per-coefficient energy, shape ``S``; required for ``equal_energy``.
        allow_empty: if there are fewer distinct values than bands, let cuts coincide (some
            bands stay empty) instead of raising.
        tie_tol: values closer than ``tie_tol * max(1, max|values|)`` count as equal.

    Returns:
        LongTensor of shape ``S`` with bands in ``0 .. K-1``, on the device of ``values``.

    Raises:
        ValueError: unknown mode, missing energy, or more bands than distinct values.
    """
    if mode not in GROUPING_MODES:
        raise ValueError(f"group_bands: unknown mode {mode!r}; expected one of {GROUPING_MODES}")
    flat = values.detach().reshape(-1).to(torch.float64)
    if flat.numel() == 0:
        raise ValueError("group_bands: values is empty")
    group_of, group_values = _tie_groups(flat, tie_tol)
    num_groups = group_values.numel()
    if num_bands is None:
        return group_of.reshape(values.shape).to(values.device)
    if num_bands < 1:
        raise ValueError(f"group_bands: num_bands must be >= 1, got {num_bands}")
    if num_bands > num_groups and not allow_empty:
        raise ValueError(
            f"group_bands: {num_bands} bands requested but only {num_groups} distinct values; "
            "lower num_bands or use num_bands=None (one band per distinct value)"
        )
    weights = _group_weights(flat, group_of, num_groups, mode, energy, values.shape)
    band_of_group = _cut_groups(weights, group_values, num_bands, mode)
    return band_of_group[group_of].reshape(values.shape).to(values.device)


def _tie_groups(flat: torch.Tensor, tie_tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each value's tie group (groups sorted by value) and each group's value."""
    order = torch.argsort(flat, stable=True)
    sorted_values = flat[order]
    tol = tie_tol * max(1.0, float(sorted_values.abs().max()))
    starts_new = torch.ones_like(sorted_values, dtype=torch.bool)
    starts_new[1:] = (sorted_values[1:] - sorted_values[:-1]) > tol
    group_sorted = torch.cumsum(starts_new.long(), 0) - 1
    group_of = torch.empty_like(group_sorted)
    group_of[order] = group_sorted
    return group_of, sorted_values[starts_new]


def _group_weights(
    flat: torch.Tensor,
    group_of: torch.Tensor,
    num_groups: int,
    mode: str,
    energy: torch.Tensor | None,
    shape: torch.Size,
) -> torch.Tensor:
    """Weight of each tie group in the quantity the mode equalises."""
    if mode == "equal_energy":
        if energy is None:
            raise ValueError("group_bands: mode 'equal_energy' needs per-coefficient `energy`")
        if energy.numel() != flat.numel():
            raise ValueError(
                f"group_bands: energy has {energy.numel()} entries, values has {flat.numel()} (shape {tuple(shape)})"
            )
        per_coeff = energy.detach().reshape(-1).to(device=flat.device, dtype=torch.float64)
        if (per_coeff < 0).any() or not torch.isfinite(per_coeff).all():
            raise ValueError("group_bands: energy must be finite and non-negative")
        if per_coeff.sum() <= 0:
            raise ValueError("group_bands: energy sums to zero; cannot cut equal-energy bands")
    else:
        per_coeff = torch.ones_like(flat)
    return torch.zeros(num_groups, dtype=torch.float64, device=flat.device).index_add_(0, group_of, per_coeff)


def _cut_groups(weights: torch.Tensor, group_values: torch.Tensor, num_bands: int, mode: str) -> torch.LongTensor:
    """Band of each tie group, cutting the ordered groups into ``num_bands`` runs."""
    num_groups = weights.numel()
    if num_groups == 1:
        return torch.zeros(1, dtype=torch.long, device=weights.device)
    if mode == "equal_radius":
        # Boundary after group j sits halfway to the next value; targets are equal-width.
        positions = 0.5 * (group_values[:-1] + group_values[1:])
        lo, hi = group_values[0], group_values[-1]
        targets = [lo + (hi - lo) * b / num_bands for b in range(1, num_bands)]
    else:
        positions = torch.cumsum(weights, 0)[:-1]
        total = weights.sum()
        targets = [total * b / num_bands for b in range(1, num_bands)]
    positions = positions.cpu().tolist()
    cuts: list[int] = []  # cut c means groups 0..c-1 lie below it
    strict = num_bands <= num_groups
    for b, target in enumerate(targets, start=1):
        low = (cuts[-1] + 1 if strict else cuts[-1]) if cuts else 1
        high = num_groups - (num_bands - b) if strict else num_groups - 1
        best = min(range(low, high + 1), key=lambda c: (abs(positions[c - 1] - float(target)), c))
        cuts.append(best)
    band_of_group = torch.zeros(num_groups, dtype=torch.long)
    for cut in cuts:
        band_of_group[cut:] += 1
    return band_of_group.to(weights.device)


def coefficient_energy(transform: Any, x: torch.Tensor, context: Any = None) -> torch.Tensor:
    """Mean squared value of every coefficient over a batch (input for ``equal_energy``).

    Args:
        transform: a ``KTransform``.
        x: data, shape ``(B, *data_shape)``.
        context: per-batch basis information for sample-dependent transforms.

    Returns:
        Tensor of shape ``coeff_shape``: ``mean_b coeffs[b]**2``.
    """
    with torch.no_grad():
        coeffs = transform.forward(x, context)
    return coeffs.pow(2).mean(0)


def band_energy(transform: Any, x: torch.Tensor, context: Any = None) -> torch.Tensor:
    """Energy per band: squared coefficients summed within a band, averaged over the batch.

    Because the shipped transforms are orthonormal, the entries sum to the mean squared
    norm of ``x``.

    Args:
        transform: a ``KTransform``.
        x: data, shape ``(B, *data_shape)``.
        context: per-batch basis information for sample-dependent transforms.

    Returns:
        Tensor of shape ``(num_bands,)``, dtype of ``x``.
    """
    with torch.no_grad():
        coeffs = transform.forward(x, context)
    bands = transform.band_index_for(context).to(coeffs.device).expand_as(coeffs)
    energy = torch.zeros(transform.num_bands, dtype=coeffs.dtype, device=coeffs.device)
    energy.index_add_(0, bands.reshape(-1), coeffs.pow(2).reshape(-1))
    return energy / coeffs.shape[0]
