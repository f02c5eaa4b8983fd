"""Reporting the assembly benchmark: paired statistics and the markdown / CSV / JSON tables.

A cluster's value is its mean over its start states and over seeds (:func:`per_cluster_means`);
:func:`compare` sets every method against the baseline with paired bootstrap CIs
(:mod:`kflow.stats`); the ``*_table`` functions give markdown rows; :func:`write_outputs`
writes ``benchmark.md``, ``benchmark.csv`` and ``benchmark.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from kflow.stats import BootstrapCI, paired_difference_ci, paired_ratio_ci
from kflow_mol.benchmark.plan import PROBE_STEPS, PROBE_WARMUP, is_reference
from kflow_mol.config import BenchmarkConfig
from kflow_mol.evaluate import POSE_METRICS

METRICS = ("pm_atom", "pm_center")
POSE_LABELS = {
    "orientation_deg": "orientation mean (°)",
    "orientation_median_deg": "orientation median (°)",
    "centroid_error": "centroid error (Å)",
    "shape_rmsd": "shape RMSD (Å)",
    "gyration_ratio": "radius of gyration / crystal's",
    "spread_ratio": "centroid spread / crystal's",
}
POSE_FORMATS = {
    "orientation_deg": ".1f",
    "orientation_median_deg": ".1f",
    "centroid_error": ".3f",
    "shape_rmsd": ".3f",
    "gyration_ratio": ".3f",
    "spread_ratio": ".3f",
}
REPEAT_PATTERN = re.compile(r"_r\d+_c")


def cluster_key(cluster_id: str) -> str:
    """The test cluster an instance belongs to: its id without the start-state repeat."""
    return REPEAT_PATTERN.sub("_c", cluster_id)


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


# ----- outputs ---------------------------------------------------------------------------------
def header_lines(cfg: BenchmarkConfig, command: str, steps: int, plan: dict | None) -> list[str]:
    """The markdown lines above the per-start tables: the command, the budget and the protocol."""
    budget = f"{steps} optimizer steps" if not plan else "per-method optimizer steps (equal CPU budget, below)"
    return [
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


def start_comparisons(runs: dict[str, list[dict]], cfg: BenchmarkConfig) -> list[Comparison]:
    """Every method against the baseline on each test set, each collection of a set, and pooled."""
    comparisons = []
    for set_name in cfg.test_sets:
        comparisons += compare(runs, cfg.baseline, [set_name], set_name, cfg.bootstrap_resamples)
        for tag in set_sources(runs, set_name):  # data=real: each collection on its own
            comparisons += compare(runs, cfg.baseline, [set_name], f"{set_name}[{tag}]", cfg.bootstrap_resamples, tag)
    if len(cfg.test_sets) > 1:
        comparisons += compare(runs, cfg.baseline, list(cfg.test_sets), "pooled", cfg.bootstrap_resamples)
    order = list(runs)
    comparisons.sort(key=lambda c: (order.index(c.method), c.test_set != "pooled"))
    return comparisons


def start_section(
    start: str, runs: dict[str, list[dict]], comparisons: list[Comparison], cfg: BenchmarkConfig
) -> list[str]:
    """The markdown lines of one start preset: comparison, pose, seed, CPU and training tables."""
    seeds = {m: len(r) for m, r in runs.items()}
    lines = [f"### start = {start}", ""] + comparison_table(comparisons, cfg.baseline, seeds) + [""]
    lines += [
        f"Pose diagnostics (start = {start}): per molecule, the symmetry-aware orientation error and the "
        "centroid error in the data frame (kflow_mol.metrics.orientation); a cluster's median is over its "
        "molecules; means over clusters as above. Shape RMSD (Kabsch residual of each predicted molecule on "
        "its crystal copy) and radius of gyration over the crystal's are 0 and 1 for rigid methods: an "
        "all-atom method that shrinks molecules lowers PM-atom without packing them better; centroid spread "
        "(radius of gyration of the molecule centroids over the crystal's) below 1 is a compressed cluster, "
        "which also lowers PM-atom while orientations are unknown. Rows `(oracle)` are reference predictions put together "
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
    return lines


CSV_HEADER = [
    "start",
    "method",
    "test_set",
    "n_clusters",
    "pm_atom",
    "pm_center",
    *[f"{kind}_{m}_{part}" for m in METRICS for kind in ("diff", "ratio") for part in ("est", "low", "high")],
    *POSE_METRICS,
]
"""Columns of ``benchmark.csv`` (one row per method, start and test set)."""


def csv_row(start: str, c: Comparison) -> list:
    """The ``benchmark.csv`` row of one comparison (empty CI cells for the baseline)."""
    cells = []
    for metric in METRICS:
        for ci in (c.difference[metric], c.ratio[metric]):
            cells += ["", "", ""] if ci is None else [f"{ci.estimate:.6g}", f"{ci.low:.6g}", f"{ci.high:.6g}"]
    return [
        start,
        c.method,
        c.test_set,
        c.n_clusters,
        f"{c.mean['pm_atom']:.6g}",
        f"{c.mean['pm_center']:.6g}",
        *cells,
        *(f"{c.mean.get(m, math.nan):.6g}" for m in POSE_METRICS),
    ]


def runs_by_method(every_run: list[dict], start: str) -> dict[str, list[dict]]:
    """``{method: [record per seed]}`` of one start preset, in the order the runs were made."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for record in every_run:
        if record["start"] == start:
            runs[record["method"]].append(record)
    return runs


def write_outputs(
    every_run: list[dict], cfg: BenchmarkConfig, out_dir: Path, command: str, steps: int, plan: dict | None = None
) -> str:
    """benchmark.md / .csv / .json from every run; returns the markdown.

    Args:
        plan: the equal-CPU plan (:func:`kflow_mol.benchmark.plan.equal_cpu_plan`), tabled when given.
    """
    (out_dir / "benchmark.json").write_text(json.dumps(every_run))
    lines = header_lines(cfg, command, steps, plan)
    rows = []
    for start in dict.fromkeys(r["start"] for r in every_run):
        runs = runs_by_method(every_run, start)
        comparisons = start_comparisons(runs, cfg)
        lines += start_section(start, runs, comparisons, cfg)
        rows += [(start, c) for c in comparisons]
    with open(out_dir / "benchmark.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        writer.writerows(csv_row(start, c) for start, c in rows)
    table = "\n".join(lines) + "\n"
    (out_dir / "benchmark.md").write_text(table)
    return table


def pooled_means(
    records: list[dict], metrics: tuple[str, ...] = (*METRICS, *POSE_FORMATS)
) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean over every test set's clusters}}`` of benchmark records.

    A cluster's value is its mean over start states and seeds (:func:`per_cluster_means`), as in
    ``benchmark.md``'s pooled rows. Used to put several benchmark runs side by side (scaling curves).
    """
    by_method: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_method[record["method"]].append(record)
    means: dict[str, dict[str, float]] = {}
    for method, runs in by_method.items():
        set_names = sorted({name for r in runs for name in r["sets"]})
        values = {m: per_cluster_means(runs, set_names, m) for m in metrics}
        means[method] = {m: float(np.mean(list(v.values()))) for m, v in values.items() if v}
    return means
