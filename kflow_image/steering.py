"""Steering a trained K-Flow image model (paper, Sec. on steerability).

* Noise splitting — the source's bands are the "seed" of each scale. Sharing the high-band
  noise across a batch and varying the low bands (``share_high``) gives images that differ in
  layout/shape; sharing the low bands and varying the high ones (``share_low``) gives
  variations of the same coarse image.
* Condition dropping — the class only matters while the low scales are generated, so the
  label can be dropped for the last 70% of k (``drop_cond_after=0.3``); CDR (see
  :func:`kflow_image.metrics.class_drop_ratio`) measures the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from kflow.path import KAmplitudePath
from kflow_image.codecs import LatentCodec
from kflow_image.train import GenerationResult, SamplerSpec, generate

SPLIT_DIRECTIONS = ("share_high", "share_low")


def split_bands(num_bands: int, direction: str, split: int = 1) -> list[int]:
    """Bands whose noise is shared.

    Args:
        num_bands: K.
        direction: ``share_high`` (bands ``>= split`` shared, low bands vary) or
            ``share_low`` (bands ``< split`` shared, high bands vary).
        split: first high band.
    """
    if direction not in SPLIT_DIRECTIONS:
        raise ValueError(f"steering: direction must be one of {SPLIT_DIRECTIONS}, got {direction!r}")
    if not 1 <= split < num_bands:
        raise ValueError(f"steering: split={split} must be in 1..{num_bands - 1} (K={num_bands})")
    return list(range(split, num_bands)) if direction == "share_high" else list(range(split))


def noise_split(
    model: nn.Module,
    path: KAmplitudePath,
    num_samples: int,
    data_shape: Sequence[int],
    direction: str = "share_high",
    split: int = 1,
    sampler: SamplerSpec | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    return_trajectory: bool = False,
    codec: LatentCodec | None = None,
) -> GenerationResult:
    """Generate a batch whose source noise shares some bands (see :func:`split_bands`).

    Args:
        model: trained DiT.
        path: its path.
        num_samples: N (all share the chosen bands of sample 0's noise).
        data_shape: ``(C, H, W)``.
        direction: ``share_high`` or ``share_low``.
        split: first high band.
        sampler: integration settings.
        labels: classes ``(N,)`` or ``None``.
        seed: seed of the noise.
        device: where to integrate.
        return_trajectory: keep every step's state.
        codec: latent codec (``data_shape`` is then the latent shape; images are decoded).
    """
    bands = split_bands(path.num_bands, direction, split)
    sampler = sampler if sampler is not None else SamplerSpec()
    return generate(
        model,
        path,
        num_samples,
        data_shape,
        sampler,
        labels=labels,
        shared_bands=bands,
        seed=seed,
        device=device,
        return_trajectory=return_trajectory,
        codec=codec,
    )


def kept_and_dropped(
    model: nn.Module,
    path: KAmplitudePath,
    labels: torch.Tensor,
    data_shape: Sequence[int],
    sampler: SamplerSpec | None = None,
    drop_after: float = 0.3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    codec: LatentCodec | None = None,
) -> tuple[GenerationResult, GenerationResult]:
    """Class-conditional samples from the same noise with the label kept, and dropped after ``drop_after`` K.

    Args:
        model: trained class-conditional DiT.
        path: its path.
        labels: requested classes ``(N,)``.
        data_shape: ``(C, H, W)``.
        sampler: integration settings (its ``drop_cond_after`` is overridden).
        drop_after: fraction of K after which the label is dropped (paper: 0.3).
        seed: seed of the shared noise.
        device: where to integrate.
        codec: latent codec (``data_shape`` is then the latent shape; images are decoded).
    """
    sampler = sampler if sampler is not None else SamplerSpec()

    def run(drop_cond_after: float | None, **source) -> GenerationResult:
        spec = replace(sampler, drop_cond_after=drop_cond_after)
        return generate(model, path, len(labels), data_shape, spec, labels=labels, device=device, codec=codec, **source)

    kept = run(None, seed=seed)
    dropped = run(drop_after, noise=kept.noise)
    return kept, dropped


def swap_bands(x_a: torch.Tensor, x_b: torch.Tensor, transform, bands: Sequence[int]) -> torch.Tensor:
    """Pairwise band mixing: row ``i`` of ``x_b`` with the coefficients of row ``i`` of ``x_a`` in ``bands``.

    Args:
        x_a: source of the coefficients in ``bands``, ``(N, *data_shape)``.
        x_b: source of every other coefficient, ``(N, *data_shape)``.
        transform: a :class:`~kflow.transforms.base.KTransform` with a fixed basis.
        bands: band ids taken from ``x_a``.

    Returns:
        ``(N, *data_shape)``: ``F⁻¹(where(band in bands, F x_a, F x_b))``.
    """
    coeffs_a, coeffs_b = transform.forward(x_a), transform.forward(x_b)
    band_index = transform.band_index_for(None).to(coeffs_a.device)
    taken = torch.isin(band_index, torch.as_tensor(list(bands), device=coeffs_a.device)).expand_as(coeffs_a)
    return transform.inverse(torch.where(taken, coeffs_a, coeffs_b))


@torch.no_grad()
def noise_split_distances(
    model: nn.Module,
    path: KAmplitudePath,
    feature_net,
    num_pairs: int,
    data_shape: Sequence[int],
    num_classes: int = 0,
    split: int = 1,
    sampler: SamplerSpec | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    codec: LatentCodec | None = None,
) -> dict[str, torch.Tensor]:
    """Feature distances of sample pairs that share the low-band noise, the high-band noise, or nothing.

    Anchor ``i`` is drawn from noise ``a_i``; its partners (same class label) from ``b_i`` with
    ``a_i``'s bands ``< split`` (``share_low``), from ``c_i`` with ``a_i``'s bands ``>= split``
    (``share_high``), and from ``b_i`` itself (``independent``). The noise-splitting claim is
    that ``share_low`` pairs are closer than independent ones (the low bands fix the layout).

    Args:
        model: trained DiT (or anything with ``forward_with_cfg``).
        path: its K-amplitude path (K >= 2).
        feature_net: has ``features(images) -> (N, d)`` (e.g. the in-project feature CNN).
        num_pairs: N pairs of each kind (4N samples are generated).
        data_shape: ``(C, H, W)`` of the flow space (latent shape with a codec).
        num_classes: > 1 gives pair ``i`` the class ``i mod num_classes``; else unconditional.
        split: first high band.
        sampler: integration settings.
        seed: seed of the noise.
        device: where to integrate.
        codec: latent codec (images are decoded before the features).

    Returns:
        ``{"share_low", "share_high", "independent"}`` -> Euclidean feature distances ``(N,)``.
    """
    low, high = split_bands(path.num_bands, "share_low", split), split_bands(path.num_bands, "share_high", split)
    a, b, c = torch.randn(3, num_pairs, *data_shape, generator=torch.Generator().manual_seed(seed))
    transform = path.transform
    to = transform.band_index_for(None).device
    partners = [swap_bands(a.to(to), b.to(to), transform, low), swap_bands(a.to(to), c.to(to), transform, high)]
    noise = torch.cat([a, *(p.cpu() for p in partners), b])
    labels = None
    if num_classes > 1:
        labels = (torch.arange(num_pairs) % num_classes).repeat(4)
    sampler = sampler if sampler is not None else SamplerSpec()
    images = generate(
        model, path, len(noise), data_shape, sampler, labels=labels, noise=noise, device=device, codec=codec
    )
    feats = feature_net.features(images.images).reshape(4, num_pairs, -1)
    dist = (feats[1:] - feats[:1]).norm(dim=-1)
    return {"share_low": dist[0], "share_high": dist[1], "independent": dist[2]}


def noise_split_summary(distances: dict[str, torch.Tensor], level: float = 0.95, seed: int = 0) -> dict:
    """Mean distances and the ratios ``mean(shared) / mean(independent)`` with paired bootstrap CIs.

    Args:
        distances: :func:`noise_split_distances`'s result (pairs share anchor ``i``, so the
            bootstrap resamples anchors jointly).
        level: interval coverage.
        seed: seed of the resampling.

    Returns:
        ``mean_<kind>`` for every kind, and ``<kind>_ratio`` / ``<kind>_ratio_ci``
        (:class:`kflow.stats.BootstrapCI` as a dict) for ``share_low`` and ``share_high``.
    """
    from dataclasses import asdict

    from kflow.stats import paired_ratio_ci

    out: dict = {f"mean_{key}": float(value.mean()) for key, value in distances.items()}
    independent = distances["independent"].double().numpy()
    for key in ("share_low", "share_high"):
        ci = paired_ratio_ci(distances[key].double().numpy(), independent, level=level, seed=seed)
        out[f"{key}_ratio"], out[f"{key}_ratio_ci"] = ci.estimate, asdict(ci)
    return out
