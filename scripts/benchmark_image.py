"""All transforms and the plain-FM baseline at equal budget; Markdown/CSV tables, mean ± std over seeds.

    python scripts/benchmark_image.py                          # digits on CPU
    python scripts/benchmark_image.py seeds=[0,1,2] train.steps=2000 benchmark_dir=outputs/image/bench

Writes <benchmark_dir>/results.csv (one row per run), summary.csv and summary.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from kflow.training import ConfigError
from kflow_image.benchmark import run_benchmark
from kflow_image.config import register_hydra_schemas

register_hydra_schemas(ConfigStore.instance())


@hydra.main(config_path="../configs/image", config_name="benchmark_image", version_base="1.3")
def main(cfg: DictConfig) -> None:
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    try:
        run_benchmark(plain)
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    print((Path(plain["benchmark_dir"]) / "summary.md").read_text())


if __name__ == "__main__":
    main()
