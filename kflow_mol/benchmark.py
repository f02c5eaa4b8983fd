"""The assembly benchmark: every method trained at the same budget and seeds, scored alike.

Methods are named as in :func:`kflow_mol.config.method_overrides`: ``identity`` (the start
state), ``crystalflow_lerp`` (all-atom Cartesian linear flow matching, atom head),
``rigid_K1`` (rigid flow matching) and ``kflow_K<n>`` (rigid K-Flow with n graph-spectral
bands). :func:`run_benchmark` writes ``benchmark.md`` / ``benchmark.csv`` (mean ± std over
seeds of the test-split means) and ``benchmark.json`` (every run).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from kflow_mol.config import BenchmarkConfig, method_overrides, with_method
from kflow_mol.evaluate import evaluate_method, identity_method
from kflow_mol.experiment import load_split, set_cpu_threads, train, validate

COLUMNS = ("pm_atom", "pm_center", "rmsd_17", "collision", "separation")


def run_method(cfg: BenchmarkConfig, method: str, seed: int, train_set: list, test_set: list,
               out_dir: Path) -> dict:
    """Train (unless identity) and score one method with one seed; returns its summary."""
    common = dict(batch_size=cfg.sample.batch_size, device=cfg.device, with_rmsd=cfg.eval.rmsd)
    if method == "identity":
        return {**evaluate_method(method, identity_method, test_set, **common).summary(), "train_wall_s": 0.0}
    run = with_method(cfg, method, seed)
    run.output_dir = str(out_dir / f"{method}_seed{seed}")
    trained = train(run, train_set)
    scores = evaluate_method(method, trained.predictor(run), test_set, **common)
    return {**scores.summary(), "train_wall_s": trained.result.wall_time_s, "final_loss": trained.result.final_loss}


def aggregate(rows: list[dict]) -> dict:
    """Mean and (population) std over seeds of each column."""
    out = {}
    for key in (*COLUMNS, "nfe", "train_wall_s", "wall_s"):
        values = torch.tensor([row[key] for row in rows], dtype=torch.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(unbiased=False)) if len(values) > 1 else 0.0
    return out


def write_tables(results: dict, cfg: BenchmarkConfig, out_dir: Path, command: str) -> str:
    """benchmark.md and benchmark.csv from ``{(start, method): aggregate}``; returns the markdown."""
    header = ["start", "method", "PM-atom (Å)", "PM-center (Å)", "RMSD_17 (Å)", "collision (%)",
              "separation (%)", "NFE", "train (s)", "sample (s)"]
    lines = [f"Command: `{command}`", "",
             f"Model preset {cfg.model.preset}, {cfg.train.steps} optimizer steps, batch {cfg.train.batch_size}, "
             f"lr {cfg.train.lr}, seeds {list(cfg.seeds)}, {cfg.sample.method} with {cfg.sample.steps} steps in total; "
             "mean ± std over seeds of the test-split means.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with open(out_dir / "benchmark.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start", "method", *[f"{c}{s}" for c in COLUMNS for s in ("", "_std")],
                         "nfe", "train_wall_s", "sample_wall_s", "n_test", "n_seeds"])
        for (start, method), agg in results.items():
            cells = [f"{agg[c]:.3f} ± {agg[c + '_std']:.3f}" if c not in ("separation", "collision")
                     else f"{agg[c]:.2f} ± {agg[c + '_std']:.2f}" for c in COLUMNS]
            lines.append(f"| {start} | {method} | " + " | ".join(cells)
                         + f" | {agg['nfe']:.0f} | {agg['train_wall_s']:.0f} | {agg['wall_s']:.1f} |")
            writer.writerow([start, method, *[f"{agg[c + s]:.6g}" for c in COLUMNS for s in ("", "_std")],
                             f"{agg['nfe']:.0f}", f"{agg['train_wall_s']:.2f}", f"{agg['wall_s']:.2f}",
                             agg["n_test"], agg["n_seeds"]])
    table = "\n".join(lines) + "\n"
    (out_dir / "benchmark.md").write_text(table)
    return table


def run_benchmark(cfg: BenchmarkConfig, command: str = "python scripts/benchmark_assembly.py") -> str:
    """Train and score every method of ``cfg.methods`` on every start preset; returns the table."""
    for method in cfg.methods:
        if method != "identity":
            validate(with_method(cfg, method))  # every method's config is checked before any work
        else:
            method_overrides(method)
    set_cpu_threads(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = [None] if cfg.data.source == "prepared" else list(cfg.starts)
    results, every_run = {}, []
    for start in starts:
        data = dataclasses.replace(cfg.data, start=start)
        train_set = load_split(data, "train", limit=data.max_train)
        test_set = load_split(data, "test", limit=data.max_test)
        for method in cfg.methods:
            rows = []
            for seed in [0] if method == "identity" else list(cfg.seeds):
                tic = time.perf_counter()
                row = run_method(cfg, method, seed, train_set, test_set, out_dir / str(start))
                rows.append(row)
                every_run.append({"start": start, "method": method, "seed": seed, **row})
                print(f"[{start}] {method} seed {seed}: PM-atom {row['pm_atom']:.3f} PM-center "
                      f"{row['pm_center']:.3f} ({time.perf_counter() - tic:.0f} s)", file=sys.stderr, flush=True)
            results[(str(start), method)] = {**aggregate(rows), "n_test": len(test_set), "n_seeds": len(rows)}
    (out_dir / "benchmark.json").write_text(json.dumps(every_run, indent=2))
    return write_tables(results, cfg, out_dir, command.strip())
