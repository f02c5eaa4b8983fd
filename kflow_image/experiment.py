"""One image run from a plain config dict: data, transform, DiT, Trainer, evaluation, figures.

The Hydra scripts (``scripts/train_image.py``, ``scripts/benchmark_image.py``) only turn their
config into a dict and call :func:`run_experiment`; :func:`load_run` rebuilds a finished run
(model, path, data) for ``scripts/sample_image.py``. Config keys are those of
``configs/image/train_image.yaml``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kflow.path import KAmplitudePath
from kflow.transforms import band_energy
from kflow.training import ConfigError, DistributedContext, Trainer, TrainConfig, load_checkpoint
from kflow_image.classifier import PixelFeatures, train_classifier
from kflow_image.data import ImageSplits, load_dataset, stack_dataset
from kflow_image.evaluation import evaluate_model, reference_floor
from kflow_image.models import DIT_PRESETS, DiT
from kflow_image.plots import band_energy_along_k, plot_band_energy, plot_radial_spectra, save_grid
from kflow_image.train import (TRANSFORMS, ImageFlowLoss, SamplerSpec, TransformSpec, balanced_labels,
                               build_transform, generate)

DATA_KEYS = {"digits": ("reference_size", "pad_to", "seed"), "mnist": ("root", "pad_to"),
             "folder": ("root", "size", "channels", "reference_fraction", "seed")}
RUN_LEVEL_TRAIN_KEYS = ("seed", "out_dir", "device")  # set from the run's top-level seed/output_dir/device


def validate_config(cfg: dict) -> None:
    """Reject a config that cannot work, in one clear line, before any work (``ConfigError``)."""
    data, transform, model = cfg.get("data", {}), cfg.get("transform", {}), cfg.get("model", {})
    if data.get("name") not in DATA_KEYS:
        raise ConfigError(f"data.name={data.get('name')!r}: choose one of {sorted(DATA_KEYS)}")
    if data["name"] == "folder" and not data.get("root"):
        raise ConfigError("data=folder needs data.root=/path/to/images")
    if transform.get("name") not in TRANSFORMS:
        raise ConfigError(f"transform.name={transform.get('name')!r}: choose one of {list(TRANSFORMS)}")
    if model.get("preset") not in DIT_PRESETS:
        raise ConfigError(f"model.preset={model.get('preset')!r}: choose one of {sorted(DIT_PRESETS)}")
    if model.get("mlp", "dense") not in ("dense", "moe"):
        raise ConfigError(f"model.mlp={model.get('mlp')!r}: choose 'dense' or 'moe'")
    if cfg["train"]["steps"] < 0:
        raise ConfigError(f"train.steps={cfg['train']['steps']} must be >= 0")
    misplaced = sorted(set(cfg["train"]) & set(RUN_LEVEL_TRAIN_KEYS))
    if misplaced:
        raise ConfigError(f"train.{misplaced[0]} is set at the top level: use {misplaced[0].replace('out_dir', 'output_dir')}=...")
    train_config(cfg, device="cpu")  # unknown or bad train.* keys fail here, before any work


def train_config(cfg: dict, device: str) -> TrainConfig:
    """The Trainer's config from ``cfg['train']`` plus the run's seed, output folder and device."""
    train_args = dict(cfg["train"])
    if cfg["model"].get("mlp") == "moe":  # under DDP, experts no token was routed to get no gradient
        train_args["find_unused_parameters"] = True
    train_args.update(seed=int(cfg.get("seed", 0)), out_dir=str(cfg["output_dir"]), device=device)
    return TrainConfig.from_dict(train_args)


def load_splits(data_cfg: dict) -> ImageSplits:
    """Load the data set named in ``data_cfg`` (keys of ``configs/image/data/*.yaml``)."""
    name = data_cfg["name"]
    kwargs = {k: data_cfg[k] for k in DATA_KEYS[name] if data_cfg.get(k) is not None}
    return load_dataset(name, **kwargs)


def build_model(model_cfg: dict, splits: ImageSplits) -> DiT:
    """A DiT for the data set's image shape and classes from ``model_cfg`` (preset + overrides)."""
    channels, height, width = splits.image_shape
    overrides = dict(model_cfg.get("overrides") or {})  # older run configs
    overrides.update({k: model_cfg[k] for k in ("hidden", "depth", "heads", "patch", "mlp_ratio")
                      if model_cfg.get(k) is not None})
    try:
        return DiT.from_preset(model_cfg["preset"], image_size=(height, width), channels=channels,
                               num_classes=splits.num_classes if splits.num_classes > 1 else 0,
                               class_dropout_prob=model_cfg.get("class_dropout_prob", 0.1),
                               mlp=model_cfg.get("mlp", "dense"), num_experts=model_cfg.get("num_experts", 4),
                               top_k=model_cfg.get("top_k", 2), **overrides)
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None


def transform_spec(transform_cfg: dict) -> TransformSpec:
    """:class:`TransformSpec` from the ``transform`` config group."""
    keys = ("name", "num_bands", "grouping", "wavelet", "levels", "bump", "reverse", "centered")
    return TransformSpec(**{k: transform_cfg[k] for k in keys if k in transform_cfg})


def build_path(cfg: dict, splits: ImageSplits, out_dir: Path | None, device: torch.device) -> KAmplitudePath:
    """The K-amplitude path of the run (fits and saves PCA when asked)."""
    spec = transform_spec(cfg["transform"])
    train_images = stack_dataset(splits.train)[0] if spec.name == "pca" or spec.grouping == "equal_energy" else None
    try:
        transform = build_transform(spec, splits.image_shape, train_images, save_dir=out_dir, device=device)
    except ValueError as err:
        raise ConfigError(f"transform: {err}") from None
    return KAmplitudePath(transform, bump=spec.bump, reverse=spec.reverse)


def sampler_spec(sample_cfg: dict, path: KAmplitudePath | None = None,
                 splits: ImageSplits | None = None) -> SamplerSpec:
    """:class:`SamplerSpec` from the ``sample`` config group.

    ``sample.step_allocation=energy`` splits the step budget over bands in proportion to the
    training images' band energies (needs ``path`` and ``splits``); ``uniform`` splits evenly.
    """
    keys = ("method", "total_steps", "cfg_scale", "drop_cond_after", "project_to_band")
    spec = SamplerSpec(**{k: sample_cfg[k] for k in keys if k in sample_cfg})
    allocation = sample_cfg.get("step_allocation", "uniform")
    if allocation not in ("uniform", "energy"):
        raise ConfigError(f"sample.step_allocation={allocation!r}: choose 'uniform' or 'energy'")
    if allocation == "energy":
        if path is None or splits is None:
            raise ConfigError("sample.step_allocation=energy needs the run's path and data")
        images = stack_dataset(splits.train)[0]
        energy = band_energy(path.transform, images)
        spec.band_weights = energy.double().cpu().tolist()
    return spec


def feature_network(cfg: dict, splits: ImageSplits, device: torch.device):
    """The in-project classifier (cached) or pixel features for unlabelled data."""
    if splits.num_classes < 2:
        return PixelFeatures()
    ev = cfg.get("eval", {})
    return train_classifier(splits, epochs=ev.get("classifier_epochs", 30), device=device,
                            cache_dir=ev.get("cache_dir"), seed=0)


def write_figures(model: nn.Module, path: KAmplitudePath, splits: ImageSplits, sampler: SamplerSpec,
                  out_dir: Path, device: torch.device, seed: int) -> None:
    """samples.png (10 per class), spectra.png (data vs samples), band_energy.png (along k)."""
    n = 100
    labels = balanced_labels(n, splits.num_classes) if splits.num_classes > 1 else None
    result = generate(model, path, n, splits.image_shape, sampler, labels=labels, seed=seed + 1, device=device,
                      return_trajectory=True)
    order = torch.argsort(labels, stable=True) if labels is not None else torch.arange(n)
    save_grid(result.images[order], out_dir / "samples.png", nrow=10)
    data = stack_dataset(splits.reference, max_items=500)[0]
    plot_radial_spectra({"data": data, "samples": result.images}, out_dir / "spectra.png")
    transform = path.transform
    energies = band_energy_along_k(result.trajectory.to(device), transform).cpu()
    data_energy = band_energy_along_k(data.to(device)[:, None], transform)[0].cpu()
    plot_band_energy(result.ks, energies, out_dir / "band_energy.png", data_energy)


def run_experiment(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one configuration; writes everything into ``cfg['output_dir']``.

    Writes ``run_config.json``, ``train_log.csv``, ``loss_curve.png``, ``checkpoints/last.pt``,
    ``metrics.json`` (``fd``, ``fd_net``, ``kid``, ``precision``, ``recall``, ``accuracy``,
    ``cdr``, ``nfe``, timings, ``reference_floor``), figures, and ``pca_basis.pt`` for PCA.

    Returns:
        The metrics dict.
    """
    validate_config(cfg)
    out_dir = Path(cfg["output_dir"])
    dist = DistributedContext.from_env(str(cfg.get("device", "cpu")))
    device, is_main = dist.device, dist.is_main
    seed = int(cfg.get("seed", 0))
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "run_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    splits = load_splits(cfg["data"])
    path = build_path(cfg, splits, out_dir if is_main else None, device)
    torch.manual_seed(seed)
    model = build_model(cfg["model"], splits)
    train_cfg = train_config(cfg, device=str(device))
    loss_fn = ImageFlowLoss(path, conditional=splits.num_classes > 1,
                            balance_weight=float(cfg.get("balance_weight", 0.01)))
    signature = {"preset": cfg["model"]["preset"], "mlp": cfg["model"].get("mlp", "dense"),
                 "data": splits.name, "transform": cfg["transform"]["name"], "num_bands": path.num_bands}
    trainer = Trainer(model, loss_fn, splits.train, train_cfg, run_config=cfg, signature=signature,
                      dist_context=dist)
    try:
        trained = trainer.fit()
    except BaseException:
        dist.shutdown(barrier=False)
        raise
    dist.shutdown()
    if not is_main:  # rank 0 alone samples, scores and writes files
        return {}
    net = trained.ema_model if trained.ema_model is not None else trained.model
    net.eval()
    sampler = sampler_spec(cfg.get("sample", {}), path, splits)
    features = feature_network(cfg, splits, device)
    sample_cfg = cfg.get("sample", {})
    metrics = evaluate_model(net, path, splits, features, num_samples=int(sample_cfg.get("num_samples", 1000)),
                             sampler=sampler, seed=seed, device=device, cdr=bool(cfg.get("eval", {}).get("cdr", True)),
                             inception_weights=cfg.get("eval", {}).get("inception_weights"),
                             batch_size=int(sample_cfg.get("batch_size", 500)),
                             progress=bool(cfg["train"].get("progress", True)))
    metrics.update(
        data=splits.name, transform=cfg["transform"]["name"], num_bands=path.num_bands,
        model=cfg["model"]["preset"], mlp=cfg["model"].get("mlp", "dense"),
        parameters=sum(p.numel() for p in net.parameters()), train_steps=trained.step,
        train_time_s=trained.wall_time_s, final_loss=trained.final_loss, seed=seed,
        reference_floor=reference_floor(splits, features, seed),
    )
    if cfg.get("figures", True):
        write_figures(net, path, splits, sampler, out_dir, device, seed)
    (out_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True))
    return metrics


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, dict keys become strings."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class LoadedRun:
    """A finished run rebuilt from its folder.

    Attributes:
        model: the trained DiT (EMA weights when the run kept an EMA), eval mode.
        path: the K-amplitude path it was trained on.
        splits: its data set.
        config: the run's config dict.
    """

    model: DiT
    path: KAmplitudePath
    splits: ImageSplits
    config: dict


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild model, path and data of a run written by :func:`run_experiment`."""
    run_dir = Path(run_dir)
    config_path = run_dir / "run_config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path}: not a run folder of scripts/train_image.py")
    cfg = json.loads(config_path.read_text())
    device = torch.device(device)
    splits = load_splits(cfg["data"])
    if cfg["transform"]["name"] == "pca":
        from kflow.transforms.pca import PCATransform

        spec = transform_spec(cfg["transform"])
        transform = PCATransform.load(run_dir / "pca_basis.pt").to(device)
        path = KAmplitudePath(transform, bump=spec.bump, reverse=spec.reverse)
    else:
        path = build_path(cfg, splits, None, device)
    model = build_model(cfg["model"], splits)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location=device)
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return LoadedRun(model.to(device).eval(), path, splits, cfg)
