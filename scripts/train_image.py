"""Train and evaluate one K-Flow image model (or plain FM with transform=none).

    python scripts/train_image.py data=digits transform=fourier train.steps=2000 output_dir=outputs/img
    python scripts/train_image.py data=mnist codec=autoencoder        # latent K-Flow (train_autoencoder.py first)
    python scripts/train_image.py experiment=celebahq256 data.root=... codec.path=...   # the paper's setting

Keys and defaults: kflow_image/config.py (ImageRunConfig); unknown keys are refused before any work.

Writes <output_dir>/metrics.json (fd, kid, precision, recall, accuracy, cdr, nfe, ...),
checkpoints, train_log.csv, loss_curve.png, samples.png, spectra.png, band_energy.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from kflow.training import exit_on_training_error
from kflow_image.config import register_hydra_schemas
from kflow_image.experiment import run_experiment

register_hydra_schemas(ConfigStore.instance())

SUMMARY_KEYS = ("fd", "fd_net", "kid", "precision", "recall", "accuracy", "cdr", "nfe", "train_time_s")


@hydra.main(config_path="../configs/image", config_name="train_image", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_training_error("train_image"):
        metrics = run_experiment(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    if not metrics:  # a non-zero rank under torchrun: rank 0 reports
        return
    summary = {k: metrics.get(k) for k in SUMMARY_KEYS}
    print(json.dumps(summary, indent=2))
    print(f"wrote {Path(cfg.output_dir) / 'metrics.json'}")


if __name__ == "__main__":
    main()
