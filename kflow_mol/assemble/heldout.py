"""Held-out scores of a model the way :func:`~kflow_mol.assemble.assemble` uses it (the model card)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kflow_mol.assemble.common import AssembleError
from kflow_mol.assemble.model import LoadedModel, load_model
from kflow_mol.assemble.physics import physical_report, reference_scores, relax_clashes
from kflow_mol.assemble.predict import _predict


def score_split(
    model: str | Path | LoadedModel = "default",
    start: str = "local",
    split: str = "test",
    data: str = "real",
    relax: bool = True,
    limit: int | None = None,
    progress: bool = False,
) -> dict:
    """Held-out scores of a model the way :func:`assemble` uses it (the model card's numbers).

    Every cluster of ``split`` of the data group ``data`` (built with ``start`` starts) is
    predicted from its start; PM-atom / PM-center against the crystal, the share of clusters
    without any collision, and the mean collision percentage are reported for the identity
    (the start), the network's raw prediction and, with ``relax``, after :func:`relax_clashes`.

    Returns:
        ``{"identity": {...}, "raw": {...}, "relaxed": {...}, "n": clusters, ...}``.
    """
    from tqdm import tqdm

    from kflow_mol.config import DataConfig
    from kflow_mol.experiment import load_split

    loaded = model if isinstance(model, LoadedModel) else load_model(model, start=start)
    clusters = load_split(DataConfig(source=data, start=start), split, limit=limit)
    if not clusters:
        raise AssembleError(f"no {split} clusters in data={data}")
    rows = {"identity": [], "raw": [], "relaxed": []}
    for cluster in tqdm(clusters, desc=f"score {start}", disable=not progress):
        for name, row in _score_cluster(loaded, cluster, relax).items():
            rows[name].append(row)
    out = {name: _summary(entries) for name, entries in rows.items() if entries}
    for name in ("raw", "relaxed"):
        if name in out:
            out[name]["pm_atom_vs_identity"] = round(out[name]["pm_atom"] / out["identity"]["pm_atom"], 4)
    return {
        **out,
        "n": len(clusters),
        "data": data,
        "split": split,
        "start": start,
        "model": loaded.describe(),
        "cluster_ids": [c.cluster_id for c in clusters],
    }


def _score_cluster(loaded: LoadedModel, cluster, relax: bool) -> dict[str, dict]:
    """PM-atom, PM-center, collision percentage and closest contact of one held-out cluster, for
    its start (``identity``), the raw prediction (``raw``) and, with ``relax``, after clash removal."""
    (raw, _, _) = _predict(loaded, [cluster], None, None, "cpu", 0)[0]
    num_mols = int(cluster.num_mols)
    numbers = cluster.z.numpy().reshape(num_mols, -1)
    target = cluster.pos_target.double().numpy().reshape(num_mols, -1, 3)
    start_state = cluster.pos_start.double().numpy().reshape(num_mols, -1, 3)
    raw = raw.reshape(num_mols, -1, 3)
    states = {"identity": start_state, "raw": raw}
    if relax:
        states["relaxed"] = relax_clashes(numbers, raw)[0]
    rows = {}
    for name, pos in states.items():
        scores = reference_scores(pos, target, start_state)
        physical = physical_report(numbers, pos)
        rows[name] = {
            "pm_atom": scores["pm_atom"],
            "pm_center": scores["pm_center"],
            "collision_pct": physical["collision_pct"],
            "closest_contact_A": physical["closest_contact_A"],
        }
    return rows


def _summary(entries: list[dict]) -> dict:
    """Means (PM, collisions), collision-free share and median closest contact over clusters."""
    return {
        "pm_atom": round(float(np.mean([e["pm_atom"] for e in entries])), 4),
        "pm_center": round(float(np.mean([e["pm_center"] for e in entries])), 4),
        "collision_free_pct": round(100 * float(np.mean([e["collision_pct"] == 0 for e in entries])), 2),
        "collision_pct_mean": round(float(np.mean([e["collision_pct"] for e in entries])), 4),
        "closest_contact_A_median": round(float(np.median([e["closest_contact_A"] for e in entries])), 4),
    }
