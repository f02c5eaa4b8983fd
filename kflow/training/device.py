"""Device resolution and moving nested batches (tensors, PyG Data/Batch, containers)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """Turn "cpu" / "cuda" / "cuda:N" / "mps" into a torch.device that exists here.

    Under torchrun, plain "cuda" means cuda:LOCAL_RANK.

    Raises:
        ConfigError: when the device is unknown or not available on this machine.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device=mps requested but MPS is not available on this machine")
        return torch.device("mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} requested but torch.cuda.is_available() is False; use device=cpu")
        if name == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise ConfigError(f"bad device {name!r}: {error}") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but only {torch.cuda.device_count()} GPU(s) visible")
        return device
    raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def move_to_device(batch, device: torch.device | str, non_blocking: bool = False):
    """Move tensors inside a batch to device.

    Handles tensors, objects with `.to(device)` (PyG Data/Batch, modules), dicts, lists,
    tuples and dataclass-like namedtuples; everything else is returned unchanged.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device, non_blocking) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    return batch


def timed_calls(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    On CUDA the device is synchronised before and after every timed call, so each time covers
    the kernels the call launched.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
