"""torchrun / torch.distributed helpers: who am I, reduce, gather, barrier."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .device import resolve_device


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set WORLD_SIZE > 1 for this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@dataclass
class DistributedContext:
    """Where this process sits in a (possibly single-process) run.

    Build it with `DistributedContext.from_env(device)`, which initialises the process group
    under torchrun (gloo for CPU, nccl for CUDA) and picks cuda:LOCAL_RANK for "cuda".

    Attributes:
        rank: Global rank (0 when not distributed).
        world_size: Number of processes.
        local_rank: Rank on this machine (the GPU index under torchrun).
        device: The device this rank computes on.
        owns_process_group: True when this context initialised the group (and so destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False

    @classmethod
    def from_env(cls, device: str = "cpu") -> DistributedContext:
        """Read torchrun's environment and initialise the process group if needed.

        Raises:
            ConfigError: the device is not available.
        """
        torch_device = resolve_device(device)
        if not launched_by_torchrun():
            return cls(device=torch_device)
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if torch_device.type == "cuda" else "gloo"
            options = {"device_id": torch_device} if torch_device.type == "cuda" else {}
            dist.init_process_group(backend=backend, **options)
            owns = True
        return cls(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=local_rank,
            device=torch_device,
            owns_process_group=owns,
        )

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of `values` over ranks (returned as a new tensor; identity on one process).

        Args:
            values: Any-shape float tensor on this rank's device.
        """
        values = values.clone()
        if self.is_distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def all_reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of `values` over ranks. Args: values: any-shape float tensor."""
        return self.all_reduce_sum(values) / self.world_size

    def all_gather_objects(self, items: list[Any]) -> list[Any]:
        """Concatenate every rank's list of picklable items, in rank order.

        Use it to gather evaluation results computed on each rank's shard.
        """
        if not self.is_distributed:
            return list(items)
        gathered: list[list[Any] | None] = [None] * self.world_size
        dist.all_gather_object(gathered, list(items))
        return [item for rank_items in gathered for item in rank_items]

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """`obj` from rank `src` on every rank."""
        if not self.is_distributed:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def shutdown(self, barrier: bool = True) -> None:
        """Destroy the process group if this context created it.

        Args:
            barrier: let all ranks meet first, so none tears the group down while another
                still has collectives in flight. Pass False on an error path, where a peer
                may never arrive.
        """
        if self.owns_process_group and dist.is_initialized():
            if barrier and self.is_distributed:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_process_group = False
