"""Throughput of the assembly model: training clusters/s and sampling time per cluster vs. steps.

    python scripts/bench_assembly.py                       # CPU (and CUDA when available)
    python scripts/bench_assembly.py --presets S M --steps 1 4 16 --devices cpu

Uses the embedded pyxtal training clusters (real sizes: 153-1292 atoms per cluster). Timings
are medians over repeats after a warm-up; prints a Markdown table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from kflow_mol.config import DataConfig
from kflow_mol.experiment import load_split
from kflow_mol.flow import AssemblyFlow, translation_scale_of
from kflow_mol.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(preset: str, batches: list[Batch], flow: AssemblyFlow, device: torch.device,
                     repeats: int) -> float:
    """Median training clusters per second (forward, backward, AdamW step)."""
    torch.manual_seed(0)
    model = build_model(preset).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rates = []
    for i in range(repeats + 1):
        batch = batches[i % len(batches)]
        _sync(device)
        tic = time.perf_counter()
        loss, _ = flow.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if i > 0:  # the first step is warm-up
            rates.append(batch.num_graphs / (time.perf_counter() - tic))
    return statistics.median(rates)


def sampling_time(preset: str, batch: Batch, flow: AssemblyFlow, device: torch.device, steps: int,
                  repeats: int) -> float:
    """Median seconds per cluster to integrate from k = 0 to K with ``steps`` Euler steps in total."""
    torch.manual_seed(0)
    model = build_model(preset).to(device).eval()
    per_band = max(1, steps // flow.num_bands)
    flow.sample(model, batch, steps_per_band=1)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        tic = time.perf_counter()
        flow.sample(model, batch, steps_per_band=per_band)
        _sync(device)
        times.append((time.perf_counter() - tic) / batch.num_graphs)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["S", "M"])
    parser.add_argument("--steps", nargs="+", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--K", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="outputs/bench_assembly.json")
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    clusters = load_split(DataConfig(), "train")
    atoms = [c.num_nodes for c in clusters]
    print(f"{len(clusters)} pyxtal training clusters, {statistics.mean(atoms):.0f} atoms on average; "
          f"batch {args.batch_size}, K={args.K}, threads {torch.get_num_threads()}")
    flow = AssemblyFlow(num_bands=args.K, translation_scale=translation_scale_of(clusters))
    results = []
    for name in devices:
        device = torch.device(name)
        batches = [Batch.from_data_list(clusters[i:i + args.batch_size]).to(device)
                   for i in range(0, len(clusters) - args.batch_size + 1, args.batch_size)]
        for preset in args.presets:
            row = {"device": name, "preset": preset,
                   "train_clusters_per_s": train_throughput(preset, batches, flow, device, args.repeats)}
            for steps in args.steps:
                row[f"sample_s_per_cluster@{steps}"] = sampling_time(preset, batches[0], flow, device, steps,
                                                                     max(1, args.repeats // 2))
            results.append(row)
    header = ["device", "preset", "train clusters/s"] + [f"sample s/cluster @{s} steps" for s in args.steps]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in results:
        cells = [row["device"], row["preset"], f"{row['train_clusters_per_s']:.2f}"]
        cells += [f"{row[f'sample_s_per_cluster@{s}']:.3f}" for s in args.steps]
        print("| " + " | ".join(cells) + " |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
