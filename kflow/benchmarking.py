"""Benchmark helpers of the scripts: timing, FLOPs and utilisation, time budgets, reports.

Used by ``scripts/gpu_check.py`` (training-step timings, MFU, a loss curve compared with a
CPU reference, one JSON report of independently failing parts) and the ``scripts/bench_*.py``
timings (interleaved wall / CPU clocks, Markdown tables). Everything here runs on CPU too;
CUDA is synchronised around timed calls when the device is a GPU. See also
:func:`kflow.training.timed_calls`.
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

BF16_PEAK_TFLOPS = {  # dense bf16 tensor-core peak (no sparsity), by product name
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,  # unknown H100 variant: the lower (PCIe) figure
    "A100": 312.0,
}
"""Dense bf16 peak (TFLOP/s) of the cards the MFU figures know, most specific names first."""


# ----- clocks ---------------------------------------------------------------------------------
def time_once(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call of ``fn`` (CUDA synchronised after it).

    On a shared machine the CPU time (one thread) is the steadier measure of the work.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - start_cpu


def interleaved_times(fns: Sequence[Callable[[], object]], repeats: int) -> tuple[list[list[float]], list[list[float]]]:
    """One warm-up call of every function, then ``repeats`` rounds calling each once in turn.

    Interleaving makes a change of machine load hit every function alike.

    Returns:
        ``(wall, cpu)``: per function, the seconds of each timed call.
    """
    for fn in fns:
        fn()
    wall, cpu = [[] for _ in fns], [[] for _ in fns]
    for _ in range(repeats):
        for index, fn in enumerate(fns):
            seconds, cpu_seconds = time_once(fn)
            wall[index].append(seconds)
            cpu[index].append(cpu_seconds)
    return wall, cpu


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: one header line, the separator, one line per row (cells as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ----- FLOPs and utilisation --------------------------------------------------------------------
def bf16_peak_tflops(name: str) -> float | None:
    """Dense bf16 peak of a card from its ``torch.cuda.get_device_name`` (None if unknown)."""
    for key, value in BF16_PEAK_TFLOPS.items():  # most specific names first
        if all(word in name for word in key.split()):
            return value
    return None


def flops_of(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (forward and backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def _add_flops(row: dict, flops: int, peak: float | None) -> None:
    """FLOPs per step, TFLOP/s and (with a known peak) model FLOP utilisation of a timed row."""
    row["flops_per_step"] = flops
    row["tflops_per_s"] = flops / row["median_step_s"] / 1e12
    if peak:
        row["mfu"] = flops / row["median_step_s"] / (peak * 1e12)


def share_flops(runs: list[dict], peak: float | None) -> None:
    """Compiled steps do the eager step's arithmetic: give them its FLOP count and MFU."""
    eager = next((row for row in runs if not row.get("compile") and "flops_per_step" in row), None)
    if eager is None:
        return
    for row in runs:
        if row.get("compile") and "median_step_s" in row:
            _add_flops(row, eager["flops_per_step"], peak)


class Budget:
    """Wall-clock budget of a whole check; parts ask whether they may still start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def step_report(
    make_step: Callable[[bool], Callable[[], object]],
    items: int,
    device: torch.device,
    peak: float | None,
    repeats: int,
    compile_model: bool,
    budget: Budget,
    min_left: float,
) -> dict:
    """Time one training step; ``make_step(compile_model)`` returns a no-argument step function.

    Returns:
        The first step's seconds (compilation, allocation), the median of ``repeats`` timed
        steps, items per second and, for eager steps, FLOPs, TFLOP/s and MFU (with ``peak``);
        ``{"status": "skipped"}`` when fewer than ``min_left`` seconds of ``budget`` are left.
    """
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
        _add_flops(out, flops, peak)
    return out


def step_report_or_error(make_step, items: int, compile_model: bool, timing: dict) -> dict:
    """:func:`step_report` with ``timing`` = its other arguments (device, peak, repeats, budget,
    min_left); an exception becomes an ``error`` row instead of ending the caller's loop."""
    try:
        return step_report(make_step, items, compile_model=compile_model, **timing)
    except Exception as error:  # noqa: BLE001 - one failing configuration must not hide the others
        return {"status": "error", "compile": compile_model, "error": f"{type(error).__name__}: {error}"}


# ----- parts of a report ------------------------------------------------------------------------
def run_part(report: dict, name: str, fn: Callable[..., dict], *args, prefix: str = "[gpu_check]", **kwargs) -> None:
    """Run one part, store its result (or its error) under ``report["parts"][name]`` and print one line.

    The result gets ``status`` (``ok`` unless the part set it) and ``seconds``; an exception is
    recorded as ``status="error"`` with its message and a short traceback.
    """
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
        f"{prefix} {name}: {result['status']} ({result['seconds']} s)"
        + (f" - {result.get('error') or result.get('reason')}" if result["status"] != "ok" else ""),
        flush=True,
    )


def environment_report(device: torch.device, peak_override: float | None = None) -> dict:
    """Python, torch and CUDA versions, the host and, on CUDA, the card and its bf16 peak."""
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


def run_marked_tests(root: Path, marker: str, timeout_s: float) -> dict:
    """``pytest -m marker`` on the test files of ``root/tests`` that use the marker, in a subprocess.

    Only those files are collected: collecting the whole suite would need every optional extra.

    Returns:
        ``status`` (``ok`` / ``failed`` / ``error``), the pytest summary line, the command and
        the output's tail.
    """
    files = sorted(
        str(path.relative_to(root))
        for path in (root / "tests").rglob("test_*.py")
        if f"mark.{marker}" in path.read_text(errors="ignore")
    )
    if not files:
        return {"status": "error", "error": f"no test file marks tests with pytest.mark.{marker}"}
    command = [sys.executable, "-m", "pytest", "-m", marker, "-q", "-p", "no:cacheprovider", *files]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {
            "status": "error",
            "error": f"pytest -m {marker} ran past {timeout_s:.0f} s",
            "command": " ".join(command),
        }
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    words = (" passed", " failed", " error", "no tests ran")
    summary = next((line for line in reversed(lines) if any(w in line for w in words)), lines[-1] if lines else "")
    return {
        "status": "ok" if done.returncode == 0 else "failed",
        "returncode": done.returncode,
        "summary": summary.strip("= "),
        "command": " ".join(command[1:]),
        "output_tail": (done.stdout + done.stderr)[-3000:],
    }


# ----- loss curves ------------------------------------------------------------------------------
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


def compare_curves(losses: list[float], reference: dict, tolerance: float) -> dict:
    """Compare a loss curve with a reference curve of the same seeds.

    Args:
        losses: the loss of every step.
        reference: ``{"losses": [...], "statistics": curve_statistics(...)}`` of the reference.
        tolerance: allowed relative difference of the window means.

    Returns:
        Whether every compared window mean is within ``tolerance`` (and the curve finite), the
        ratios, the largest relative difference over the first 10 steps and this curve's statistics.
    """
    window = reference["statistics"]["window"]
    ours = curve_statistics(losses, window)
    ref_means = reference["statistics"]["window_means"]
    compared = min(len(ref_means), len(ours["window_means"]))
    ratios = [ours["window_means"][i] / ref_means[i] for i in range(compared)]
    matches = compared > 0 and ours["finite"] and all(abs(r - 1.0) <= tolerance for r in ratios)
    early = min(10, len(losses), len(reference["losses"]))  # same seeds: the first steps agree closely
    early_diff = max((abs(a / b - 1.0) for a, b in zip(losses[:early], reference["losses"][:early])), default=None)
    return {
        "windows_compared": compared,
        "window_mean_ratio_gpu_over_cpu": ratios,
        "tolerance": tolerance,
        "matches_cpu_reference": matches,
        "first_steps_max_relative_difference": early_diff,
        "statistics": ours,
    }
