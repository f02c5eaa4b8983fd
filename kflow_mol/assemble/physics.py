"""Physical checks of a predicted cluster: contacts, packing, clash removal, draw choice, PM scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from kflow_mol.assemble.common import AMU_G_CM3, FCC_RADIUS_RATIO, RELAX_RATIO, TYPICAL_CONTACT_RATIO, molecular_mass


def contact_ratios(numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per molecule: the closest atom of another molecule (Å) and that distance over the pair's
    Bondi van der Waals radius sum.

    Args:
        numbers: (M, n) atomic numbers.
        positions: (M, n, 3) coordinates.

    Returns:
        ``(distance (M,), ratio (M,))``.
    """
    from ase.data import vdw_radii
    from scipy.spatial import cKDTree

    radii = vdw_radii[numbers]  # Bondi; defined for every element of the organic set
    num_mols = positions.shape[0]
    distance = np.full(num_mols, np.inf)
    ratio = np.full(num_mols, np.inf)
    trees = [cKDTree(p) for p in positions]
    for m in range(num_mols):
        others = np.concatenate([positions[o] for o in range(num_mols) if o != m])
        other_r = np.concatenate([radii[o] for o in range(num_mols) if o != m])
        d, j = trees[m].query(others)  # nearest atom of m to every other atom
        best = int(np.argmin(d))
        distance[m] = d[best]
        ratio[m] = np.min(d / (other_r + radii[m][j]))
    return distance, ratio


def packing_estimate(numbers: np.ndarray, positions: np.ndarray, vdw_volume: float | None = None) -> dict:
    """Volume per molecule, density and packing coefficient of a cluster.

    The volume per molecule is the Voronoi cell of the centroid nearest the cluster centre
    among all centroids (in a crystal: the volume per molecule of a Z' = 1 cell, up to the
    centroid-vs-shape approximation); when that cell is unbounded, ``(R / 1.593)^3`` from the
    cluster radius R (the fcc calibration). Density = molecular mass / volume; packing
    coefficient = van der Waals volume / volume (typical organic crystals: 0.65-0.77).
    """
    from scipy.spatial import ConvexHull, Voronoi

    centroids = positions.mean(axis=1)
    centre = centroids.mean(axis=0)
    central = int(np.argmin(np.linalg.norm(centroids - centre, axis=1)))
    volume, method = None, "voronoi"
    try:
        voronoi = Voronoi(centroids)
        region = voronoi.regions[voronoi.point_region[central]]
        if region and -1 not in region:
            volume = float(ConvexHull(voronoi.vertices[region]).volume)
    except Exception:  # noqa: BLE001 - degenerate (coplanar) centroids: use the radius estimate
        volume = None
    radius = float(np.linalg.norm(centroids - centre, axis=1).max())
    if volume is None or not np.isfinite(volume) or volume <= 0:
        volume, method = (radius / FCC_RADIUS_RATIO) ** 3, "cluster_radius"
    mass = molecular_mass(numbers[0])
    out = {
        "method": method,
        "volume_per_molecule_A3": round(volume, 2),
        "density_g_cm3": round(mass * AMU_G_CM3 / volume, 4),
        "cluster_radius_A": round(radius, 3),
    }
    if vdw_volume is not None:
        out["packing_coefficient"] = round(vdw_volume / volume, 4)
    return out


def physical_report(numbers: np.ndarray, positions: np.ndarray, vdw_volume: float | None = None) -> dict:
    """Closest contact, collision and separation percentages, contact score and packing of one cluster.

    Args:
        numbers: (M, n) atomic numbers.
        positions: (M, n, 3) coordinates.
        vdw_volume: the molecule's van der Waals volume (for the packing coefficient).
    """
    from kflow_mol.metrics.contacts import collision_rate, separation_rate

    z = torch.as_tensor(numbers.reshape(-1))
    pos = torch.as_tensor(positions.reshape(-1, 3), dtype=torch.float64)
    mol = torch.arange(positions.shape[0]).repeat_interleave(positions.shape[1])
    collision = collision_rate(pos, z, mol)
    separation = separation_rate(pos, mol)
    distance, ratio = contact_ratios(numbers, positions)
    return {
        "closest_contact_A": round(float(distance.min()), 4),
        "closest_contact_vdw_ratio": round(float(ratio.min()), 4),
        "median_molecule_contact_vdw_ratio": round(float(np.median(ratio)), 4),
        "contact_score": round(float(np.mean(np.abs(ratio - TYPICAL_CONTACT_RATIO))), 4),
        "collision_pct": round(100 * float(collision.rate), 4),
        "colliding_pairs": int(collision.count) // 2,
        "separation_pct": round(100 * float(separation.rate), 2),
        "packing": packing_estimate(numbers, positions, vdw_volume),
    }


def relax_clashes(
    numbers: np.ndarray, positions: np.ndarray, ratio: float = RELAX_RATIO, max_iterations: int = 200
) -> tuple[np.ndarray, dict]:
    """Remove atom clashes between molecules by rigid translations only (orientations untouched).

    While two molecules have atoms closer than ``ratio`` x (Bondi vdW sum), both are moved apart
    along the line between their centroids by half the deepest such overlap (plus 0.01 Å);
    all clashing pairs move at once, repeated until none is left or ``max_iterations``. Every
    molecule stays a rigid copy; the result is deterministic.

    Args:
        numbers: (M, n) atomic numbers.
        positions: (M, n, 3) coordinates.
        ratio: contacts below this fraction of the vdW sum count as clashes (0.7: below nearly
            every contact of real crystals, strong hydrogen bonds excepted).

    Returns:
        ``(positions (M, n, 3), info)`` with the iterations, the largest total shift of a
        molecule (Å) and whether clashes remain.
    """
    from ase.data import vdw_radii

    num_mols, n = numbers.shape
    radii = vdw_radii[numbers.reshape(-1)]
    owner = np.repeat(np.arange(num_mols), n)
    shift = np.zeros((num_mols, 3))
    base = positions.reshape(-1, 3)
    cutoff = ratio * 2 * float(radii.max())
    iterations = 0
    for iterations in range(max_iterations + 1):
        pairs, overlap = _clashes(base + shift[owner], owner, radii, ratio, cutoff)
        if not len(pairs) or iterations == max_iterations:
            break
        shift += _separation(pairs, overlap, owner, positions.mean(axis=1) + shift)
    info = {
        "ratio": ratio,
        "iterations": int(iterations),
        "max_shift_A": round(float(np.linalg.norm(shift, axis=1).max()), 4),
        "clashes_left": bool(len(pairs)),
    }
    return positions + shift[:, None, :], info


def _clashes(current: np.ndarray, owner: np.ndarray, radii: np.ndarray, ratio: float, cutoff: float):
    """Atom pairs of different molecules closer than ``ratio`` x their vdW sum.

    Args:
        current: (A, 3) positions.
        owner: (A,) molecule of every atom.
        radii: (A,) Bondi radii.
        ratio: fraction of the vdW sum below which a contact is a clash.
        cutoff: search radius (at least the largest clash distance).

    Returns:
        ``(pairs (P, 2), overlap (P,))``: the clashing atom pairs and how far (Å) each is inside.
    """
    from scipy.spatial import cKDTree

    pairs = cKDTree(current).query_pairs(cutoff, output_type="ndarray")
    overlap = np.zeros(0)
    if len(pairs):
        pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
    if len(pairs):
        distance = np.linalg.norm(current[pairs[:, 0]] - current[pairs[:, 1]], axis=1)
        overlap = ratio * (radii[pairs[:, 0]] + radii[pairs[:, 1]]) - distance
        keep = overlap > 0
        pairs, overlap = pairs[keep], overlap[keep]
    return pairs, overlap


def _separation(pairs: np.ndarray, overlap: np.ndarray, owner: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Per molecule the translation (M, 3) that moves every clashing molecule pair apart along the
    line between their centroids by half the pair's deepest overlap plus 0.01 Å each."""
    num_mols = len(centroids)
    a, b = owner[pairs[:, 0]], owner[pairs[:, 1]]
    key = np.minimum(a, b) * num_mols + np.maximum(a, b)
    deepest = np.zeros(num_mols * num_mols)
    np.maximum.at(deepest, key, overlap)
    move = np.zeros((num_mols, 3))
    for k in np.flatnonzero(deepest):
        i, j = divmod(int(k), num_mols)
        direction = centroids[i] - centroids[j]
        length = np.linalg.norm(direction)
        direction = direction / length if length > 1e-6 else np.array([1.0, 0.0, 0.0])
        step = 0.5 * deepest[k] + 0.01
        move[i] += step * direction
        move[j] -= step * direction
    return move


def best_draw(draws: Sequence[dict]) -> int:
    """Index of the physically best draw: fewest colliding atom pairs (of the output, then of the
    network's raw prediction before clash removal), then the smallest contact score (mean
    |closest-contact / vdW sum - typical| over molecules), then the first."""

    def key(i: int) -> tuple:
        raw = draws[i].get("raw", draws[i])
        return (draws[i]["colliding_pairs"], raw["colliding_pairs"], draws[i]["contact_score"], i)

    return min(range(len(draws)), key=key)


def reference_scores(pred: np.ndarray, target: np.ndarray, start: np.ndarray) -> dict:
    """PM-atom / PM-center of the prediction and of the start (identity) against the real cluster."""
    from kflow_mol.metrics.packing import pm_atom, pm_center

    num_mols, n = target.shape[:2]
    mol = torch.arange(num_mols).repeat_interleave(n)

    def flat(x):
        return torch.as_tensor(x.reshape(-1, 3), dtype=torch.float64)

    return {
        "pm_atom": round(float(pm_atom(flat(target), flat(pred))), 4),
        "pm_center": round(float(pm_center(flat(target), flat(pred), mol)), 4),
        "identity_pm_atom": round(float(pm_atom(flat(target), flat(start))), 4),
        "identity_pm_center": round(float(pm_center(flat(target), flat(start), mol)), 4),
    }
