"""Learning-rate schedules: linear warm-up, then constant or cosine decay."""

from __future__ import annotations

import math

import torch

LR_SCHEDULES = ("constant", "cosine")


def lr_factor(
    index: int, *, steps: int, warmup_steps: int, schedule: str = "constant", min_ratio: float = 0.0
) -> float:
    """The multiplier of the peak learning rate used by optimizer step ``index + 1``.

    Warm-up: step ``s <= warmup_steps`` uses ``s / warmup_steps``. Afterwards ``constant``
    keeps 1; ``cosine`` goes from 1 at the first step after warm-up to exactly ``min_ratio``
    at the last planned step ``steps`` (and stays there beyond it):
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2`` with
    ``p = (s - 1 - warmup_steps) / (steps - 1 - warmup_steps)`` clipped to [0, 1].

    Args:
        index: Optimizer steps already taken (the scheduler's ``last_epoch``), >= 0.
        steps: Planned optimizer steps of the run.
        warmup_steps: Linear warm-up length.
        schedule: ``constant`` or ``cosine``.
        min_ratio: Final learning rate of the cosine, as a fraction of the peak.
    """
    if warmup_steps > 0 and index < warmup_steps:
        return min(1.0, (index + 1) / warmup_steps)
    if schedule == "constant":
        return 1.0
    span = steps - 1 - warmup_steps
    progress = 1.0 if span <= 0 else min(1.0, max(0.0, (index - warmup_steps) / span))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, *, steps: int, warmup_steps: int, schedule: str, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_factor` (its position, ``last_epoch``, is checkpointed)."""

    def factor(index: int) -> float:
        return lr_factor(index, steps=steps, warmup_steps=warmup_steps, schedule=schedule, min_ratio=min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
