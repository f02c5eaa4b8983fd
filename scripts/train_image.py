"""Train and evaluate one K-Flow image model (or plain FM with transform=none).

    python scripts/train_image.py data=digits transform=fourier train.steps=2000 output_dir=outputs/img
    python scripts/train_image.py data=mnist codec=autoencoder        # latent K-Flow (train_autoencoder.py first)
    python scripts/train_image.py experiment=celebahq256 data.root=... codec.path=...   # the paper's setting

Keys and defaults: kflow_image/config.py (ImageRunConfig), or ``--help``. A bad key, value or input file
(data folder, codec, Inception) is refused in one line, exit code 2, before the output folder is made.

Writes <output_dir>/metrics.json (fd, kid, precision, recall, accuracy, cdr, nfe, ...),
checkpoints, train_log.csv, loss_curve.png, samples.png, spectra.png, band_energy.png.
"""

from __future__ import annotations

import json
from pathlib import Path

from kflow.training import exit_on_training_error
from kflow_image.cli import main, renamed_keys
from kflow_image.config import ImageRunConfig
from kflow_image.experiment import run_experiment

SUMMARY_KEYS = ("fd", "fd_net", "kid", "precision", "recall", "accuracy", "cdr", "nfe", "train_time_s")


def train(cfg: ImageRunConfig) -> None:
    metrics = run_experiment(cfg)
    if not metrics:  # a non-zero rank under torchrun: rank 0 reports
        return
    print(json.dumps({k: metrics.get(k) for k in SUMMARY_KEYS}, indent=2))
    print(f"wrote {Path(cfg.output_dir) / 'metrics.json'}")


if __name__ == "__main__":
    main("train_image", "train_image", ImageRunConfig, train, guard=exit_on_training_error, edit_overrides=renamed_keys)
