"""Train the in-project convolutional autoencoder: the codec of offline latent K-Flow.

    python scripts/train_autoencoder.py data=mnist            # -> outputs/image/autoencoder-mnist.pt
    python scripts/train_image.py data=mnist codec=autoencoder

Keys and defaults: kflow_image/config.py (AutoencoderRunConfig) and
kflow_image/autoencoder.py (AutoencoderSettings).
"""

from __future__ import annotations

import json
import sys

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from kflow.training import ConfigError
from kflow_image.autoencoder import train_autoencoder
from kflow_image.config import AutoencoderRunConfig, register_hydra_schemas
from kflow_image.experiment import load_splits

register_hydra_schemas(ConfigStore.instance())


@hydra.main(config_path="../configs/image", config_name="train_autoencoder", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run = AutoencoderRunConfig.from_dict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
        splits = load_splits(run.data)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        sys.exit(f"train_autoencoder: {err}")
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
    main()
