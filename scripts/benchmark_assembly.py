"""Baselines vs. K-Flow on one dataset, same network size, optimizer steps and seeds.

    python scripts/benchmark_assembly.py                         # embedded pyxtal data, both start presets
    python scripts/benchmark_assembly.py seeds=[0,1,2] train.steps=400 model=M
    python scripts/benchmark_assembly.py methods=[identity,rigid_K1,kflow_K2] starts=[local]

Methods: ``identity`` (start state), ``allatom_lerp`` (all-atom Cartesian linear flow
matching, atom head), ``rigid_K1`` (rigid flow matching), ``kflow_K<n>`` (rigid K-Flow with n
graph-spectral bands). Writes ``benchmark.md`` / ``benchmark.csv`` (mean ± std over seeds of
the test-split means) and ``benchmark.json`` (every run) into ``output_dir``.
"""
from __future__ import annotations

import csv
import json
import re
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch_geometric.data import Batch

from kflow.training import ConfigError, TrainConfig, Trainer
from kflow_mol.evaluate import evaluate_method, identity_method, load_clusters
from kflow_mol.flow import translation_scale_of
from kflow_mol.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_assembly import (flow_method, make_flow, model_kwargs, set_cpu_threads, train_config_dict,  # noqa: E402
                            validate)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs" / "assembly")
COLUMNS = ("pm_atom", "pm_center", "rmsd_17", "collision", "separation")


def method_config(cfg: DictConfig, method: str, seed: int) -> DictConfig:
    """The train_assembly config of one benchmark method."""
    run = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    run.train.seed = seed
    if method == "allatom_lerp":
        run.K, run.flow.mode, run.model.head = 1, "cartesian", "atom"
    elif method == "rigid_K1":
        run.K = 1
    elif (match := re.fullmatch(r"kflow_K(\d+)", method)):
        run.K = int(match.group(1))
    else:
        raise ConfigError(f"unknown method {method!r}; use identity, allatom_lerp, rigid_K1 or kflow_K<n>")
    return run


def run_method(cfg, method, seed, train_set, test_set, out_dir: Path) -> dict:
    """Train (unless identity) and score one method with one seed; returns its summary."""
    common = dict(batch_size=cfg.sample.batch_size, device=cfg.device, with_rmsd=cfg.eval.rmsd)
    if method == "identity":
        return {**evaluate_method(method, identity_method, test_set, **common).summary(), "train_wall_s": 0.0}
    run = method_config(cfg, method, seed)
    run.output_dir = str(out_dir / f"{method}_seed{seed}")
    validate(run)
    flow = make_flow(run, translation_scale_of(train_set))
    torch.manual_seed(seed)
    model = build_model(**model_kwargs(run.model))
    trained = Trainer(model, flow.loss, train_set, TrainConfig.from_dict(train_config_dict(run)),
                      collate_fn=Batch.from_data_list).fit()
    scores = evaluate_method(method, flow_method(flow, trained.model, run), test_set, **common)
    return {**scores.summary(), "train_wall_s": trained.wall_time_s, "final_loss": trained.final_loss}


def aggregate(rows: list[dict]) -> dict:
    """Mean and std over seeds of each column."""
    out = {}
    for key in (*COLUMNS, "nfe", "train_wall_s", "wall_s"):
        values = torch.tensor([row[key] for row in rows], dtype=torch.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(unbiased=False)) if len(values) > 1 else 0.0
    return out


def write_tables(results: dict, cfg: DictConfig, out_dir: Path, command: str) -> str:
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
            cells = [f"{agg[c]:.3f} ± {agg[c + '_std']:.3f}" if c != "separation" and c != "collision"
                     else f"{agg[c]:.2f} ± {agg[c + '_std']:.2f}" for c in COLUMNS]
            lines.append(f"| {start} | {method} | " + " | ".join(cells)
                         + f" | {agg['nfe']:.0f} | {agg['train_wall_s']:.0f} | {agg['wall_s']:.1f} |")
            writer.writerow([start, method, *[f"{agg[c + s]:.6g}" for c in COLUMNS for s in ("", "_std")],
                             f"{agg['nfe']:.0f}", f"{agg['train_wall_s']:.2f}", f"{agg['wall_s']:.2f}",
                             agg["n_test"], agg["n_seeds"]])
    table = "\n".join(lines) + "\n"
    (out_dir / "benchmark.md").write_text(table)
    return table


def run(cfg: DictConfig) -> str:
    validate(cfg)
    set_cpu_threads(cfg)
    for method in cfg.methods:
        if method != "identity":
            method_config(cfg, method, 0)  # rejects unknown methods before any work
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = [None] if cfg.data.source == "prepared" else list(cfg.starts)
    results, every_run = {}, []
    for start in starts:
        load = dict(input=cfg.data.input, folder=cfg.data.folder, start=start, repeats=cfg.data.repeats)
        train_set = load_clusters(cfg.data.source, "train", limit=cfg.data.max_train, **load)
        test_set = load_clusters(cfg.data.source, "test", limit=cfg.data.max_test, **load)
        for method in cfg.methods:
            seeds = [0] if method == "identity" else list(cfg.seeds)
            rows = []
            for seed in seeds:
                tic = time.perf_counter()
                row = run_method(cfg, method, seed, train_set, test_set, out_dir / str(start))
                rows.append(row)
                every_run.append({"start": start, "method": method, "seed": seed, **row})
                print(f"[{start}] {method} seed {seed}: PM-atom {row['pm_atom']:.3f} PM-center "
                      f"{row['pm_center']:.3f} ({time.perf_counter() - tic:.0f} s)", file=sys.stderr, flush=True)
            results[(str(start), method)] = {**aggregate(rows), "n_test": len(test_set), "n_seeds": len(rows)}
    (out_dir / "benchmark.json").write_text(json.dumps(every_run, indent=2))
    command = "python scripts/benchmark_assembly.py " + " ".join(hydra_overrides())
    table = write_tables(results, cfg, out_dir, command.strip())
    print(table)
    return table


def hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


@hydra.main(config_path=CONFIG_DIR, config_name="benchmark_assembly", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (ConfigError, FileNotFoundError) as error:
        print(f"benchmark_assembly: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
