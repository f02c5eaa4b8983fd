"""One image run from its typed config: data, codec, latents, transform, DiT, Trainer, evaluation, figures.

The Hydra scripts (``scripts/train_image.py``, ``scripts/benchmark_image.py``) turn their config
into a dict and call :func:`run_experiment`; :func:`load_run` rebuilds a finished run (model,
path, codec, data) for ``scripts/sample_image.py``. The keys and their defaults are those of
:class:`kflow_image.config.ImageRunConfig`.

With ``codec.name != pixel`` the flow runs in the codec's latent space: the training split is
encoded once into a memory-mapped store (:mod:`kflow_image.latents`), the PCA basis and band
energies are fitted by streaming over it, the DiT is built for the latent shape and samples
are decoded before they are scored or drawn. ``transform=none`` on the same latents is the
latent flow matching (LFM) baseline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from kflow.path import KAmplitudePath
from kflow.training import ConfigError, DistributedContext, Trainer, TrainResult, load_checkpoint
from kflow.training.config import REQUIRED, from_dict
from kflow_edge import run_folder
from kflow_image.classifier import PixelFeatures, feature_net_validity, train_classifier
from kflow_image.codecs import LatentCodec, build_codec, encode_batches, is_pixel
from kflow_image.config import DataConfig, ImageRunConfig, ModelConfig, SampleConfig
from kflow_image.data import ImageSplits, load_dataset, stack_dataset
from kflow_image.evaluation import evaluate_model, reference_floor
from kflow_image.fid import check_fid_files, large_image_note
from kflow_image.latents import batch_source, cached_latents, streaming_band_energy
from kflow_image.models import DiT
from kflow_image.plots import (
    band_energy_along_k,
    plot_band_energy,
    plot_radial_spectra,
    save_grid,
    save_sample_array,
)
from kflow_image.train import ImageFlowLoss, SamplerSpec, TransformSpec, balanced_labels, build_transform, generate


@dataclass
class RunData:
    """The data of a run in the space the flow lives in.

    Attributes:
        splits: the images (pixel space): the training split and the metric reference.
        codec: image <-> latent map (:class:`PixelCodec` in pixel space).
        train: what the flow trains on: the latent store, or ``splits.train`` in pixel space.
        data_shape: ``(c, h, w)`` of one item of ``train``.
    """

    splits: ImageSplits
    codec: LatentCodec
    train: Dataset
    data_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes


def as_config(cfg: dict[str, Any] | ImageRunConfig) -> ImageRunConfig:
    """The typed config (checked by its ``__post_init__``) from a dict or an :class:`ImageRunConfig`."""
    if isinstance(cfg, ImageRunConfig):
        if cfg.output_dir == REQUIRED:
            raise ConfigError("output_dir is required (output_dir=...)")
        return cfg
    return from_dict(ImageRunConfig, cfg)


def load_splits(data: DataConfig | dict) -> ImageSplits:
    """Load the data set named in ``data`` (see :class:`~kflow_image.config.DataConfig`).

    Raises:
        FileNotFoundError: the data folder does not exist (one line naming it).
        ConfigError: the data cannot be used (a folder without images, a bad setting).
    """
    data = data if isinstance(data, DataConfig) else from_dict(DataConfig, data, "data.")
    try:
        return load_dataset(data.name, **data.loader_kwargs())
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None


def prepare_data(cfg: ImageRunConfig, device: torch.device, log=print) -> RunData:
    """Images, codec and the training set in flow space (encoded once and cached for latent codecs)."""
    splits = load_splits(cfg.data)
    try:
        codec = build_codec(
            cfg.codec.name, cfg.codec.path, cfg.codec.scaling_factor, cfg.codec.sample_posterior, device
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if is_pixel(codec):
        return RunData(splits, codec, splits.train, splits.image_shape)
    data_shape = tuple(codec.latent_shape(splits.image_shape))
    key = {"data": cfg.data.__dict__, "split": "train"}
    store = cached_latents(
        codec,
        splits.train,
        cfg.codec.cache_dir,
        key,
        cfg.codec.flip,
        cfg.codec.batch_size,
        device,
        log=log,
        num_workers=cfg.train.num_workers,
    )
    return RunData(splits, codec, store, data_shape)


def build_model(model: ModelConfig | dict, data_shape: tuple[int, ...], num_classes: int) -> DiT:
    """A DiT for ``data_shape`` ``(c, h, w)`` and ``num_classes`` (unconditional if < 2)."""
    model = model if isinstance(model, ModelConfig) else from_dict(ModelConfig, model, "model.")
    channels, height, width = data_shape
    try:
        return DiT.from_preset(
            model.preset,
            image_size=(height, width),
            channels=channels,
            num_classes=num_classes if num_classes > 1 else 0,
            **model.dit_kwargs(),
        )
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None


def build_path(
    spec: TransformSpec, data_shape: tuple[int, ...], train: Dataset | None, out_dir: Path | None, device: torch.device
) -> KAmplitudePath:
    """The K-amplitude path of the run; PCA / equal-energy fits stream over ``train`` (saved PCA basis)."""
    grouping = spec.grouping
    needs_data = spec.name == "pca" or grouping == "equal_energy"
    source = batch_source(train) if needs_data and train is not None else None
    try:
        transform = build_transform(spec, data_shape, source, save_dir=out_dir, device=device)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return KAmplitudePath(transform, bump=spec.bump, reverse=spec.reverse)


def sampler_spec(
    sample: SampleConfig | dict, path: KAmplitudePath | None = None, train: Dataset | ImageSplits | None = None
) -> SamplerSpec:
    """:class:`SamplerSpec` from ``sample.*``.

    ``step_allocation=energy`` splits the step budget over bands in proportion to the band
    energies of the training data in flow space (streamed over ``train``); ``uniform`` evenly.
    """
    if isinstance(sample, dict):
        sample = from_dict(SampleConfig, sample, "sample.")
    spec = SamplerSpec(
        method=sample.method,
        total_steps=sample.total_steps,
        cfg_scale=sample.cfg_scale,
        drop_cond_after=sample.drop_cond_after,
        project_to_band=sample.project_to_band,
    )
    if sample.step_allocation == "energy":
        if path is None or train is None:
            raise ConfigError("sample.step_allocation=energy needs the run's path and data")
        train = train.train if isinstance(train, ImageSplits) else train
        device = path.transform.band_index.device
        energy = streaming_band_energy(path.transform, batch_source(train), device)
        spec.band_weights = energy.double().cpu().tolist()
    elif sample.step_allocation != "uniform":
        raise ConfigError(f"sample.step_allocation={sample.step_allocation!r}: choose 'uniform' or 'energy'")
    return spec


def sampling_weights(trained: TrainResult, use_ema: bool) -> nn.Module:
    """The network to sample with: the EMA copy when kept and ``use_ema``, else the raw weights."""
    net = trained.ema_model if use_ema and trained.ema_model is not None else trained.model
    return net.eval()


def feature_network(cfg: ImageRunConfig, splits: ImageSplits, device: torch.device):
    """The in-project classifier (cached), pixel features for unlabelled data, ``None`` for large images.

    Images wider than ``eval.feature_cnn_max_side`` (256² data) never train a CNN: they are
    scored by the Inception FID alone (``None`` here).
    """
    if max(splits.image_shape[-2:]) > cfg.eval.feature_cnn_max_side:
        return None
    if splits.num_classes < 2:
        return PixelFeatures()
    return train_classifier(
        splits,
        epochs=cfg.eval.classifier_epochs,
        device=device,
        cache_dir=cfg.eval.cache_dir,
        seed=0,
        progress=cfg.train.progress,
    )


def evaluate_run(
    cfg: ImageRunConfig,
    net: nn.Module,
    path: KAmplitudePath,
    data: RunData,
    sampler: SamplerSpec,
    device: torch.device,
    seed: int,
) -> dict[str, Any]:
    """Score a trained network (the run's one evaluation call): samples are decoded, then compared in pixel space.

    Returns:
        The metrics of :func:`kflow_image.evaluation.evaluate_model` plus ``reference_floor``.
    """
    features = feature_network(cfg, data.splits, device)
    if features is None and not cfg.eval.inception_weights:  # said at start-up (large_image_note)
        return {"fd": None, "inception_fid": None, "evaluation_skipped": "large images without eval.inception_weights"}
    metrics = evaluate_model(
        net,
        path,
        data.splits,
        features,
        num_samples=cfg.sample.num_samples,
        sampler=sampler,
        seed=seed,
        device=device,
        cdr=cfg.eval.cdr,
        inception_weights=cfg.eval.inception_weights,
        inception_reference_stats=cfg.eval.inception_reference,
        batch_size=cfg.sample.batch_size,
        progress=cfg.train.progress,
        codec=data.codec,
        sample_shape=data.data_shape,
    )
    if features is not None:
        metrics["reference_floor"] = reference_floor(data.splits, features, seed, num_items=cfg.sample.num_samples)
        metrics.update(feature_net_validity(features, cfg.eval.min_feature_accuracy))
        if not metrics["metrics_valid"]:
            print(f"warning: {metrics['invalid_reason']}")
    return metrics


def reference_latents(data: RunData, max_items: int, device: torch.device) -> torch.Tensor:
    """Up to ``max_items`` reference images in flow space ``(N, c, h, w)`` (encoded with the codec)."""
    images = stack_dataset(data.splits.reference, max_items=max_items)[0]
    return images if is_pixel(data.codec) else encode_batches(data.codec, images, device=device)


def write_figures(
    model: nn.Module,
    path: KAmplitudePath,
    data: RunData,
    sampler: SamplerSpec,
    out_dir: Path,
    device: torch.device,
    seed: int,
) -> None:
    """samples.png (10 per class, labelled, <= 2048 px), samples.npz (all, uint8), spectra.png, band_energy.png."""
    n = 100
    classes = data.num_classes
    labels = balanced_labels(n, classes) if classes > 1 else None
    bar = tqdm(total=3, desc="figures (sampling 100)", leave=False)
    result = generate(
        model,
        path,
        n,
        data.data_shape,
        sampler,
        labels=labels,
        seed=seed + 1,
        device=device,
        codec=data.codec,
        return_trajectory=True,
    )
    order = torch.argsort(labels, stable=True) if labels is not None else torch.arange(n)
    rows = [f"class {c}" for c in range(classes)] if classes > 1 else [f"row {r}" for r in range(10)]
    bar.update()
    save_grid(
        result.images[order],
        out_dir / "samples.png",
        nrow=10,
        row_labels=rows,
        col_labels=[f"#{j}" for j in range(10)],
        title=f"samples ({sampler.method}, {sampler.total_steps} steps, cfg {sampler.cfg_scale:g})",
    )
    save_sample_array(result.images[order], None if labels is None else labels[order], out_dir / "samples.npz")
    images = stack_dataset(data.splits.reference, max_items=500)[0]
    plot_radial_spectra({"data": images, "samples": result.images}, out_dir / "spectra.png")
    transform = path.transform
    energies = band_energy_along_k(result.latent_trajectory.to(device), transform).cpu()
    reference = reference_latents(data, 500, device)
    data_energy = band_energy_along_k(reference.to(device)[:, None], transform)[0].cpu()
    plot_band_energy(result.ks, energies, out_dir / "band_energy.png", data_energy)
    bar.update(2)
    bar.close()


def run_experiment(cfg: dict[str, Any] | ImageRunConfig) -> dict[str, Any]:
    """Train and evaluate one configuration; writes everything into ``cfg.output_dir``.

    Writes ``config.yaml`` (:mod:`kflow_edge.run_folder`), ``train_log.csv``, ``loss_curve.png``, ``checkpoints/last.pt``,
    ``metrics.json`` (``fd``, ``fd_net``, ``kid``, ``precision``, ``recall``, ``accuracy``,
    ``cdr``, ``nfe``, timings, ``reference_floor``; only training facts with
    ``eval.enabled=false``), figures, and ``pca_basis.pt`` for PCA.

    Returns:
        The metrics dict (empty on DDP ranks other than 0).
    """
    cfg = as_config(cfg)
    check_eval_files(cfg)
    out_dir = Path(cfg.output_dir)
    dist = DistributedContext.from_env(cfg.device)
    device, is_main = dist.device, dist.is_main
    if not is_main:  # rank 0 writes the latent store first; the other ranks then reuse it
        dist.barrier()
    data = prepare_data(cfg, device, log=print if is_main else (lambda _: None))  # bad data / codec: no folder yet
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_folder.write_config(out_dir, cfg.to_dict())
        dist.barrier()
    path = build_path(cfg.transform, data.data_shape, data.train, out_dir if is_main else None, device)
    trained = train_model(cfg, data, path, dist)
    if not is_main:  # rank 0 alone samples, scores and writes files
        return {}
    net = sampling_weights(trained, cfg.sample.use_ema)
    sampler = sampler_spec(cfg.sample, path, data.train)
    metrics: dict[str, Any] = {}
    if cfg.eval.enabled:
        metrics.update(evaluate_run(cfg, net, path, data, sampler, device, cfg.train.seed))
    metrics.update(run_facts(cfg, data, path, net, trained))
    if cfg.figures:
        write_figures(net, path, data, sampler, out_dir, device, cfg.train.seed)
    (out_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True))
    return metrics


def check_eval_files(cfg: ImageRunConfig) -> None:
    """With ``eval.enabled``: refuse missing or unusable Inception files before any work; say when large
    images are scored by the Inception FID alone.

    Raises:
        ConfigError: the Inception weights or reference statistics cannot be used (one line).
    """
    if not cfg.eval.enabled:
        return
    try:
        check_fid_files(cfg.eval.inception_weights, cfg.eval.inception_reference)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    note = large_image_note(cfg.data.name, cfg.data.size, cfg.data.pad_to, cfg.eval)
    if note:
        print(note, flush=True)


def train_model(cfg: ImageRunConfig, data: RunData, path: KAmplitudePath, dist: DistributedContext) -> TrainResult:
    """Build the DiT (seeded by ``train.seed``) and train it on ``data.train`` along ``path``; shuts ``dist`` down."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data.data_shape, data.num_classes)
    loss_fn = ImageFlowLoss(path, conditional=data.num_classes > 1, balance_weight=cfg.balance_weight)
    signature = {
        "preset": cfg.model.preset,
        "mlp": cfg.model.mlp,
        "data": data.splits.name,
        "transform": cfg.transform.name,
        "num_bands": path.num_bands,
        "codec": data.codec.name,
        "data_shape": list(data.data_shape),
    }
    trainer = Trainer(
        model,
        loss_fn,
        data.train,
        cfg.train_config(str(dist.device)),
        run_config=cfg.to_dict(),
        signature=signature,
        dist_context=dist,
    )
    try:
        trained = trainer.fit()
    except BaseException:
        dist.shutdown(barrier=False)
        raise
    dist.shutdown()
    return trained


def run_facts(
    cfg: ImageRunConfig, data: RunData, path: KAmplitudePath, net: nn.Module, trained: TrainResult
) -> dict[str, Any]:
    """The training facts of ``metrics.json`` (data, transform, model, steps, time, loss, seed, EMA use)."""
    return dict(
        data=data.splits.name,
        transform=cfg.transform.name,
        num_bands=path.num_bands,
        codec=data.codec.name,
        data_shape=list(data.data_shape),
        model=cfg.model.preset,
        mlp=cfg.model.mlp,
        parameters=sum(p.numel() for p in net.parameters()),
        train_steps=trained.step,
        train_time_s=trained.wall_time_s,
        final_loss=trained.final_loss,
        seed=cfg.train.seed,
        sampled_with_ema=net is trained.ema_model,
    )


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
        model: the trained DiT (EMA weights when kept and asked for), eval mode.
        path: the K-amplitude path it was trained on (in flow space).
        data: images, codec, training set in flow space and its shape.
        config: the run's typed config.
    """

    model: DiT
    path: KAmplitudePath
    data: RunData
    config: ImageRunConfig

    @property
    def splits(self) -> ImageSplits:
        return self.data.splits

    @property
    def codec(self) -> LatentCodec:
        return self.data.codec


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu", use_ema: bool | None = None, checkpoint: str = "last"
) -> LoadedRun:
    """Rebuild model, path, codec and data of a run written by :func:`run_experiment`.

    Args:
        run_dir: the run folder (``config.yaml``, or the ``run_config.json`` of older runs).
        device: where to put the model and the transform.
        use_ema: sample with the EMA weights (``None``: the run's ``sample.use_ema``).
        checkpoint: ``last`` or ``best`` (``checkpoints/<checkpoint>.pt``).

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder (one line).
        ConfigError: the saved config or the checkpoint cannot be used (one line).
    """
    run_dir = Path(run_dir)
    cfg = ImageRunConfig.from_saved(run_folder.read_config(run_dir))
    weights = run_folder.checkpoint_path(run_dir, checkpoint)
    device = torch.device(device)
    cfg = replace(cfg, device=str(device))
    data = prepare_data(cfg, device, log=lambda _: None)
    spec = cfg.transform
    if spec.name == "pca":
        from kflow.transforms.pca import PCATransform

        transform = PCATransform.load(run_dir / "pca_basis.pt").to(device)
        path = KAmplitudePath(transform, bump=spec.bump, reverse=spec.reverse)
    else:
        path = build_path(spec, data.data_shape, data.train, None, device)
    model = build_model(cfg.model, data.data_shape, data.num_classes)
    state = load_checkpoint(weights, map_location=device)
    use_ema = cfg.sample.use_ema if use_ema is None else use_ema
    model.load_state_dict(state["ema"] if use_ema and state.get("ema") is not None else state["model"])
    return LoadedRun(model.to(device).eval(), path, data, cfg)
