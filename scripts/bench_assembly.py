"""Throughput of the assembly model: training clusters per CPU-second and sampling time per cluster.

    OMP_NUM_THREADS=1 python scripts/bench_assembly.py --presets S M L --reference --repeats 5
    python scripts/bench_assembly.py --presets S M --steps 1 4 16 --devices cpu cuda

Uses the embedded pyxtal training clusters (real sizes: 153-1292 atoms per cluster). With
``--reference`` the original (pre-speed-up) definition of every preset that has one
(``REFERENCE_PRESETS``) is timed in the same process, on the same batches, interleaved with
the current one, so the ratio is measured side by side. On CPU the time is process CPU time
(steady on a shared machine), on CUDA wall time after synchronisation. Training rate =
clusters / time summed over the timed steps (the first step of each model is a warm-up);
``--sample-steps`` adds the sampling time per cluster. Prints a Markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from kflow.benchmarking import markdown_table
from kflow_mol.config import DataConfig
from kflow_mol.experiment import load_split
from kflow_mol.flow import AssemblyFlow, translation_scale_of
from kflow_mol.models import PRESETS, AssemblyGNN

REFERENCE_PRESETS: dict[str, dict] = json.loads(Path(__file__).with_name("reference_presets.json").read_text())[
    "presets"
]
"""The presets M and L before issue 15 (one/three full ``l <= 2`` e3nn atom layers), for timing;
recorded in ``reference_presets.json``, which ``bench_assembly_pm.py`` reads too."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> float:
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def build(preset: str, variant: str, device: torch.device) -> AssemblyGNN:
    torch.manual_seed(0)
    kwargs = REFERENCE_PRESETS[preset] if variant == "reference" else PRESETS[preset]
    return AssemblyGNN(**kwargs).to(device)


def train_rates(
    models: dict[str, AssemblyGNN], batches: list[Batch], flow: AssemblyFlow, device: torch.device, repeats: int
) -> dict[str, float]:
    """Training clusters per second (forward, backward, AdamW step) of every model, interleaved."""
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    clusters = 0
    for i in range(repeats + 1):
        batch = batches[i % len(batches)]
        for name, model in models.items():
            _sync(device)
            tic = _clock(device)
            loss, _ = flow.loss(model, batch)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            _sync(device)
            if i > 0:  # the first step is warm-up
                seconds[name] += _clock(device) - tic
        clusters += batch.num_graphs if i > 0 else 0
    return {name: clusters / seconds[name] for name in models}


def sampling_time(
    model: AssemblyGNN, batch: Batch, flow: AssemblyFlow, device: torch.device, steps: int, repeats: int
) -> float:
    """Median seconds per cluster to integrate from k = 0 to K with ``steps`` Euler steps in total."""
    model.eval()
    per_band = max(1, steps // flow.num_bands)
    flow.sample(model, batch, steps_per_band=1)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        tic = _clock(device)
        flow.sample(model, batch, steps_per_band=per_band)
        _sync(device)
        times.append((_clock(device) - tic) / batch.num_graphs)
    model.train()
    return statistics.median(times)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["S", "M"])
    parser.add_argument("--reference", action="store_true", help="also time REFERENCE_PRESETS side by side")
    parser.add_argument("--sample-steps", nargs="*", type=int, default=[], help="e.g. 2 8 16")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--K", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="outputs/bench_assembly.json")
    return parser.parse_args(argv)


def device_rows(args: argparse.Namespace, clusters: list, flow: AssemblyFlow, name: str) -> list[dict]:
    """Training rate (and sampling times) of every preset (and its reference) on device ``name``."""
    device = torch.device(name)
    batches = [
        Batch.from_data_list(clusters[i : i + args.batch_size]).to(device)
        for i in range(0, len(clusters) - args.batch_size + 1, args.batch_size)
    ]
    models = {}
    for preset in args.presets:
        models[(preset, "current")] = build(preset, "current", device)
        if args.reference and preset in REFERENCE_PRESETS:
            models[(preset, "reference")] = build(preset, "reference", device)
    rates = train_rates(models, batches, flow, device, args.repeats)
    rows = []
    for (preset, variant), model in models.items():
        row = {
            "device": name,
            "preset": preset,
            "variant": variant,
            "clock": "wall" if name == "cuda" else "cpu",
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_clusters_per_s": rates[(preset, variant)],
        }
        for steps in args.sample_steps:
            row[f"sample_s_per_cluster@{steps}"] = sampling_time(
                model, batches[0], flow, device, steps, max(1, args.repeats // 2)
            )
        reference = rates.get((preset, "reference"))
        if reference is not None:
            row["speed_up_vs_reference"] = rates[(preset, variant)] / reference
        rows.append(row)
    return rows


def table(results: list[dict], sample_steps: list[int]) -> str:
    """The Markdown table of the results."""
    header = ["device", "preset", "variant", "parameters", "train clusters/s", "x reference"]
    header += [f"sample s/cluster @{s} steps" for s in sample_steps]
    cells = [
        [
            row["device"],
            row["preset"],
            row["variant"],
            f"{row['parameters']:,}",
            f"{row['train_clusters_per_s']:.2f}",
            f"{row.get('speed_up_vs_reference', float('nan')):.1f}",
        ]
        + [f"{row[f'sample_s_per_cluster@{s}']:.3f}" for s in sample_steps]
        for row in results
    ]
    return markdown_table(header, cells)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    clusters = load_split(DataConfig(), "train")
    atoms = [c.num_nodes for c in clusters]
    print(
        f"{len(clusters)} pyxtal training clusters, {statistics.mean(atoms):.0f} atoms on average; "
        f"batch {args.batch_size}, K={args.K}, threads {torch.get_num_threads()}"
    )
    flow = AssemblyFlow(num_bands=args.K, translation_scale=translation_scale_of(clusters))
    results = [row for name in devices for row in device_rows(args, clusters, flow, name)]
    print(table(results, args.sample_steps))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
