"""Cut molecular clusters out of a periodic crystal and give each molecule a body frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from kflow_mol.data.crystals import CrystalRejected, MolecularCrystal, interplanar_spacings

CRITERIA = ("centroid", "contact")


@dataclass
class Cluster:
    """A finite cluster of identical molecules in their crystal arrangement.

    Attributes:
        crystal_id: id of the source crystal.
        center: index (in ``MolecularCrystal.molecules``) of the central molecule.
        numbers: (M, n) atomic numbers per molecule.
        positions: (M, n, 3) coordinates, Å; central molecule first, then by distance.
        distances: (M,) distance of each molecule to the central one (criterion's measure).
    """

    crystal_id: str
    center: int
    numbers: np.ndarray
    positions: np.ndarray
    distances: np.ndarray


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` of two 3-vectors, term for term the same float operations, without its overhead."""
    a0, a1, a2 = a.tolist()
    b0, b1, b2 = b.tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def body_frame(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal-axis body frame of one molecule.

    Axes are the eigenvectors of the (unweighted) coordinate covariance, largest variance
    first. Each of the first two axes points towards the side with the larger third moment
    of the atoms' projections (ties: the first atom with a clear projection); the third is
    their cross product, so the frame is right-handed. The frame depends only on the
    molecule's shape, not on how it is oriented in space.

    Args:
        positions: (n, 3) coordinates.

    Returns:
        ``(rotation (3, 3), centroid (3,), body (n, 3))`` with
        ``positions = body @ rotation.T + centroid``.
    """
    centroid = positions.mean(axis=0)
    centered = positions - centroid
    _, vectors = np.linalg.eigh(centered.T @ centered)
    axes = vectors[:, ::-1].copy()
    for k in range(2):
        projection = centered @ axes[:, k]
        skew = np.sum(projection**3)
        if abs(skew) < 1e-6 * max(1.0, np.sum(np.abs(projection) ** 3)):
            clear = np.flatnonzero(np.abs(projection) > 1e-3)
            skew = projection[clear[0]] if len(clear) else 1.0
        if skew < 0:
            axes[:, k] = -axes[:, k]
    axes[:, 2] = _cross(axes[:, 0], axes[:, 1])
    return axes, centroid, centered @ axes


def _min_contact(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1).min()))


def _periodic_copies(crystal: MolecularCrystal, center: int, num_mols: int, margin: float):
    """Every periodic copy whose centroid is within the ``num_mols``-th centroid distance + margin.

    The lattice is searched ``reach`` cells in every direction until that radius fits inside
    the searched block (``reach`` times the smallest interplanar spacing), so no nearer copy
    can be missed.

    Returns:
        ``(mol_id (C,), shift (C, 3) lattice offsets, centroid distance (C,))``.
    """
    cell = crystal.crystal.cell
    centroids = np.stack([m.centroid for m in crystal.molecules])
    spacing = interplanar_spacings(cell).min()
    reach = 1
    while True:
        grid = np.arange(-reach, reach + 1)
        shifts = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
        distance = np.linalg.norm(centroids[None] + (shifts @ cell)[:, None] - centroids[center], axis=-1).reshape(-1)
        if len(distance) >= num_mols:
            radius = np.sort(distance)[num_mols - 1] + margin
            if radius < reach * spacing:
                break
        reach += 1
    shift_id, mol_id = np.divmod(np.arange(len(distance)), len(centroids))
    near = distance <= radius + 1e-9
    return mol_id[near], shifts[shift_id[near]], distance[near]


def cut_cluster(crystal: MolecularCrystal, center: int, num_mols: int = 17, criterion: str = "centroid") -> Cluster:
    """The central molecule and its ``num_mols - 1`` nearest periodic neighbours.

    Args:
        crystal: a crystal split into molecules.
        center: index of the central molecule.
        num_mols: cluster size, central molecule included.
        criterion: ``"centroid"`` (centroid distance) or ``"contact"`` (closest atom pair).

    Returns:
        The cluster, molecules ordered by distance (ties broken deterministically).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    cell = crystal.crystal.cell
    molecules = crystal.molecules
    # a contact can be at most two molecular radii shorter than the centroid distance
    radius = max(np.linalg.norm(m.positions - m.centroid, axis=1).max() for m in molecules)
    margin = 2 * radius if criterion == "contact" else 0.0
    mol_id, shift, distance = _periodic_copies(crystal, center, num_mols, margin)
    copies = [molecules[m].positions + s @ cell for m, s in zip(mol_id, shift)]
    if criterion == "contact":
        home = molecules[center].positions
        score = np.array(
            [0.0 if m == center and not s.any() else _min_contact(home, p) for m, s, p in zip(mol_id, shift, copies)]
        )
    else:
        score = distance
    order = np.lexsort((mol_id, shift[:, 2], shift[:, 1], shift[:, 0], np.round(score, 6)))[:num_mols]
    positions = np.stack([copies[k] for k in order])
    numbers = np.stack([molecules[mol_id[k]].numbers for k in order])
    return Cluster(crystal.crystal.crystal_id, center, numbers, positions, score[order])


def min_intermolecular_distance(positions: np.ndarray, search: float = 4.0) -> float:
    """Closest atom pair between different molecules (inf when none is within ``search`` Å).

    Args:
        positions: (M, n, 3) cluster coordinates.
        search: Å, pairs farther apart are not looked at.
    """
    flat = positions.reshape(-1, 3)
    owner = np.repeat(np.arange(positions.shape[0]), positions.shape[1])
    tree = cKDTree(flat)
    pairs = tree.sparse_distance_matrix(tree, search, output_type="coo_matrix")
    between = owner[pairs.row] != owner[pairs.col]
    return float(pairs.data[between].min()) if between.any() else float("inf")


def cut_clusters(
    crystal: MolecularCrystal,
    num_mols: int = 17,
    criterion: str = "centroid",
    min_distance: float = 1.0,
) -> list[Cluster]:
    """One cluster around each symmetry-independent molecule.

    Raises:
        CrystalRejected: ``overlap`` when two molecules of a cluster clash.
    """
    clusters = []
    for center in crystal.independent:
        cluster = cut_cluster(crystal, center, num_mols, criterion)
        closest = min_intermolecular_distance(cluster.positions)
        if closest < min_distance:
            raise CrystalRejected(
                "overlap", f"{cluster.crystal_id}: molecules {closest:.2f} Å apart (< {min_distance} Å)"
            )
        clusters.append(cluster)
    return clusters
