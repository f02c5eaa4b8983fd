"""Oracle reference rows: "predictions" put together from the target, scored like any method.

They are not models. They split the error of the start state into its parts and say how good
a prediction must be in each part to reach a given PM:

- ``oracle_centroids``: every molecule at its true centroid, keeping its start orientation;
- ``oracle_orientations``: every molecule at its true orientation, keeping its start centroid;
- ``oracle_rot30`` / ``oracle_rot15``: the target with every molecule turned by exactly 30° /
  15° about its own centroid, around a random axis (seeded per cluster id, so the draw does not
  depend on batching); true centroids.

Not in the default rows, by name: ``oracle_shared_turn``, the crystal with every molecule of a
cluster turned about its own centroid by ONE uniform random rotation (seeded per cluster id):
the molecules agree with each other exactly but not with the lattice. It measures what a model
that learned only relative orientations (molecules parallel to their translation-equivalent
neighbours) could reach.

Each is a ``predict(batch) -> Prediction`` for :func:`kflow_mol.evaluate.evaluate_method`, built
with the rigid-body helpers of :mod:`kflow_mol.rigid`; :func:`evaluate_oracles` scores them all.
``scripts/evaluate_assembly.py checkpoint=null data=...`` prints the identity and these rows
without a model (:func:`run_reference_evaluation`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Batch

from kflow.training import ConfigError
from kflow_mol.evaluate import (
    MethodScores,
    Prediction,
    evaluate_method,
    format_table,
    identity_method,
    write_per_cluster_csv,
)
from kflow_mol.rigid import apply_rigid_motion, centroids

ORACLES = ("oracle_centroids", "oracle_orientations", "oracle_rot30", "oracle_rot15")
"""Names of the oracle reference rows, in report order."""


def true_centroids_start_orientations(batch: Batch) -> Tensor:
    """Start molecules translated onto their true centroids, shape ``(A, 3)``."""
    c_start = centroids(batch.pos_start, batch.mol_index, int(batch.num_mols.sum()))
    c_target = centroids(batch.pos_target, batch.mol_index, c_start.shape[0])
    return apply_rigid_motion(batch.pos_start, batch.mol_index, c_target - c_start, torch.zeros_like(c_start), c_start)


def true_orientations_start_centroids(batch: Batch) -> Tensor:
    """Target molecules translated back onto their start centroids, shape ``(A, 3)``."""
    c_start = centroids(batch.pos_start, batch.mol_index, int(batch.num_mols.sum()))
    c_target = centroids(batch.pos_target, batch.mol_index, c_start.shape[0])
    return apply_rigid_motion(
        batch.pos_target, batch.mol_index, c_start - c_target, torch.zeros_like(c_start), c_target
    )


def random_axes(batch: Batch, seed: int = 0) -> Tensor:
    """A uniform random unit axis per molecule, seeded by (seed, cluster id), shape ``(M, 3)``."""
    axes = []
    for cluster_id, num_mols in zip(batch.cluster_id, batch.num_mols.tolist()):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(str(cluster_id).encode()))
        axes.append(torch.randn(num_mols, 3, generator=generator, dtype=torch.float64))
    axes = torch.cat(axes)
    return (axes / axes.norm(dim=-1, keepdim=True)).to(batch.pos_target.device)


def rotated_targets(batch: Batch, angle_deg: float, seed: int = 0) -> Tensor:
    """The target with every molecule turned by ``angle_deg`` about its centroid (random axes), ``(A, 3)``."""
    omega = (math.radians(angle_deg) * random_axes(batch, seed)).to(batch.pos_target.dtype)
    return apply_rigid_motion(batch.pos_target, batch.mol_index, torch.zeros_like(omega), omega)


def shared_turn_targets(batch: Batch, seed: int = 0) -> Tensor:
    """The target with all molecules of each cluster turned by one uniform random rotation, ``(A, 3)``.

    The rotation of a cluster is seeded by (seed, cluster id); each molecule turns about its own
    centroid, so the centroids are the crystal's.
    """
    turns = []
    for cluster_id, num_mols in zip(batch.cluster_id, batch.num_mols.tolist()):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"shared/{cluster_id}".encode()))
        quaternion = torch.randn(4, generator=generator, dtype=torch.float64)
        quaternion = quaternion / quaternion.norm()
        angle = 2 * torch.atan2(quaternion[1:].norm(), quaternion[0].abs())
        axis = torch.sign(quaternion[0]) * quaternion[1:] / quaternion[1:].norm()
        turns.append((angle * axis).expand(num_mols, 3))
    omega = torch.cat(turns).to(device=batch.pos_target.device, dtype=batch.pos_target.dtype)
    return apply_rigid_motion(batch.pos_target, batch.mol_index, torch.zeros_like(omega), omega)


def oracle_method(name: str, seed: int = 0) -> Callable[[Batch], Prediction]:
    """The ``predict(batch)`` of one oracle of :data:`ORACLES`.

    Args:
        name: ``oracle_centroids``, ``oracle_orientations`` or ``oracle_rot<degrees>``.
        seed: seed of the random axes of ``oracle_rot*``.

    Raises:
        ValueError: for an unknown name.
    """
    if name == "oracle_centroids":
        return lambda batch: Prediction(pos=true_centroids_start_orientations(batch))
    if name == "oracle_orientations":
        return lambda batch: Prediction(pos=true_orientations_start_centroids(batch))
    if name == "oracle_shared_turn":
        return lambda batch: Prediction(pos=shared_turn_targets(batch, seed))
    if name.startswith("oracle_rot") and name.removeprefix("oracle_rot").replace(".", "", 1).isdigit():
        angle = float(name.removeprefix("oracle_rot"))
        return lambda batch: Prediction(pos=rotated_targets(batch, angle, seed))
    raise ValueError(
        f"unknown oracle {name!r}; known: {', '.join(ORACLES)} (or oracle_rot<degrees>, oracle_shared_turn)"
    )


def evaluate_oracles(
    clusters: Sequence, names: Sequence[str] = ORACLES, seed: int = 0, **options
) -> dict[str, MethodScores]:
    """Score oracle reference rows like a method.

    Args:
        clusters: a list of ``AssemblyData``.
        names: oracles of :data:`ORACLES` (or ``oracle_rot<degrees>``).
        seed: seed of the random axes.
        **options: keyword options of :func:`~kflow_mol.evaluate.evaluate_method`.

    Returns:
        ``{name: MethodScores}`` in the order of ``names``.
    """
    return {name: evaluate_method(name, oracle_method(name, seed), clusters, **options) for name in names}


def run_reference_evaluation(cfg) -> dict:
    """``evaluate_assembly.py checkpoint=null``: the identity and the oracle rows of ``cfg.data``'s split.

    Writes the metrics JSON (``cfg.output``, default ``outputs/eval_reference_<source>_<split>.json``)
    and its per-cluster CSV; prints the table.

    Args:
        cfg: an :class:`~kflow_mol.config.EvaluateConfig` without checkpoint.
    """
    from kflow_mol.experiment import load_split  # experiment imports this module in run_evaluation

    clusters = load_split(cfg.data, cfg.split, limit=cfg.data.max_test)
    if not clusters:
        raise ConfigError(f"no {cfg.split} clusters in data {cfg.data.source}")
    common = dict(batch_size=cfg.sample.batch_size, device=cfg.device, with_rmsd=cfg.eval.rmsd)
    tic = time.perf_counter()
    scores = {"identity": evaluate_method("identity", identity_method, clusters, **common)}
    if cfg.oracles:
        scores.update(evaluate_oracles(clusters, **common))
    summary = {key: value.summary() for key, value in scores.items()}
    output = Path(cfg.output or f"outputs/eval_reference_{cfg.data.source}_{cfg.split}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    metrics = {
        **summary,
        "checkpoint": None,
        "data": dataclasses.asdict(cfg.data),
        "eval_wall_s": time.perf_counter() - tic,
        "per_cluster": {key: value.per_cluster for key, value in scores.items()},
        "cluster_ids": scores["identity"].cluster_ids,
    }
    output.write_text(json.dumps(metrics, indent=2))
    write_per_cluster_csv(output.with_suffix(".csv"), scores)
    print(format_table(summary))
    print(f"metrics written to {output}", file=sys.stderr)
    return metrics
