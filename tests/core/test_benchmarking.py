"""kflow.benchmarking: clocks, FLOPs and MFU, budgets, report parts and loss-curve comparison, on CPU."""

import pytest
import torch

from kflow.benchmarking import (
    Budget,
    bf16_peak_tflops,
    compare_curves,
    curve_statistics,
    environment_report,
    interleaved_times,
    markdown_table,
    run_part,
    share_flops,
    step_report,
    step_report_or_error,
    time_once,
)

CPU = torch.device("cpu")


def linear_step(compile_model: bool):
    """A (16 -> 8) linear layer's training step on 4 items: 2 x 2 * 4 * 16 * 8 FLOPs (forward, weight gradient;
    the input needs no gradient)."""
    if compile_model:
        raise RuntimeError("no compiler here")
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)

    def step():
        layer.zero_grad()
        layer(x).square().sum().backward()

    return step


def test_bf16_peaks_by_card_name():
    assert bf16_peak_tflops("NVIDIA H200") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0  # the SXM card
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_clocks_time_every_call_interleaved():
    calls = []
    wall, cpu = time_once(lambda: sum(range(10_000)))
    assert wall >= 0 and cpu >= 0
    walls, cpus = interleaved_times([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three interleaved rounds
    assert [len(w) for w in walls] == [len(c) for c in cpus] == [3, 3]


def test_markdown_table():
    table = markdown_table(["metric", "s"], [["PM", "0.10"], ["RMSD", 2]])
    assert table.splitlines() == ["| metric | s |", "|---|---|", "| PM | 0.10 |", "| RMSD | 2 |"]


def test_step_report_counts_flops_and_mfu():
    row = step_report(linear_step, 4, CPU, peak=1.0, repeats=3, compile_model=False, budget=Budget(60), min_left=1)
    assert row["flops_per_step"] == 2 * 2 * 4 * 16 * 8
    assert len(row["step_times_s"]) == 3 and row["items_per_s"] == pytest.approx(4 / row["median_step_s"])
    assert row["mfu"] == pytest.approx(row["flops_per_step"] / row["median_step_s"] / 1e12)
    compiled = {"compile": True, "median_step_s": 2 * row["median_step_s"]}
    share_flops([row, compiled], peak=1.0)
    assert compiled["flops_per_step"] == row["flops_per_step"] and compiled["mfu"] == pytest.approx(row["mfu"] / 2)


def test_step_report_skips_past_the_budget_and_records_errors():
    skipped = step_report(linear_step, 4, CPU, None, 1, False, Budget(0.0), min_left=10)
    assert skipped["status"] == "skipped" and "time budget" in skipped["reason"]
    timing = dict(device=CPU, peak=None, repeats=1, budget=Budget(60), min_left=1)
    failed = step_report_or_error(linear_step, 4, True, timing)  # linear_step refuses compile_model
    assert failed == {"status": "error", "compile": True, "error": "RuntimeError: no compiler here"}


def test_run_part_keeps_going_after_a_failing_part(capsys):
    report = {"parts": {}}
    run_part(report, "good", lambda: {"value": 1})
    run_part(report, "bad", lambda: 1 / 0)
    run_part(report, "env", environment_report, CPU)
    assert report["parts"]["good"]["status"] == "ok" and report["parts"]["good"]["value"] == 1
    assert report["parts"]["bad"]["status"] == "error" and "ZeroDivisionError" in report["parts"]["bad"]["error"]
    assert report["parts"]["env"]["torch"] == torch.__version__
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[gpu_check] good: ok (") and "ZeroDivisionError" in lines[1]


def test_loss_curves_compare_by_window_means():
    stats = curve_statistics([4.0, 2.0, 3.0, 1.0, 9.0], window=2)
    assert stats["window_means"] == [3.0, 2.0] and stats["first"] == 4.0 and stats["last"] == 9.0
    reference = {"losses": [4.0, 2.0, 3.0, 1.0], "statistics": curve_statistics([4.0, 2.0, 3.0, 1.0], 2)}
    close = compare_curves([4.4, 2.0, 3.0, 1.0, 5.0, 5.0], reference, tolerance=0.1)
    assert close["matches_cpu_reference"] and close["windows_compared"] == 2
    assert close["window_mean_ratio_gpu_over_cpu"] == pytest.approx([6.4 / 6.0, 1.0])
    assert close["first_steps_max_relative_difference"] == pytest.approx(0.1)
    assert not compare_curves([8.0, 2.0, 3.0, 1.0], reference, tolerance=0.1)["matches_cpu_reference"]
    assert not compare_curves([float("nan"), 2.0, 3.0, 1.0], reference, tolerance=10)["matches_cpu_reference"]
