"""scripts/bench_assembly_pm.py: the equal-CPU step count and the paired per-crystal comparison."""

from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    return load_script("bench_assembly_pm")


def fake_metrics(values: list[float], ids: list[str]) -> dict:
    per_cluster = {"pm_atom": values, "pm_center": [v / 2 for v in values]}
    return {"per_cluster": {"identity": per_cluster, "kflow_K2": per_cluster}, "cluster_ids": ids}


def test_equal_cpu_steps_use_the_current_forms_cpu_per_step():
    bench = load_bench()
    rows = [
        {"variant": "current", "steps": 100, "train_cpu_s": 50.0},
        {"variant": "reference", "steps": 100, "train_cpu_s": 600.0},
    ]
    assert bench.equal_cpu_steps(rows) == 1200
    with pytest.raises(SystemExit):
        bench.equal_cpu_steps(rows[:1])


def test_starts_of_a_crystal_are_averaged_before_pairing():
    bench = load_bench()
    ids = ["AAA_r0_c0", "AAA_r1_c0", "BBB_r0_c0", "BBB_r1_c0", "CCC_r0_c0", "CCC_r1_c0"]
    reference = fake_metrics([4.0, 6.0, 3.0, 3.0, 8.0, 6.0], ids)
    better = fake_metrics([3.0, 5.0, 2.0, 3.0, 6.0, 6.0], ids)
    assert bench.per_crystal(reference, "pm_atom") == {"AAA": 5.0, "BBB": 3.0, "CCC": 7.0}
    result = bench.compare(better, reference)["pm_atom"]
    assert result["crystals"] == 3
    assert result["variant"] == pytest.approx(25 / 6) and result["reference"] == pytest.approx(5.0)
    assert result["difference"].startswith("-0.833")


def test_one_crystal_gives_no_interval():
    bench = load_bench()
    ids = ["AAA_r0_c0", "AAA_r1_c0"]
    result = bench.compare(fake_metrics([3.0, 5.0], ids), fake_metrics([4.0, 6.0], ids))["pm_center"]
    assert result["crystals"] == 1 and result["difference"].startswith("n/a")
