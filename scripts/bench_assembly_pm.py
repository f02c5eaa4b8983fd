"""Test PM of an assembly preset in its current form against its original form.

A speed-up of a preset must not cost accuracy. This trains the preset twice with the same
config, seed and number of steps — once as ``kflow_mol.models.PRESETS`` defines it now, once
with the original (pre-speed-up) definition recorded in
``scripts/reference_presets.json`` — through the normal training job, and prints test PM-atom /
PM-center next to the identity baseline and the process CPU time of each run.

    OMP_NUM_THREADS=1 python scripts/bench_assembly_pm.py --preset M --variants current reference \\
        -- train.steps=100 eval.rmsd=false

``--equal-cpu`` trains the current form once more for as many steps as fit in the training CPU
time of the reference (at the current form's measured CPU per step). ``--eval TAG=OVERRIDES``
(repeatable) scores every trained checkpoint on another test set, e.g.
``--eval "testdb_r4=data=pyxtal data.repeats=4"`` (4 start states per test crystal) or
``--eval "mech=data=pyxtal data.source=pyxtal_mech"``. Every variant is then compared with the
reference on each test set by paired 95 % bootstrap intervals over test crystals (the starts of
a crystal are averaged first), from ``kflow.stats``.

Arguments after ``--`` are overrides of ``configs/assembly/train_assembly.yaml``. Each variant
writes ``<output>/<preset>_<variant>/`` (metrics.json, eval_<TAG>.json etc.) and the table goes
to ``<output>/pm_<preset>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from kflow.stats import paired_difference_ci, paired_ratio_ci
from kflow_mol import experiment
from kflow_mol.cli import compose
from kflow_mol.config import AssemblyConfig, EvaluateConfig
from kflow_mol.models import assembly_gnn


def reference_presets() -> dict[str, dict]:
    """The original (pre-issue-15) presets, recorded in ``reference_presets.json`` beside this script."""
    return json.loads(Path(__file__).with_name("reference_presets.json").read_text())["presets"]


@contextlib.contextmanager
def preset_as(preset: str, variant: str):
    """``PRESETS[preset]`` as the variant defines it (``reference``: the original), restored after."""
    saved = dict(assembly_gnn.PRESETS[preset])
    if variant == "reference":
        assembly_gnn.PRESETS[preset] = reference_presets()[preset]
    try:
        yield
    finally:
        assembly_gnn.PRESETS[preset] = saved


@contextlib.contextmanager
def timed_training(cpu: dict):
    """Record the process CPU seconds of ``experiment.train`` (training alone) in ``cpu["train"]``."""
    train = experiment.train

    def wrapper(*args, **kwargs):
        tic = time.process_time()
        try:
            return train(*args, **kwargs)
        finally:
            cpu["train"] = time.process_time() - tic

    experiment.train = wrapper
    try:
        yield
    finally:
        experiment.train = train


def run_variant(preset: str, variant: str, name: str, overrides: list[str], output: Path) -> dict:
    """Train and evaluate one variant; returns its PM summary and CPU seconds."""
    out_dir = output / f"{preset}_{name}"
    cfg = compose(
        "train_assembly",
        [f"model={preset}", *overrides, f"output_dir={out_dir}", "train.progress=false"],
        AssemblyConfig,
    )
    cpu: dict[str, float] = {}
    tic = time.process_time()
    with preset_as(preset, variant), timed_training(cpu):
        experiment.run_training(cfg)
    row = {"variant": name, "steps": cfg.train.steps, "cpu_s": time.process_time() - tic, "train_cpu_s": cpu["train"]}
    row["metrics"] = json.loads((out_dir / "metrics.json").read_text())
    return row


def evaluate_variant(preset: str, variant: str, out_dir: Path, tag: str, data_overrides: list[str]) -> Path:
    """Score the variant's checkpoint on another test set; returns the metrics JSON path."""
    path = out_dir / f"eval_{tag}.json"
    cfg = compose(
        "evaluate_assembly",
        [f"checkpoint={out_dir}/checkpoints/last.pt", "use_run_data=false", *data_overrides, f"output={path}"],
        EvaluateConfig,
    )
    with preset_as(preset, variant):
        experiment.run_evaluation(cfg)
    return path


def per_crystal(metrics: dict, metric: str) -> dict[str, float]:
    """Per-test-crystal mean of a metric of the trained method (its start states averaged)."""
    ids = metrics.get("cluster_ids") or metrics["run"]["test_ids"]
    name = next(key for key in metrics["per_cluster"] if key != "identity")
    groups = defaultdict(list)
    for cluster_id, value in zip(ids, metrics["per_cluster"][name][metric]):
        groups[cluster_id.split("_r")[0]].append(value)
    return {crystal: sum(values) / len(values) for crystal, values in groups.items()}


def compare(metrics: dict, reference: dict) -> dict:
    """Paired intervals of (variant - reference) and (variant / reference) of PM-atom and PM-center."""
    out = {}
    for metric in ("pm_atom", "pm_center"):
        ours, theirs = per_crystal(metrics, metric), per_crystal(reference, metric)
        keys = sorted(theirs)
        a, b = [ours[key] for key in keys], [theirs[key] for key in keys]
        enough = len(keys) >= 2
        out[metric] = {
            "crystals": len(keys),
            "variant": sum(a) / len(a),
            "reference": sum(b) / len(b),
            "difference": str(paired_difference_ci(a, b)) if enough else "n/a (one crystal)",
            "ratio": str(paired_ratio_ci(a, b)) if enough else "n/a (one crystal)",
        }
    return out


def equal_cpu_steps(rows: list[dict]) -> int:
    """Steps of the current form that take the reference's training CPU time."""
    by_variant = {row["variant"]: row for row in rows}
    if not {"current", "reference"} <= set(by_variant):
        raise SystemExit("--equal-cpu needs --variants current reference")
    current = by_variant["current"]
    return round(by_variant["reference"]["train_cpu_s"] / (current["train_cpu_s"] / current["steps"]))


def main() -> None:
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="M", choices=sorted(assembly_gnn.PRESETS))
    parser.add_argument("--variants", nargs="+", default=["current", "reference"], choices=["current", "reference"])
    parser.add_argument("--equal-cpu", action="store_true", help="also train current for the reference's CPU time")
    parser.add_argument("--eval", action="append", default=[], metavar="TAG=OVERRIDES", help="extra test set")
    parser.add_argument("--output", default="outputs/bench_assembly_pm")
    args = parser.parse_args(own)
    output = Path(args.output)
    plan = [(variant, variant) for variant in args.variants]
    rows = [run_variant(args.preset, variant, name, overrides, output) for variant, name in plan]
    if args.equal_cpu:
        steps = equal_cpu_steps(rows)
        plan.append(("current", "current_equal_cpu"))
        kept = [item for item in overrides if not item.startswith("train.steps=")]
        rows.append(run_variant(args.preset, *plan[-1], [*kept, f"train.steps={steps}"], output))
    evals = {tag: spec.split() for tag, spec in (item.split("=", 1) for item in args.eval)}
    for row, (variant, name) in zip(rows, plan):
        row["evals"] = {"run": row["metrics"]}
        for tag, data_overrides in evals.items():
            path = evaluate_variant(args.preset, variant, output / f"{args.preset}_{name}", tag, data_overrides)
            row["evals"][tag] = json.loads(path.read_text())
    report(args.preset, overrides, rows, output)


def report(preset: str, overrides: list[str], rows: list[dict], output: Path) -> None:
    """Print the PM table and the paired comparisons; write ``pm_<preset>.json``."""
    print(f"preset {preset}, overrides {' '.join(overrides) or '(none)'}")
    print("| variant | steps | PM-atom | PM-center | identity PM-atom | train CPU s | CPU s (train + eval) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        metrics = row["metrics"]
        print(
            f"| {row['variant']} | {row['steps']} | {_pm(metrics, 'pm_atom')} | {_pm(metrics, 'pm_center')} | "
            f"{_pm(metrics, 'pm_atom', 'identity')} | {row['train_cpu_s']:.0f} | {row['cpu_s']:.0f} |"
        )
    reference = next((row for row in rows if row["variant"] == "reference"), None)
    for row in rows if reference else []:
        if row is reference:
            continue
        row["versus_reference"] = {tag: compare(m, reference["evals"][tag]) for tag, m in row["evals"].items()}
        for tag, metrics in row["versus_reference"].items():
            for metric, values in metrics.items():
                print(
                    f"{row['variant']} vs reference, {tag}, {metric} ({values['crystals']} crystals): "
                    f"{values['variant']:.3f} vs {values['reference']:.3f}, difference {values['difference']}, "
                    f"ratio {values['ratio']}"
                )
    output.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row.pop("evals", None)
    (output / f"pm_{preset}.json").write_text(json.dumps({"overrides": overrides, "rows": rows}, indent=2))


def _pm(metrics: dict, key: str, method: str | None = None) -> str:
    """``mean`` of a metric of the trained method (or ``method``) from a metrics.json."""
    methods = metrics.get("methods", metrics)
    name = method or next(m for m in methods if m not in ("identity", "run", "per_cluster"))
    entry = methods[name]
    value = entry.get(f"{key}_mean", entry.get(key))
    return f"{value:.3f}" if isinstance(value, (int, float)) else str(value)


if __name__ == "__main__":
    main()
