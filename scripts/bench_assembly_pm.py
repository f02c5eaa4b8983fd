"""Equal-steps test PM of an assembly preset in its current form against its original form.

A speed-up of a preset must not cost accuracy. This trains the preset twice with the same
config, seed and number of steps — once as ``kflow_mol.models.PRESETS`` defines it now, once
with the original (pre-speed-up) definition from ``scripts/bench_assembly.py``
(``REFERENCE_PRESETS``) — through the normal training job, and prints test PM-atom /
PM-center next to the identity baseline and the process CPU time of each run.

    OMP_NUM_THREADS=1 python scripts/bench_assembly_pm.py --preset M --variants current reference \\
        -- train.steps=100 eval.rmsd=false

Arguments after ``--`` are overrides of ``configs/assembly/train_assembly.yaml``. Each variant
writes ``<output>/<preset>_<variant>/`` (metrics.json etc.) and the table goes to
``<output>/pm_<preset>.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from kflow_mol.cli import compose
from kflow_mol.config import AssemblyConfig
from kflow_mol.experiment import run_training
from kflow_mol.models import assembly_gnn


def reference_presets() -> dict[str, dict]:
    """``REFERENCE_PRESETS`` of the sibling ``bench_assembly.py`` (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("bench_assembly", Path(__file__).with_name("bench_assembly.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.REFERENCE_PRESETS


def run_variant(preset: str, variant: str, overrides: list[str], output: Path) -> dict:
    """Train and evaluate one variant; returns its PM summary and CPU seconds."""
    saved = dict(assembly_gnn.PRESETS[preset])
    if variant == "reference":
        assembly_gnn.PRESETS[preset] = reference_presets()[preset]
    try:
        out_dir = output / f"{preset}_{variant}"
        cfg = compose(
            "train_assembly",
            [f"model={preset}", *overrides, f"output_dir={out_dir}", "train.progress=false"],
            AssemblyConfig,
        )
        tic = time.process_time()
        run_training(cfg)
        cpu_s = time.process_time() - tic
    finally:
        assembly_gnn.PRESETS[preset] = saved
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return {"variant": variant, "cpu_s": cpu_s, "metrics": metrics}


def main() -> None:
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="M", choices=sorted(assembly_gnn.PRESETS))
    parser.add_argument("--variants", nargs="+", default=["current", "reference"], choices=["current", "reference"])
    parser.add_argument("--output", default="outputs/bench_assembly_pm")
    args = parser.parse_args(own)
    output = Path(args.output)
    rows = [run_variant(args.preset, variant, overrides, output) for variant in args.variants]
    print(f"preset {args.preset}, overrides {' '.join(overrides) or '(none)'}")
    print("| variant | PM-atom | PM-center | identity PM-atom | CPU s (train + eval) |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {_pm(row['metrics'], 'pm_atom')} | {_pm(row['metrics'], 'pm_center')} | "
            f"{_pm(row['metrics'], 'pm_atom', 'identity')} | {row['cpu_s']:.0f} |"
        )
    output.mkdir(parents=True, exist_ok=True)
    (output / f"pm_{args.preset}.json").write_text(json.dumps({"overrides": overrides, "rows": rows}, indent=2))


def _pm(metrics: dict, key: str, method: str | None = None) -> str:
    """``mean`` of a metric of the trained method (or ``method``) from a metrics.json."""
    methods = metrics.get("methods", metrics)
    name = method or next(m for m in methods if m != "identity")
    entry = methods[name]
    value = entry.get(f"{key}_mean", entry.get(key))
    return f"{value:.3f}" if isinstance(value, (int, float)) else str(value)


if __name__ == "__main__":
    main()
