"""Constants shared by the assembly modules, the one error type, and the molecular mass."""

from __future__ import annotations

import numpy as np

from kflow.training import ConfigError

MAX_ATOMS = 100
"""Atoms per molecule (H included) of the training data (``max_atoms`` of the data build)."""


PACKING_COEFFICIENT = 0.71
"""Van der Waals volume / volume per molecule of a typical organic crystal (RDKit grid volume;
median over 25 COD organic crystals, 0.715 ± 0.047)."""


FCC_RADIUS_RATIO = 1.5929
"""Largest centroid distance from the centre of the 17 nearest fcc sites, over V^(1/3)."""


TYPICAL_CONTACT_RATIO = 0.87
"""Median over real crystal molecules of (closest contact to another molecule) / (Bondi vdW sum
of that atom pair), measured on the real test clusters (see :func:`contact_ratios`)."""


RELAX_RATIO = 0.7
"""Clash removal (:func:`relax_clashes`): intermolecular contacts below this fraction of the Bondi
van der Waals sum are pushed apart (real crystals: per-cluster closest contact median 0.87,
below 0.7 only for some strong hydrogen bonds)."""


STARTS = ("local", "scrambled")


AMU_G_CM3 = 1.66053906660  # amu / Å^3 -> g / cm^3


class AssembleError(ConfigError):
    """Bad input for :func:`assemble`: one line saying what and why."""


def molecular_mass(numbers: np.ndarray) -> float:
    """Mass of one molecule, amu."""
    from ase.data import atomic_masses

    return float(atomic_masses[np.asarray(numbers)].sum())
