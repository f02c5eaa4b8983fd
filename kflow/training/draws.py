"""Random draws for one optimizer step that do not depend on how the batch is split over ranks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class StepDraws:
    """Per-sample random numbers of one step, the same in a 1-process and an N-rank run.

    Every call draws the values of the whole global batch from a generator seeded by
    ``(seed, step, call number)`` and returns this rank's rows. Rank ``r`` holds global
    batch positions ``r, r + world_size, ...`` (the `DistributedSampler` layout the Trainer
    uses), so each sample gets the same draw however the batch is sharded, and a resumed
    run draws what the uninterrupted run drew, whatever the RNG state.

    Pass it to a loss by giving the loss function a ``draws`` keyword argument; the Trainer
    then calls ``loss_fn(model, batch, draws=StepDraws(...))``.

    Attributes:
        seed: run seed.
        step: optimizer step (1-based).
        rank: this rank.
        world_size: number of ranks.
    """

    seed: int
    step: int
    rank: int = 0
    world_size: int = 1
    _calls: int = field(default=0, repr=False)

    def _generator(self) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.step, self._calls, 11]).generate_state(1)[0]
        self._calls += 1
        return torch.Generator().manual_seed(int(state))

    def rand(
        self, n: int, *shape: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Uniform [0, 1) draws for this rank's ``n`` samples, shape ``(n, *shape)``."""
        full = torch.rand(n * self.world_size, *shape, generator=self._generator(), dtype=torch.float64)
        return full[self.rank :: self.world_size].to(device=device, dtype=dtype)

    def randn(
        self, n: int, *shape: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Standard normal draws for this rank's ``n`` samples, shape ``(n, *shape)``."""
        full = torch.randn(n * self.world_size, *shape, generator=self._generator(), dtype=torch.float64)
        return full[self.rank :: self.world_size].to(device=device, dtype=dtype)
