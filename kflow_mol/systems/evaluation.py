"""Scoring a system with several samples per cluster (for the stochastic rows of Table 5).

AssembleFlow's evaluation draws repeated samples of every test cluster and reports, per
cluster, the MINIMUM of each metric over the repeats (then the mean over clusters). We keep
that, and the mean over repeats next to it, so a lucky draw cannot hide a noisy sampler.
Deterministic systems are sampled once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch_geometric.data import Batch

from kflow_mol.evaluate import METRICS, MethodScores, Prediction, evaluate_method

BEST_IS_MAX = ("n_matched",)
"""Metrics where larger is better (their per-cluster "best" is the maximum over repeats)."""


@dataclass
class RepeatedScores:
    """Scores of ``n`` sample draws of every cluster.

    Attributes:
        name: method name.
        runs: one :class:`~kflow_mol.evaluate.MethodScores` per draw (same cluster order).
        best: per cluster the best value over draws (min; max for ``n_matched``).
        mean: per cluster the mean over draws.
    """

    name: str
    runs: list[MethodScores] = field(default_factory=list)
    best: MethodScores | None = None
    mean: MethodScores | None = None

    def summary(self) -> dict[str, float]:
        """``best``'s summary, with ``<metric>_mean_over_samples`` columns and ``n_samples`` added."""
        out = dict(self.best.summary())
        for key, value in self.mean.summary().items():
            if key in METRICS or key.endswith("_filtered"):
                out[f"{key}_mean_over_samples"] = value
        out["n_samples"] = len(self.runs)
        out["wall_s"] = sum(run.wall_s for run in self.runs)
        return out


def combine_draws(name: str, runs: Sequence[MethodScores]) -> RepeatedScores:
    """Per-cluster best and mean over draws of the same clusters.

    Args:
        name: method name.
        runs: scores of each draw, every one over the same clusters in the same order.

    Returns:
        :class:`RepeatedScores`.
    """
    if not runs:
        raise ValueError("combine_draws needs at least one run")
    ids = runs[0].cluster_ids
    if any(run.cluster_ids != ids for run in runs):
        raise ValueError("every draw must score the same clusters in the same order")
    best, mean = MethodScores(name=name, cluster_ids=list(ids)), MethodScores(name=name, cluster_ids=list(ids))
    for metric in METRICS:
        values = torch.tensor([run.per_cluster[metric] for run in runs], dtype=torch.float64)  # (n, clusters)
        if values.numel() == 0:
            continue
        pick = values.nan_to_num(nan=-torch.inf if metric in BEST_IS_MAX else torch.inf)
        best_values = pick.max(0).values if metric in BEST_IS_MAX else pick.min(0).values
        all_nan = values.isnan().all(0)
        best.per_cluster[metric] = torch.where(all_nan, torch.nan, best_values).tolist()
        mean.per_cluster[metric] = values.mean(0).tolist()
    best.nfe = mean.nfe = runs[0].nfe
    best.wall_s = mean.wall_s = sum(run.wall_s for run in runs)
    return RepeatedScores(name=name, runs=list(runs), best=best, mean=mean)


def evaluate_system(name: str, system, model: nn.Module, clusters: Sequence, *, n_samples: int = 5, seed: int = 0,
                    method: str = "euler", steps_per_band=None, batch_size: int = 8,
                    device: str | torch.device = "cpu", with_rmsd: bool = False,
                    progress: bool = False) -> RepeatedScores:
    """Sample every cluster ``n_samples`` times (once if the system is deterministic) and score it.

    Args:
        name: method name for the report.
        system: a :mod:`kflow_mol.systems` object (or an ``AssemblyFlow``).
        model: its trained network.
        clusters: ``AssemblyData`` clusters.
        n_samples: draws per cluster for stochastic systems (AssembleFlow's protocol; default 5).
        seed: draw ``i`` uses a generator seeded with ``seed * 1000 + i``.
        method: sampling method.
        steps_per_band: sampling steps (``None``: the system's default).
        batch_size: clusters per sampling call.
        device: where to sample.
        with_rmsd: also compute RMSD_17.
        progress: progress bars.

    Returns:
        :class:`RepeatedScores`.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    model.eval()
    draws = n_samples if getattr(system, "stochastic", False) else 1
    runs = []
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed * 1000 + draw)

        def predict(batch: Batch, generator=generator) -> Prediction:
            kwargs = {"generator": generator} if getattr(system, "stochastic", False) else {}
            if steps_per_band is not None:
                kwargs["steps_per_band"] = steps_per_band
            out = system.sample(model, batch, method=method, **kwargs)
            return Prediction(pos=out.pos, nfe=out.nfe)

        runs.append(evaluate_method(name, predict, clusters, batch_size=batch_size, device=device,
                                    with_rmsd=with_rmsd, progress=progress))
    return combine_draws(name, runs)
