"""The typed config of an image run: every default lives here, once.

The Hydra scripts register these dataclasses as structured configs (:data:`HYDRA_SCHEMAS`), so
the YAML files under ``configs/image/`` only *choose* (a data set, a transform, a model size,
an experiment's settings) and document; an unknown key or a value of the wrong type is refused
by OmegaConf before any work. :func:`kflow.training.config.from_dict` (the one builder of both
branches) does the same for plain dicts (library use, saved run configs), and each dataclass's
``__post_init__`` checks its choices and ranges, each failure one
:class:`~kflow.training.ConfigError` line naming the key.

The run-level keys are those of the molecular branch: ``output_dir``, ``device`` and ``resume``
at the top, the seed in ``train.seed``. :meth:`ImageRunConfig.from_saved` also reads the
``run_config.json`` of older runs (top-level ``seed``, ``train.resume``).

Defaults that belong to a library object are not restated: ``model.*`` ``None`` means the DiT
preset's value, ``transform.grouping: None`` means :data:`kflow_image.train.DEFAULT_GROUPING`,
``sample.*`` defaults are :class:`~kflow_image.train.SamplerSpec`'s and ``train.*`` defaults are
:class:`~kflow.training.TrainConfig`'s except the few in :data:`IMAGE_TRAIN_DEFAULTS`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kflow.training import ConfigError, TrainConfig
from kflow.training.config import (
    REQUIRED,
    check_choice,
    check_range,
    check_run_level_keys,
    from_dict,
    run_train_config,
)
from kflow_image.codecs import CODECS
from kflow_image.models import DIT_PRESETS
from kflow_image.train import DEFAULT_GROUPING, TRANSFORMS, SamplerSpec, TransformSpec

DATA_KEYS = {
    "digits": ("reference_size", "pad_to", "seed"),
    "mnist": ("root", "pad_to"),
    "folder": ("root", "size", "channels", "reference_fraction", "seed"),
}
IMAGE_TRAIN_DEFAULTS = {
    "steps": 2000,
    "batch_size": 64,
    "lr": 1.0e-3,
    "warmup_steps": 100,
    "log_every": 50,
    "ckpt_every": 500,
    "ema_decay": 0.999,  # with ema_warmup: digits accuracy 0.921 at 2000 steps (docs/image.md, "Default runs")
    "ema_warmup": True,
}
GROUPINGS = ("equal_radius", "equal_count", "equal_energy")
BUMPS = ("linear", "smoothstep", "cosine")
SAMPLER_METHODS = ("euler", "heun", "rk4", "dopri5")


@dataclass
class DataConfig:
    """``data.*``: which images (see :func:`kflow_image.data.load_dataset`).

    Attributes:
        name: ``digits``, ``mnist`` or ``folder``.
        root: folder of the data (``mnist``: default ``../shared/data/mnist``; ``folder``: required).
        pad_to: pad images to this square size with background (digits, mnist).
        reference_size: digits images held out as the metric reference.
        size: folder images are resized (short side) and centre-cropped to this.
        channels: folder images: 1 (grey) or 3 (RGB).
        reference_fraction: folder images held out for metrics; 0 = train on everything
            (reference statistics must then come from a file).
        seed: seed of the fixed train/reference permutation.
    """

    name: str = "digits"
    root: str | None = None
    pad_to: int | None = None
    reference_size: int = 500
    size: int = 64
    channels: int = 3
    reference_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        check_choice("data.name", self.name, DATA_KEYS)
        if self.name == "folder" and not self.root:
            raise ConfigError("data=folder needs data.root=/path/to/images")
        if not 0.0 <= self.reference_fraction < 1.0:
            raise ConfigError(f"data.reference_fraction={self.reference_fraction} must be in [0, 1)")

    def loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of this data set's loader (unset optional keys left out)."""
        return {k: getattr(self, k) for k in DATA_KEYS[self.name] if getattr(self, k) is not None}


@dataclass
class ModelConfig:
    """``model.*``: the DiT. ``None`` = the preset's (or the DiT constructor's) value.

    Attributes:
        preset: a key of :data:`kflow_image.models.DIT_PRESETS` (``DiT-T/2`` ... ``DiT-L/4``).
        mlp: ``dense`` or ``moe``.
        num_experts, top_k: MoE experts per layer / per token.
        class_dropout_prob: label dropout for classifier-free guidance.
        hidden, depth, heads, patch, mlp_ratio: overrides of the preset.
    """

    preset: str = "DiT-T/2"
    mlp: str = "dense"
    num_experts: int | None = None
    top_k: int | None = None
    class_dropout_prob: float | None = None
    hidden: int | None = None
    depth: int | None = None
    heads: int | None = None
    patch: int | None = None
    mlp_ratio: float | None = None

    def __post_init__(self):
        check_choice("model.preset", self.preset, DIT_PRESETS)
        check_choice("model.mlp", self.mlp, ("dense", "moe"))

    def dit_kwargs(self) -> dict[str, Any]:
        """The overrides that are set (``mlp`` always)."""
        keys = ("num_experts", "top_k", "class_dropout_prob", "hidden", "depth", "heads", "patch", "mlp_ratio")
        return {"mlp": self.mlp, **{k: getattr(self, k) for k in keys if getattr(self, k) is not None}}


@dataclass
class CodecConfig:
    """``codec.*``: the space K-Flow runs in (see :mod:`kflow_image.codecs`).

    Attributes:
        name: ``pixel`` (default), ``autoencoder`` (checkpoint of ``scripts/train_autoencoder.py``)
            or ``diffusers`` (a local ``AutoencoderKL`` folder, e.g. the SD-VAE).
        path: the checkpoint file / VAE folder.
        scaling_factor: diffusers only; ``None`` = the VAE config's ``scaling_factor``.
        sample_posterior: diffusers only: encode with a posterior sample instead of the mean.
        flip: also cache the horizontally flipped images (augmentation).
        cache_dir: where latent stores are written (one folder per codec x data x flip).
        batch_size: images encoded at once.
    """

    name: str = "pixel"
    path: str | None = None
    scaling_factor: float | None = None
    sample_posterior: bool = False
    flip: bool = False
    cache_dir: str = "outputs/image/cache"
    batch_size: int = 256

    def __post_init__(self):
        check_choice("codec.name", self.name, CODECS)
        if self.name != "pixel" and not self.path:
            raise ConfigError(f"codec={self.name} needs codec.path=...")


@dataclass
class SampleConfig:
    """``sample.*``: integration (defaults of :class:`~kflow_image.train.SamplerSpec`) and evaluation sampling.

    Attributes:
        method, total_steps, cfg_scale, drop_cond_after, project_to_band: see ``SamplerSpec``.
        step_allocation: ``uniform`` or ``energy`` (steps per band proportional to the data's band energy).
        num_samples: samples scored by the evaluation.
        batch_size: samples integrated at once.
        use_ema: sample with the EMA weights when the run kept an EMA (else the raw weights).
    """

    method: str = SamplerSpec.method
    total_steps: int = SamplerSpec.total_steps
    cfg_scale: float = SamplerSpec.cfg_scale
    drop_cond_after: float | None = SamplerSpec.drop_cond_after
    project_to_band: bool = SamplerSpec.project_to_band
    step_allocation: str = "uniform"
    num_samples: int = 1000
    batch_size: int = 500
    use_ema: bool = True

    def __post_init__(self):
        check_choice("sample.method", self.method, SAMPLER_METHODS)
        check_choice("sample.step_allocation", self.step_allocation, ("uniform", "energy"))
        check_range("sample.total_steps", self.total_steps, minimum=1)
        if self.drop_cond_after is not None:
            check_range("sample.drop_cond_after", self.drop_cond_after, minimum=0.0, maximum=1.0)
        check_range("sample.num_samples", self.num_samples, minimum=1)
        check_range("sample.batch_size", self.batch_size, minimum=1)


@dataclass
class EvalConfig:
    """``eval.*``: scoring after training.

    Attributes:
        enabled: score the samples at all (``false``: train, write figures, stop).
        cdr: compute the class-drop ratio (a second sampling pass).
        classifier_epochs: epochs of the in-project feature CNN.
        cache_dir: where the feature CNN is cached.
        inception_weights: a local Inception weights file for FID (nothing is downloaded).
        inception_reference: ``.npz`` reference statistics (``scripts/fid_stats.py``); ``None``
            computes them from the held-out reference split.
        min_feature_accuracy: scores from a feature CNN with a lower held-out accuracy are
            marked invalid in ``metrics.json`` (``metrics_valid: false``, ``invalid_reason``).
        feature_cnn_max_side: images larger than this (e.g. 256²) never train the feature CNN;
            they are scored by the Inception FID only (``eval.inception_weights``).
    """

    enabled: bool = True
    cdr: bool = True
    classifier_epochs: int = 30
    cache_dir: str = "outputs/image/cache"
    inception_weights: str | None = None
    inception_reference: str | None = None
    min_feature_accuracy: float = 0.98
    feature_cnn_max_side: int = 64


def image_train_defaults() -> TrainConfig:
    """The image branch's optimisation defaults (:data:`IMAGE_TRAIN_DEFAULTS` over ``TrainConfig``'s)."""
    return TrainConfig(**IMAGE_TRAIN_DEFAULTS)


@dataclass
class ImageRunConfig:
    """One image run (``scripts/train_image.py``).

    Attributes:
        output_dir: the run folder (required).
        device: ``cpu``, ``cuda``, ``cuda:N``.
        resume: continue from ``<output_dir>/checkpoints/last.pt``.
        balance_weight: weight of the MoE load-balancing loss.
        figures: write samples.png / spectra.png / band_energy.png.
        data, transform, model, codec, train, sample, eval: the groups above; ``train.seed``
            seeds model init, training draws and sampling. ``train.out_dir`` / ``device`` /
            ``resume`` are refused (set from the top level, as in the molecular branch).
    """

    output_dir: str = REQUIRED
    device: str = "cpu"
    resume: bool = False
    balance_weight: float = 0.01
    figures: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    transform: TransformSpec = field(default_factory=TransformSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    train: TrainConfig = field(default_factory=image_train_defaults)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if not self.output_dir:
            raise ConfigError("output_dir is required")
        validate_transform(self.transform)
        check_run_level_keys(self.train, TrainConfig())
        run_train_config(self.train, self.output_dir, self.device, self.resume)  # checks device

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> ImageRunConfig:
        """The config saved in a run folder, also in the older layout (top-level ``seed``, ``train.resume``)."""
        values = copy.deepcopy(values)
        train = values.setdefault("train", {})
        if "seed" in values:
            train.setdefault("seed", values.pop("seed"))
        if "resume" in train:
            values.setdefault("resume", train.pop("resume"))
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def train_config(self, device: str | None = None) -> TrainConfig:
        """The Trainer's config: ``train.*`` plus the run's output folder, device and resume flag."""
        moe = self.model.mlp == "moe"  # under DDP, experts no token was routed to get no gradient
        changes = {"find_unused_parameters": True} if moe else {}
        return run_train_config(self.train, self.output_dir, device or self.device, self.resume, **changes)


def validate_transform(spec: TransformSpec) -> None:
    """Choices and ranges of ``transform.*`` (one ``ConfigError`` line)."""
    check_choice("transform.name", spec.name, TRANSFORMS)
    if spec.grouping is not None:
        check_choice("transform.grouping", spec.grouping, GROUPINGS)
    check_choice("transform.bump", spec.bump, BUMPS)
    if spec.num_bands is not None and spec.num_bands < 1:
        raise ConfigError(f"transform.num_bands={spec.num_bands} must be >= 1 or null")
    if spec.levels < 1:
        raise ConfigError(f"transform.levels={spec.levels} must be >= 1")
    if spec.name == "none" and spec.num_bands not in (1, None):
        raise ConfigError(f"transform=none has one band, got transform.num_bands={spec.num_bands}")
    if spec.name == "wavelet" and spec.num_bands is not None and spec.num_bands > spec.levels + 1:
        raise ConfigError(
            f"transform.num_bands={spec.num_bands}: a wavelet with transform.levels={spec.levels} has at most "
            f"{spec.levels + 1} bands (num_bands=null gives one per level)"
        )
    grouping = spec.grouping or DEFAULT_GROUPING[spec.name]
    if spec.name == "pca" and grouping == "equal_radius":
        raise ConfigError("transform=pca: grouping must be equal_count or equal_energy")


@dataclass
class RestorationConfig:
    """``restoration.*`` of the benchmark: training-free restoration scored for every K >= 2 variant.

    Attributes:
        num_images: reference images restored.
        factor: super-resolution factor.
        sigma: deblurring Gaussian width (pixels).
        observed_fraction: K-Flow keeps bands ``< max(1, floor(fraction * K))`` from the observation.
    """

    num_images: int = 200
    factor: int = 2
    sigma: float = 1.0
    observed_fraction: float = 0.34


@dataclass
class BenchmarkConfig(ImageRunConfig):
    """``scripts/benchmark_image.py``: an :class:`ImageRunConfig` run per variant x seed.

    Attributes:
        benchmark_dir: where run folders and tables go.
        seeds: run seeds.
        variants: name -> ``transform.*`` values (``fm`` = ``{name: none}`` is the baseline).
        restoration: see :class:`RestorationConfig`.
    """

    output_dir: str = "unused"
    benchmark_dir: str = "outputs/image/benchmark"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    variants: dict[str, Any] = field(default_factory=dict)
    restoration: RestorationConfig = field(default_factory=RestorationConfig)


@dataclass
class GridMode:
    """``grid.*``: class-conditional: one row per class; unconditional: 10 rows of 10."""

    per_class: int = 10


@dataclass
class NoiseSplitMode:
    """``noise_split.*``: rows share one noise draw's bands (``share_high``: high bands; ``share_low``: low)."""

    direction: str = "share_high"
    split: int = 1
    rows: int = 8
    per_row: int = 8


@dataclass
class DropCondMode:
    """``drop_cond.*``: row pairs, the class kept vs dropped after ``after`` K."""

    after: float = 0.3
    per_class: int = 8


@dataclass
class RestoreMode:
    """``restore.*``: observations are made in pixel space (and encoded with a latent codec)."""

    kind: str = "super_resolution"
    factor: int = 2
    sigma: float = 1.0
    observed_bands: int = 1
    num_images: int = 10
    fm_run_dir: str | None = None


@dataclass
class EditMode:
    """``edit.*``: move ``bands`` of generated samples by each of ``amounts`` (``1 + amount`` scaling).

    With ``towards_first`` the bands move towards the first sample's instead (``amount = 1`` swaps them in).
    """

    bands: list[int] = field(default_factory=lambda: [0])
    amounts: list[float] = field(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0])
    num_samples: int = 8
    towards_first: bool = False


SAMPLE_MODES = ("grid", "noise_split", "drop_cond", "restore", "trajectory", "edit")


@dataclass
class SampleRunConfig:
    """``scripts/sample_image.py``: figures from a finished run folder.

    Attributes:
        run_dir: the run folder (required).
        mode: one of :data:`SAMPLE_MODES`.
        out_dir: where PNGs go (default ``<run_dir>/samples``).
        seed: noise seed.
        device: where to sample.
        sample: overrides of the run's ``sample.*`` (keys of :class:`SampleConfig`; null or
            left out = the run's value).
    """

    run_dir: str = REQUIRED
    mode: str = "grid"
    out_dir: str | None = None
    seed: int = 0
    device: str = "cpu"
    sample: dict[str, Any] = field(default_factory=dict)
    grid: GridMode = field(default_factory=GridMode)
    noise_split: NoiseSplitMode = field(default_factory=NoiseSplitMode)
    drop_cond: DropCondMode = field(default_factory=DropCondMode)
    restore: RestoreMode = field(default_factory=RestoreMode)
    edit: EditMode = field(default_factory=EditMode)

    def __post_init__(self):
        check_choice("mode", self.mode, SAMPLE_MODES)
        check_choice("noise_split.direction", self.noise_split.direction, ("share_high", "share_low"))
        check_choice("restore.kind", self.restore.kind, ("super_resolution", "deblur"))
        self.sample_config(SampleConfig())  # unknown keys and bad values, before any work

    def sample_config(self, run_sample: SampleConfig) -> SampleConfig:
        """The run's ``sample.*`` with this script's non-null overrides."""
        changes = {key: value for key, value in self.sample.items() if value is not None}
        return from_dict(SampleConfig, changes, "sample.", base=run_sample)


def _autoencoder_settings() -> type:
    from kflow_image.autoencoder import AutoencoderSettings

    return AutoencoderSettings


@dataclass
class AutoencoderRunConfig:
    """``scripts/train_autoencoder.py``.

    Attributes:
        output: checkpoint path (``codec.path`` of later runs).
        seed: seeds init and data order.
        device: where to train.
        log_every: print the loss every this many steps.
        data: the images (any data set of the branch).
        autoencoder: see :class:`kflow_image.autoencoder.AutoencoderSettings`.
    """

    output: str = "???"
    seed: int = 0
    device: str = "cpu"
    log_every: int = 100
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: _autoencoder_settings() = field(default_factory=_autoencoder_settings())  # type: ignore[valid-type]

    def __post_init__(self):
        check_range("autoencoder.steps", self.autoencoder.steps, minimum=1)


HYDRA_SCHEMAS = {
    "image_run_schema": ImageRunConfig,
    "image_benchmark_schema": BenchmarkConfig,
    "image_sample_schema": SampleRunConfig,
    "autoencoder_schema": AutoencoderRunConfig,
}


def register_hydra_schemas(config_store) -> None:
    """Store :data:`HYDRA_SCHEMAS` in a Hydra ``ConfigStore`` (the scripts pass ``ConfigStore.instance()``)."""
    for name, node in HYDRA_SCHEMAS.items():
        config_store.store(name=name, node=node)
