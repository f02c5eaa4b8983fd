"""Validation during assembly training: PM on a fixed val subset, best.pt, loading it back."""

import dataclasses
import json
import math

import pytest

from kflow.training import ConfigError, load_checkpoint, read_csv_log
from kflow_mol.config import AssemblyConfig, EvalConfig, EvaluateConfig, SampleConfig
from kflow_mol.experiment import load_run, load_split, load_trained, run_evaluation, run_training, validation_options
from kflow_mol.validation import fixed_subset, orientation_metric

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(out_dir, folder, **train) -> AssemblyConfig:
    cfg = AssemblyConfig(output_dir=str(out_dir))
    cfg.data = dataclasses.replace(cfg.data, source="prepared", folder=str(folder), start=None, max_train=8, max_test=2)
    cfg.train = dataclasses.replace(cfg.train, steps=4, batch_size=4, log_every=1, progress=False, **train)
    cfg.sample = SampleConfig(steps=2, batch_size=4, export=0)
    cfg.eval = EvalConfig(rmsd=False, val_clusters=3)
    return cfg


def test_fixed_subset_is_spread_over_the_split_and_always_the_same():
    assert fixed_subset(list(range(10)), 4) == [0, 3, 6, 9]
    assert fixed_subset(list(range(3)), 5) == [0, 1, 2]
    assert fixed_subset(list(range(100)), 32) == fixed_subset(list(range(100)), 32)


def test_eval_config_checks_the_validation_keys():
    with pytest.raises(ConfigError, match="eval.val_clusters must be >= 1"):
        EvalConfig(val_clusters=0)
    with pytest.raises(ConfigError, match="unknown eval.val_metric 'rmsd'"):
        EvalConfig(val_metric="rmsd")


def test_validation_is_off_by_default(tmp_path, data_pyxtal_build):
    cfg = tiny_config(tmp_path, data_pyxtal_build.output)
    assert cfg.train.val_every is None and validation_options(cfg, flow=None) == {}


def test_tiny_assembly_run_validates_keeps_best_and_loads_it(tmp_path, data_pyxtal_build):
    cfg = tiny_config(tmp_path / "run", data_pyxtal_build.output, val_every=2)
    metrics = run_training(cfg)
    run = metrics["run"]
    rows = read_csv_log(tmp_path / "run" / "val_log.csv")
    assert [r["step"] for r in rows] == [2, 4]
    keys = {"pm_atom", "pm_center"} | ({"orientation_median_deg"} if orientation_metric() else set())
    assert keys <= set(rows[0]) and all(math.isfinite(r[k]) for r in rows for k in keys)
    best_row = min(rows, key=lambda r: r["pm_atom"])
    assert (run["best_step"], run["best_val"]) == (best_row["step"], best_row["pm_atom"])
    assert run["scored_weights"] == "best" and run["val_wall_s"] > 0 and not run["stopped_early"]
    assert (tmp_path / "run" / "val_curve.png").is_file()
    best_path = tmp_path / "run" / "checkpoints" / "best.pt"
    assert load_checkpoint(best_path)["step"] == run["best_step"]

    run_cfg, trained = load_run(tmp_path / "run", checkpoint="best")  # the run-folder format of both branches
    assert load_trained(best_path)[0] == run_cfg and (tmp_path / "run" / "config.yaml").is_file()
    validate = validation_options(run_cfg, trained.flow)["validate_fn"]
    first, again = validate(trained.model), validate(trained.model)
    assert first == again  # deterministic
    assert first["pm_atom"] == pytest.approx(best_row["pm_atom"], rel=1e-9)

    evaluation = EvaluateConfig(checkpoint=str(best_path), eval=EvalConfig(rmsd=False))
    evaluation.data = dataclasses.replace(evaluation.data, max_test=2)
    run_evaluation(evaluation)
    scored = json.loads((tmp_path / "run" / "eval_test_best.json").read_text())
    assert scored["checkpoint"] == str(best_path)
    assert len(load_split(run_cfg.data, "test", limit=2)) == len(scored["cluster_ids"])


def test_early_stopping_in_an_assembly_run(tmp_path, data_pyxtal_build):
    cfg = tiny_config(tmp_path, data_pyxtal_build.output, val_every=1, early_stop_patience=1)
    cfg.train.steps = 5
    cfg.eval = dataclasses.replace(cfg.eval, val_metric="pm_center", use_best=False)
    run = run_training(cfg)["run"]
    values = [r["pm_center"] for r in read_csv_log(tmp_path / "val_log.csv")]
    worse = [i + 1 for i in range(1, len(values)) if values[i] >= min(values[:i])]
    assert run["stopped_early"] == bool(worse) and run["train_steps"] == (worse[0] if worse else 5)
    assert len(values) == run["train_steps"] and run["best_step"] == 1 + values.index(min(values))
    assert run["scored_weights"] == "last"


def test_data_without_val_clusters_trains_without_validation(tmp_path, capsys):
    cfg = AssemblyConfig(output_dir=str(tmp_path))
    cfg.train.val_every = 10
    assert validation_options(cfg, flow=None, val_set=[]) == {}
    assert "no val clusters: training without validation" in capsys.readouterr().err


def test_demo_config_validates_every_100_steps_and_the_library_default_does_not():
    from kflow_mol.cli import compose

    demo = compose("train_assembly", [], AssemblyConfig)
    assert demo.train.val_every == 100 and not demo.eval.use_best
    assert compose("train_assembly", ["train.val_every=null"], AssemblyConfig).train.val_every is None
    assert AssemblyConfig().train.val_every is None
