"""Start states: every molecule of a cluster rigidly moved away from the crystal.

Per molecule: a uniform random rotation about its centroid and a new centroid, either
the crystal centroid plus a Gaussian shift (``gaussian``) or a uniform point in a cube
around the cluster centre whose half-width is ``scale`` times the cluster radius
(``box``). Molecules are placed in cluster order; placements whose atoms come closer
than ``min_distance`` to an already placed molecule are discarded (and, after a round of
``tries_per_round`` such draws, that molecule's scale grows by ``scale_growth``). The random stream is
seeded from (seed, crystal id, repeat, central molecule), so a start state is
reproducible on its own, whatever else is built.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from kflow_mol.data.crystals import CrystalRejected

DISPLACEMENTS = ("gaussian", "box")


@dataclass(frozen=True)
class StartScheme:
    """How start states are drawn.

    Attributes:
        name: preset name stored with each cluster (``start_scheme``).
        displacement: ``"gaussian"`` or ``"box"``.
        scale: Gaussian std of the centroid shift in Å, or the box half-width as a multiple
            of the cluster radius (largest centroid distance from the cluster centre).
        min_distance: Å, smallest allowed atom distance between two start molecules.
        tries_per_round: placements drawn at once for one molecule.
        max_rounds: rounds per molecule before the cluster is rejected.
        scale_growth: factor on the molecule's scale after a round without a free placement.
    """

    name: str
    displacement: str
    scale: float
    min_distance: float = 1.5
    tries_per_round: int = 16
    max_rounds: int = 30
    scale_growth: float = 1.1

    def __post_init__(self):
        if self.displacement not in DISPLACEMENTS:
            raise ValueError(f"displacement must be one of {DISPLACEMENTS}, got {self.displacement!r}")
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")


START_PRESETS: dict[str, dict] = {
    # Molecules stay near their sites: uniform rotation, 3 Å Gaussian centroid shift.
    "local": dict(displacement="gaussian", scale=3.0),
    # Molecules anywhere in a cube of half-width 1.5 cluster radii: published-scale PM.
    "scrambled": dict(displacement="box", scale=1.5),
    # Diagnostic: molecules (almost) on their crystal sites, uniform rotation. A 0.25 Å shift
    # that grows only where a random rotation clashes (1.0 Å minimum atom distance): what a
    # model can learn of orientations once the centroids are known.
    "sites": dict(displacement="gaussian", scale=0.25, min_distance=1.0, max_rounds=60),
}


def start_scheme(name_or_scheme: str | StartScheme, **overrides) -> StartScheme:
    """A :class:`StartScheme` from a preset name (with optional field overrides)."""
    if isinstance(name_or_scheme, StartScheme):
        return name_or_scheme
    if name_or_scheme not in START_PRESETS:
        raise ValueError(f"unknown start preset {name_or_scheme!r}; choose from {sorted(START_PRESETS)}")
    return StartScheme(name=name_or_scheme, **{**START_PRESETS[name_or_scheme], **overrides})


def start_rng(seed: int, crystal_id: str, repeat: int, center: int) -> np.random.Generator:
    """Random stream of one start state, independent of build order and Python's hash seed."""
    digest = hashlib.sha256(f"{seed}|{crystal_id}|{repeat}|{center}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform rotation matrix (3, 3) from a normalised Gaussian quaternion."""
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _clash_free(candidates: np.ndarray, placed: cKDTree | None, min_distance: float) -> np.ndarray:
    """(T,) mask of candidate placements (T, n, 3) with no atom within min_distance of ``placed``."""
    if placed is None:
        return np.ones(len(candidates), dtype=bool)
    distance, _ = placed.query(candidates.reshape(-1, 3), distance_upper_bound=min_distance)
    return np.isinf(distance).reshape(candidates.shape[:2]).all(axis=1)


def _random_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.stack([random_rotation(rng) for _ in range(count)])


def draw_start_state(
    body: np.ndarray,
    rot_target: np.ndarray,
    trans_target: np.ndarray,
    scheme: StartScheme,
    rng: np.random.Generator,
    label: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Rigidly move every molecule away from its target pose.

    Molecules are placed in order. For each, ``tries_per_round`` placements are drawn at
    once and the first clash-free one is kept; after a round without one, that molecule's
    displacement scale grows by ``scale_growth`` (crowded clusters need a little more room).

    Args:
        body: (M, n, 3) body-frame coordinates.
        rot_target: (M, 3, 3) target rotations.
        trans_target: (M, 3) target centroids.
        scheme: how to draw.
        rng: random stream (see :func:`start_rng`).
        label: cluster name for the error message.

    Returns:
        ``(rot_start (M, 3, 3), trans_start (M, 3))``.

    Raises:
        CrystalRejected: ``start_overlap`` when no clash-free state is found.
    """
    centre = trans_target.mean(axis=0)
    radius = max(np.linalg.norm(trans_target - centre, axis=1).max(), 1.0)
    rotations, translations, placed = [], [], []
    for m in range(len(body)):
        scale = scheme.scale
        tree = cKDTree(np.concatenate(placed)) if placed else None
        for _ in range(scheme.max_rounds):
            count = scheme.tries_per_round
            rotation = np.einsum("tij,jk->tik", _random_rotations(rng, count), rot_target[m])
            if scheme.displacement == "gaussian":
                translation = trans_target[m] + scale * rng.normal(size=(count, 3))
            else:
                translation = centre + rng.uniform(-scale * radius, scale * radius, size=(count, 3))
            atoms = np.einsum("tij,nj->tni", rotation, body[m]) + translation[:, None]
            free = np.flatnonzero(_clash_free(atoms, tree, scheme.min_distance))
            if len(free):
                rotations.append(rotation[free[0]])
                translations.append(translation[free[0]])
                placed.append(atoms[free[0]])
                break
            scale *= scheme.scale_growth
        else:
            raise CrystalRejected("start_overlap", f"{label}: no clash-free {scheme.name} start state for molecule {m}")
    return np.stack(rotations), np.stack(translations)
