"""`TrainConfig`, the one typed-config builder of both branches and the validators they share.

:func:`from_dict` builds any (nested) config dataclass from plain dicts (a composed Hydra config
turned into a container, a saved run's config): unknown keys are refused, values are checked
against the type hints (ints become floats where a float is expected) and each dataclass's
``__post_init__`` checks its own choices and ranges with :func:`check_choice` /
:func:`check_range`. Every failure is one :class:`ConfigError` line naming the dotted key. No
Hydra or OmegaConf here: the scripts' edge composes, the branches declare their dataclasses.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .schedule import LR_SCHEDULES

AMP_MODES = ("none", "bf16")


@dataclass
class TrainConfig:
    """Optimisation settings shared by every kflow trainer.

    Attributes:
        steps: Optimizer steps to run in total (>= 0); a resumed run stops at the same count.
        batch_size: GLOBAL batch size, split evenly over the DDP ranks.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up length (step s <= warmup_steps uses s / warmup_steps of lr).
        lr_schedule: After warm-up, "constant" (lr) or "cosine" (from lr down to
            lr_min_ratio * lr at the last planned step; `kflow.training.schedule.lr_factor`).
        lr_min_ratio: Final learning rate of the cosine schedule as a fraction of lr.
        grad_clip: Max global gradient norm, or None for no clipping.
        ema_decay: Decay of the parameter EMA, or None for no EMA.
        ema_warmup: Ramp the EMA decay as min(ema_decay, (1 + t) / (10 + t)) over steps t.
        seed: Seeds data order, the training RNG streams and (in scripts) model init.
        log_every: Steps between CSV log rows (the last step is always logged).
        ckpt_every: Steps between checkpoints (one is always written at the end).
        val_every: Steps between validations (and one at the last step), or None for none;
            needs a Trainer `validate_fn`. Writes val_log.csv, val_curve.png and
            checkpoints/best.pt (the weights with the lowest validation metric).
        early_stop_patience: Stop after this many validations in a row without a new best
            (None: never stop early); needs val_every.
        out_dir: Run folder: train_log.csv, loss_curve.png, checkpoints/last.pt (and with
            validation val_log.csv, val_curve.png, checkpoints/best.pt).
        resume: Continue from out_dir/checkpoints/last.pt when it exists.
        device: "cpu", "cuda", "cuda:1", ... ("cuda" means cuda:LOCAL_RANK under torchrun).
        amp: "none" or "bf16" (autocast of the forward pass and loss).
        compile: Wrap the model with torch.compile.
        compile_backend: torch.compile backend ("inductor" by default; "aot_eager" needs no
            C compiler and is handy for debugging).
        progress: Show a tqdm bar on rank 0.
        num_workers: DataLoader worker processes.
        find_unused_parameters: Passed to DistributedDataParallel.
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    ema_warmup: bool = False
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 100
    val_every: int | None = None
    early_stop_patience: int | None = None
    out_dir: str = "outputs/run"
    resume: bool = False
    device: str = "cpu"
    amp: str = "none"
    compile: bool = False
    compile_backend: str = "inductor"
    progress: bool = True
    num_workers: int = 0
    find_unused_parameters: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        for field in dataclasses.fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
        check_range("steps", self.steps, minimum=0)
        check_range("batch_size", self.batch_size, minimum=1)
        check_range("lr", self.lr, minimum=0.0, strict=True)
        check_range("weight_decay", self.weight_decay, minimum=0.0)
        check_range("warmup_steps", self.warmup_steps, minimum=0)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_range("lr_min_ratio", self.lr_min_ratio, minimum=0.0, maximum=1.0)
        if self.grad_clip is not None:
            check_range("grad_clip", self.grad_clip, minimum=0.0, strict=True)
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        check_range("log_every", self.log_every, minimum=1)
        check_range("ckpt_every", self.ckpt_every, minimum=1)
        if self.val_every is not None:
            check_range("val_every", self.val_every, minimum=1)
        if self.early_stop_patience is not None:
            check_range("early_stop_patience", self.early_stop_patience, minimum=1)
            if self.val_every is None:
                raise ConfigError("early_stop_patience needs val_every (validation is off)")
        check_range("num_workers", self.num_workers, minimum=0)
        check_choice("amp", self.amp, AMP_MODES)
        if not self.out_dir:
            raise ConfigError("out_dir must be a non-empty path")
        if not (self.device == "cpu" or self.device == "mps" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain mapping (e.g. an OmegaConf container), rejecting unknown keys.

        Raises:
            ConfigError: on an unknown key or a bad value, naming it.
        """
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPE_NAMES = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}


def _check_type(name: str, value: Any, annotation: str) -> None:
    """Check a value against a simple annotation string like 'float | None'."""
    options = [part.strip() for part in str(annotation).split("|")]
    if value is None:
        if "None" in options:
            return
        raise ConfigError(f"{name} must not be null")
    allowed = tuple(t for option in options for t in _TYPE_NAMES.get(option, ()))
    bool_ok = "bool" in options
    if isinstance(value, bool) and not bool_ok:
        raise ConfigError(f"{name} must be {annotation}, got bool {value}")
    if allowed and not isinstance(value, allowed):
        raise ConfigError(f"{name} must be {annotation}, got {type(value).__name__} {value!r}")


def check_range(
    name: str, value: float, minimum: float | None = None, maximum: float | None = None, strict: bool = False
) -> None:
    """Raise ConfigError unless minimum <= value <= maximum (minimum < value if strict)."""
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"{name} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")


RUN_LEVEL_TRAIN_KEYS = ("out_dir", "device", "resume")
"""``TrainConfig`` fields a run config sets from its top level (``output_dir``, ``device``,
``resume``), the same in both branches; ``train.seed`` stays in the train group."""


def check_run_level_keys(train: TrainConfig, defaults: TrainConfig) -> None:
    """Refuse a ``train.<key>`` of :data:`RUN_LEVEL_TRAIN_KEYS` set away from ``defaults``.

    Raises:
        ConfigError: ``train.out_dir is set from the top level: use output_dir=... instead``.
    """
    for key in RUN_LEVEL_TRAIN_KEYS:
        if getattr(train, key) != getattr(defaults, key):
            top = "output_dir" if key == "out_dir" else key
            raise ConfigError(f"train.{key} is set from the top level: use {top}=... instead")


def run_train_config(train: TrainConfig, output_dir: str, device: str, resume: bool, **changes: Any) -> TrainConfig:
    """The Trainer's config of a run: its train group plus the run's folder, device and resume flag."""
    return dataclasses.replace(train, out_dir=str(output_dir), device=str(device), resume=bool(resume), **changes)


REQUIRED = "???"
"""The default of a key that must be given (as in OmegaConf)."""


def from_dict(cls: type, values: Mapping[str, Any] | None, prefix: str = "", base: Any = None) -> Any:
    """Build dataclass ``cls`` from a (nested) plain dict, refusing unknown keys and wrong types.

    Keys left out keep ``base``'s values (an instance of ``cls``), else the field defaults; a
    nested dataclass group starts from its field default (e.g. a ``default_factory`` with the
    branch's own train defaults). ``__post_init__`` of each dataclass then runs its checks.

    Args:
        prefix: dotted path of ``cls`` in the whole config (``"train."``), used in messages.

    Raises:
        ConfigError: ``unknown key <prefix.key>; ...``, ``<prefix.key>=<value>: expected <type>``,
            ``<prefix.key> is required`` or the first failed check of a ``__post_init__``.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; known keys of {prefix.rstrip('.') or 'the config'}: {list(fields)}"
        )
    kwargs = {} if base is None else {name: getattr(base, name) for name in fields}
    for name, value in values.items():
        hint, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a group of keys, got {value!r}")
            kwargs[name] = from_dict(hint, value, f"{key}.", kwargs.get(name, _field_default(fields[name])))
        else:
            kwargs[name] = _coerce(key, value, hint)
    missing = [name for name in fields if kwargs.get(name, fields[name].default) == REQUIRED]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]} is required ({prefix}{missing[0]}=...)")
    try:
        return cls(**kwargs)
    except ConfigError as error:
        text = str(error)
        raise ConfigError(text if not prefix or prefix in text else f"{prefix.rstrip('.')}: {text}") from None


def _field_default(field: dataclasses.Field) -> Any:
    """A field's default value (``None`` when it has none)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against a simple type hint (int/float/str/bool, ``X | None``, ``list[...]``, ``Any``)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if union else (hint,)
    if value is None:
        if type(None) in options or Any in options:
            return None
        raise ConfigError(f"{key} must not be null")
    for option in options:
        if option is Any:
            return value
        if isinstance(value, bool):
            if option is bool:
                return value
            continue
        if option is int and isinstance(value, int):
            return value
        if option is float and isinstance(value, (int, float)):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        origin = typing.get_origin(option)
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            item = (typing.get_args(option) or (Any,))[0]
            return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
        if origin is dict and isinstance(value, Mapping):
            return dict(value)
    if str in options and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # as OmegaConf does: ``output_dir=2024``
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{key}={value!r}: expected {names}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless value is one of choices."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {choices}")


def check_dir(name: str, path: str | os.PathLike, must_contain: str | None = None) -> None:
    """Raise ConfigError unless path is an existing folder (holding must_contain if given)."""
    if not os.path.isdir(path):
        raise ConfigError(f"{name}: data folder {str(path)!r} does not exist")
    if must_contain is not None and not os.path.exists(os.path.join(path, must_contain)):
        raise ConfigError(f"{name}: folder {str(path)!r} has no {must_contain!r}")
