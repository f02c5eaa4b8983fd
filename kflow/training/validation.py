"""Periodic validation: the best-so-far bookkeeping, early stopping and the call itself."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .seeding import capture_rng_state, restore_rng_state

ValidateFn = Callable[[nn.Module], Mapping[str, float]]


@dataclass
class ValidationState:
    """Where validation stands; stored in every checkpoint so a resume continues exactly.

    Attributes:
        metric: Name of the metric minimised.
        best_value: Lowest finite value seen so far (None before the first finite one).
        best_step: Step of `best_value` (None before it).
        bad_validations: Validations in a row without a new best (the patience counter).
        last_step: Step of the last validation (None before the first).
        stopped_early: Whether the patience ran out.
        history: One row per validation: step, the metrics, val_s (seconds it took), best.
    """

    metric: str
    best_value: float | None = None
    best_step: int | None = None
    bad_validations: int = 0
    last_step: int | None = None
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, step: int, metrics: Mapping[str, float], seconds: float, patience: int | None) -> bool:
        """Add one validation's metrics; returns whether it is a new best (strictly lower).

        Raises:
            KeyError: `metrics` lacks the metric minimised.
        """
        if self.metric not in metrics:
            raise KeyError(f"validate_fn returned {sorted(metrics)} but val_metric={self.metric!r}")
        value = float(metrics[self.metric])
        improved = math.isfinite(value) and (self.best_value is None or value < self.best_value)
        if improved:
            self.best_value, self.best_step, self.bad_validations = value, step, 0
        else:
            self.bad_validations += 1
        self.last_step = step
        self.stopped_early = patience is not None and self.bad_validations >= patience
        best = self.best_value if self.best_value is not None else math.nan
        self.history.append({"step": step, **{k: float(v) for k, v in metrics.items()}, "val_s": seconds, "best": best})
        return improved

    def exhausted(self, patience: int | None) -> bool:
        """Whether `patience` validations in a row brought no new best."""
        return patience is not None and self.bad_validations >= patience

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, metric: str) -> ValidationState:
        """Restore a checkpoint's state; a fresh one when absent or kept for another metric."""
        if not values or values.get("metric") != metric:
            return cls(metric=metric)
        state = cls(**{k: v for k, v in values.items() if k != "history"})
        state.history = [dict(row) for row in values.get("history", [])]
        return state


def run_validation(validate_fn: ValidateFn, model: nn.Module) -> tuple[dict[str, float], float]:
    """Call `validate_fn(model)` in eval mode under no_grad, leaving the RNG streams untouched.

    The python/numpy/torch/CUDA RNG states are restored afterwards, so a run with validation
    trains exactly like one without. The model's train/eval mode is restored too.

    Returns:
        The metrics as floats, and the seconds the call took.
    """
    rng = capture_rng_state()
    was_training = model.training
    tic = time.perf_counter()
    try:
        model.eval()
        with torch.no_grad():
            metrics = {str(k): float(v) for k, v in dict(validate_fn(model)).items()}
    finally:
        model.train(was_training)
        restore_rng_state(rng)
    return metrics, time.perf_counter() - tic
