"""``scripts/plot_scaling.py`` and ``pooled_means``: several benchmark runs side by side."""

import json

import pytest
from _scripts import run_script

from kflow_mol.benchmark.report import pooled_means


def _record(method, seed, values):
    ids = ["csd500.A_r0_c0", "csd500.A_r1_c0", "csd500.B_r0_c0"]
    return {"method": method, "seed": seed, "sets": {"testdb": {"ids": ids, "pm_atom": values, "pm_center": values}}}


def test_pooled_means_average_each_cluster_over_starts_and_seeds_first():
    records = [_record("rigid", 0, [1.0, 3.0, 10.0]), _record("rigid", 1, [1.0, 3.0, 4.0])]
    means = pooled_means(records, ("pm_atom",))
    assert means == {"rigid": {"pm_atom": pytest.approx((2.0 + 7.0) / 2)}}  # A: mean of 1,3,1,3; B: of 10,4


def test_script_writes_the_figure_and_table_and_refuses_a_bad_run(tmp_path):
    for n, shift in ((10, 1.0), (20, 0.0)):
        (tmp_path / f"n{n}").mkdir()
        records = [_record("rigid", 0, [1.0 + shift, 2.0, 3.0]), _record("identity", 0, [5.0, 5.0, 5.0])]
        (tmp_path / f"n{n}" / "benchmark.json").write_text(json.dumps(records))
    figure = tmp_path / "scaling.png"
    done = run_script(
        "plot_scaling.py", "--run", f"10={tmp_path / 'n10'}", "--run", f"20={tmp_path / 'n20'}", "--output", str(figure)
    )
    assert done.returncode == 0, done.stderr
    assert figure.stat().st_size > 0
    assert "| 10 | rigid | 2.500 |" in done.stdout and "| 20 | rigid | 2.250 |" in done.stdout
    bad = run_script("plot_scaling.py", "--run", f"10={tmp_path / 'missing.json'}", "--output", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "missing.json" in bad.stderr and len(bad.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "x.png").exists()
