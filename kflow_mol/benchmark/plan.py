"""Planning the assembly benchmark: its test sets, which runs train what, and how many steps.

- :func:`load_test_sets`: the real test sets of a benchmark config, with their start states;
- :func:`training_key`: what fixes a run's training (methods that differ only at sampling share one model);
- :func:`measure_costs` / :func:`budget_steps`: training steps that fit ``budget_cpu_minutes``;
- :func:`equal_cpu_plan`: every trained method's steps for the same process CPU seconds
  (``train_cpu_seconds``), measured through the full Trainer and kept in :data:`PLAN_FILE`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from kflow_mol.config import AssemblyConfig, BenchmarkConfig, parse_method, with_method
from kflow_mol.experiment import build_flow, load_split, train


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


def is_reference(method: str) -> bool:
    """Whether ``method`` is scored without training: the identity or an oracle row."""
    return parse_method(method).reference


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
