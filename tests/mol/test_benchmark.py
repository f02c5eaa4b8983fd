"""The benchmark's statistics and method names, on hand-made per-cluster records."""

import dataclasses
import json
from pathlib import Path

import pytest

from kflow.training import ConfigError
from kflow_mol.benchmark import budget_steps, cluster_key, compare, per_cluster_means, training_key, write_outputs
from kflow_mol.config import BenchmarkConfig, method_overrides, with_method
from kflow_mol.experiment import load_trained


def record(method, seed, values, set_name="mech"):
    """Two clusters with two start states each: ids ``x_r0_c1``, ``x_r1_c1``, ``y_r0_c2``, ``y_r1_c2``."""
    ids = ["x_r0_c1", "x_r1_c1", "y_r0_c2", "y_r1_c2"]
    return {
        "start": "local",
        "method": method,
        "seed": seed,
        "sets": {set_name: {"ids": ids, "pm_atom": list(values), "pm_center": [v / 2 for v in values]}},
    }


def test_cluster_values_pool_start_states_and_seeds():
    assert cluster_key("ABC_r3_c12") == "ABC_c12"
    records = [record("m", 0, [1.0, 3.0, 5.0, 5.0]), record("m", 1, [3.0, 1.0, 6.0, 4.0])]
    assert per_cluster_means(records, ["mech"], "pm_atom") == {("mech", "x_c1"): 2.0, ("mech", "y_c2"): 5.0}


def test_constant_improvement_is_significant_and_exact():
    runs = {
        "rigid_K1": [record("rigid_K1", 0, [4.0, 4.0, 6.0, 6.0]), record("rigid_K1", 1, [4.0, 4.0, 6.0, 6.0])],
        "kflow_K2": [record("kflow_K2", 0, [3.0, 3.0, 5.0, 5.0])],
    }
    by_method = {c.method: c for c in compare(runs, "rigid_K1", ["mech"], "mech", 500)}
    k2 = by_method["kflow_K2"]
    assert k2.mean["pm_atom"] == 4.0 and k2.n_clusters == 2 and k2.n_instances == 4
    diff = k2.difference["pm_atom"]
    assert (diff.estimate, diff.low, diff.high) == (-1.0, -1.0, -1.0) and diff.excludes(0.0)
    assert k2.ratio["pm_atom"].estimate == pytest.approx(0.8)  # (3 + 5) / (4 + 6)
    assert k2.difference["pm_center"].estimate == -0.5
    assert by_method["rigid_K1"].difference["pm_atom"] is None


def test_tables_mark_significant_rows(tmp_path):
    cfg = BenchmarkConfig(methods=["rigid_K1", "kflow_K2"], test_sets=["mech"], bootstrap_resamples=200)
    every_run = [record("rigid_K1", 0, [4.0, 4.0, 6.0, 6.0]), record("kflow_K2", 0, [3.0, 3.0, 5.0, 5.0])]
    table = write_outputs(every_run, cfg, tmp_path, "python scripts/benchmark_assembly.py", 100)
    assert "| kflow_K2 | 1 | mech | 2 | 4 | 4.000 | 2.000 | -1.000 [-1.000, -1.000] * |" in table
    assert (tmp_path / "benchmark.csv").read_text().count("\n") == 3


def test_pose_table_beside_pm(tmp_path):
    """Pose diagnostics are averaged like PM; records written before they existed leave them NaN."""
    cfg = BenchmarkConfig(methods=["rigid_K1", "kflow_K2"], test_sets=["mech"], bootstrap_resamples=200)
    old = record("rigid_K1", 0, [4.0, 4.0, 6.0, 6.0])
    new = record("kflow_K2", 0, [3.0, 3.0, 5.0, 5.0])
    new["sets"]["mech"].update(
        orientation_deg=[10.0, 20.0, 30.0, 40.0],
        orientation_median_deg=[1.0, 1.0, 2.0, 2.0],
        centroid_error=[0.5] * 4,
        shape_rmsd=[0.2, 0.2, 0.4, 0.4],
        gyration_ratio=[0.9] * 4,
        spread_ratio=[1.0, 1.0, 0.8, 0.8],
    )
    oracle = record("oracle_rot30", 0, [1.0, 1.0, 1.0, 1.0])
    oracle["sets"]["mech"].update(
        orientation_deg=[30.0] * 4, orientation_median_deg=[30.0] * 4, centroid_error=[0.0] * 4
    )
    table = write_outputs([old, new, oracle], cfg, tmp_path, "python scripts/benchmark_assembly.py", 100)
    assert "| kflow_K2 | mech | 4.000 | 2.000 | 25.0 | 1.5 | 0.500 | 0.300 | 0.900 | 0.900 |" in table
    assert "| rigid_K1 | mech | 5.000 | 2.500 | nan | nan | nan | nan | nan | nan |" in table
    assert "| oracle_rot30 (oracle) | mech | 1.000 | 0.500 | 30.0 | 30.0 | 0.000 | nan | nan | nan |" in table
    header, *rows = (tmp_path / "benchmark.csv").read_text().splitlines()
    assert header.endswith(
        "orientation_deg,orientation_median_deg,centroid_error,shape_rmsd,gyration_ratio,spread_ratio"
    )
    assert rows[1].endswith(",25,1.5,0.5,0.3,0.9,0.9")


def test_real_test_split_is_reported_per_source_and_best_steps_are_tabled(tmp_path):
    """data=real cluster ids carry their collection (``csd500.X_r0_c1``): each gets its own rows."""
    cfg = BenchmarkConfig(methods=["rigid_K1", "kflow_K2"], test_sets=["testdb"], bootstrap_resamples=200)
    ids = ["csd500.A_r0_c1", "csd500.A_r1_c1", "csd500.B_r0_c2", "ocelot.k1_r0_c3", "ocelot.k2_r0_c4"]

    def real_record(method, values, **extra):
        pm = {"pm_atom": values, "pm_center": [v / 2 for v in values]}
        return {"start": "local", "method": method, "seed": 0, "sets": {"testdb": {"ids": ids, **pm}}, **extra}

    base = real_record("rigid_K1", [4.0, 4.0, 6.0, 2.0, 2.0], steps_run=300, best_step=200, best_val=4.5)
    kflow = real_record("kflow_K2", [3.0, 3.0, 5.0, 3.0, 3.0], steps_run=400, best_step=100, stopped_early=True)
    by_label = {
        (c.method, c.test_set): c
        for c in compare(
            {"rigid_K1": [base], "kflow_K2": [kflow]}, "rigid_K1", ["testdb"], "testdb[ocelot]", 200, "ocelot"
        )
    }
    ocelot = by_label[("kflow_K2", "testdb[ocelot]")]
    assert (ocelot.n_clusters, ocelot.n_instances, ocelot.mean["pm_atom"]) == (2, 2, 3.0)
    assert ocelot.ratio["pm_atom"].estimate == pytest.approx(1.5)
    table = write_outputs([base, kflow], cfg, tmp_path, "python scripts/benchmark_assembly.py", 100)
    assert "| kflow_K2 | 1 | testdb[csd500] | 2 | 3 | 4.000 |" in table
    assert "| kflow_K2 | 1 | testdb[ocelot] | 2 | 2 | 3.000 |" in table
    assert "| kflow_K2 | 1 | testdb | 4 | 5 | 3.500 |" in table
    assert "| rigid_K1 | 0 | 300 | 200 | 4.500 | no |" in table
    assert "| kflow_K2 | 0 | 400 | 100 | — | yes |" in table


def test_method_variants_and_budget():
    assert method_overrides("kflow_K3+aware+fresh") == {"K": 3, "model.start_aware": True, "data.fresh_starts": True}
    run = with_method(BenchmarkConfig(), "kflow_K2+noproj+full", seed=2)
    assert (run.K, run.flow.project, run.flow.start_motion, run.model.start_aware) == (2, False, "full", True)
    assert run.train.seed == 2
    with pytest.raises(ConfigError, match="unknown method variant"):
        method_overrides("kflow_K2+blue")
    cfg = BenchmarkConfig(methods=["identity", "rigid_K1"], seeds=[0], budget_cpu_minutes=10.0)
    # 2 runs (2 starts), 100 test clusters each at 0.1 s (x1.3) = 26 s; 574 s left / (2 x 0.5 s x 1.2) = 478 steps
    assert budget_steps(cfg, {"step_s": 0.5, "sample_cluster_s": 0.1}, 100, 2) == 150  # capped by train.steps
    cfg.train.steps = 1000
    assert budget_steps(cfg, {"step_s": 0.5, "sample_cluster_s": 0.1}, 100, 2) == 478


def test_sampling_variants_share_one_training(tmp_path, monkeypatch, data_pyxtal_build):
    """``kflow_K2`` and ``kflow_K2+noproj`` differ only at sampling: one training, two scorings."""
    import kflow_mol.benchmark as benchmark
    from kflow_mol.benchmark import run as running

    calls = []
    real_train = running.train
    monkeypatch.setattr(
        running, "train", lambda run, data, **kw: calls.append(run.output_dir) or real_train(run, data, **kw)
    )
    cfg = BenchmarkConfig(
        methods=["rigid_K1", "kflow_K2", "kflow_K2+noproj"],
        seeds=[0],
        test_sets=["testdb"],
        bootstrap_resamples=100,
        output_dir=str(tmp_path / "bench"),
    )
    cfg.data = dataclasses.replace(
        cfg.data, source="prepared", folder=str(data_pyxtal_build.output), start=None, max_train=8, max_test=2
    )
    cfg.train.steps, cfg.train.batch_size, cfg.eval.rmsd = 2, 4, False
    table = benchmark.run_benchmark(cfg)
    assert [Path(p).name for p in calls] == ["rigid_K1_seed0", "kflow_K2_seed0"]
    assert sorted(p.name for p in (tmp_path / "bench" / "None").iterdir()) == ["kflow_K2_seed0", "rigid_K1_seed0"]
    runs = {r["method"]: r for r in json.loads((tmp_path / "bench" / "benchmark.json").read_text())}
    assert runs["kflow_K2+noproj"]["trained_with"] == "kflow_K2" and runs["kflow_K2"]["trained_with"] == "kflow_K2"
    assert runs["kflow_K2+noproj"]["final_loss"] == runs["kflow_K2"]["final_loss"]
    assert runs["kflow_K2+noproj"]["sets"]["testdb"]["pm_atom"] != runs["kflow_K2"]["sets"]["testdb"]["pm_atom"]
    assert "| kflow_K2+noproj | 0 |" in table and "| kflow_K2 |" in table
    oracle = runs["oracle_rot30"]  # reference rows, scored on every start without training
    assert oracle["train_steps"] == 0 and oracle["sets"]["testdb"]["orientation_deg"] == pytest.approx(
        [30, 30], abs=1e-3
    )
    assert runs["oracle_centroids"]["sets"]["testdb"]["centroid_error"] == pytest.approx([0, 0], abs=1e-5)
    assert "| oracle_rot30 (oracle) | testdb |" in table and "orientation median (°)" in table
    run_cfg, trained = load_trained(tmp_path / "bench" / "None" / "kflow_K2_seed0" / "checkpoints" / "last.pt")
    assert (run_cfg.K, run_cfg.train.steps, trained.name) == (2, 2, "kflow_K2")  # evaluate_assembly reads it


def test_training_key_ignores_sampling_only_settings():
    cfg = BenchmarkConfig()
    key = training_key(with_method(cfg, "kflow_K3", 0))
    assert training_key(with_method(cfg, "kflow_K3+noproj", 0)) == key
    assert training_key(with_method(cfg, "kflow_K3+proj", 0)) == key
    for other in (
        with_method(cfg, "kflow_K3", 1),
        with_method(cfg, "kflow_K3+aware", 0),
        with_method(cfg, "kflow_K2", 0),
    ):
        assert training_key(other) != key


def test_each_start_preset_trains_and_validates_on_its_own_start(tmp_path, monkeypatch):
    """Runs of ``starts=[scrambled]`` carry ``data.start=scrambled``, so validation (which loads
    the val split of the run's data group) samples scrambled starts, not the default local ones."""
    from kflow_mol.benchmark import run as running

    seen = []
    monkeypatch.setattr(
        running,
        "run_method",
        lambda cfg, method, seed, *a, **k: seen.append(cfg.data.start) or {"sets": {}, "cpu_s": 0.0},
    )
    monkeypatch.setattr(running, "say", lambda *a, **k: None)
    cfg = BenchmarkConfig(methods=["rigid_K1"], seeds=[0], oracles=False, output_dir=str(tmp_path))
    for start in ("scrambled", "sites"):
        running.run_start(cfg, start, ([], {}), 2, None, tmp_path, [])
    assert cfg.data.start == "local" and seen == ["scrambled", "sites"]


def test_merge_tables_seeds_run_as_separate_jobs_like_one_run(tmp_path, data_pyxtal_build):
    """Seeds 0 and 1 run apart and merged give the joint run's tables; bad merges are refused."""
    from kflow_mol.benchmark import run_benchmark

    def config(out: str, seeds: list[int], max_test: int = 2, merge: list = ()) -> BenchmarkConfig:
        cfg = BenchmarkConfig(
            methods=["identity", "rigid_K1"],
            seeds=seeds,
            test_sets=["testdb"],
            bootstrap_resamples=100,
            oracles=False,
            output_dir=str(tmp_path / out),
            merge=[str(tmp_path / m) for m in merge],
        )
        cfg.data = dataclasses.replace(
            cfg.data,
            source="prepared",
            folder=str(data_pyxtal_build.output),
            start=None,
            max_train=8,
            max_test=max_test,
        )
        cfg.train.steps, cfg.train.batch_size, cfg.eval.rmsd = 2, 4, False
        return cfg

    for out, seeds in (("s0", [0]), ("s1", [1]), ("both", [0, 1])):
        run_benchmark(config(out, seeds))
    run_benchmark(config("merged", [0, 1], merge=["s0", "s1"]))
    joint, merged = ((tmp_path / d / "benchmark.csv").read_text() for d in ("both", "merged"))
    assert merged == joint and "rigid_K1" in merged
    records = json.loads((tmp_path / "merged" / "benchmark.json").read_text())
    assert [(r["method"], r["seed"]) for r in records] == [("identity", 0), ("rigid_K1", 0), ("rigid_K1", 1)]
    with pytest.raises(ConfigError, match=r"\('None', 'rigid_K1', 0\) is in both"):
        run_benchmark(config("bad", [0, 1], merge=["s0", "both"]))
    run_benchmark(config("one", [2], max_test=1))
    with pytest.raises(ConfigError, match="scored other testdb instances"):
        run_benchmark(config("bad", [0, 2], merge=["s0", "one"]))
    with pytest.raises(ConfigError, match="cannot read"):
        run_benchmark(config("bad", [0], merge=["nowhere"]))
