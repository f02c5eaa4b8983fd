"""`TrainConfig` and small validators that scripts reuse to reject bad configs early."""

from __future__ import annotations

import dataclasses
import os
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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown train option(s) {unknown}; known options: {sorted(known)}")
        return cls(**dict(values))

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
