"""Process CPU time of one image run: training, the evaluation phases, and the rest (data, figures).

    OMP_NUM_THREADS=1 python scripts/profile_evaluation.py --out t.json -- output_dir=/tmp/run eval.cache_dir=/tmp/c

Arguments after ``--`` are Hydra overrides of configs/image/train_image.yaml, as for train_image.py.
To time another commit's code, export it elsewhere and put it first on PYTHONPATH:
``git worktree add /tmp/old <commit>``, then
``PYTHONPATH=/tmp/old python scripts/profile_evaluation.py --configs /tmp/old/configs/image --out ... -- ...``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import kflow_image.experiment as experiment

PHASES = ("feature_network", "evaluate_model", "reference_floor", "evaluate_run", "write_figures")


def timed(name: str, fn, times: dict):
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name] = times.get(name, 0.0) + time.process_time() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file for the timings")
    parser.add_argument("--configs", default=str(Path(__file__).resolve().parents[1] / "configs" / "image"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:  # newer trees validate the config against a registered schema
        from hydra.core.config_store import ConfigStore

        from kflow_image.config import register_hydra_schemas

        register_hydra_schemas(ConfigStore.instance())
    except ImportError:
        pass
    times: dict[str, float] = {}
    for name in PHASES:
        if hasattr(experiment, name):
            setattr(experiment, name, timed(name, getattr(experiment, name), times))
    experiment.Trainer.fit = timed("train", experiment.Trainer.fit, times)
    with initialize_config_dir(config_dir=str(Path(args.configs).resolve()), version_base="1.3"):
        cfg = compose("train_image", overrides=args.overrides)
    start = time.process_time()
    metrics = experiment.run_experiment(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    total = time.process_time() - start
    report = {
        "overrides": args.overrides,
        "total_cpu_s": total,
        "phase_cpu_s": times,
        "non_training_cpu_s": total - times["train"],
        "non_training_share": 1 - times["train"] / total,
        "fd": metrics.get("fd"),
        "fd_net": metrics.get("fd_net"),
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
