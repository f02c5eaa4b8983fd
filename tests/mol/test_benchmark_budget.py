"""The benchmark's equal-CPU budget: every trained method gets ``floor(budget / CPU-s per step)`` steps."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from kflow.training import ConfigError
from kflow_mol.config import BenchmarkConfig
from kflow_mol.oracles import ORACLES


def tiny_config(tmp_path, build, methods, budget):
    """A benchmark on 8 training / 2 test clusters of the prepared pyxtal build, one seed."""
    cfg = BenchmarkConfig(
        methods=methods,
        seeds=[0],
        test_sets=["testdb"],
        bootstrap_resamples=100,
        train_cpu_seconds=budget,
        output_dir=str(tmp_path / "bench"),
    )
    cfg.data = dataclasses.replace(
        cfg.data, source="prepared", folder=str(build.output), start=None, max_train=8, max_test=2
    )
    cfg.train.batch_size, cfg.eval.rmsd = 4, False
    return cfg


def test_train_cpu_seconds_is_checked():
    assert BenchmarkConfig(train_cpu_seconds=30.0).train_cpu_seconds == 30.0
    for bad in (0.0, -5.0):
        with pytest.raises(ConfigError, match="train_cpu_seconds must be > 0"):
            BenchmarkConfig(train_cpu_seconds=bad)
    with pytest.raises(ConfigError, match="set one"):
        BenchmarkConfig(train_cpu_seconds=30.0, budget_cpu_minutes=10.0)


def test_measured_plan_is_saved_and_reused(tmp_path, monkeypatch, data_pyxtal_build):
    """The real measurement: a positive cost per step, steps = floor(budget / cost), reused on resume."""
    import kflow_mol.benchmark as benchmark
    from kflow_mol.experiment import load_split

    cfg = tiny_config(tmp_path, data_pyxtal_build, ["identity", "rigid_K1", "rigid_K1+noproj"], 2.0)
    train_set = load_split(cfg.data, "train", limit=8)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True)
    plan = benchmark.equal_cpu_plan(cfg, train_set, out_dir)
    assert list(plan) == ["rigid_K1", "rigid_K1+noproj"]  # identity is not trained
    cost = plan["rigid_K1"]["step_cpu_s"]
    assert 0 < cost < 10 and math.isfinite(cost)
    assert plan["rigid_K1"]["steps"] == max(1, math.floor(2.0 / cost))
    assert plan["rigid_K1+noproj"] == plan["rigid_K1"]  # same training: measured once

    def no_measuring(*args):
        raise AssertionError("the saved plan should be reused")

    monkeypatch.setattr(benchmark.plan, "step_cpu_seconds", no_measuring)
    assert benchmark.equal_cpu_plan(cfg, train_set, out_dir) == plan
    cfg.train_cpu_seconds = 3.0  # another budget: measured again
    with pytest.raises(AssertionError, match="reused"):
        benchmark.equal_cpu_plan(cfg, train_set, out_dir)


def test_methods_of_different_cost_get_different_steps(tmp_path, monkeypatch, data_pyxtal_build):
    """Costs 0.25 and 0.5 CPU-s per step at a 1 CPU-s budget: 4 and 2 steps, trained, recorded, tabled."""
    import kflow_mol.benchmark as benchmark

    costs = {"rigid_K1": 0.25, "crystalflow_lerp": 0.5}
    monkeypatch.setattr(benchmark.plan, "step_cpu_seconds", lambda cfg, method, *args: costs[method])
    trained_steps = {}
    real_train = benchmark.run.train

    def recording_train(run, data, **options):
        result = real_train(run, data, **options)
        trained_steps[Path(run.output_dir).name] = result.result.step
        return result

    monkeypatch.setattr(benchmark.run, "train", recording_train)
    cfg = tiny_config(tmp_path, data_pyxtal_build, ["identity", "rigid_K1", "crystalflow_lerp"], 1.0)
    table = benchmark.run_benchmark(cfg)
    assert trained_steps == {"rigid_K1_seed0": 4, "crystalflow_lerp_seed0": 2}
    runs = {r["method"]: r for r in json.loads((Path(cfg.output_dir) / "benchmark.json").read_text())}
    oracles = dict.fromkeys(ORACLES, 0)  # reference rows (cfg.oracles), never trained
    assert {m: r["train_steps"] for m, r in runs.items()} == {
        "identity": 0,
        "rigid_K1": 4,
        "crystalflow_lerp": 2,
    } | oracles
    assert "| rigid_K1 | 0.2500 | 4 |" in table and "| crystalflow_lerp | 0.5000 | 2 |" in table
    assert "Equal training budget: 1 process CPU-s per run" in table
    saved = json.loads((Path(cfg.output_dir) / "train_steps.json").read_text())
    assert saved["methods"]["crystalflow_lerp"]["steps"] == 2


def seed_record(method, seed, cod, mech, cod_draw_mean=None):
    """One seed's per-cluster PM-atom on two test sets (PM-center = half), optionally a mean over draws."""
    sets = {
        name: {"ids": [f"{name}{i}_r0_c{i}" for i in range(len(v))], "pm_atom": v, "pm_center": [x / 2 for x in v]}
        for name, v in (("cod", cod), ("mech", mech))
    }
    if cod_draw_mean is not None:
        sets["cod"]["pm_atom_sample_mean"] = cod_draw_mean
        sets["mech"]["pm_atom_sample_mean"] = mech
    return {"start": "local", "method": method, "seed": seed, "train_steps": 10, "sets": sets}


def test_seed_table_is_mean_and_std_over_seeds_per_set_and_pooled():
    from kflow_mol.benchmark import seed_mean_std, seed_table

    records = [seed_record("m", 0, [1.0, 3.0], [2.0], [2.0, 4.0]), seed_record("m", 1, [3.0, 5.0], [4.0], [4.0, 6.0])]
    assert seed_mean_std(records, ["cod"], "pm_atom") == (3.0, pytest.approx(math.sqrt(2.0)))
    assert seed_mean_std(records, ["cod", "mech"], "pm_atom") == (3.0, pytest.approx(math.sqrt(2.0)))  # 2 and 4
    assert seed_mean_std(records, ["cod", "mech"], "pm_atom_sample_mean")[0] == pytest.approx(11 / 3)  # 8/3, 14/3
    deterministic = [seed_record("d", 0, [1.0, 1.0], [4.0])]
    assert seed_mean_std(deterministic, ["cod", "mech"], "pm_atom_sample_mean") == (2.0, 0.0)  # falls back
    table = seed_table({"m": records, "d": deterministic}, ["cod", "mech"], "pm_atom")
    assert table[0] == "| method | seeds | steps | cod | mech | pooled | pooled, mean over draws |"
    assert table[2] == "| m | 2 | 10 | 3.000 ± 1.414 | 3.000 ± 1.414 | 3.000 ± 1.414 | 3.667 ± 1.414 |"
    assert table[3] == "| d | 1 | 10 | 1.000 ± 0.000 | 4.000 ± 0.000 | 2.000 ± 0.000 | 2.000 ± 0.000 |"
