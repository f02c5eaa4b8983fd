"""The latent-ranking reader: stage files -> scores, per-step ranking, paired seed table, figure."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from kflow_image.ranking import (
    collect_scores,
    markdown_report,
    plot_fd_vs_steps,
    ranking_at,
    ranking_stable,
    seed_rows,
    t_interval,
)

# FD of method x seed at steps (1000 samples); the 2000-sample final score is fd - 1
FDS = {
    "lfm": {100: [50.0, 52.0, 54.0], 200: [20.0, 22.0, 24.0], 400: [10.0, 11.0, 12.0]},
    "fourier": {100: [40.0, 41.0, 42.0], 200: [21.0, 23.0, 25.0], 400: [12.0, 14.0, 13.0]},
}


def write_stage(root, method, seed, steps, samples, fd, cdr=None):
    folder = root / method / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"fd": fd, "fd_ci_low": fd - 1, "fd_ci_high": fd + 1, "accuracy": 0.9, "recall": 0.5, "cdr": cdr}
    metrics["reference_floor"] = {"fd": 3.0}
    (folder / f"metrics-{steps}steps-{samples}samples.json").write_text(json.dumps(metrics))


@pytest.fixture
def root(tmp_path):
    for method, by_step in FDS.items():
        for steps, fds in by_step.items():
            for seed, fd in enumerate(fds):
                write_stage(tmp_path, method, seed, steps, 1000, fd)
        for seed, fd in enumerate(by_step[400]):
            write_stage(tmp_path, method, seed, 400, 2000, fd - 1, cdr=2.0 if seed == 0 else None)
    (tmp_path / "lfm" / "seed0" / "metrics.json").write_text("{}")  # not a stage file: ignored
    return tmp_path


def test_collect_reads_every_stage_file_and_nothing_else(root):
    scores = collect_scores(root)
    assert len(scores) == 2 * (9 + 3)
    first = scores[0]
    assert (first.method, first.seed, first.steps, first.samples, first.fd) == ("fourier", 0, 100, 1000, 40.0)
    assert first.floor == 3.0 and math.isnan(first.cdr)


def test_ranking_per_step_and_stability(root):
    scores = collect_scores(root)
    assert ranking_at(scores, 100, 1000) == ["fourier", "lfm"]
    assert ranking_at(scores, 200, 1000) == ["lfm", "fourier"]
    assert ranking_at(scores, 400, 1000) == ["lfm", "fourier"]
    assert ranking_stable(scores, 1000) is True
    assert ranking_stable([s for s in scores if s.steps < 400], 1000) is False


def test_seed_rows_pair_the_difference_by_seed(root):
    rows = {r["method"]: r for r in seed_rows(collect_scores(root), 400, 2000, "lfm")}
    fourier = rows["fourier"]
    assert fourier["diff"] == [2.0, 3.0, 1.0]  # (12-10, 14-11, 13-12) after both lose 1
    low, high = fourier["diff_t"]
    half = 4.302652729911275 * statistics.stdev([2.0, 3.0, 1.0]) / math.sqrt(3)
    assert low == pytest.approx(2.0 - half) and high == pytest.approx(2.0 + half)
    assert fourier["diff_boot"][0] >= 1.0 and fourier["diff_boot"][1] <= 3.0
    assert rows["lfm"]["cdr"] == {0: 2.0} and "diff" not in rows["lfm"]


def test_t_interval_needs_two_values():
    assert all(math.isnan(v) for v in t_interval([1.0]))


def test_report_and_figure(root, tmp_path):
    scores = collect_scores(root)
    text = markdown_report(scores, baseline="lfm")
    assert "### Seeds at 400 steps, 2000 samples each" in text
    assert "| fourier | 0,1,2 | 12.00 ± 1.00 | +2.00 [" in text
    assert "unchanged (the same order at 200 and 400 steps)" in text
    assert "| 0.900 ± 0.000 | 0.500 ± 0.000 | 2.00 (seed 0) |" in text
    assert "Best: fourier at 100, lfm at 200, lfm at 400 steps." in text
    assert "(floor): 3.00." in text
    assert "| ranking (best first, common seeds) | fourier < lfm | lfm < fourier | lfm < fourier |" in text
    out = plot_fd_vs_steps(scores, tmp_path / "fig" / "fd.png")
    assert out.stat().st_size > 5000
