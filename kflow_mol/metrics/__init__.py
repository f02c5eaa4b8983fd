"""Assembly metrics: Packing Matching, aligned and permutation-invariant RMSD, contacts.

See each module's docstring for the exact definitions.
"""

from kflow_mol.metrics.packing import (
    batch_molecule_centroids,
    distance_matrix,
    molecule_centroids,
    packing_matching,
    pm_atom,
    pm_atom_batch,
    pm_batch,
    pm_center,
    pm_center_batch,
)

__all__ = [
    "batch_molecule_centroids",
    "distance_matrix",
    "molecule_centroids",
    "packing_matching",
    "pm_atom",
    "pm_atom_batch",
    "pm_batch",
    "pm_center",
    "pm_center_batch",
]
