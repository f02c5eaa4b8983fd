"""All transforms and the plain-FM baseline at equal budget; Markdown/CSV tables, mean ± std over seeds.

    python scripts/benchmark_image.py                          # digits on CPU
    python scripts/benchmark_image.py seeds=[0,1,2] train.steps=2000 benchmark_dir=outputs/image/bench

Writes <benchmark_dir>/results.csv (one row per run), summary.csv and summary.md.
"""

from __future__ import annotations

from pathlib import Path

from kflow_image.benchmark import run_benchmark
from kflow_image.cli import main, renamed_keys
from kflow_image.config import BenchmarkConfig


def benchmark(cfg: BenchmarkConfig) -> None:
    run_benchmark(cfg)
    print((Path(cfg.benchmark_dir) / "summary.md").read_text())


if __name__ == "__main__":
    main("benchmark_image", "benchmark_image", BenchmarkConfig, benchmark, edit_overrides=renamed_keys)
