"""Train the in-project convolutional autoencoder: the codec of offline latent K-Flow.

    python scripts/train_autoencoder.py data=mnist            # -> outputs/image/autoencoder-mnist.pt
    python scripts/train_image.py data=mnist codec=autoencoder

Keys and defaults: kflow_image/config.py (AutoencoderRunConfig) and
kflow_image/autoencoder.py (AutoencoderSettings), or ``--help``.
"""

from __future__ import annotations

import json

import torch

from kflow_image.autoencoder import train_autoencoder
from kflow_image.cli import main
from kflow_image.config import AutoencoderRunConfig
from kflow_image.experiment import load_splits


def train(run: AutoencoderRunConfig) -> None:
    splits = load_splits(run.data)
    result = train_autoencoder(
        splits, run.autoencoder, seed=run.seed, device=torch.device(run.device), log_every=run.log_every
    )
    summary = {
        "output": run.output,
        "latent_shape": list(result.codec.latent_shape(splits.image_shape)),
        "scale": result.codec.scale,
        "train_mse": result.train_mse,
        "reference_mse": result.reference_mse,
        "reference_psnr_db": result.reference_psnr,
        "wall_time_s": result.wall_time_s,
    }
    result.codec.save(run.output, extra={"data": splits.name, "image_shape": list(splits.image_shape), **summary})
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main("train_autoencoder", "train_autoencoder", AutoencoderRunConfig, train)
