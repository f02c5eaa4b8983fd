"""Start states drawn afresh every time a cluster is drawn for training.

A training cluster keeps its crystal (``body``, ``rot_target``, ``trans_target``) and gets a new
start state from its start scheme each time it appears in a batch, so the training data do not
run out (79 clusters with one fixed start each are memorised within a few hundred steps).
Only clusters whose start scheme is ours are redrawn (sources ``pyxtal``, ``cif``,
``pyxtal_random``, and ``pyxtal_mech`` if anyone trains on it): the published CSV layout
(``start_scheme == "published"``) keeps its fixed start.

Seeding: one uniform number per cluster from the Trainer's
:class:`~kflow.training.StepDraws` (seeded by run seed, step and call number, sliced by global
batch position), turned into the seed of a numpy stream. The same cluster therefore gets the
same start in a 1-process run, in every N-rank split of the batch, and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from kflow.training import StepDraws
from kflow_mol.data.crystals import CrystalRejected
from kflow_mol.data.dataset import AssemblyData, rigid_cluster_data
from kflow_mol.data.start_states import (
    START_PRESETS,
    StartScheme,
    draw_start_state,
    start_scheme,
)

FIXED_START_SCHEMES = frozenset({"published"})
"""Start schemes that are data, not ours to redraw (the COD-Cluster17 CSV layout)."""


def is_redrawable(cluster: AssemblyData, schemes: dict[str, StartScheme] | None = None) -> bool:
    """True when the cluster's start comes from one of our start schemes (so it may be redrawn)."""
    name = cluster.start_scheme
    return name not in FIXED_START_SCHEMES and (name in START_PRESETS or bool(schemes and name in schemes))


def redraw_start(cluster: AssemblyData, scheme: StartScheme, rng: np.random.Generator) -> AssemblyData:
    """The same crystal cluster with a new start state drawn from ``scheme``.

    Args:
        cluster: one cluster (every molecule must have the same atom count, as built).
        scheme: how to draw the start.
        rng: numpy random stream.

    Returns:
        A new :class:`AssemblyData` (both states shifted by the new start centroid).

    Raises:
        CrystalRejected: ``start_overlap`` when no clash-free start is found.
    """
    num_mols = int(cluster.num_mols)
    numbers = cluster.z.numpy().reshape(num_mols, -1)
    body = cluster.body.double().numpy().reshape(num_mols, -1, 3)
    rot_target = cluster.rot_target.double().numpy()
    trans_target = cluster.trans_target.double().numpy()
    rot_start, trans_start = draw_start_state(body, rot_target, trans_target, scheme, rng, cluster.cluster_id)
    meta = {key: cluster[key] for key in ("cluster_id", "crystal_id", "formula", "source", "synthetic", "start_scheme")}
    return rigid_cluster_data(numbers, body, rot_start, trans_start, rot_target, trans_target, meta)


def stream_seeds(count: int, draws: StepDraws | None = None, generator: torch.Generator | None = None) -> list[int]:
    """One 53-bit seed per cluster: from ``draws`` (DDP/resume exact) or ``generator``."""
    if draws is not None:
        uniform = draws.rand(count, dtype=torch.float64)
    else:
        uniform = torch.rand(count, generator=generator, dtype=torch.float64)
    return [int(u * 2**53) for u in uniform.tolist()]


@dataclass
class FreshStarts:
    """Redraws the start state of every redrawable cluster of a batch.

    Attributes:
        schemes: start scheme per stored ``start_scheme`` name; names missing here use the
            preset of that name (:data:`~kflow_mol.data.start_states.START_PRESETS`).
        redrawn: clusters redrawn so far.
        kept: clusters that kept their start (fixed scheme, or no clash-free start found).
    """

    schemes: dict[str, StartScheme] = field(default_factory=dict)
    redrawn: int = 0
    kept: int = 0

    def scheme_for(self, name: str) -> StartScheme:
        """The start scheme of a stored scheme name."""
        return self.schemes[name] if name in self.schemes else start_scheme(name)

    def __call__(
        self,
        batch: Batch | list[AssemblyData],
        draws: StepDraws | None = None,
        generator: torch.Generator | None = None,
    ) -> Batch:
        """The batch with new start states (one seed per cluster, drawn even for fixed ones).

        Args:
            batch: a collated batch or a list of clusters.
            draws: the Trainer's per-step draws (DDP and resume exact).
            generator: used when ``draws`` is None.

        Returns:
            A collated :class:`Batch` on the device of the input.
        """
        clusters = batch.to_data_list() if isinstance(batch, Batch) else list(batch)
        device = clusters[0].z.device
        seeds = stream_seeds(len(clusters), draws, generator)
        out = []
        for cluster, seed in zip(clusters, seeds):
            if not is_redrawable(cluster, self.schemes):
                self.kept += 1
                out.append(cluster)
                continue
            try:
                fresh = redraw_start(cluster.cpu(), self.scheme_for(cluster.start_scheme), np.random.default_rng(seed))
            except CrystalRejected:
                self.kept += 1
                out.append(cluster)
                continue
            self.redrawn += 1
            out.append(fresh.to(device))
        return Batch.from_data_list(out)

    def wrap_loss(self, loss_fn: Callable[..., Any]) -> Callable[..., Any]:
        """A Trainer ``loss_fn(model, batch, draws=None)`` that redraws starts, then calls ``loss_fn``."""

        def loss(model, batch, draws: StepDraws | None = None, generator: torch.Generator | None = None):
            fresh = self(batch, draws=draws, generator=generator)
            if draws is not None:
                return loss_fn(model, fresh, draws=draws)
            return loss_fn(model, fresh, generator=generator)

        return loss
