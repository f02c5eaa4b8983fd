"""Exponential moving average of model parameters."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Keeps `shadow = decay * shadow + (1 - decay) * param` after every optimizer step.

    Buffers (e.g. batch-norm statistics) are copied, not averaged. `ema.module` is a full
    model usable for sampling; `state_dict()` is that model's state dict.

    With ``warmup`` the decay after ``t`` updates is ``min(decay, (1 + t) / (10 + t))``, so the
    average forgets the initial weights early in training (short runs do not sample from a
    mostly untrained copy).

    Args:
        model: The model being trained (unwrapped, not DDP).
        decay: EMA decay in (0, 1).
        warmup: Ramp the decay up with the number of updates.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def decay_at(self, step: int | None) -> float:
        """The decay used for update number ``step`` (1-based optimizer step)."""
        if not self.warmup or step is None:
            return self.decay
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Blend ``model``'s parameters in; ``step`` (the optimizer step) drives the warm-up."""
        decay = self.decay_at(step)
        shadow = list(self.module.parameters())
        current = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow, current, 1.0 - decay)
        for own, other in zip(self.module.buffers(), model.buffers()):
            own.copy_(other)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)
