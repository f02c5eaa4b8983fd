"""Baselines vs. K-Flow at the same network size, optimizer steps and seeds.

    python scripts/benchmark_assembly.py                         # embedded pyxtal data, both start presets
    python scripts/benchmark_assembly.py seeds=[0,1,2] train.steps=400 model=M
    python scripts/benchmark_assembly.py methods=[identity,rigid_K1,kflow_K2] starts=[local]
    python scripts/benchmark_assembly.py seeds=[0,1] merge=[out/seed0,out/seed1] output_dir=out/both  # no training

Writes ``benchmark.md`` / ``benchmark.csv`` / ``benchmark.json`` into ``output_dir``
(:func:`kflow_mol.benchmark.run_benchmark`; options: :class:`kflow_mol.config.BenchmarkConfig`,
or ``--help``).
"""

import sys

from kflow_mol.benchmark import run_benchmark
from kflow_mol.cli import main
from kflow_mol.config import BenchmarkConfig


def run(cfg: BenchmarkConfig) -> None:
    print(run_benchmark(cfg, command=" ".join(["python scripts/benchmark_assembly.py", *sys.argv[1:]])))


if __name__ == "__main__":
    main("benchmark_assembly", "benchmark_assembly", BenchmarkConfig, run)
