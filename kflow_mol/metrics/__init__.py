"""Assembly metrics: Packing Matching, aligned and permutation-invariant RMSD, contacts.

Each module's docstring states its definitions exactly:
``packing`` (PM-atom, PM-center), ``aggregate`` (min over samples, raw and filtered means),
``rmsd`` (Kabsch, aligned RMSD), ``assembly_rmsd`` (COMPACK-like RMSD_17), ``contacts`` (collision,
separation), ``symmetry`` (bond perception, graph automorphisms), ``elements`` (radii),
``orientation`` (per-molecule symmetry-aware orientation error and centroid error).
"""

from kflow_mol.metrics.aggregate import PMAggregate, aggregate_pm
from kflow_mol.metrics.assembly_rmsd import AssemblyRMSD, rmsd17, rmsd17_batch
from kflow_mol.metrics.contacts import (
    ContactRate,
    collision_rate,
    collision_rate_batch,
    molecule_min_distances,
    separation_rate,
    separation_rate_batch,
)
from kflow_mol.metrics.elements import COVALENT_RADII, covalent_radii
from kflow_mol.metrics.orientation import (
    ClusterPoseErrors,
    MoleculeErrors,
    centroid_errors,
    centroid_spread_ratios,
    cluster_pose_errors,
    molecule_errors,
    orientation_errors,
)
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
from kflow_mol.metrics.rmsd import (
    AlignedRMSD,
    RigidAlignment,
    aligned_rmsd,
    aligned_rmsd_center,
    kabsch,
)
from kflow_mol.metrics.symmetry import SymmetryCache, perceive_bonds

__all__ = [
    "COVALENT_RADII",
    "AlignedRMSD",
    "AssemblyRMSD",
    "ClusterPoseErrors",
    "ContactRate",
    "MoleculeErrors",
    "PMAggregate",
    "RigidAlignment",
    "SymmetryCache",
    "aggregate_pm",
    "aligned_rmsd",
    "aligned_rmsd_center",
    "batch_molecule_centroids",
    "centroid_errors",
    "centroid_spread_ratios",
    "cluster_pose_errors",
    "collision_rate",
    "collision_rate_batch",
    "covalent_radii",
    "distance_matrix",
    "kabsch",
    "molecule_centroids",
    "molecule_errors",
    "molecule_min_distances",
    "orientation_errors",
    "packing_matching",
    "perceive_bonds",
    "pm_atom",
    "pm_atom_batch",
    "pm_batch",
    "pm_center",
    "pm_center_batch",
    "rmsd17",
    "rmsd17_batch",
    "separation_rate",
    "separation_rate_batch",
]
