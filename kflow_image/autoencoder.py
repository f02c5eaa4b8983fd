"""Train the in-project :class:`~kflow_image.codecs.ConvAutoencoder` (``scripts/train_autoencoder.py``).

Loss: mean squared reconstruction error plus ``latent_penalty * mean(z**2)`` (keeps the
latents bounded, a deterministic stand-in for the KL term of a KL-VAE). After training the
latent scaling factor is set to ``1 / std`` of the training latents, so scaled latents have
unit variance like the N(0, I) source of the flow.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from kflow_image.codecs import AutoencoderCodec, ConvAutoencoder
from kflow_image.data import ImageSplits, stack_dataset


@dataclass
class AutoencoderSettings:
    """``autoencoder.*`` of ``scripts/train_autoencoder.py``: architecture and optimisation.

    Attributes:
        latent_channels: latent channels c.
        hidden: width of the first stage.
        num_down: downsampling stages (latent side = image side / 2**num_down).
        steps: optimiser steps.
        batch_size: images per step.
        lr: peak learning rate (cosine decay to 0).
        latent_penalty: weight of ``mean(z**2)``.
    """

    latent_channels: int = 4
    hidden: int = 16
    num_down: int = 2
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    latent_penalty: float = 1e-3


@dataclass
class AutoencoderResult:
    """What :func:`train_autoencoder` returns.

    Attributes:
        codec: the trained codec (scaling factor set), eval mode.
        train_mse: reconstruction MSE of the last 50 steps (images in [-1, 1]).
        reference_mse: reconstruction MSE on (up to 1,000) held-out reference images.
        reference_psnr: PSNR (dB, peak-to-peak 2) of those reconstructions.
        wall_time_s: training time.
    """

    codec: AutoencoderCodec
    train_mse: float
    reference_mse: float
    reference_psnr: float
    wall_time_s: float


def latent_std(
    autoencoder: ConvAutoencoder, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu"
) -> float:
    """Standard deviation of all latent entries over ``dataset`` (streamed, float64 sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    with torch.no_grad():
        for images, _ in DataLoader(dataset, batch_size=batch_size):
            z = autoencoder.encode(images.to(device)).double()
            total, total_sq, count = total + z.sum().item(), total_sq + z.pow(2).sum().item(), count + z.numel()
    mean = total / count
    return math.sqrt(max(total_sq / count - mean * mean, 1e-12))


def train_autoencoder(
    splits: ImageSplits,
    settings: AutoencoderSettings | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log_every: int = 0,
) -> AutoencoderResult:
    """Fit a :class:`ConvAutoencoder` on ``splits.train`` with AdamW (cosine learning-rate decay).

    Args:
        splits: the data set (images ``(C, H, W)`` in [-1, 1]).
        settings: architecture and optimisation (default :class:`AutoencoderSettings`).
        seed: seeds the initialisation and the data order.
        device: where to train.
        log_every: print the loss every this many steps (0 = never).
    """
    settings = settings if settings is not None else AutoencoderSettings()
    latent_channels, hidden, num_down = settings.latent_channels, settings.hidden, settings.num_down
    steps, batch_size, lr, latent_penalty = settings.steps, settings.batch_size, settings.lr, settings.latent_penalty
    torch.manual_seed(seed)
    channels = splits.image_shape[0]
    autoencoder = ConvAutoencoder(channels, latent_channels, hidden, num_down).to(device)
    optimiser = torch.optim.AdamW(autoencoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(steps, 1))))
    generator = torch.Generator().manual_seed(seed)
    start, step, recent = time.perf_counter(), 0, []
    while step < steps:
        for images, _ in DataLoader(
            splits.train, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator
        ):
            images = images.to(device)
            z = autoencoder.encode(images)
            mse = (autoencoder.decode(z) - images).pow(2).mean()
            loss = mse + latent_penalty * z.pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            recent = (recent + [mse.item()])[-50:]
            if log_every and step % log_every == 0:
                print(f"[autoencoder] step {step}/{steps} mse {mse.item():.5f}", flush=True)
            if step >= steps:
                break
    autoencoder.eval()
    scale = 1.0 / latent_std(autoencoder, splits.train, device=device)
    codec = AutoencoderCodec(autoencoder, scale)
    reference, _ = stack_dataset(splits.reference, max_items=1000)
    with torch.no_grad():
        recon = torch.cat(
            [codec.decode(codec.encode(reference[i : i + 256].to(device))).cpu() for i in range(0, len(reference), 256)]
        )
    ref_mse = (recon - reference).pow(2).mean().item()
    return AutoencoderResult(
        codec,
        sum(recent) / max(len(recent), 1),
        ref_mse,
        10 * math.log10(4.0 / max(ref_mse, 1e-12)),
        time.perf_counter() - start,
    )
