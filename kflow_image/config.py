"""The typed config of an image run: every default lives here, once.

The Hydra scripts register these dataclasses as structured configs (:data:`HYDRA_SCHEMAS`), so
the YAML files under ``configs/image/`` only *choose* (a data set, a transform, a model size,
an experiment's settings) and document; an unknown key or a value of the wrong type is refused
by OmegaConf before any work. :meth:`ImageRunConfig.from_dict` does the same for plain dicts
(library use, old ``run_config.json`` files) and :meth:`ImageRunConfig.validate` checks
choices and ranges, each failure one :class:`~kflow.training.ConfigError` line naming the key.

Defaults that belong to a library object are not restated: ``model.*`` ``None`` means the DiT
preset's value, ``transform.grouping: None`` means :data:`kflow_image.train.DEFAULT_GROUPING`,
``sample.*`` defaults are :class:`~kflow_image.train.SamplerSpec`'s and ``train.*`` defaults are
:class:`~kflow.training.TrainConfig`'s except the few in :data:`IMAGE_TRAIN_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from kflow.training import ConfigError, TrainConfig
from kflow_image.codecs import CODECS
from kflow_image.models import DIT_PRESETS
from kflow_image.train import DEFAULT_GROUPING, TRANSFORMS, SamplerSpec, TransformSpec

DATA_KEYS = {
    "digits": ("reference_size", "pad_to", "seed"),
    "mnist": ("root", "pad_to"),
    "folder": ("root", "size", "channels", "reference_fraction", "seed"),
}
RUN_LEVEL_TRAIN_KEYS = ("seed", "out_dir", "device")  # set from the run's top-level seed/output_dir/device
IMAGE_TRAIN_DEFAULTS = {
    "steps": 2000,
    "batch_size": 64,
    "lr": 1.0e-3,
    "warmup_steps": 100,
    "log_every": 50,
    "ckpt_every": 500,
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


def _image_train_fields() -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in RUN_LEVEL_TRAIN_KEYS:
            continue
        out.append((f.name, hints[f.name], field(default=IMAGE_TRAIN_DEFAULTS.get(f.name, f.default))))
    return out


ImageTrainConfig = dataclasses.make_dataclass("ImageTrainConfig", _image_train_fields())
ImageTrainConfig.__doc__ = (
    "``train.*``: the fields of kflow.training.TrainConfig except seed/out_dir/device "
    "(taken from the run), with the image defaults of IMAGE_TRAIN_DEFAULTS."
)


@dataclass
class ImageRunConfig:
    """One image run (``scripts/train_image.py``).

    Attributes:
        output_dir: the run folder (required).
        seed: seeds model init, training draws and sampling.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        balance_weight: weight of the MoE load-balancing loss.
        figures: write samples.png / spectra.png / band_energy.png.
        data, transform, model, codec, train, sample, eval: the groups above.
    """

    output_dir: str = "???"
    seed: int = 0
    device: str = "cpu"
    balance_weight: float = 0.01
    figures: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    transform: TransformSpec = field(default_factory=TransformSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)  # type: ignore[valid-type]
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImageRunConfig:
        """Typed config from a plain dict; unknown keys and wrong types raise one ``ConfigError`` line."""
        config = from_dict(cls, values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def train_config(self, device: str | None = None) -> TrainConfig:
        """The Trainer's config: ``train.*`` plus the run's seed, output folder and device."""
        args = dataclasses.asdict(self.train)
        if self.model.mlp == "moe":  # under DDP, experts no token was routed to get no gradient
            args["find_unused_parameters"] = True
        args.update(seed=self.seed, out_dir=self.output_dir, device=device or self.device)
        return TrainConfig.from_dict(args)

    def validate(self) -> None:
        """Reject a config that cannot work, in one clear line (``ConfigError``), before any work."""
        if not self.output_dir or self.output_dir == "???":
            raise ConfigError("output_dir is required")
        check_choice("data.name", self.data.name, DATA_KEYS)
        if self.data.name == "folder" and not self.data.root:
            raise ConfigError("data=folder needs data.root=/path/to/images")
        if not 0.0 <= self.data.reference_fraction < 1.0:
            raise ConfigError(f"data.reference_fraction={self.data.reference_fraction} must be in [0, 1)")
        validate_transform(self.transform)
        check_choice("model.preset", self.model.preset, DIT_PRESETS)
        check_choice("model.mlp", self.model.mlp, ("dense", "moe"))
        check_choice("codec.name", self.codec.name, CODECS)
        if self.codec.name != "pixel" and not self.codec.path:
            raise ConfigError(f"codec={self.codec.name} needs codec.path=...")
        validate_sample(self.sample)
        if self.sample.num_samples < 1 or self.sample.batch_size < 1:
            raise ConfigError("sample.num_samples and sample.batch_size must be >= 1")
        try:
            self.train_config(device="cpu")
        except ConfigError as err:
            raise ConfigError(f"train.{err}") from None


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


def validate_sample(sample: SampleConfig) -> None:
    """Choices and ranges of ``sample.*`` (one ``ConfigError`` line)."""
    check_choice("sample.method", sample.method, SAMPLER_METHODS)
    check_choice("sample.step_allocation", sample.step_allocation, ("uniform", "energy"))
    if sample.total_steps < 1:
        raise ConfigError(f"sample.total_steps={sample.total_steps} must be >= 1")
    if sample.drop_cond_after is not None and not 0.0 <= sample.drop_cond_after <= 1.0:
        raise ConfigError(f"sample.drop_cond_after={sample.drop_cond_after} must be in [0, 1] or null")


def check_choice(key: str, value: Any, choices) -> None:
    """``ConfigError`` ``key=value: choose one of [...]`` unless ``value in choices``."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: choose one of {sorted(choices)}")


def from_dict(cls: type, values: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) dict, refusing unknown keys and wrong types.

    Raises:
        ConfigError: ``unknown key <prefix.key>`` or ``<prefix.key>=<value>: expected <type>``.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; known keys of {prefix.rstrip('.') or 'the config'}: {names}"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} must be a group of keys, got {value!r}")
            kwargs[name] = from_dict(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against a simple type hint (int/float/str/bool, ``X | None``, ``list[...]``)."""
    options = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} must not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) in (list, tuple) and isinstance(value, (list, tuple)):
            return list(value)
        if typing.get_origin(option) is dict and isinstance(value, dict):
            return dict(value)
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{key}={value!r}: expected {names}")


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


def _overrides_of(cls: type, name: str) -> type:
    """A dataclass with ``cls``'s fields, all optional with default ``None`` (= keep the run's value)."""
    hints = typing.get_type_hints(cls)
    fields = [(f.name, hints[f.name] | None, field(default=None)) for f in dataclasses.fields(cls)]
    made = dataclasses.make_dataclass(name, fields)
    made.__doc__ = f"Overrides of {cls.__name__}; null keeps the run's value."
    return made


SampleOverrides = _overrides_of(SampleConfig, "SampleOverrides")


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
        sample: overrides of the run's ``sample.*`` (null = the run's value).
    """

    run_dir: str = "???"
    mode: str = "grid"
    out_dir: str | None = None
    seed: int = 0
    device: str = "cpu"
    sample: SampleOverrides = field(default_factory=SampleOverrides)  # type: ignore[valid-type]
    grid: GridMode = field(default_factory=GridMode)
    noise_split: NoiseSplitMode = field(default_factory=NoiseSplitMode)
    drop_cond: DropCondMode = field(default_factory=DropCondMode)
    restore: RestoreMode = field(default_factory=RestoreMode)
    edit: EditMode = field(default_factory=EditMode)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SampleRunConfig:
        config = from_dict(cls, values)
        check_choice("mode", config.mode, SAMPLE_MODES)
        check_choice("noise_split.direction", config.noise_split.direction, ("share_high", "share_low"))
        check_choice("restore.kind", config.restore.kind, ("super_resolution", "deblur"))
        return config

    def sample_config(self, run_sample: SampleConfig) -> SampleConfig:
        """The run's ``sample.*`` with this script's non-null overrides."""
        changes = {k: v for k, v in dataclasses.asdict(self.sample).items() if v is not None}
        merged = dataclasses.replace(run_sample, **changes)
        validate_sample(merged)
        return merged


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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AutoencoderRunConfig:
        config = from_dict(cls, values)
        check_choice("data.name", config.data.name, DATA_KEYS)
        if config.autoencoder.steps < 1:
            raise ConfigError(f"autoencoder.steps={config.autoencoder.steps} must be >= 1")
        return config


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
