"""The molecular branch's run logic: build, train, evaluate (the twin of ``kflow_image.experiment``).

The Hydra scripts turn their composed config into the dataclasses of :mod:`kflow_mol.config`
and make one call here:

- ``scripts/train_assembly.py`` -> :func:`run_training` (the main job, ``make demo``);
- ``scripts/evaluate_assembly.py`` -> :func:`run_evaluation`;
- ``scripts/benchmark_assembly.py`` -> :func:`kflow_mol.benchmark.run_benchmark`.

:func:`validate` builds every object a config names (flow, network, trainer settings) before
any data is loaded, so a bad value fails in one line before work.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from kflow.sampling import allocate_steps
from kflow.training import ConfigError, Trainer, TrainResult, load_checkpoint
from kflow_edge import run_folder
from kflow_mol.config import AssemblyConfig, DataConfig, EvaluateConfig, run_name, system_options, to_config
from kflow_mol.evaluate import (
    MethodScores,
    Prediction,
    evaluate_method,
    evaluate_samples,
    format_table,
    identity_method,
    write_per_cluster_csv,
)
from kflow_mol.export import export_clusters
from kflow_mol.flow import translation_scale_of
from kflow_mol.models import build_model
from kflow_mol.oracles import evaluate_oracles, run_reference_evaluation
from kflow_mol.plots import pm_bar_chart
from kflow_mol.systems import AssemblySystem, build_system


# ----- building ------------------------------------------------------------------------------
def build_flow(cfg: AssemblyConfig, translation_scale: float = 1.0) -> AssemblySystem:
    """The system (path, loss, sampler) a config names: ``cfg.system`` of :data:`kflow_mol.systems.SYSTEMS`
    with ``K = cfg.K`` bands and the options the config sets (:func:`kflow_mol.config.system_options`:
    for ``kflow`` the ``flow`` group, ``bump`` and ``sample.steps``); its constructor checks them.
    """
    return build_system(cfg.system, translation_scale=translation_scale, K=cfg.K, **system_options(cfg))


def validate(cfg: AssemblyConfig) -> None:
    """Build what ``cfg`` names (flow, network, trainer settings) and check its data and device.

    Raises:
        ConfigError: one line naming the problem, before any data is loaded.
    """
    try:
        flow = build_flow(cfg)
        build_model(**cfg.model.build_kwargs())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if flow.head != cfg.model.head:
        what = (
            f"system={cfg.system} with flow.mode={cfg.flow.mode}" if cfg.system == "kflow" else f"system={cfg.system}"
        )
        raise ConfigError(f"{what} needs model.head={flow.head}, got model.head={cfg.model.head}")
    check_data(cfg.data)
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but CUDA is not available on this machine")
    cfg.train_config()


def check_data(data: DataConfig) -> None:
    """Raise ConfigError when the data group points at a folder that is not there."""
    if data.source == "prepared":
        if not data.folder or not (Path(data.folder) / "manifest.json").is_file():
            raise ConfigError(
                f"data=prepared needs data.folder=<a folder from scripts/prepare_assembly_data.py>; "
                f"{data.folder!r} has no manifest.json"
            )
    elif data.source in ("cif", "cod_cluster17") and (not data.input or not Path(data.input).is_dir()):
        raise ConfigError(f"data.source={data.source} needs data.input=<existing folder>, got {data.input!r}")


def set_cpu_threads(cfg: AssemblyConfig) -> None:
    """Small molecule-level ops gain little from intra-op threads and lose a lot when cores are shared."""
    if str(cfg.device) == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(int(cfg.cpu_threads))


def load_split(
    data: DataConfig, split: str, *, start: str | None = None, limit: int | None = None, progress: bool = False
) -> Sequence:
    """Clusters of one split of a data group (building it into the cache on first use).

    Args:
        data: the data group.
        split: ``train``, ``val``, ``test`` (or ``all``).
        start: start-state preset (``None``: the data group's).
        limit: keep at most this many clusters (``None``: all).
        progress: show the build progress bar.

    Returns:
        The ``AssemblyData`` clusters: a lazy :class:`~kflow_mol.data.dataset.AssemblyDataset`
        (list-like, each cluster read from the mapped cache when indexed).
    """
    from kflow_mol.data import build_assembly_dataset, load_assembly_dataset

    if data.source == "prepared":
        check_data(data)
        clusters = load_assembly_dataset(data.folder, split)
    else:
        report = build_assembly_dataset(
            data.source,
            input=data.input,
            output=data.folder,
            start=start or data.start or "local",
            repeats=data.repeats or 1,
            progress=progress,
        )
        clusters = load_assembly_dataset(report.output, split)
    if limit is not None and split == "train" and data.subset_seed is not None:
        order = torch.randperm(len(clusters), generator=torch.Generator().manual_seed(data.subset_seed))
        return clusters[order[:limit].tolist()]  # a view of the same mapped cache
    return clusters[:limit] if limit is not None else clusters


def steps_per_band(total_steps: int, num_bands: int) -> list[int]:
    """Fixed sampling steps of each band: ``total_steps`` split evenly (at least one each)."""
    return allocate_steps(total_steps, [1.0] * num_bands)


def flow_predictor(
    flow: AssemblySystem,
    model: nn.Module,
    method: str,
    total_steps: int | None,
    trajectory: bool = False,
    generator: torch.Generator | None = None,
):
    """The ``predict(batch) -> Prediction`` of a trained flow or system.

    Args:
        flow: a :mod:`kflow_mol.systems` system.
        model: its trained network.
        method: the sampler's method.
        total_steps: fixed steps in total, split evenly over the bands (``None``: the system's
            own ``default_steps``).
        trajectory: keep the positions along the flow.
        generator: RNG of a stochastic system's draws.
    """
    model.eval()
    total = total_steps if total_steps is not None else flow.default_steps
    per_band = steps_per_band(total, flow.num_bands)
    extra = {"generator": generator} if flow.stochastic else {}

    def predict(batch: Batch) -> Prediction:
        out = flow.sample(model, batch, method=method, steps_per_band=per_band, return_trajectory=trajectory, **extra)
        return Prediction(pos=out.pos, nfe=out.nfe, trajectory=out.trajectory, ks=out.ks)

    return predict


# ----- training ------------------------------------------------------------------------------
@dataclass
class TrainedRun:
    """A trained method.

    Attributes:
        name: the method name (:func:`kflow_mol.config.run_name`).
        flow: its flow (path, sampler, translation scale).
        model: the trained network (the EMA copy when training kept one).
        result: the Trainer's result.
    """

    name: str
    flow: AssemblySystem
    model: nn.Module
    result: TrainResult | None

    @property
    def stochastic(self) -> bool:
        """Whether its samples depend on a random generator (scored over several samples)."""
        return self.flow.stochastic

    def predictor(self, cfg: AssemblyConfig, trajectory: bool = False, sample: int = 0):
        """``predict(batch)`` with the system's ``default_steps`` (for ``kflow``: ``sample.steps``, set by
        :func:`build_flow`); a stochastic system's ``sample``-th draw is seeded by (train seed, sample)."""
        generator = None
        if self.stochastic:
            generator = torch.Generator().manual_seed(1_000_003 * cfg.train.seed + sample)
        return flow_predictor(self.flow, self.model, cfg.sample.method, None, trajectory, generator)

    def evaluate(self, clusters: Sequence, cfg: AssemblyConfig, **options) -> MethodScores:
        """Scores on ``clusters``: per cluster the minimum PM over ``cfg.sample.samples`` draws of a
        stochastic system (their mean in ``per_cluster_mean``), one draw otherwise."""
        samples = cfg.sample.samples if self.stochastic else 1
        return evaluate_samples(
            self.name, lambda index: self.predictor(cfg, sample=index), clusters, samples, **options
        )


def train(
    cfg: AssemblyConfig,
    train_set: Sequence,
    *,
    run_config: dict | None = None,
    on_start=None,
    val_set: Sequence | None = None,
) -> TrainedRun:
    """Train the flow and network that ``cfg`` names on ``train_set``.

    With ``train.val_every`` set, the Trainer validates on a fixed subset of the val split
    (:func:`validation_options`) and the returned model holds the weights of
    ``checkpoints/best.pt`` when ``eval.use_best``.

    Args:
        cfg: a validated config.
        train_set: ``AssemblyData`` clusters.
        run_config: extra values saved in the checkpoint (the run's full config).
        on_start: called with the Trainer before fitting (rank 0 writes its files there).
        val_set: the val clusters (``None``: the val split of ``cfg.data``, loaded when needed).
    """
    sigma = translation_scale_of(train_set)
    flow = build_flow(cfg, sigma)
    torch.manual_seed(cfg.train.seed)
    model = build_model(**cfg.model.build_kwargs())
    signature = {"preset": cfg.model.preset, "head": cfg.model.head, "num_bands": cfg.K, "mode": cfg.flow.mode}
    config = {**(run_config or asdict(cfg)), "translation_scale": sigma}
    loss = flow.loss
    if cfg.data.fresh_starts:
        from kflow_mol.data.fresh_starts import FreshStarts

        loss = FreshStarts().wrap_loss(flow.loss)
    validation = validation_options(cfg, flow, val_set)
    train_cfg = cfg.train_config()
    if not validation:  # off, or no val clusters
        train_cfg = replace(train_cfg, val_every=None, early_stop_patience=None)
    trainer = Trainer(
        model,
        loss,
        train_set,
        train_cfg,
        collate_fn=Batch.from_data_list,
        run_config=config,
        signature=signature,
        **validation,
    )
    if on_start is not None:
        on_start(trainer, model, sigma)
    result = trainer.fit()
    model = result.ema_model or result.model
    if cfg.eval.use_best and result.best_checkpoint_path:
        device = next(model.parameters()).device
        model = checkpoint_network(cfg, load_checkpoint(result.best_checkpoint_path, map_location=device), device)
    return TrainedRun(name=run_name(cfg), flow=flow, model=model, result=result)


def validation_options(cfg: AssemblyConfig, flow: AssemblySystem, val_set: Sequence | None = None) -> dict[str, Any]:
    """The Trainer's ``validate_fn`` and ``val_metric`` ({} when ``train.val_every`` is unset).

    The model samples ``eval.val_clusters`` clusters spread over the val split exactly as the
    run is scored (:meth:`TrainedRun.predictor`, first draw), scored by
    :func:`kflow_mol.validation.score_validation`. Data without val clusters gives {} and a
    warning on stderr (training then runs without validation).
    """
    if cfg.train.val_every is None:
        return {}
    from kflow_mol.validation import fixed_subset, make_validate_fn

    if val_set is None:
        val_set = load_split(cfg.data, "val")
    clusters = fixed_subset(val_set, cfg.eval.val_clusters)
    if not clusters:
        print(f"data {cfg.data.source} has no val clusters: training without validation", file=sys.stderr)
        return {}

    def predictor_for(model: nn.Module):
        return TrainedRun(name=run_name(cfg), flow=flow, model=model, result=None).predictor(cfg)

    validate_fn = make_validate_fn(clusters, predictor_for, batch_size=cfg.sample.batch_size)
    return {"validate_fn": validate_fn, "val_metric": cfg.eval.val_metric}


def checkpoint_network(cfg: AssemblyConfig, state: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The network of ``cfg`` with a checkpoint's weights (its EMA weights when it kept them)."""
    model = build_model(**cfg.model.build_kwargs())
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return model.to(device).eval()


def run_training(cfg: AssemblyConfig) -> dict:
    """The main job: train, sample the test split, write every output; returns the metrics (rank 0) or {}."""
    validate(cfg)
    set_cpu_threads(cfg)
    out_dir, data = Path(cfg.output_dir), cfg.data
    train_set = load_split(data, "train", limit=data.max_train, progress=True)
    test_set = load_split(data, "test", limit=data.max_test)
    if not train_set or not test_set:
        raise ConfigError(f"data {data.source}: {len(train_set)} train / {len(test_set)} test clusters; need both")
    run_config = asdict(cfg)

    def announce(trainer, model, sigma):
        if trainer.dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            run_folder.write_config(out_dir, {**run_config, "translation_scale": sigma})
            print(
                f"data: {len(train_set)} train / {len(test_set)} test clusters ({data.source}, start={data.start}); "
                f"translation scale {sigma:.2f} Å; model {cfg.model.preset} "
                f"({sum(p.numel() for p in model.parameters()):,} parameters); K={cfg.K}",
                file=sys.stderr,
            )
            announce.is_main = True

    announce.is_main = False
    trained = train(cfg, train_set, run_config=run_config, on_start=announce)
    if not announce.is_main:
        return {}
    metrics, scores = _test_metrics(cfg, trained, len(train_set), test_set)
    write_outputs(out_dir, metrics, scores, test_set, trained.name, cfg)
    print(format_table({key: metrics[key] for key in scores}))
    print(f"outputs in {out_dir}/", file=sys.stderr)
    return metrics


def _test_metrics(cfg: AssemblyConfig, trained: TrainedRun, n_train: int, test_set: list) -> tuple[dict, dict]:
    """Score the identity and the trained model on the test split.

    Returns:
        ``(metrics, scores)``: the metrics.json content and the :class:`MethodScores` per method.
    """
    device = next(trained.model.parameters()).device
    tic = time.perf_counter()
    common = dict(batch_size=cfg.sample.batch_size, device=device, with_rmsd=cfg.eval.rmsd)
    scores = {
        "identity": evaluate_method("identity", identity_method, test_set, **common),
        trained.name: evaluate_method(
            trained.name,
            trained.predictor(cfg, trajectory=True),
            test_set,
            keep_predictions=True,
            progress=True,
            **common,
        ),
    }
    summary = {key: value.summary() for key, value in scores.items()}
    result = trained.result
    metrics = {
        **summary,
        "run": {
            "train_steps": result.step,
            "train_wall_s": result.wall_time_s,
            "final_loss": result.final_loss,
            **validation_summary(cfg, result),
            "eval_wall_s": time.perf_counter() - tic,
            "n_train": n_train,
            "n_test": len(test_set),
            "K": cfg.K,
            "translation_scale": trained.flow.translation_scale,
            "test_ids": scores[trained.name].cluster_ids,
        },
        "per_cluster": {key: value.per_cluster for key, value in scores.items()},
    }
    return metrics, scores


def validation_summary(cfg: AssemblyConfig, result: TrainResult) -> dict[str, Any]:
    """metrics.json entries of the validation ({} when it was off)."""
    if not result.val_history:
        return {}
    return {
        "val_metric": cfg.eval.val_metric,
        "val_clusters": cfg.eval.val_clusters,
        "best_step": result.best_step,
        "best_val": result.best_metric,
        "stopped_early": result.stopped_early,
        "val_wall_s": result.val_wall_s,
        "scored_weights": "best" if cfg.eval.use_best and result.best_checkpoint_path else "last",
    }


def write_outputs(
    out_dir: Path, metrics: dict, scores: dict[str, MethodScores], test_set: list, name: str, cfg: AssemblyConfig
) -> None:
    """metrics.json, eval_per_cluster.csv, trajectories/ and clusters/ exports, pm_bars.png."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_per_cluster_csv(out_dir / "eval_per_cluster.csv", scores)
    export_clusters(out_dir, test_set, scores[name], cfg.sample.export)
    summary = {key: value.summary() for key, value in scores.items()}
    pm_bar_chart(summary, out_dir / "pm_bars.png", title=f"{cfg.data.source} test split ({len(test_set)} clusters)")


# ----- evaluation of a checkpoint ----------------------------------------------------------
def load_run(run_dir: str | Path, device: str = "cpu", checkpoint: str = "last") -> tuple[AssemblyConfig, TrainedRun]:
    """Rebuild a finished run (config, flow, network) from its folder, as the image branch's ``load_run``.

    The folder format is :mod:`kflow_edge.run_folder`'s (``config.yaml``,
    ``checkpoints/{last,best}.pt``); the config is the one saved in the checkpoint. The network
    gets the checkpoint's EMA weights when training kept them (what the run itself sampled and
    validated), else its raw weights.

    Args:
        checkpoint: ``last`` or ``best`` (``best.pt`` exists when the run validated).

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder (no ``config.yaml``).
        ConfigError: the checkpoint does not exist or its config is refused.
    """
    run_folder.read_config(run_dir)
    return _load_checkpoint_run(run_folder.checkpoint_path(run_dir, checkpoint), device)


def load_trained(checkpoint: str | Path, device: str = "cpu") -> tuple[AssemblyConfig, TrainedRun]:
    """:func:`load_run` from a checkpoint file (kept for ``evaluate_assembly.py checkpoint=...`` and
    checkpoints outside a run folder).

    Raises:
        ConfigError: when the checkpoint does not exist.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    return _load_checkpoint_run(path, device)


def _load_checkpoint_run(path: Path, device: str) -> tuple[AssemblyConfig, TrainedRun]:
    """Config, flow and network of one checkpoint file (its ``run_config`` and weights)."""
    state = load_checkpoint(path, map_location=device)
    saved = dict(state["run_config"])
    sigma = float(saved.pop("translation_scale"))
    cfg = to_config(saved, AssemblyConfig)
    model = checkpoint_network(cfg, state, device)
    flow = build_flow(cfg, sigma)
    return cfg, TrainedRun(name=run_name(cfg), flow=flow, model=model, result=None)


def run_evaluation(cfg: EvaluateConfig) -> dict:
    """Score a saved model (and the identity, and the oracle rows) on one split of its own or another dataset.

    Without a checkpoint (``checkpoint=null``) only the identity and the oracle rows of ``cfg.data``.
    """
    if cfg.checkpoint is None:
        return run_reference_evaluation(cfg)
    run_cfg, trained = load_trained(cfg.checkpoint, cfg.device)
    method = cfg.sample.method or run_cfg.sample.method
    data = run_cfg.data if cfg.use_run_data else cfg.data
    clusters = load_split(data, cfg.split, limit=data.max_test)
    if not clusters:
        raise ConfigError(f"no {cfg.split} clusters in data {data.source}")
    common = dict(batch_size=cfg.sample.batch_size, device=cfg.device, with_rmsd=cfg.eval.rmsd)
    predict = flow_predictor(trained.flow, trained.model, method, cfg.sample.steps)  # None: the run's default
    scores = {
        "identity": evaluate_method("identity", identity_method, clusters, **common),
        **(evaluate_oracles(clusters, **common) if cfg.oracles else {}),
        trained.name: evaluate_method(trained.name, predict, clusters, progress=True, **common),
    }
    summary = {key: value.summary() for key, value in scores.items()}
    name = Path(cfg.checkpoint).stem
    suffix = "" if name == "last" else f"_{name}"
    output = Path(cfg.output) if cfg.output else Path(cfg.checkpoint).parent.parent / f"eval_{cfg.split}{suffix}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    metrics = {
        **summary,
        "checkpoint": str(cfg.checkpoint),
        "data": asdict(data),
        "per_cluster": {key: value.per_cluster for key, value in scores.items()},
        "cluster_ids": scores[trained.name].cluster_ids,
    }
    output.write_text(json.dumps(metrics, indent=2))
    write_per_cluster_csv(output.with_suffix(".csv"), scores)
    print(format_table(summary))
    print(f"metrics written to {output}", file=sys.stderr)
    return metrics
