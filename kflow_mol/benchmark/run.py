"""Running the assembly benchmark: train and score every method, seed and start preset.

:func:`run_benchmark` checks every method's config, then for each start preset loads the data,
fixes the training steps (:mod:`kflow_mol.benchmark.plan`), trains and scores every method with
every seed (:func:`run_method`; methods that differ only at sampling share one trained model)
and writes the tables (:func:`kflow_mol.benchmark.report.write_outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from kflow.training import ConfigError
from kflow_mol.benchmark.merge import merge_records
from kflow_mol.benchmark.plan import (
    assembly_fields,
    budget_steps,
    equal_cpu_plan,
    is_reference,
    load_test_sets,
    measure_costs,
    training_key,
    with_planned_steps,
)
from kflow_mol.benchmark.report import METRICS, write_outputs
from kflow_mol.config import BenchmarkConfig, DataConfig, method_overrides, run_name, with_method
from kflow_mol.evaluate import POSE_METRICS, evaluate_method, identity_method
from kflow_mol.experiment import TrainedRun, build_flow, load_split, set_cpu_threads, train, validate
from kflow_mol.oracles import ORACLES, oracle_method


# ----- one method ------------------------------------------------------------------------------
def score_sets(name: str, predict, test_sets: dict[str, list], cfg: BenchmarkConfig) -> dict:
    """``{set: {ids, pm_atom, pm_center, nfe, wall_s}}`` of one predictor, or of a trained run
    (a :class:`~kflow_mol.experiment.TrainedRun`: stochastic systems keep the minimum over
    ``sample.samples`` draws, and their mean under ``<metric>_sample_mean``)."""
    out = {}
    for set_name, clusters in test_sets.items():
        common = dict(batch_size=cfg.sample.batch_size, device=cfg.device, with_rmsd=cfg.eval.rmsd)
        if isinstance(predict, TrainedRun):
            scores = predict.evaluate(clusters, cfg, **common)
        else:
            scores = evaluate_method(name, predict, clusters, **common)
        out[set_name] = {
            "ids": scores.cluster_ids,
            **{m: scores.per_cluster[m] for m in METRICS},
            "rmsd_17": scores.per_cluster["rmsd_17"],
            **{m: scores.per_cluster[m] for m in POSE_METRICS},
            "nfe": scores.nfe,
            "wall_s": scores.wall_s,
        }
        if scores.per_cluster_mean is not None:
            out[set_name].update({f"{m}_sample_mean": scores.per_cluster_mean[m] for m in METRICS})
    return out


def run_method(
    cfg: BenchmarkConfig,
    method: str,
    seed: int,
    train_set: list,
    test_sets: dict[str, list],
    out_dir: Path,
    trained_cache: dict[str, tuple[str, TrainedRun]] | None = None,
) -> dict:
    """Train (unless identity or an oracle) and score one method with one seed on every test set.

    Args:
        trained_cache: ``{training_key: (method, TrainedRun)}`` of the models trained so far on
            ``train_set``; a method whose training config is there reuses that model (its flow
            rebuilt with this method's sampling settings); its ``train_cpu_s`` is then only that
            rebuild (≈ 0) and ``trained_with`` names the method whose training it shares.
    """
    tic = time.process_time()
    if is_reference(method):
        predict = identity_method if method == "identity" else oracle_method(method)
        return {
            "sets": score_sets(method, predict, test_sets, cfg),
            "train_cpu_s": 0.0,
            "cpu_s": time.process_time() - tic,
        }
    run = with_method(cfg, method, seed)
    run.output_dir = str(out_dir / f"{method}_seed{seed}")
    key = training_key(run)
    cache = {} if trained_cache is None else trained_cache
    trained_with, trained = cache.get(key, (method, None))
    if trained is None:
        trained = train(run, train_set, run_config=assembly_fields(run))
        cache[key] = (method, trained)
    else:
        flow = build_flow(run, trained.flow.translation_scale)
        trained = TrainedRun(name=run_name(run), flow=flow, model=trained.model, result=trained.result)
    train_cpu = time.process_time() - tic
    sets = score_sets(method, trained, test_sets, run)
    return {
        "sets": sets,
        "train_cpu_s": train_cpu,
        "cpu_s": time.process_time() - tic,
        "final_loss": trained.result.final_loss,
        "trained_with": trained_with,
        "steps_run": trained.result.step,
        "best_step": trained.result.best_step,
        "best_val": trained.result.best_metric,
        "stopped_early": trained.result.stopped_early,
    }


# ----- the loop ------------------------------------------------------------------------------
def check_benchmark(cfg: BenchmarkConfig) -> None:
    """Check every method's config and the baseline before any work (``ConfigError`` otherwise)."""
    for method in cfg.methods:
        if method != "identity":
            validate(with_method(cfg, method))  # every method's config is checked before any work
        else:
            method_overrides(method)
    if cfg.baseline != "identity" and cfg.baseline not in cfg.methods:
        raise ConfigError(f"baseline {cfg.baseline!r} is not among methods {list(cfg.methods)}")


def say(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def plan_steps(
    cfg: BenchmarkConfig, train_set: list, test_sets: dict[str, list], num_starts: int, out_dir: Path
) -> tuple[int, dict[str, dict] | None]:
    """Training steps per run (``budget_cpu_minutes``) and the equal-CPU plan (``train_cpu_seconds``),
    measured on the first start's data; ``(cfg.train.steps, None)`` when neither is set."""
    steps, plan = cfg.train.steps, None
    if cfg.budget_cpu_minutes is not None:
        costs = measure_costs(cfg, train_set, test_sets)
        steps = budget_steps(cfg, costs, sum(len(v) for v in test_sets.values()), num_starts)
        say(
            f"budget {cfg.budget_cpu_minutes} CPU-min: {costs['step_s']:.3f} CPU-s/step, "
            f"{costs['sample_cluster_s']:.3f} CPU-s/cluster sampled -> {steps} steps per run"
        )
    if cfg.train_cpu_seconds is not None:
        plan = equal_cpu_plan(cfg, train_set, out_dir)
        say(
            f"equal CPU budget {cfg.train_cpu_seconds:g} CPU-s per run: "
            + ", ".join(f"{m} {p['steps']} steps" for m, p in plan.items())
        )
    return steps, plan


def run_start(
    cfg: BenchmarkConfig,
    start: str | None,
    data: tuple[list, dict[str, list]],
    steps: int,
    plan,
    out_dir: Path,
    every_run: list[dict],
) -> None:
    """Train and score every method (and oracle row) with every seed on one start preset.

    Appends one record per run to ``every_run`` and rewrites ``benchmark.json`` after each, so
    an interrupted benchmark keeps what it did.
    """
    train_set, test_sets = data
    # the runs' own data group carries this start, so validation samples it too
    start_data = cfg.data if start is None else dataclasses.replace(cfg.data, start=start)
    run_cfg = dataclasses.replace(cfg, data=start_data, train=dataclasses.replace(cfg.train, steps=steps))
    trained_cache: dict[str, tuple[str, TrainedRun]] = {}  # one start's models, shared by sampling variants
    for method in [*cfg.methods, *(ORACLES if cfg.oracles else ())]:
        method_cfg = with_planned_steps(run_cfg, plan, method)
        for seed in [0] if is_reference(method) else list(cfg.seeds):
            row = run_method(method_cfg, method, seed, train_set, test_sets, out_dir / str(start), trained_cache)
            train_steps = 0 if is_reference(method) else method_cfg.train.steps
            every_run.append({"start": str(start), "method": method, "seed": seed, "train_steps": train_steps, **row})
            (out_dir / "benchmark.json").write_text(json.dumps(every_run))  # survives an interrupted run
            means = " ".join(f"{k} {np.mean(v['pm_atom']):.3f}" for k, v in row["sets"].items())
            say(f"[{start}] {method} seed {seed}: PM-atom {means} ({row['cpu_s']:.0f} CPU-s)")


def run_benchmark(cfg: BenchmarkConfig, command: str = "python scripts/benchmark_assembly.py") -> str:
    """Train and score every method of ``cfg.methods`` on every start preset; returns the tables.

    With ``cfg.merge`` nothing is trained: the records of those runs are tabled together
    (:func:`~kflow_mol.benchmark.merge.merge_records`).
    """
    check_benchmark(cfg)
    set_cpu_threads(cfg)
    out_dir = Path(cfg.output_dir)
    if cfg.merge:
        records = merge_records(cfg.merge, cfg.methods, cfg.oracles)
        out_dir.mkdir(parents=True, exist_ok=True)
        return write_outputs(records, cfg, out_dir, command.strip(), cfg.train.steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = [None] if cfg.data.source == "prepared" else list(cfg.starts)
    every_run: list[dict] = []
    steps, plan = cfg.train.steps, None
    for index, start in enumerate(starts):
        data: DataConfig = dataclasses.replace(cfg.data, start=start)
        train_set = load_split(data, "train", limit=data.max_train)
        test_sets = load_test_sets(cfg, start)
        say(
            f"[{start}] {len(train_set)} train clusters; test instances "
            + ", ".join(f"{k} {len(v)}" for k, v in test_sets.items())
        )
        if index == 0:
            steps, plan = plan_steps(cfg, train_set, test_sets, len(starts), out_dir)
        run_start(cfg, start, (train_set, test_sets), steps, plan, out_dir, every_run)
    return write_outputs(every_run, cfg, out_dir, command.strip(), steps, plan)
