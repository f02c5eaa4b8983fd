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
