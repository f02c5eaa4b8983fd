"""Library-level evaluation: predict clusters with a method, score them, summarise.

A *method* is any ``predict(batch) -> Prediction``; the identity baseline returns the start
state unchanged, a trained flow integrates its ODE. Scores per cluster (see
:mod:`kflow_mol.metrics` for the exact definitions):

- ``pm_atom``, ``pm_center``: Packing Matching (Å, full N×N convention);
- ``rmsd_17``: permutation-invariant COMPACK-like RMSD (Å) and ``n_matched`` molecules;
- ``collision``: % of atom pairs of different molecules closer than the sum of covalent radii;
- ``separation``: % of molecule pairs whose closest atoms are > 0.5 Å apart;
- ``orientation_deg``, ``orientation_median_deg``: mean and median over the cluster's molecules
  of the symmetry-minimised orientation error (degrees), ``centroid_error``: mean centroid
  error (Å), both in the data frame (:mod:`kflow_mol.metrics.orientation`): they say whether
  PM is lost on where the molecules sit or on how they are turned;
- ``shape_rmsd`` (Å) and ``gyration_ratio``: mean over the cluster's molecules of the Kabsch
  residual of the predicted molecule on its crystal copy and of its radius of gyration over the
  crystal's (0 and 1 for every rigid method; all-atom methods can lower PM-atom by shrinking
  molecules, which these two columns show); ``spread_ratio``: the radius of gyration of the
  predicted molecule centroids over the crystal's (below 1: a compressed cluster, which also
  lowers PM-atom while orientations are unknown).

The summary gives the mean and std over clusters (so ``orientation_median_deg`` is the mean over
clusters of each cluster's median) and, for PM, the mean after dropping non-finite values and
values above 100 Å (with the number dropped). Methods named ``oracle_*`` are reference rows
built from the target (:mod:`kflow_mol.oracles`), not models.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Batch

from kflow_mol.metrics import (
    aggregate_pm,
    centroid_spread_ratios,
    cluster_pose_errors,
    collision_rate,
    molecule_errors,
    pm_atom_batch,
    pm_center_batch,
    rmsd17_batch,
    separation_rate,
)

POSE_METRICS = (
    "orientation_deg",
    "orientation_median_deg",
    "centroid_error",
    "shape_rmsd",
    "gyration_ratio",
    "spread_ratio",
)
METRICS = ("pm_atom", "pm_center", "rmsd_17", "n_matched", "collision", "separation", *POSE_METRICS)
RATIO_METRICS = ("gyration_ratio", "spread_ratio")
"""Predicted over crystal: best at 1, so the best of several draws is the one closest to 1."""


@dataclass
class Prediction:
    """Predicted positions of a batch.

    Attributes:
        pos: atom positions, shape ``(A, 3)``.
        nfe: network evaluations used (0 for the identity).
        trajectory: positions along the flow, each ``(A, 3)``, or ``None``.
        ks: the ``k`` of each trajectory frame.
    """

    pos: Tensor
    nfe: int = 0
    trajectory: list[Tensor] | None = None
    ks: list[float] | None = None


@dataclass
class MethodScores:
    """Per-cluster scores of one method on a set of clusters.

    Attributes:
        name: method name.
        cluster_ids: ids of the scored clusters.
        per_cluster: ``{metric: [value per cluster]}``.
        nfe: network evaluations per cluster.
        wall_s: prediction wall time (s) for all clusters.
        predictions: per cluster :class:`Prediction` (CPU) when kept, else empty.
        per_cluster_mean: for several samples per cluster (stochastic methods), the mean over
            samples of every metric; ``per_cluster`` then holds the minimum (``None``: one sample).
    """

    name: str
    cluster_ids: list[str] = field(default_factory=list)
    per_cluster: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    nfe: int = 0
    wall_s: float = 0.0
    predictions: list[Prediction] = field(default_factory=list)
    per_cluster_mean: dict[str, list[float]] | None = None

    def summary(self) -> dict[str, float]:
        """Means and stds over clusters (plus filtered PM means), NFE and wall time."""
        out: dict[str, float] = {"n_clusters": len(self.cluster_ids), "nfe": self.nfe, "wall_s": self.wall_s}
        for metric, values in self.per_cluster.items():
            tensor = torch.tensor(values, dtype=torch.float64)
            out[metric] = float(tensor.mean()) if len(values) else math.nan
            out[f"{metric}_std"] = float(tensor.std(unbiased=False)) if len(values) else math.nan
        if self.per_cluster_mean is not None:
            for metric in ("pm_atom", "pm_center"):
                out[f"{metric}_sample_mean"] = float(
                    torch.tensor(self.per_cluster_mean[metric], dtype=torch.float64).mean()
                )
        for metric in ("pm_atom", "pm_center"):
            if self.per_cluster[metric]:
                agg = aggregate_pm(torch.tensor(self.per_cluster[metric], dtype=torch.float64))
                out[f"{metric}_filtered"] = agg.mean_filtered
                out[f"{metric}_n_dropped"] = agg.n_dropped
        return out


def local_mol_index(batch: Batch) -> Tensor:
    """Molecule index within each cluster, shape ``(A,)`` (batched ``mol_index`` is global)."""
    atom_batch = batch.batch
    first = torch.full((int(atom_batch.max()) + 1,), torch.iinfo(torch.long).max, device=atom_batch.device)
    first = first.scatter_reduce(0, atom_batch, batch.mol_index, reduce="amin")
    return batch.mol_index - first[atom_batch]


def pose_scores(batch: Batch, pos_pred: Tensor) -> dict[str, list[float]]:
    """Per-cluster orientation (mean, median; degrees), centroid (mean; Å) and shape errors of ``batch``.

    Args:
        batch: a batch of clusters with ``pos_target``, ``z``, ``mol_index`` (global), ``batch``.
        pos_pred: predicted positions, shape ``(A, 3)``.

    Returns:
        ``{metric: [value per cluster]}`` for :data:`POSE_METRICS`.
    """
    mol_index = batch.mol_index.cpu()
    errors = molecule_errors(pos_pred.detach().cpu(), batch.pos_target.cpu(), batch.z.cpu(), mol_index)
    mol_cluster = torch.zeros(errors.centroid.shape[0], dtype=torch.long).scatter_(0, mol_index, batch.batch.cpu())
    per_cluster = cluster_pose_errors(errors, mol_cluster)
    spread = centroid_spread_ratios(
        pos_pred.detach().cpu().double(), batch.pos_target.cpu().double(), mol_index, mol_cluster
    )
    return {
        "orientation_deg": per_cluster.orientation_deg.tolist(),
        "orientation_median_deg": per_cluster.orientation_median_deg.tolist(),
        "centroid_error": per_cluster.centroid.tolist(),
        "shape_rmsd": per_cluster.shape_rmsd.tolist(),
        "gyration_ratio": per_cluster.gyration_ratio.tolist(),
        "spread_ratio": spread.tolist(),
    }


def score_batch(
    batch: Batch, pos_pred: Tensor, *, with_rmsd: bool = True, with_pose: bool = True
) -> dict[str, list[float]]:
    """Scores of every cluster in ``batch``: ``{metric: [value per cluster]}``.

    Args:
        batch: a batch of clusters with ``pos_target``, ``z``, ``mol_index``, ``batch``.
        pos_pred: predicted positions, shape ``(A, 3)``.
        with_rmsd: compute RMSD_17 (the slowest metric); NaN otherwise.
        with_pose: compute the orientation and centroid errors (:func:`pose_scores`); NaN otherwise.
    """
    pos_true, pos_pred = batch.pos_target.detach().cpu().double(), pos_pred.detach().cpu().double()
    atom_batch, z = batch.batch.cpu(), batch.z.cpu()
    mol_local = local_mol_index(batch).cpu()
    scores = {
        "pm_atom": pm_atom_batch(pos_true, pos_pred, atom_batch).tolist(),
        "pm_center": pm_center_batch(pos_true, pos_pred, mol_local, atom_batch).tolist(),
        "rmsd_17": [],
        "n_matched": [],
        "collision": [],
        "separation": [],
    }
    if with_rmsd:
        for result in rmsd17_batch(pos_true, pos_pred, z, mol_local, atom_batch):
            scores["rmsd_17"].append(float(result.rmsd_17))
            scores["n_matched"].append(float(result.n_matched))
    for cluster in range(int(atom_batch.max()) + 1):
        atoms = atom_batch == cluster
        if not with_rmsd:
            scores["rmsd_17"].append(math.nan)
            scores["n_matched"].append(math.nan)
        scores["collision"].append(100 * float(collision_rate(pos_pred[atoms], z[atoms], mol_local[atoms]).rate))
        scores["separation"].append(100 * float(separation_rate(pos_pred[atoms], mol_local[atoms]).rate))
    num_clusters = int(atom_batch.max()) + 1
    scores.update(pose_scores(batch, pos_pred) if with_pose else {m: [math.nan] * num_clusters for m in POSE_METRICS})
    return scores


def identity_method(batch: Batch) -> Prediction:
    """The identity baseline: the start state, unchanged."""
    return Prediction(pos=batch.pos_start)


def evaluate_method(
    name: str,
    predict: Callable[[Batch], Prediction],
    clusters: Sequence,
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    with_rmsd: bool = True,
    with_pose: bool = True,
    keep_predictions: bool = False,
    progress: bool = False,
) -> MethodScores:
    """Predict and score ``clusters`` in batches.

    Args:
        name: method name for the report.
        predict: ``batch -> Prediction`` (called under ``torch.no_grad``).
        clusters: a list of ``AssemblyData``.
        batch_size: clusters per prediction call.
        device: where to predict.
        with_rmsd: compute RMSD_17.
        with_pose: compute the orientation and centroid errors.
        keep_predictions: keep every cluster's :class:`Prediction` (on CPU) for export.
        progress: show a progress bar over batches.

    Returns:
        :class:`MethodScores`.
    """
    from tqdm.auto import tqdm

    result = MethodScores(name=name)
    starts = range(0, len(clusters), batch_size)
    for start in tqdm(starts, desc=f"evaluate {name}", disable=not progress, leave=False):
        chunk = list(clusters[start : start + batch_size])
        batch = Batch.from_data_list(chunk).to(device)
        tic = time.perf_counter()
        with torch.no_grad():
            prediction = predict(batch)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        result.wall_s += time.perf_counter() - tic
        result.nfe = prediction.nfe
        result.cluster_ids += [c.cluster_id for c in chunk]
        for metric, values in score_batch(batch, prediction.pos, with_rmsd=with_rmsd, with_pose=with_pose).items():
            result.per_cluster[metric] += values
        if keep_predictions:
            result.predictions += _split_prediction(batch, prediction)
    return result


def evaluate_samples(
    name: str,
    predictor_for: Callable[[int], Callable[[Batch], Prediction]],
    clusters: Sequence,
    samples: int,
    **options,
) -> MethodScores:
    """Score ``samples`` draws of a stochastic method: per cluster the minimum, and the mean.

    The published protocol keeps the best of several samples per cluster; the mean over
    samples is kept beside it (``per_cluster_mean``) so the two can be compared.

    Args:
        name: method name.
        predictor_for: ``index -> predict(batch)`` for the ``index``-th draw.
        clusters: a list of ``AssemblyData``.
        samples: draws per cluster (1: a plain :func:`evaluate_method`).
        **options: keyword options of :func:`evaluate_method`.
    """
    if samples == 1:
        return evaluate_method(name, predictor_for(0), clusters, **options)
    draws = [evaluate_method(name, predictor_for(index), clusters, **options) for index in range(samples)]
    result = MethodScores(
        name=name,
        cluster_ids=draws[0].cluster_ids,
        nfe=sum(d.nfe for d in draws),
        wall_s=sum(d.wall_s for d in draws),
        per_cluster_mean={},
    )
    for metric in METRICS:
        values = torch.tensor([d.per_cluster[metric] for d in draws], dtype=torch.float64)  # (samples, clusters)
        if metric == "n_matched":  # more matched is better
            best = values.max(0).values
        elif metric in RATIO_METRICS:
            best = values.gather(0, (values - 1).abs().argmin(0, keepdim=True))[0]
        else:
            best = values.min(0).values
        result.per_cluster[metric] = best.tolist()
        result.per_cluster_mean[metric] = values.mean(0).tolist()
    return result


def write_per_cluster_csv(path: str | Path, scores: dict[str, MethodScores]) -> Path:
    """One row per (method, cluster) with every metric: the CSV log of an evaluation."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "cluster_id", *METRICS])
        for name, method in scores.items():
            for row, cluster_id in enumerate(method.cluster_ids):
                writer.writerow([name, cluster_id, *(method.per_cluster[m][row] for m in METRICS)])
    return path


def _split_prediction(batch: Batch, prediction: Prediction) -> list[Prediction]:
    out = []
    for cluster in range(batch.num_graphs):
        atoms = (batch.batch == cluster).cpu()
        frames = None if prediction.trajectory is None else [f.cpu()[atoms] for f in prediction.trajectory]
        out.append(Prediction(pos=prediction.pos.cpu()[atoms], nfe=prediction.nfe, trajectory=frames, ks=prediction.ks))
    return out


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of method summaries.

    Columns: PM-atom, PM-center, RMSD_17, collision, separation, orientation error mean and
    median (degrees), centroid error (Å), shape RMSD (Å), molecule radius of gyration and
    centroid spread over the crystal's, NFE; a footnote marks the ``oracle_*`` reference rows.
    """
    lines = [
        f"{'method':<20}{'PM-atom':>10}{'PM-center':>11}{'RMSD_17':>9}{'collision%':>11}{'separation%':>12}"
        f"{'orient°':>9}{'med°':>7}{'centroid Å':>11}{'shape Å':>8}{'Rg×':>6}{'spread×':>8}{'NFE':>5}"
    ]
    for method, values in summary.items():
        s = {key: math.nan for key in METRICS} | values  # summaries written before a metric existed
        lines.append(
            f"{method:<20}{s['pm_atom']:>10.3f}{s['pm_center']:>11.3f}{s['rmsd_17']:>9.3f}"
            f"{s['collision']:>11.2f}{s['separation']:>12.1f}{s['orientation_deg']:>9.1f}"
            f"{s['orientation_median_deg']:>7.1f}{s['centroid_error']:>11.3f}{s['shape_rmsd']:>8.3f}"
            f"{s['gyration_ratio']:>6.2f}{s['spread_ratio']:>8.3f}{int(s['nfe']):>5}"
        )
    if any(method.startswith("oracle_") for method in summary):
        lines.append("oracle_*: reference rows put together from the target (kflow_mol.oracles), not models")
    return "\n".join(lines)
