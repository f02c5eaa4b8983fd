"""Validation during training: PM on a fixed subset of the val split (the Trainer's ``validate_fn``).

With ``train.val_every`` set, :func:`kflow_mol.experiment.train` hands the Trainer
:func:`make_validate_fn`: every ``val_every`` steps (and at the last step) the model (the EMA
copy when there is one) samples ``eval.val_clusters`` val clusters deterministically (a
stochastic system's draws are seeded the same way each time) with the steps the run is scored
with, and the Trainer keeps ``checkpoints/best.pt`` by ``eval.val_metric``.

Metrics (means over the subset's clusters, see :mod:`kflow_mol.metrics`):

- ``pm_atom``, ``pm_center``: Packing Matching (Å);
- ``orientation_median_deg``: mean over clusters of the median over each cluster's molecules
  of the symmetry-aware orientation error (degrees; the test summary's definition), when
  :func:`kflow_mol.metrics.orientation.orientation_errors` is available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from kflow_mol.evaluate import Prediction, local_mol_index
from kflow_mol.metrics import pm_atom_batch, pm_center_batch

PredictorFor = Callable[[nn.Module], Callable[[Batch], Prediction]]


def fixed_subset(clusters: Sequence, count: int) -> list:
    """``count`` clusters spread evenly over ``clusters`` (all when there are fewer), always the same."""
    if count >= len(clusters):
        return list(clusters)
    return [clusters[int(i)] for i in np.linspace(0, len(clusters) - 1, count).round().astype(int)]


def orientation_metric() -> Callable | None:
    """``orientation_errors(pos_pred, pos_target, z, mol_index)`` when the metrics provide it."""
    try:
        from kflow_mol.metrics.orientation import orientation_errors
    except ImportError:
        return None
    return orientation_errors


def score_validation(batches: list[tuple[Batch, torch.Tensor]], with_orientation: bool = True) -> dict[str, float]:
    """Validation metrics of predicted batches: ``[(batch, predicted positions)]``."""
    pm_atom, pm_center, angles = [], [], []
    orientation = orientation_metric() if with_orientation else None
    for batch, pos in batches:
        true, pred = batch.pos_target.detach().cpu().double(), pos.detach().cpu().double()
        atom_batch = batch.batch.cpu()
        pm_atom += pm_atom_batch(true, pred, atom_batch).tolist()
        pm_center += pm_center_batch(true, pred, local_mol_index(batch).cpu(), atom_batch).tolist()
        if orientation is not None:
            angles += _cluster_medians(orientation(pred, true, batch.z.cpu(), batch.mol_index.cpu()), batch)
    out = {"pm_atom": _mean(pm_atom), "pm_center": _mean(pm_center)}
    if orientation is not None:
        out["orientation_median_deg"] = _mean(angles)
    return out


def _cluster_medians(per_molecule: torch.Tensor, batch: Batch) -> list[float]:
    """Median of a per-molecule value over each cluster's molecules (molecules sorted by cluster)."""
    mol_index = batch.mol_index.cpu()
    mol_cluster = torch.zeros(per_molecule.shape[0], dtype=torch.long).scatter_(0, mol_index, batch.batch.cpu())
    counts = torch.bincount(mol_cluster).tolist()
    return [float(part.median()) for part in per_molecule.double().split(counts) if len(part)]


def make_validate_fn(
    clusters: Sequence, predictor_for: PredictorFor, *, batch_size: int = 8, with_orientation: bool = True
) -> Callable[[nn.Module], dict[str, float]]:
    """The Trainer's ``validate_fn``: sample ``clusters`` with ``predictor_for(model)`` and score them.

    Args:
        clusters: the fixed validation clusters (``AssemblyData``).
        predictor_for: ``model -> predict(batch) -> Prediction``, deterministic for a given model.
        batch_size: clusters per sampling batch.
        with_orientation: add ``orientation_median_deg`` when the metric is available.
    """
    batches = [Batch.from_data_list(list(clusters[i : i + batch_size])) for i in range(0, len(clusters), batch_size)]

    def validate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        predict = predictor_for(model)
        predicted = []
        for batch in batches:
            batch = batch.to(device)
            predicted.append((batch, predict(batch).pos))
        return score_validation(predicted, with_orientation)

    return validate


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan
