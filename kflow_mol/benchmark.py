"""The assembly benchmark: every method trained at the same budget and seeds, scored alike.

Methods are named as in :func:`kflow_mol.config.method_overrides`: ``identity`` (the start
state), ``crystalflow_lerp`` (all-atom Cartesian linear flow matching, atom head),
``rigid_K1`` (rigid flow matching), ``kflow_K<n>`` (rigid K-Flow with n graph-spectral bands),
each optionally with ``+variant`` suffixes (``+aware``, ``+noproj``, ``+fresh``, ...).

Every trained method is scored on each real test set of ``cfg.test_sets``, reported
separately and pooled: ``testdb`` (the data group's test split), ``cod`` (every cluster of the
COD CIF folder, not trained on) and ``mech`` (pyxtal's mech.db). A test set whose cluster ids carry
several collection tags (``data=real``: ``csd500.COBHUW_r0_c0``) is also reported per
collection (rows ``testdb[csd500]``, ...). Runs that validated get a table of their steps and
best step. Every test cluster comes with
``test_repeats`` start states. Against ``cfg.baseline`` the benchmark reports, per test set,
the paired per-cluster difference of PM-atom and PM-center and the ratio of means, each with
a 95% bootstrap CI (:mod:`kflow.stats`); a cluster's value is its mean over its start states
and over seeds.

Beside PM, every method gets the pose diagnostics of :mod:`kflow_mol.metrics.orientation`
(mean and median orientation error in degrees, mean centroid error in Å; a cluster's median is
over its molecules, then averaged like every per-cluster value). With ``cfg.oracles`` the oracle
reference rows of :mod:`kflow_mol.oracles` (``oracle_centroids``, ``oracle_orientations``,
``oracle_rot30``, ``oracle_rot15``: "predictions" put together from the target, not models) are
scored on every start like the identity.

Outputs in ``output_dir``: ``benchmark.md`` (the tables), ``benchmark.csv`` (one row per
method, start and test set), ``benchmark.json`` (per-cluster values of every run).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from kflow.stats import BootstrapCI, paired_difference_ci, paired_ratio_ci
from kflow_mol.config import AssemblyConfig, BenchmarkConfig, DataConfig, method_overrides, run_name, with_method
from kflow_mol.evaluate import POSE_METRICS, evaluate_method, identity_method
from kflow_mol.experiment import TrainedRun, build_flow, load_split, set_cpu_threads, train, validate
from kflow_mol.oracles import ORACLES, oracle_method

METRICS = ("pm_atom", "pm_center")
POSE_LABELS = {
    "orientation_deg": "orientation mean (°)",
    "orientation_median_deg": "orientation median (°)",
    "centroid_error": "centroid error (Å)",
}
POSE_FORMATS = {"orientation_deg": ".1f", "orientation_median_deg": ".1f", "centroid_error": ".3f"}
REPEAT_PATTERN = re.compile(r"_r\d+_c")


# ----- data ------------------------------------------------------------------------------------
def load_test_sets(cfg: BenchmarkConfig, start: str | None) -> dict[str, list]:
    """The real test sets of ``cfg.test_sets`` with ``cfg.test_repeats`` start states per cluster.

    ``testdb`` is the data group's test split; for a ``prepared`` data group it is that
    folder's test split as it was built.
    """
    from kflow_mol.data import build_assembly_dataset, load_assembly_dataset

    sets = {}
    for name in cfg.test_sets:
        if name == "testdb":
            data = dataclasses.replace(cfg.data, start=start, repeats=cfg.test_repeats)
            sets[name] = load_split(data, "test", limit=cfg.data.max_test)
            continue
        source, folder, split = ("cif", cfg.cod_input, None) if name == "cod" else ("pyxtal_mech", None, "test")
        report = build_assembly_dataset(
            source, input=folder, start=start or "local", repeats=cfg.test_repeats, progress=False
        )
        clusters = load_assembly_dataset(report.output, split)
        sets[name] = clusters[: cfg.data.max_test] if cfg.data.max_test else clusters
    return sets


def cluster_key(cluster_id: str) -> str:
    """The test cluster an instance belongs to: its id without the start-state repeat."""
    return REPEAT_PATTERN.sub("_c", cluster_id)


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


SAMPLING_ONLY_KEYS = ("output_dir", "sample", "eval", "flow.project")
"""Config entries that change how a trained model is sampled or scored, never how it is trained."""


def training_key(run: AssemblyConfig) -> str:
    """The part of a run's config that fixes its training (all but :data:`SAMPLING_ONLY_KEYS`).

    Two methods with the same key (e.g. ``kflow_K3`` and ``kflow_K3+noproj`` at one seed)
    train the same model, so the benchmark trains it once and samples it for both.
    """
    values = dataclasses.asdict(run)
    for key in SAMPLING_ONLY_KEYS:
        group, _, name = key.rpartition(".")
        (values[group] if group else values).pop(name)
    return json.dumps(values, sort_keys=True, default=str)


def assembly_fields(run: BenchmarkConfig) -> dict:
    """The run's :class:`AssemblyConfig` part, saved in its checkpoint so that
    ``scripts/evaluate_assembly.py checkpoint=...`` (:func:`~kflow_mol.experiment.load_trained`) reads it."""
    names = {f.name for f in dataclasses.fields(AssemblyConfig)}
    return {key: value for key, value in dataclasses.asdict(run).items() if key in names}


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


def is_reference(method: str) -> bool:
    """Whether ``method`` is scored without training: the identity or an oracle row."""
    return method == "identity" or method.startswith("oracle_")


# ----- budget ----------------------------------------------------------------------------------
def measure_costs(cfg: BenchmarkConfig, train_set: list, test_sets: dict[str, list], steps: int = 5) -> dict:
    """Process CPU seconds of one training step and of sampling one test cluster (preset, K = 2)."""
    run = with_method(cfg, "kflow_K2", 0)
    flow = build_flow(run, 1.0)
    from kflow_mol.models import build_model

    model = build_model(**run.model.build_kwargs())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = Batch.from_data_list(train_set[: cfg.train.batch_size])
    tic = time.process_time()
    for _ in range(steps):
        loss, _ = flow.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    step_s = (time.process_time() - tic) / steps
    clusters = [c for cs in test_sets.values() for c in cs][: cfg.sample.batch_size]
    model.eval()
    tic = time.process_time()
    with torch.no_grad():
        flow.sample(model, Batch.from_data_list(clusters), steps_per_band=max(1, cfg.sample.steps // 2))
    sample_s = (time.process_time() - tic) / len(clusters)
    return {"step_s": step_s, "sample_cluster_s": sample_s}


def budget_steps(cfg: BenchmarkConfig, costs: dict, num_test: int, num_starts: int) -> int:
    """Training steps per run that fit ``cfg.budget_cpu_minutes`` (at most ``cfg.train.steps``, at least 10)."""
    trained = [m for m in cfg.methods if m != "identity"]
    runs = len(trained) * len(cfg.seeds) * num_starts
    sampling = runs * num_test * costs["sample_cluster_s"] * 1.3  # metrics and batching on top
    left = cfg.budget_cpu_minutes * 60 - sampling
    steps = int(left / max(runs * costs["step_s"] * 1.2, 1e-9)) if runs else cfg.train.steps
    return max(10, min(cfg.train.steps, steps))


# ----- equal CPU budget per method ---------------------------------------------------------------
PLAN_FILE = "train_steps.json"
PROBE_WARMUP, PROBE_STEPS = 2, 24


def step_cpu_seconds(cfg: BenchmarkConfig, method: str, train_set: list, work_dir: Path) -> float:
    """Process CPU seconds of one optimizer step of ``method`` (seed 0) through the full Trainer.

    Two short trainings of ``PROBE_WARMUP`` and ``PROBE_WARMUP + PROBE_STEPS`` steps are timed;
    their difference over ``PROBE_STEPS`` leaves out the set-up (model build). An untimed
    ``PROBE_WARMUP``-step training runs first: the first training of a model kind in a process
    pays one-time costs (e3nn code generation, allocator growth) that would otherwise land in
    the short run only and make the difference, and so the step cost, far too small.
    ``PROBE_STEPS`` is large enough that the run-to-run noise of the set-up (about 1.7 CPU-s
    per run, +-0.5) stays below ~10 % of the timed difference.
    """
    seconds = []
    for index, steps in enumerate((PROBE_WARMUP, PROBE_WARMUP, PROBE_WARMUP + PROBE_STEPS)):
        run = with_method(cfg, method, 0)
        run.train.steps = steps
        run.output_dir = str(work_dir / f"{method}_probe{index}")
        tic = time.process_time()
        train(run, train_set)
        seconds.append(time.process_time() - tic)
    seconds = seconds[1:]  # the warm-up run
    per_step = (seconds[1] - seconds[0]) / PROBE_STEPS
    return per_step if per_step > 0 else seconds[1] / (PROBE_WARMUP + PROBE_STEPS)


def equal_cpu_plan(cfg: BenchmarkConfig, train_set: list, out_dir: Path) -> dict[str, dict]:
    """``{method: {"step_cpu_s": cost, "steps": floor(cfg.train_cpu_seconds / cost)}}`` of every trained method.

    Methods that train the same model (:func:`training_key`) are measured once. The plan is
    saved in ``out_dir`` (:data:`PLAN_FILE`) and reused for the same budget, so a resumed or
    repeated benchmark trains every method for the same number of steps.
    """
    path = out_dir / PLAN_FILE
    trained = [m for m in cfg.methods if m != "identity"]
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("train_cpu_seconds") == cfg.train_cpu_seconds and set(trained) <= set(saved["methods"]):
            return {m: saved["methods"][m] for m in trained}
    costs: dict[str, float] = {}
    plan = {}
    with tempfile.TemporaryDirectory() as work:
        for method in trained:
            key = training_key(with_method(cfg, method, 0))
            if key not in costs:
                costs[key] = step_cpu_seconds(cfg, method, train_set, Path(work))
            steps = max(1, math.floor(cfg.train_cpu_seconds / costs[key]))
            plan[method] = {"step_cpu_s": costs[key], "steps": steps}
    path.write_text(json.dumps({"train_cpu_seconds": cfg.train_cpu_seconds, "methods": plan}, indent=2))
    return plan


def with_planned_steps(cfg: BenchmarkConfig, plan: dict[str, dict] | None, method: str) -> BenchmarkConfig:
    """``cfg`` with ``train.steps`` set to ``method``'s planned steps (unchanged without a plan)."""
    if not plan or method not in plan:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=int(plan[method]["steps"])))


def plan_table(plan: dict[str, dict], budget: float) -> list[str]:
    """Markdown rows of the equal-CPU plan: each method's measured CPU-s per step and its steps."""
    lines = [
        f"Equal training budget: {budget:g} process CPU-s per run (steps = floor(budget / CPU-s per step), "
        f"CPU-s per step measured over {PROBE_STEPS} steps of the full Trainer after {PROBE_WARMUP} warm-up steps).",
        "",
        "| method | CPU-s / step | optimizer steps |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {p['step_cpu_s']:.4f} | {p['steps']} |" for m, p in plan.items()]
    return lines


# ----- statistics and tables ------------------------------------------------------------------
def source_of(cluster_id: str) -> str:
    """The collection tag of a ``data=real`` cluster id (``csd500.COBHUW_r0_c0`` -> ``csd500``); "" without one."""
    head, dot, _ = cluster_id.partition(".")
    return head if dot else ""


def set_sources(runs: dict[str, list[dict]], set_name: str) -> list[str]:
    """The collection tags of the clusters of test set ``set_name`` (``[]`` unless there are several)."""
    tags = {
        source_of(i) for records in runs.values() for r in records for i in r["sets"].get(set_name, {}).get("ids", [])
    }
    return sorted(tags) if len(tags) > 1 and "" not in tags else []


def per_cluster_means(
    records: list[dict], set_names: list[str], metric: str, source: str | None = None
) -> dict[tuple[str, str], float]:
    """``{(set, cluster): mean over start states and seeds}`` of one method's records (only the
    clusters of collection ``source`` when given, :func:`source_of`)."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in records:
        for set_name in set_names:
            scores = record["sets"].get(set_name)
            if scores is None or metric not in scores:  # records written before the metric existed
                continue
            for cluster_id, value in zip(scores["ids"], scores[metric]):
                if source is not None and source_of(cluster_id) != source:
                    continue
                values[(set_name, cluster_key(cluster_id))].append(value)
    return {key: float(np.mean(v)) for key, v in values.items() if all(math.isfinite(x) for x in v)}


@dataclasses.dataclass
class Comparison:
    """One method against the baseline on one test set (or pooled)."""

    method: str
    test_set: str
    n_clusters: int
    n_instances: int
    mean: dict[str, float]
    difference: dict[str, BootstrapCI | None]
    ratio: dict[str, BootstrapCI | None]


def compare(
    runs: dict[str, list[dict]],
    baseline: str,
    set_names: list[str],
    label: str,
    resamples: int,
    source: str | None = None,
) -> list[Comparison]:
    """Paired per-cluster comparison of every method with ``baseline`` over ``set_names`` (only the
    clusters of collection ``source`` when given)."""
    base = {m: per_cluster_means(runs.get(baseline, []), set_names, m, source) for m in METRICS}
    out = []
    for method, records in runs.items():
        mean, difference, ratio = {}, {}, {}
        n_clusters = 0
        for metric in METRICS:
            values = per_cluster_means(records, set_names, metric, source)
            keys = sorted(set(values) & set(base[metric])) if method != baseline else sorted(values)
            n_clusters = len(keys)
            a = np.array([values[k] for k in keys])
            mean[metric] = float(a.mean()) if len(a) else math.nan
            if method == baseline or len(keys) < 2:
                difference[metric] = ratio[metric] = None
                continue
            b = np.array([base[metric][k] for k in keys])
            difference[metric] = paired_difference_ci(a, b, num_resamples=resamples)
            ratio[metric] = paired_ratio_ci(a, b, num_resamples=resamples)
        for metric in POSE_METRICS:
            values = per_cluster_means(records, set_names, metric, source)
            keys = sorted(set(values) & set(base["pm_atom"])) if method != baseline else sorted(values)
            mean[metric] = float(np.mean([values[k] for k in keys])) if keys else math.nan
        n_instances = sum(
            1
            for r in records
            for s in set_names
            if s in r["sets"]
            for i in r["sets"][s]["ids"]
            if source is None or source_of(i) == source
        )
        out.append(Comparison(method, label, n_clusters, n_instances // max(len(records), 1), mean, difference, ratio))
    return out


def _ci_cell(ci: BootstrapCI | None, reference: float, signed: bool) -> str:
    if ci is None:
        return "—"
    fmt = "+.3f" if signed else ".3f"
    mark = " *" if ci.excludes(reference) else ""
    return f"{ci.estimate:{fmt}} [{ci.low:{fmt}}, {ci.high:{fmt}}]{mark}"


def comparison_table(comparisons: list[Comparison], baseline: str, seeds: dict[str, int]) -> list[str]:
    """Markdown rows of the paired comparison table (``*``: the 95% CI excludes 0 / 1)."""
    lines = [
        f"| method | seeds | test set | clusters | instances/seed | PM-atom (Å) | PM-center (Å) | "
        f"ΔPM-atom vs {baseline} | PM-atom ratio | ΔPM-center vs {baseline} | PM-center ratio |",
        "|" + "---|" * 11,
    ]
    for c in comparisons:
        lines.append(
            f"| {c.method} | {seeds.get(c.method, 0)} | {c.test_set} | {c.n_clusters} | {c.n_instances} | "
            f"{c.mean['pm_atom']:.3f} | {c.mean['pm_center']:.3f} | "
            f"{_ci_cell(c.difference['pm_atom'], 0.0, True)} | {_ci_cell(c.ratio['pm_atom'], 1.0, False)} | "
            f"{_ci_cell(c.difference['pm_center'], 0.0, True)} | {_ci_cell(c.ratio['pm_center'], 1.0, False)} |"
        )
    return lines


def pose_table(comparisons: list[Comparison]) -> list[str]:
    """Markdown rows of the pose diagnostics beside PM (means over clusters, as in the comparison table)."""
    lines = [
        "| method | test set | PM-atom (Å) | PM-center (Å) | " + " | ".join(POSE_LABELS.values()) + " |",
        "|" + "---|" * (4 + len(POSE_LABELS)),
    ]
    for c in comparisons:
        name = f"{c.method} (oracle)" if c.method.startswith("oracle_") else c.method
        cells = [f"{c.mean.get(m, math.nan):{POSE_FORMATS[m]}}" for m in POSE_METRICS]
        lines.append(
            f"| {name} | {c.test_set} | {c.mean['pm_atom']:.3f} | {c.mean['pm_center']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def seed_mean_std(records: list[dict], set_names: list[str], key: str) -> tuple[float, float]:
    """Mean and sample std over seeds of each seed's mean of ``key`` over the instances of ``set_names``.

    ``<metric>_sample_mean`` (the mean over draws) falls back to ``<metric>`` for a deterministic
    method, whose one draw is its mean.
    """
    per_seed = []
    for record in records:
        values = []
        for set_name in set_names:
            scores = record["sets"].get(set_name, {})
            values += scores.get(key, scores.get(key.removesuffix("_sample_mean"), []))
        if values:
            per_seed.append(float(np.mean(values)))
    if not per_seed:
        return math.nan, math.nan
    return float(np.mean(per_seed)), float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0


def seed_table(runs: dict[str, list[dict]], set_names: list[str], metric: str) -> list[str]:
    """Markdown rows of the Table-5-style table: ``metric`` mean ± std over seeds per test set and pooled.

    Stochastic systems are scored by the minimum over draws per cluster; the last column is the
    pooled mean over draws (equal to the pooled value for deterministic methods).
    """
    groups = [(name, [name]) for name in set_names] + ([("pooled", list(set_names))] if len(set_names) > 1 else [])
    lines = [
        "| method | seeds | steps | " + " | ".join(name for name, _ in groups) + " | pooled, mean over draws |",
        "|" + "---|" * (len(groups) + 4),
    ]
    for method, records in runs.items():
        cells = [seed_mean_std(records, names, metric) for _, names in groups]
        cells.append(seed_mean_std(records, groups[-1][1], f"{metric}_sample_mean"))
        steps = sorted({r.get("train_steps", "?") for r in records}, key=str)
        lines.append(
            f"| {method} | {len(records)} | {'/'.join(map(str, steps))} | "
            + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in cells)
            + " |"
        )
    return lines


def cpu_table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown rows of each method's mean process CPU seconds per seed (training counted once)."""
    lines = ["| method | train CPU-s / seed | sample + score CPU-s / seed | model trained by |", "|---|---|---|---|"]
    for method, records in runs.items():
        train_s = [r.get("train_cpu_s", math.nan) for r in records]
        score_s = [r.get("cpu_s", math.nan) - r.get("train_cpu_s", math.nan) for r in records]
        owner = records[0].get("trained_with", method) if not is_reference(method) else "—"
        lines.append(
            f"| {method} | {np.mean(train_s):.0f} | {np.mean(score_s):.0f} | {'itself' if owner == method else owner} |"
        )
    lines += [
        "",
        "Methods that differ only in sampling settings (`flow.project`, `sample.*`) share one trained "
        "model per seed: its training is counted once, under the method that trained it.",
    ]
    return lines


def training_table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown rows of each trained run's steps: run, best validation step and value, early stop
    (``[]`` when no run validated)."""
    rows = [
        (method, r)
        for method, records in runs.items()
        for r in records
        if r.get("best_step") is not None and r.get("trained_with", method) == method
    ]
    if not rows:
        return []
    lines = [
        "| method | seed | steps run | best step (scored) | best val metric | stopped early |",
        "|---|---|---|---|---|---|",
    ]
    for method, r in rows:
        best = r.get("best_val")
        lines.append(
            f"| {method} | {r['seed']} | {r.get('steps_run', '?')} | {r['best_step']} | "
            f"{'—' if best is None else f'{best:.3f}'} | {'yes' if r.get('stopped_early') else 'no'} |"
        )
    return lines


def write_outputs(
    every_run: list[dict], cfg: BenchmarkConfig, out_dir: Path, command: str, steps: int, plan: dict | None = None
) -> str:
    """benchmark.md / .csv / .json from every run; returns the markdown.

    Args:
        plan: the equal-CPU plan (:func:`equal_cpu_plan`), tabled when given.
    """
    (out_dir / "benchmark.json").write_text(json.dumps(every_run))
    starts = list(dict.fromkeys(r["start"] for r in every_run))
    budget = f"{steps} optimizer steps" if not plan else "per-method optimizer steps (equal CPU budget, below)"
    lines = [
        f"Command: `{command}`",
        "",
        *(plan_table(plan, cfg.train_cpu_seconds) + [""] if plan else []),
        f"Model preset {cfg.model.preset}, {budget}, batch {cfg.train.batch_size}, "
        f"lr {cfg.train.lr}, "
        f"seeds {list(cfg.seeds)}, {cfg.sample.method} with {cfg.sample.steps} steps in total, "
        f"{cfg.test_repeats} start states per test cluster. A cluster's value is its mean over start states "
        f"and seeds; Δ and ratio are paired over clusters against {cfg.baseline} with a 95% bootstrap CI "
        f"({cfg.bootstrap_resamples} resamples, percentile); `*`: the CI excludes 0 (Δ) or 1 (ratio).",
        "",
    ]
    rows = []
    for start in starts:
        runs: dict[str, list[dict]] = defaultdict(list)
        for record in every_run:
            if record["start"] == start:
                runs[record["method"]].append(record)
        seeds = {m: len(r) for m, r in runs.items()}
        comparisons = []
        for set_name in cfg.test_sets:
            comparisons += compare(runs, cfg.baseline, [set_name], set_name, cfg.bootstrap_resamples)
            for tag in set_sources(runs, set_name):  # data=real: each collection on its own
                comparisons += compare(
                    runs, cfg.baseline, [set_name], f"{set_name}[{tag}]", cfg.bootstrap_resamples, tag
                )
        if len(cfg.test_sets) > 1:
            comparisons += compare(runs, cfg.baseline, list(cfg.test_sets), "pooled", cfg.bootstrap_resamples)
        order = list(runs)
        comparisons.sort(key=lambda c: (order.index(c.method), c.test_set != "pooled"))
        lines += [f"### start = {start}", ""] + comparison_table(comparisons, cfg.baseline, seeds) + [""]
        lines += [
            f"Pose diagnostics (start = {start}): per molecule, the symmetry-aware orientation error and the "
            "centroid error in the data frame (kflow_mol.metrics.orientation); a cluster's median is over its "
            "molecules; means over clusters as above. Rows `(oracle)` are reference predictions put together "
            "from the target (kflow_mol.oracles), not models.",
            "",
            *pose_table(comparisons),
            "",
        ]
        for metric, label in (("pm_atom", "PM-atom"), ("pm_center", "PM-center")):
            lines += [f"{label} (Å), mean ± std over seeds of the test-set means (start = {start}):", ""]
            lines += seed_table(runs, list(cfg.test_sets), metric) + [""]
        lines += ["Process CPU time:", ""] + cpu_table(runs) + [""]
        steps_rows = training_table(runs)
        if steps_rows:
            lines += ["Training with validation (scored with checkpoints/best.pt when eval.use_best, the default):", ""]
            lines += steps_rows + [""]
        rows += [(start, c) for c in comparisons]
    with open(out_dir / "benchmark.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "start",
                "method",
                "test_set",
                "n_clusters",
                "pm_atom",
                "pm_center",
                *[
                    f"{kind}_{m}_{part}"
                    for m in METRICS
                    for kind in ("diff", "ratio")
                    for part in ("est", "low", "high")
                ],
                *POSE_METRICS,
            ]
        )
        for start, c in rows:
            cells = []
            for metric in METRICS:
                for ci in (c.difference[metric], c.ratio[metric]):
                    cells += ["", "", ""] if ci is None else [f"{ci.estimate:.6g}", f"{ci.low:.6g}", f"{ci.high:.6g}"]
            writer.writerow(
                [
                    start,
                    c.method,
                    c.test_set,
                    c.n_clusters,
                    f"{c.mean['pm_atom']:.6g}",
                    f"{c.mean['pm_center']:.6g}",
                    *cells,
                    *(f"{c.mean.get(m, math.nan):.6g}" for m in POSE_METRICS),
                ]
            )
    table = "\n".join(lines) + "\n"
    (out_dir / "benchmark.md").write_text(table)
    return table


# ----- the loop ------------------------------------------------------------------------------
def run_benchmark(cfg: BenchmarkConfig, command: str = "python scripts/benchmark_assembly.py") -> str:
    """Train and score every method of ``cfg.methods`` on every start preset; returns the tables."""
    for method in cfg.methods:
        if method != "identity":
            validate(with_method(cfg, method))  # every method's config is checked before any work
        else:
            method_overrides(method)
    if cfg.baseline != "identity" and cfg.baseline not in cfg.methods:
        from kflow.training import ConfigError

        raise ConfigError(f"baseline {cfg.baseline!r} is not among methods {list(cfg.methods)}")
    set_cpu_threads(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = [None] if cfg.data.source == "prepared" else list(cfg.starts)
    every_run: list[dict] = []
    steps = cfg.train.steps
    plan: dict[str, dict] | None = None
    for index, start in enumerate(starts):
        data: DataConfig = dataclasses.replace(cfg.data, start=start)
        train_set = load_split(data, "train", limit=data.max_train)
        test_sets = load_test_sets(cfg, start)
        num_test = sum(len(v) for v in test_sets.values())
        print(
            f"[{start}] {len(train_set)} train clusters; test instances "
            + ", ".join(f"{k} {len(v)}" for k, v in test_sets.items()),
            file=sys.stderr,
            flush=True,
        )
        if index == 0 and cfg.budget_cpu_minutes is not None:
            costs = measure_costs(cfg, train_set, test_sets)
            steps = budget_steps(cfg, costs, num_test, len(starts))
            print(
                f"budget {cfg.budget_cpu_minutes} CPU-min: {costs['step_s']:.3f} CPU-s/step, "
                f"{costs['sample_cluster_s']:.3f} CPU-s/cluster sampled -> {steps} steps per run",
                file=sys.stderr,
                flush=True,
            )
        if index == 0 and cfg.train_cpu_seconds is not None:
            plan = equal_cpu_plan(cfg, train_set, out_dir)
            print(
                f"equal CPU budget {cfg.train_cpu_seconds:g} CPU-s per run: "
                + ", ".join(f"{m} {p['steps']} steps" for m, p in plan.items()),
                file=sys.stderr,
                flush=True,
            )
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))
        trained_cache: dict[str, tuple[str, TrainedRun]] = {}  # one start's models, shared by sampling variants
        for method in [*cfg.methods, *(ORACLES if cfg.oracles else ())]:
            method_cfg = with_planned_steps(run_cfg, plan, method)
            for seed in [0] if is_reference(method) else list(cfg.seeds):
                row = run_method(method_cfg, method, seed, train_set, test_sets, out_dir / str(start), trained_cache)
                train_steps = 0 if is_reference(method) else method_cfg.train.steps
                every_run.append(
                    {"start": str(start), "method": method, "seed": seed, "train_steps": train_steps, **row}
                )
                (out_dir / "benchmark.json").write_text(json.dumps(every_run))  # survives an interrupted run
                means = " ".join(f"{k} {np.mean(v['pm_atom']):.3f}" for k, v in row["sets"].items())
                print(
                    f"[{start}] {method} seed {seed}: PM-atom {means} ({row['cpu_s']:.0f} CPU-s)",
                    file=sys.stderr,
                    flush=True,
                )
    return write_outputs(every_run, cfg, out_dir, command.strip(), steps, plan)
