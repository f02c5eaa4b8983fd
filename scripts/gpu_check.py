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

Without CUDA every CUDA part is skipped with a clear message and the process exits 0 after
writing the JSON (``"cuda": false``); ``--make-reference`` (CPU) rewrites the reference.

    python scripts/gpu_check.py --output outputs/gpu_check.json
    python scripts/gpu_check.py --make-reference --device cpu      # refresh the CPU reference
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "scripts" / "gpu_check_cpu_reference.json"
BF16_PEAK_TFLOPS = {  # dense bf16 tensor-core peak (no sparsity), by product name
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,  # unknown H100 variant: the lower (PCIe) figure
    "A100": 312.0,
}
SKIP_NO_CUDA = "skipped: CUDA is not available (no NVIDIA GPU or a CPU build of torch)"


# ----------------------------------------------------------------------------- helpers
def bf16_peak_tflops(name: str) -> float | None:
    """Dense bf16 peak of a card from its ``torch.cuda.get_device_name`` (None if unknown)."""
    for key, value in BF16_PEAK_TFLOPS.items():  # most specific names first
        if all(word in name for word in key.split()):
            return value
    return None


class Budget:
    """Wall-clock budget of the whole check; parts ask whether they may still start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def run_part(report: dict, name: str, fn, *args, **kwargs) -> None:
    """Run one part, store its result (or its error) under ``report["parts"][name]``."""
    tic = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    except Exception as error:  # one failing part must not hide the others
        result = {
            "status": "error",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(limit=6),
        }
    result.setdefault("status", "ok")
    result["seconds"] = round(time.perf_counter() - tic, 2)
    report["parts"][name] = result
    print(
        f"[gpu_check] {name}: {result['status']} ({result['seconds']} s)"
        + (f" - {result.get('error') or result.get('reason')}" if result["status"] != "ok" else ""),
        flush=True,
    )


def share_flops(runs: list[dict], peak: float | None) -> None:
    """Compiled steps do the eager step's arithmetic: give them its FLOP count and MFU."""
    eager = next((row for row in runs if not row.get("compile") and "flops_per_step" in row), None)
    if eager is None:
        return
    for row in runs:
        if row.get("compile") and "median_step_s" in row:
            row["flops_per_step"] = eager["flops_per_step"]
            row["tflops_per_s"] = eager["flops_per_step"] / row["median_step_s"] / 1e12
            if peak:
                row["mfu"] = eager["flops_per_step"] / row["median_step_s"] / (peak * 1e12)


def flops_of(step) -> int:
    """FLOPs of one call of ``step`` (forward and backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def step_report(
    make_step,
    items: int,
    device: torch.device,
    peak: float | None,
    repeats: int,
    compile_model: bool,
    budget: Budget,
    min_left: float,
) -> dict:
    """Time one training step; ``make_step(compile_model)`` returns a no-argument step function."""
    from kflow.training import timed_calls

    if budget.left() < min_left:
        return {"status": "skipped", "reason": f"time budget: {budget.left():.0f} s left"}
    tic = time.perf_counter()
    step = make_step(compile_model)
    step()  # the first call compiles (when compile_model) and allocates
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first_s = time.perf_counter() - tic
    flops = flops_of(make_step(False)) if not compile_model else None
    times = timed_calls(step, device, repeats, warmup=2)
    median = statistics.median(times)
    out = {
        "compile": compile_model,
        "first_step_s": round(first_s, 3),
        "median_step_s": median,
        "items_per_s": items / median,
        "step_times_s": times,
    }
    if flops is not None:
        out["flops_per_step"] = flops
        out["tflops_per_s"] = flops / median / 1e12
        if peak:
            out["mfu"] = flops / median / (peak * 1e12)
    return out


# ----------------------------------------------------------------------------- data
def synthetic_clusters(count: int, molecules: int = 17, atoms: int = 40, seed: int = 0) -> list:
    """Rigid-molecule clusters without any chemistry package (shapes and sizes like pyxtal's).

    Each cluster: ``molecules`` copies of one random rigid molecule of ``atoms`` atoms on a
    jittered 7 Å grid in random orientations (the crystal) and a start state moved by a
    random rotation (about 0.5 rad) and shift (about 1.5 Å) per molecule.
    """
    import numpy as np

    from kflow_mol.data.dataset import META_FIELDS, rigid_cluster_data

    rng = np.random.default_rng(seed)

    def rotations(n: int, scale: float | None = None) -> np.ndarray:
        if scale is None:
            q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
            q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
        else:
            from scipy.spatial.transform import Rotation

            q = Rotation.from_rotvec(scale * rng.normal(size=(n, 3))).as_matrix()
        q[np.linalg.det(q) < 0, :, 0] *= -1
        return q

    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3)[:molecules] * 7.0
    clusters = []
    for index in range(count):
        body = rng.normal(size=(atoms, 3)) * np.array([2.2, 1.4, 0.6])
        body -= body.mean(0)
        numbers = rng.choice([1, 6, 7, 8], size=atoms, p=[0.45, 0.4, 0.08, 0.07])
        rot_target = rotations(molecules)
        trans_target = grid + 0.5 * rng.normal(size=grid.shape)
        rot_start = rotations(molecules, scale=0.5) @ rot_target
        trans_start = trans_target + 1.5 * rng.normal(size=grid.shape)
        meta = {key: f"gpu_check_{index}" for key in META_FIELDS}
        meta.update(synthetic=True, start_scheme="local", cluster_id=f"gpu_check_r0_c{index}")
        clusters.append(
            rigid_cluster_data(
                np.repeat(numbers[None], molecules, 0),
                np.repeat(body[None], molecules, 0),
                rot_start,
                trans_start,
                rot_target,
                trans_target,
                meta,
            )
        )
    return clusters


def assembly_batches(batch_size: int, count: int) -> tuple[list, list, str]:
    """Batches of the embedded pyxtal training clusters when they load, else synthetic ones."""
    from torch_geometric.data import Batch

    try:
        from kflow_mol.config import DataConfig
        from kflow_mol.experiment import load_split

        clusters, source = load_split(DataConfig(), "train"), "pyxtal"
    except Exception as error:  # pyxtal / rdkit missing on the GPU image, or no cache
        print(
            f"[gpu_check] pyxtal clusters unavailable ({type(error).__name__}); synthetic clusters instead", flush=True
        )
        clusters, source = synthetic_clusters(count), "synthetic"
    batches = [
        Batch.from_data_list(clusters[i : i + batch_size]) for i in range(0, len(clusters) - batch_size + 1, batch_size)
    ]
    return batches, clusters, source


# ----------------------------------------------------------------------------- parts
def part_environment(device: torch.device, peak_override: float | None) -> dict:
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "hostname": platform.node(),
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        out.update(
            device_name=name,
            capability=list(torch.cuda.get_device_capability(device)),
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16_peak_tflops=peak_override or bf16_peak_tflops(name),
            peak_source="--peak-tflops" if peak_override else "name table",
        )
    return out


def part_tests(timeout_s: float) -> dict:
    # only the files that hold gpu tests: collecting the whole suite would need every optional extra
    files = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if "mark.gpu" in path.read_text(errors="ignore")
    )
    if not files:
        return {"status": "error", "error": "no test file marks tests with pytest.mark.gpu"}
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"pytest -m gpu ran past {timeout_s:.0f} s", "command": " ".join(command)}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next(
        (
            line
            for line in reversed(lines)
            if " passed" in line or " failed" in line or " error" in line or "no tests ran" in line
        ),
        lines[-1] if lines else "",
    )
    return {
        "status": "ok" if done.returncode == 0 else "failed",
        "returncode": done.returncode,
        "summary": summary.strip("= "),
        "command": " ".join(command[1:]),
        "output_tail": (done.stdout + done.stderr)[-3000:],
    }


def part_assembly_steps(
    device: torch.device,
    peak: float | None,
    budget: Budget,
    presets: list[str],
    repeats: int,
    compile_modes: tuple[bool, ...] = (False, True),
) -> dict:
    from kflow_mol.flow import AssemblyFlow, translation_scale_of
    from kflow_mol.models import build_model

    batches, clusters, source = assembly_batches(8, 16)
    batch = batches[0].to(device)
    flow = AssemblyFlow(num_bands=2, translation_scale=translation_scale_of(clusters))
    out = {
        "data": source,
        "batch_clusters": batch.num_graphs,
        "batch_atoms": int(batch.num_nodes),
        "precision": "bf16 autocast",
        "runs": [],
    }
    try:  # e3nn tensor products mix float32 constants with autocast's bf16 outputs
        with torch.autocast(device.type, dtype=torch.bfloat16):
            flow.loss(build_model("S").to(device), batch)
        amp = True
    except RuntimeError as error:
        amp = False
        out["precision"] = "float32 (TF32 matmuls): bf16 autocast failed"
        out["bf16_error"] = f"{type(error).__name__}: {error}"
        print(f"[gpu_check]   assembly model under bf16 autocast: {error}; timing float32 instead", flush=True)
    for preset in presets:

        def make_step(compile_model: bool, preset=preset):
            torch.manual_seed(0)
            model = build_model(preset).to(device)
            runner = torch.compile(model) if compile_model else model
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, _ = flow.loss(runner, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            return step

        for compile_model in compile_modes:
            try:
                row = step_report(make_step, batch.num_graphs, device, peak, repeats, compile_model, budget, 60)
            except Exception as error:
                row = {"status": "error", "compile": compile_model, "error": f"{type(error).__name__}: {error}"}
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
    from kflow_image.models.dit import DiT

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 4, 32, 32, generator=g).to(device)
    target = torch.randn(batch_size, 4, 32, 32, generator=g).to(device)
    s = torch.rand(batch_size, generator=g).to(device)
    y = torch.randint(0, 1000, (batch_size,), generator=g).to(device)
    out = {
        "model": preset,
        "input": [batch_size, 4, 32, 32],
        "num_classes": 1000,
        "precision": "bf16 autocast, fp32 weights, AdamW",
        "runs": [],
    }

    def make_step(compile_model: bool):
        torch.manual_seed(0)
        model = DiT.from_preset(preset, image_size=32, channels=4, num_classes=1000).to(device)
        runner = torch.compile(model) if compile_model else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = (runner(x, s, y).float() - target).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        out["parameters"] = sum(p.numel() for p in model.parameters())
        return step

    for compile_model in compile_modes:
        try:
            row = step_report(make_step, batch_size, device, peak, repeats, compile_model, budget, 45)
        except Exception as error:
            row = {"status": "error", "compile": compile_model, "error": f"{type(error).__name__}: {error}"}
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


def train_curve(device: torch.device, steps: int, seconds: float | None, seed: int = 0) -> dict:
    """Preset-S training on synthetic clusters with device-independent draws; loss per step."""
    from torch_geometric.data import Batch

    from kflow.training import StepDraws
    from kflow_mol.flow import AssemblyFlow, translation_scale_of
    from kflow_mol.models import build_model

    clusters = synthetic_clusters(64, atoms=24, seed=seed)
    batches = [Batch.from_data_list(clusters[i : i + 8]).to(device) for i in range(0, 64, 8)]
    flow = AssemblyFlow(num_bands=2, translation_scale=translation_scale_of(clusters))
    torch.manual_seed(seed)
    model = build_model("S").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, tic = [], time.perf_counter()
    for step in range(1, steps + 1):
        loss, _ = flow.loss(model, batches[(step - 1) % len(batches)], draws=StepDraws(seed=seed, step=step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if seconds is not None and time.perf_counter() - tic > seconds:
            break
    return {"steps": len(losses), "seconds": time.perf_counter() - tic, "losses": losses}


def curve_statistics(losses: list[float], window: int) -> dict:
    """Means of consecutive windows of the loss curve, and first / last values."""
    means = [statistics.fmean(losses[i : i + window]) for i in range(0, len(losses) - window + 1, window)]
    return {
        "window": window,
        "window_means": means,
        "first": losses[0],
        "last": losses[-1],
        "finite": all(math.isfinite(v) for v in losses),
    }


def part_assembly_training(device: torch.device, seconds: float, tolerance: float) -> dict:
    if not REFERENCE.exists():
        return {"status": "error", "error": f"{REFERENCE.name} missing (run --make-reference on CPU)"}
    reference = json.loads(REFERENCE.read_text())
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like the CPU reference
    torch.backends.cudnn.allow_tf32 = False
    run = train_curve(device, steps=100_000, seconds=seconds, seed=reference["seed"])
    window = reference["statistics"]["window"]
    ours = curve_statistics(run["losses"], window)
    ref_means = reference["statistics"]["window_means"]
    compared = min(len(ref_means), len(ours["window_means"]))
    ratios = [ours["window_means"][i] / ref_means[i] for i in range(compared)]
    matches = compared > 0 and ours["finite"] and all(abs(r - 1.0) <= tolerance for r in ratios)
    early = min(10, len(run["losses"]), len(reference["losses"]))  # same seeds: the first steps agree closely
    early_diff = max(
        (abs(a / b - 1.0) for a, b in zip(run["losses"][:early], reference["losses"][:early])), default=None
    )
    return {
        "status": "ok" if matches else "failed",
        "steps": run["steps"],
        "train_seconds": run["seconds"],
        "steps_per_s": run["steps"] / run["seconds"],
        "windows_compared": compared,
        "window_mean_ratio_gpu_over_cpu": ratios,
        "tolerance": tolerance,
        "matches_cpu_reference": matches,
        "first_steps_max_relative_difference": early_diff,
        "statistics": ours,
    }


def make_reference(steps: int, window: int) -> None:
    torch.set_num_threads(1)
    run = train_curve(torch.device("cpu"), steps=steps, seconds=None)
    payload = {
        "what": "preset S on synthetic clusters (scripts/gpu_check.py train_curve), CPU, 1 thread",
        "seed": 0,
        "steps": run["steps"],
        "torch": torch.__version__,
        "cpu_seconds": run["seconds"],
        "statistics": curve_statistics(run["losses"], window),
        "losses": run["losses"],
    }
    REFERENCE.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {REFERENCE} ({run['steps']} steps in {run['seconds']:.0f} s)")


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
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
    compile_modes = (False,) if args.no_compile else (False, True)
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(f"[gpu_check] {SKIP_NO_CUDA}: every CUDA part is skipped.", flush=True)
        run_part(report, "environment", part_environment, torch.device("cpu"), args.peak_tflops)
        for name in ("tests", "assembly_steps", "dit_steps", "assembly_training"):
            report["parts"][name] = {"status": "skipped", "reason": SKIP_NO_CUDA}
        report["message"] = SKIP_NO_CUDA
    else:
        device = torch.device("cpu" if args.cpu_dry_run else args.device)
        report["cpu_dry_run"] = args.cpu_dry_run
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        run_part(report, "environment", part_environment, device, args.peak_tflops)
        peak = report["parts"]["environment"].get("bf16_peak_tflops")
        if peak is None:
            print("[gpu_check] unknown card: no bf16 peak, MFU not reported (pass --peak-tflops)", flush=True)
        if args.cpu_dry_run:
            report["parts"]["tests"] = {"status": "skipped", "reason": "--cpu-dry-run"}
        else:
            run_part(report, "tests", part_tests, min(args.tests_timeout_s, max(30.0, budget.left() - 300)))
        run_part(
            report,
            "dit_steps",
            part_dit_steps,
            device,
            peak,
            budget,
            args.dit_batch,
            args.repeats,
            args.dit_preset,
            compile_modes,
        )
        run_part(
            report,
            "assembly_steps",
            part_assembly_steps,
            device,
            peak,
            budget,
            args.presets,
            args.repeats,
            compile_modes,
        )
        seconds = min(args.train_seconds, max(0.0, budget.left() - 15))
        if seconds < min(30.0, args.train_seconds):
            report["parts"]["assembly_training"] = {"status": "skipped", "reason": f"time budget: {seconds:.0f} s"}
        else:
            run_part(report, "assembly_training", part_assembly_training, device, seconds, args.loss_tolerance)
    report["total_seconds"] = round(args.budget_s - budget.left(), 1)
    failed = [name for name, part in report["parts"].items() if part.get("status") in ("error", "failed")]
    report["failed_parts"] = failed
    output.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"[gpu_check] wrote {output}" + (f"; failed parts: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
