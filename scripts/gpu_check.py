"""The GPU check of issue 15: tests, step timings, FLOP utilisation and a short training on CUDA.

Run it through ``scripts/gpu_check.sh`` (which first makes sure a CUDA build of torch is
there); all results go to ONE JSON file. Parts, each timed and allowed to fail on its own
(its error is recorded and the next part runs):

1. ``environment``: torch / CUDA versions, the card and its dense bf16 peak (H100 SXM/PCIe,
   H200 recognised by name; ``--peak-tflops`` overrides).
2. ``tests``: ``pytest -m gpu`` (the core transforms, path and sampler exactness on CUDA and a
   bf16 training step; ``tests/core/test_gpu.py``).
3. ``assembly_steps``: one training step (forward, backward, AdamW) of the assembly presets
   S/M/L on a batch of 8 clusters, in bf16 autocast, eager and ``torch.compile``: median step
   time, clusters/s, FLOPs (``torch.utils.flop_counter``) and model FLOP utilisation (MFU)
   against the card's bf16 peak.
4. ``dit_steps``: the same for DiT-B/2 on (4, 32, 32) latents (batch ``--dit-batch``).
5. ``assembly_training``: about two minutes of preset-S training on synthetic clusters with
   the seeds of the CPU reference ``scripts/gpu_check_cpu_reference.json``; its loss-curve
   statistics are compared with the reference (window means within ``--loss-tolerance``).

The timing, FLOP and report helpers are :mod:`kflow.benchmarking`; the workloads are
:mod:`kflow_mol.gpu_workloads` and :mod:`kflow_image.gpu_workloads`. This script parses the
options, calls the parts and prints. Without CUDA every CUDA part is skipped with a clear message and the process exits 0 after
writing the JSON (``"cuda": false``); ``--make-reference`` (CPU) rewrites the reference.

    python scripts/gpu_check.py --output outputs/gpu_check.json
    python scripts/gpu_check.py --make-reference --device cpu      # refresh the CPU reference
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from kflow.benchmarking import (
    Budget,
    compare_curves,
    curve_statistics,
    environment_report,
    run_marked_tests,
    run_part,
    share_flops,
    step_report_or_error,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "scripts" / "gpu_check_cpu_reference.json"
SKIP_NO_CUDA = "skipped: CUDA is not available (no NVIDIA GPU or a CPU build of torch)"
CUDA_PARTS = ("tests", "assembly_steps", "dit_steps", "assembly_training")


# ----------------------------------------------------------------------------- parts
def part_assembly_steps(
    device: torch.device,
    peak: float | None,
    budget: Budget,
    presets: list[str],
    repeats: int,
    compile_modes: tuple[bool, ...] = (False, True),
) -> dict:
    from kflow_mol.flow import AssemblyFlow, translation_scale_of
    from kflow_mol.gpu_workloads import assembly_batches, assembly_step_maker, bf16_autocast_error

    batches, clusters, source = assembly_batches(8, 16)
    batch = batches[0].to(device)
    flow = AssemblyFlow(num_bands=2, translation_scale=translation_scale_of(clusters))
    out = {"data": source, "batch_clusters": batch.num_graphs, "batch_atoms": int(batch.num_nodes)}
    out.update(precision="bf16 autocast", runs=[])
    bf16_error = bf16_autocast_error(flow, batch, device)
    if bf16_error is not None:
        out["precision"] = "float32 (TF32 matmuls): bf16 autocast failed"
        out["bf16_error"] = bf16_error
        print(f"[gpu_check]   assembly model under bf16 autocast: {bf16_error}; timing float32 instead", flush=True)
    timing = dict(device=device, peak=peak, repeats=repeats, budget=budget, min_left=60)
    for preset in presets:
        make_step = assembly_step_maker(preset, flow, batch, device, amp=bf16_error is None)
        for compile_model in compile_modes:
            row = step_report_or_error(make_step, batch.num_graphs, compile_model, timing)
            row["preset"] = preset
            out["runs"].append(row)
            share_flops([r for r in out["runs"] if r.get("preset") == preset], peak)
            print(
                f"[gpu_check]   assembly {preset} compile={compile_model}: "
                f"{row.get('items_per_s', float('nan')):.1f} clusters/s, mfu {row.get('mfu', float('nan')):.3f} "
                f"{row.get('status', 'ok')}",
                flush=True,
            )
    return out


def part_dit_steps(
    device: torch.device,
    peak: float | None,
    budget: Budget,
    batch_size: int,
    repeats: int,
    preset: str = "DiT-B/2",
    compile_modes: tuple[bool, ...] = (False, True),
) -> dict:
    from kflow_image.gpu_workloads import dit_step_maker

    out = {"model": preset, "input": [batch_size, 4, 32, 32], "num_classes": 1000}
    out.update(precision="bf16 autocast, fp32 weights, AdamW", runs=[])
    make_step = dit_step_maker(preset, batch_size, device, out)
    timing = dict(device=device, peak=peak, repeats=repeats, budget=budget, min_left=45)
    for compile_model in compile_modes:
        row = step_report_or_error(make_step, batch_size, compile_model, timing)
        out["runs"].append(row)
        print(
            f"[gpu_check]   {preset} compile={compile_model}: {row.get('items_per_s', float('nan')):.0f} images/s, "
            f"mfu {row.get('mfu', float('nan')):.3f} {row.get('status', 'ok')}",
            flush=True,
        )
    share_flops(out["runs"], peak)
    best = max((row.get("mfu", 0.0) for row in out["runs"]), default=0.0)
    out["goal_mfu_0.40_met"] = bool(best >= 0.40) if peak else None
    return out


def part_assembly_training(device: torch.device, seconds: float, tolerance: float) -> dict:
    from kflow_mol.gpu_workloads import train_curve

    if not REFERENCE.exists():
        return {"status": "error", "error": f"{REFERENCE.name} missing (run --make-reference on CPU)"}
    reference = json.loads(REFERENCE.read_text())
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like the CPU reference
    torch.backends.cudnn.allow_tf32 = False
    run = train_curve(device, steps=100_000, seconds=seconds, seed=reference["seed"])
    compared = compare_curves(run["losses"], reference, tolerance)
    return {
        "status": "ok" if compared["matches_cpu_reference"] else "failed",
        "steps": run["steps"],
        "train_seconds": run["seconds"],
        "steps_per_s": run["steps"] / run["seconds"],
        **compared,
    }


def make_reference(steps: int, window: int) -> None:
    from kflow_mol.gpu_workloads import train_curve

    torch.set_num_threads(1)
    run = train_curve(torch.device("cpu"), steps=steps, seconds=None)
    payload = {
        "what": "preset S on synthetic clusters (kflow_mol/gpu_workloads.py train_curve), CPU, 1 thread",
        "seed": 0,
        "steps": run["steps"],
        "torch": torch.__version__,
        "cpu_seconds": run["seconds"],
        "statistics": curve_statistics(run["losses"], window),
        "losses": run["losses"],
    }
    REFERENCE.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {REFERENCE} ({run['steps']} steps in {run['seconds']:.0f} s)")


# ----------------------------------------------------------------------------- edge
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="outputs/gpu_check.json")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; cpu only with --make-reference")
    parser.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of all parts")
    parser.add_argument("--presets", nargs="+", default=["S", "M", "L"])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--dit-batch", type=int, default=256)
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument(
        "--loss-tolerance",
        type=float,
        default=0.15,
        help="allowed relative difference of GPU and CPU loss window means",
    )
    parser.add_argument("--tests-timeout-s", type=float, default=120.0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of the card (default: by name)")
    parser.add_argument("--dit-preset", default="DiT-B/2")
    parser.add_argument("--no-compile", action="store_true", help="eager steps only")
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run the CUDA parts on the CPU (to test this script; numbers mean nothing)",
    )
    parser.add_argument("--make-reference", action="store_true", help="write the CPU loss-curve reference and exit")
    parser.add_argument("--reference-steps", type=int, default=300)
    parser.add_argument("--reference-window", type=int, default=50)
    return parser.parse_args(argv)


def run_cuda_parts(report: dict, args: argparse.Namespace, budget: Budget) -> None:
    """Environment, GPU tests, DiT and assembly step timings, and the short training, in that order."""
    device = torch.device("cpu" if args.cpu_dry_run else args.device)
    compile_modes = (False,) if args.no_compile else (False, True)
    report["cpu_dry_run"] = args.cpu_dry_run
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    run_part(report, "environment", environment_report, device, args.peak_tflops)
    peak = report["parts"]["environment"].get("bf16_peak_tflops")
    if peak is None:
        print("[gpu_check] unknown card: no bf16 peak, MFU not reported (pass --peak-tflops)", flush=True)
    if args.cpu_dry_run:
        report["parts"]["tests"] = {"status": "skipped", "reason": "--cpu-dry-run"}
    else:
        run_part(
            report, "tests", run_marked_tests, ROOT, "gpu", min(args.tests_timeout_s, max(30.0, budget.left() - 300))
        )
    dit = (args.dit_batch, args.repeats, args.dit_preset, compile_modes)
    run_part(report, "dit_steps", part_dit_steps, device, peak, budget, *dit)
    assembly = (args.presets, args.repeats, compile_modes)
    run_part(report, "assembly_steps", part_assembly_steps, device, peak, budget, *assembly)
    seconds = min(args.train_seconds, max(0.0, budget.left() - 15))
    if seconds < min(30.0, args.train_seconds):
        report["parts"]["assembly_training"] = {"status": "skipped", "reason": f"time budget: {seconds:.0f} s"}
    else:
        run_part(report, "assembly_training", part_assembly_training, device, seconds, args.loss_tolerance)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.make_reference:
        make_reference(args.reference_steps, args.reference_window)
        return 0
    budget = Budget(args.budget_s)
    report = {
        "script": "scripts/gpu_check.py",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv[1:],
        "cuda": torch.cuda.is_available(),
        "parts": {},
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(f"[gpu_check] {SKIP_NO_CUDA}: every CUDA part is skipped.", flush=True)
        run_part(report, "environment", environment_report, torch.device("cpu"), args.peak_tflops)
        for name in CUDA_PARTS:
            report["parts"][name] = {"status": "skipped", "reason": SKIP_NO_CUDA}
        report["message"] = SKIP_NO_CUDA
    else:
        run_cuda_parts(report, args, budget)
    report["total_seconds"] = round(args.budget_s - budget.left(), 1)
    failed = [name for name, part in report["parts"].items() if part.get("status") in ("error", "failed")]
    report["failed_parts"] = failed
    output.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"[gpu_check] wrote {output}" + (f"; failed parts: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
